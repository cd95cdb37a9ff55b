"""A custom job's output line back in the built-in semantic-segmentation form (core.builtin_output)."""

from __future__ import annotations

import pytest

from gtseg.core.builtin_output import builtin_line, mask_attributes, needs_sidecar
from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass

LAN = "Job-A-ref"
MASK = "s3://out/jobs/Job-A/annotations/consolidated-annotation/output/iteration-1/0.png"
CUSTOM = {"type": "groundtruth/custom", "job-name": "job-a", "human-annotated": "yes",
          "creation-date": "2024-05-01T12:00:05.000000"}  # fmt: skip


def sidecar(**extra) -> ConsolidationSidecar:
    cmap = ClassMap.from_labels(["road", "car"])
    return ConsolidationSidecar(
        dataset_object_id="0", job_name="Job-A", mask=MASK, image_confidence=0.71234,
        classes=[SidecarClass(index=i, class_name=n, hex_color=c)
                 for i, (n, c) in enumerate(zip(cmap.names, cmap.colors, strict=True))],
        **extra,
    )  # fmt: skip


def test_a_replaced_line_gets_the_full_built_in_metadata_from_its_sidecar():
    line = {"source-ref": "s3://in/a.jpg", "site": "x", LAN: MASK, f"{LAN}-metadata": CUSTOM}
    assert mask_attributes(line) == [LAN] and needs_sidecar(line, LAN)
    out = builtin_line(line, LAN, sidecar=sidecar(adjustment_status="unadjusted"))
    assert out["site"] == "x" and out[LAN] == MASK
    assert out[f"{LAN}-metadata"] == {
        "internal-color-map": {
            "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.7123},
            "1": {"class-name": "road", "hex-color": "#2ca02c", "confidence": 0.7123},
            "2": {"class-name": "car", "hex-color": "#1f77b4", "confidence": 0.7123},
        },
        "type": "groundtruth/semantic-segmentation",
        "human-annotated": "yes",
        "creation-date": "2024-05-01T12:00:05.000000",
        "job-name": "labeling-job/Job-A",
        "adjustment-status": "unadjusted",
    }
    assert not needs_sidecar(out, LAN)
    assert line[f"{LAN}-metadata"] == CUSTOM  # the input is not changed


def test_a_failed_object_gets_the_sidecars_failure_reason():
    line = {"source-ref": "s3://in/a.jpg", f"{LAN}-metadata": CUSTOM}
    meta = builtin_line(line, LAN, sidecar=sidecar(failure_reason="no usable annotation"))[f"{LAN}-metadata"]
    assert meta["failure-reason"] == "no usable annotation" and "internal-color-map" not in meta
    assert builtin_line(line, LAN)[f"{LAN}-metadata"]["failure-reason"]  # never without a reason


def test_a_line_already_in_built_in_form_keeps_its_colour_map():
    inline = {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.3},
              "3": {"class-name": "car", "hex-color": "#1f77b4", "confidence": 0.3}}  # fmt: skip
    line = {LAN: MASK, f"{LAN}-metadata": {"internal-color-map": inline, "job-name": "labeling-job/Job-A"}}
    assert not needs_sidecar(line, LAN)
    assert builtin_line(line, LAN)[f"{LAN}-metadata"]["internal-color-map"] == inline


def test_a_mask_without_any_colour_map_is_an_error_that_says_so():
    with pytest.raises(LabelError, match="no internal-color-map"):
        builtin_line({LAN: MASK, f"{LAN}-metadata": CUSTOM}, LAN)
