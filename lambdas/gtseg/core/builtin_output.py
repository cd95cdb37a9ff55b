"""One output-manifest line in the built-in semantic-segmentation form, rebuilt from gtseg's sidecar.

Ground Truth replaces the ``<lan>-metadata`` a custom consolidation Lambda returns with its own
custom-job metadata (``{"type": "groundtruth/custom", "job-name", "human-annotated",
"creation-date"}``, docs/protocol.md §2.4), so the colour map gtseg returned never reaches
``output.manifest``. The sidecar next to each mask (``core.sidecar``) still has everything the
built-in form needs; this module puts it back, as ``gtseg finalize`` does for a whole job and the
launcher and the pre-annotation Lambda do for a prior job's lines:

    <lan>           the mask URI, unchanged (gtseg's masks are already built-in PNGs)
    <lan>-metadata  internal-color-map (class-name, hex-color, confidence), type
                    groundtruth/semantic-segmentation, human-annotated, creation-date,
                    job-name labeling-job/<name>, adjustment-status (adjustment jobs),
                    failure-reason (objects without a label)

Pure: the caller reads the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.manifest import (
    ADJUSTMENT_STATUS_KEY,
    CUSTOM_TYPE,
    JOB_NAME_PREFIX,
    SEGMENTATION_TYPE,
    metadata_key,
)

if TYPE_CHECKING:  # the sidecar model loads numpy; callers that only rebuild metadata need not
    from gtseg.core.sidecar import ConsolidationSidecar

COLOR_MAP_KEY = "internal-color-map"
FAILURE_KEY = "failure-reason"
NO_LABEL = "the job wrote no label for this object"


def has_color_map(line: Mapping[str, Any], attribute: str) -> bool:
    meta = line.get(metadata_key(attribute))
    return isinstance(meta, Mapping) and isinstance(meta.get(COLOR_MAP_KEY), Mapping)


def mask_attributes(line: Mapping[str, Any]) -> list[str]:
    """Label attributes on a line that point at a mask: ``<x>`` (a string) whose metadata has an
    internal-color-map, plus ``<x>`` = a ``.png`` reference whose metadata lacks the map (a custom
    job whose metadata Ground Truth replaced: the colour map is in gtseg's sidecar)."""
    found = set()
    for key, value in line.items():
        if not isinstance(value, str) or not isinstance(line.get(metadata_key(key)), Mapping):
            continue
        if has_color_map(line, key) or value.lower().endswith(".png"):
            found.add(key)
    return sorted(found)


def needs_sidecar(line: Mapping[str, Any], attribute: str) -> bool:
    """Whether the built-in form of ``attribute`` needs facts only the sidecar has: a labelled
    object without its colour map (or without a failure-reason for one that got no label)."""
    meta = line.get(metadata_key(attribute))
    if not isinstance(meta, Mapping):
        return isinstance(line.get(attribute), str)
    if isinstance(line.get(attribute), str):
        return not isinstance(meta.get(COLOR_MAP_KEY), Mapping)
    return not meta.get(FAILURE_KEY)


def job_name_of(line: Mapping[str, Any], attribute: str, sidecar: ConsolidationSidecar | None) -> str | None:
    """The job's name: the sidecar's (written in the job's own case), else the metadata's."""
    if sidecar is not None and sidecar.job_name:
        return sidecar.job_name
    meta = line.get(metadata_key(attribute))
    name = meta.get("job-name") if isinstance(meta, Mapping) else None
    return name.removeprefix(JOB_NAME_PREFIX) if isinstance(name, str) and name else None


def builtin_metadata(
    line: Mapping[str, Any],
    attribute: str,
    *,
    sidecar: ConsolidationSidecar | None = None,
    job_name: str | None = None,
) -> dict[str, Any]:
    """``<attribute>-metadata`` in the built-in form. Raises ``LabelError`` when the object has a
    mask but neither its metadata nor its sidecar says which colour is which class."""
    old = line.get(metadata_key(attribute))
    old = old if isinstance(old, Mapping) else {}
    name = job_name or job_name_of(line, attribute, sidecar) or "unknown-job"
    out: dict[str, Any] = {}
    if isinstance(line.get(attribute), str):
        out[COLOR_MAP_KEY] = _color_map(old, sidecar)
    out["type"] = SEGMENTATION_TYPE
    human = old.get("human-annotated")
    out["human-annotated"] = human if human in ("yes", "no") else "yes"
    if old.get("creation-date") is not None:
        out["creation-date"] = old["creation-date"]
    out["job-name"] = f"{JOB_NAME_PREFIX}{name}"
    adjustment = old.get(ADJUSTMENT_STATUS_KEY) or (sidecar.adjustment_status if sidecar else None)
    if adjustment:
        out[ADJUSTMENT_STATUS_KEY] = adjustment
    if COLOR_MAP_KEY not in out:
        out[FAILURE_KEY] = old.get(FAILURE_KEY) or (sidecar.failure_reason if sidecar else None) or NO_LABEL
    return out


def builtin_line(
    line: Mapping[str, Any],
    attribute: str,
    *,
    sidecar: ConsolidationSidecar | None = None,
    job_name: str | None = None,
) -> dict[str, Any]:
    """A copy of ``line`` whose ``<attribute>-metadata`` is in the built-in form (every other key,
    ``<attribute>`` included, unchanged)."""
    out = dict(line)
    out[metadata_key(attribute)] = builtin_metadata(line, attribute, sidecar=sidecar, job_name=job_name)
    return out


def is_custom_metadata(meta: Any) -> bool:
    return isinstance(meta, Mapping) and str(meta.get("type", "")).lower() == CUSTOM_TYPE


def _color_map(old: Mapping[str, Any], sidecar: ConsolidationSidecar | None) -> dict[str, Any]:
    inline = old.get(COLOR_MAP_KEY)
    if isinstance(inline, Mapping):
        return dict(inline)  # already the built-in form (its confidences included)
    if sidecar is None or not sidecar.classes:
        raise LabelError(
            "the metadata has no internal-color-map (Ground Truth replaced it) and there is no gtseg "
            "sidecar next to the mask"
        )
    classes = ClassMap.from_internal_color_map(sidecar.internal_color_map())
    # the built-in task gives every class the image's confidence (0.0 with one worker)
    confidence = sidecar.image_confidence or 0.0
    return classes.internal_color_map([confidence] * len(classes))
