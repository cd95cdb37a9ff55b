"""gtseg.pre_annotation: the decisions of the pre-annotation Lambda (task, prelabel decoding)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gtseg.core.gold import GOLD_KEY, GoldReference, gold_line
from gtseg.core.images import ImageFormat, ImageInfo
from gtseg.core.labels import BACKGROUND, ClassMap, LabelCategoryConfig, LabelError, labels_from_manifest_line
from gtseg.core.layout import prelabel_key
from gtseg.core.masks import read_class_mask
from gtseg.pre_annotation.prelabel import (
    PRELABEL_MIN_REMAINING_MS,
    PrelabelError,
    decode_prelabel,
    encode_prelabel_png,
    prelabel_blocker,
)
from gtseg.pre_annotation.task import (
    MAX_IMAGE_BYTES,
    Outcome,
    SkipObject,
    build_task_input,
    check_image,
    find_prior_mask,
    image_source,
    prelabel_initial_value,
    resolve_labels,
    skipped_task_input,
)

LABELS = ("road", "car", "person")


# --------------------------------------------------------------------------- image source


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket-1/a.jpg", "s3://bucket-1/dir/b c.JPEG", "s3://bucket-1/x.Png", " s3://bucket-1/a.jpg "],
)
def test_image_source_accepts_s3_jpeg_and_png(uri: str) -> None:
    assert image_source({"source-ref": uri}) == uri.strip()


@pytest.mark.parametrize(
    ("data_object", "outcome", "message"),
    [
        ({}, Outcome.INVALID_SOURCE, "no 'source-ref'"),
        ({"source": "some text"}, Outcome.INVALID_SOURCE, "inline 'source' text"),
        ({"source-ref": 42}, Outcome.INVALID_SOURCE, "must be a string, got int"),
        ({"source-ref": "https://bucket-1/a.jpg"}, Outcome.INVALID_SOURCE, "not an s3://bucket/key URI"),
        ({"source-ref": "s3://bucket-1/"}, Outcome.INVALID_SOURCE, "not an s3://bucket/key URI"),
        ({"source-ref": "s3://b/a.jpg"}, Outcome.INVALID_SOURCE, "not an s3://bucket/key URI"),
        ({"source-ref": "s3://bucket-1/a.gif"}, Outcome.UNSUPPORTED_IMAGE, "is not a jpg/jpeg/png file"),
        ({"source-ref": "s3://bucket-1/noext"}, Outcome.UNSUPPORTED_IMAGE, "is not a jpg/jpeg/png file"),
    ],
)
def test_image_source_rejects_with_a_reason(data_object: dict, outcome: Outcome, message: str) -> None:
    with pytest.raises(SkipObject, match=message) as info:
        image_source(data_object)
    assert info.value.outcome == outcome


def test_check_image_limits() -> None:
    ok = ImageInfo(ImageFormat.JPEG, 10_000, 10_000)  # exactly 100 MP
    assert check_image("s3://bucket-1/a.jpg", ok, MAX_IMAGE_BYTES) == []
    with pytest.raises(SkipObject, match="40000001 bytes") as too_heavy:
        check_image("s3://bucket-1/a.jpg", ok, MAX_IMAGE_BYTES + 1)
    assert too_heavy.value.outcome == Outcome.IMAGE_TOO_LARGE
    with pytest.raises(SkipObject, match=r"10001x10000 \(100.0 MP\)") as too_big:
        check_image("s3://bucket-1/a.jpg", ImageInfo(ImageFormat.JPEG, 10_001, 10_000), 1000)
    assert too_big.value.outcome == Outcome.IMAGE_TOO_LARGE


def test_check_image_notes_a_misleading_extension() -> None:
    notes = check_image("s3://bucket-1/a.jpg", ImageInfo(ImageFormat.PNG, 10, 10), None)
    assert notes == ["file extension .jpg but the content is PNG"]


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "raw",
    [
        ["road", "car"],
        [{"label": "road"}, {"label": "car"}],
        {"document-version": "2018-11-28", "labels": [{"label": "road"}, {"label": "car"}]},
        {"labels": [{"label": "road"}, {"label": "car"}]},
    ],
)
def test_labels_from_the_manifest_line_in_every_accepted_shape(raw: Any) -> None:
    assert labels_from_manifest_line({"labels": raw}) == ("road", "car")


def test_no_labels_key_means_none() -> None:
    assert labels_from_manifest_line({"source-ref": "s3://b-1/a.jpg"}) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("road", "must be a list, got str"),
        (["a", "a"], "duplicate"),
        ([], "at least one"),
        ([7], "must be a string"),
    ],
)
def test_bad_manifest_labels_are_a_label_error(raw: Any, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        labels_from_manifest_line({"labels": raw})


class Loader:
    """A label source that records whether it was asked."""

    def __init__(self, result: LabelCategoryConfig | None = None, error: str | None = None) -> None:
        self.result, self.error, self.calls = result, error, 0

    def __call__(self) -> LabelCategoryConfig | None:
        self.calls += 1
        if self.error:
            raise LabelError(self.error)
        return self.result


def test_manifest_labels_win_and_other_sources_are_not_asked() -> None:
    job = Loader(LabelCategoryConfig.from_labels(["x"]))
    resolved = resolve_labels({"labels": ["road"]}, [("job", job)])
    assert resolved.labels == ("road",)
    assert resolved.source == "manifest-line"
    assert job.calls == 0


def test_sources_are_tried_in_order_until_one_has_labels() -> None:
    job, env, never = Loader(None), Loader(LabelCategoryConfig.from_labels(["y"])), Loader(None)
    resolved = resolve_labels({}, [("job", job), ("env", env), ("never", never)])
    assert resolved.labels == ("y",)
    assert resolved.source == "env"
    assert (job.calls, env.calls, never.calls) == (1, 1, 0)
    assert resolved.skipped == ("manifest-line: no 'labels' key", "job: not available")


def test_a_broken_source_stops_the_search() -> None:
    env = Loader(LabelCategoryConfig.from_labels(["y"]))
    with pytest.raises(SkipObject, match="job: bad file") as info:
        resolve_labels({}, [("job", Loader(error="bad file")), ("env", env)])
    assert info.value.outcome == Outcome.NO_LABELS
    assert env.calls == 0


def test_invalid_manifest_labels_skip_the_object() -> None:
    with pytest.raises(SkipObject, match=r"invalid 'labels' on the manifest line: .*duplicate") as info:
        resolve_labels({"labels": ["a", "a"]}, [("env", Loader(LabelCategoryConfig.from_labels(["y"])))])
    assert info.value.outcome == Outcome.NO_LABELS


def test_no_source_at_all_lists_what_was_tried() -> None:
    with pytest.raises(SkipObject, match=r"no label list found \(manifest-line: .*; job: not available\)"):
        resolve_labels({}, [("job", Loader(None))])


# --------------------------------------------------------------------------- prior masks


def prior_line(attribute: str = "first-pass-ref", labels: tuple[str, ...] = LABELS, **overrides: Any) -> dict:
    line: dict[str, Any] = {
        "source-ref": "s3://data-1/a.jpg",
        attribute: "s3://out-1/job/annotations/consolidated-annotation/output/0_2024-05-01T12:00:05.png",
        f"{attribute}-metadata": {
            "internal-color-map": ClassMap.from_labels(labels, {"car": "#123456"}).internal_color_map(),
            "type": "groundtruth/semantic-segmentation",
        },
    }
    line.update(overrides)
    return line


def test_a_single_prior_mask_is_auto_detected() -> None:
    line = prior_line()
    prior = find_prior_mask(line, LABELS)
    assert prior.problem is None
    assert prior.attribute == "first-pass-ref"
    assert prior.initial_value is not None
    assert prior.initial_value.src == line["first-pass-ref"]
    assert prior.initial_value.origin == "prior:first-pass-ref"
    # labelMappings come from the prior's own colour map (so its PNG reads right), BACKGROUND skipped
    assert prior.initial_value.label_mappings == {
        "road": {"color": "#2ca02c"},
        "car": {"color": "#123456"},
        "person": {"color": "#1f77b4"},
    }


def test_no_prior_on_a_plain_line() -> None:
    prior = find_prior_mask({"source-ref": "s3://data-1/a.jpg"}, LABELS)
    assert (prior.attribute, prior.initial_value, prior.problem) == (None, None, None)


def test_a_prior_may_use_a_subset_of_the_jobs_labels() -> None:
    prior = find_prior_mask(prior_line(labels=("road", "car")), LABELS)
    assert prior.initial_value is not None
    assert set(prior.initial_value.label_mappings) == {"road", "car"}


def test_the_configured_attribute_is_used_even_without_ref_suffix() -> None:
    line = prior_line("review") | prior_line("other-ref")
    prior = find_prior_mask(line, LABELS, configured_attribute="review")
    assert prior.attribute == "review"
    assert prior.initial_value is not None


def test_a_configured_attribute_absent_from_the_line_is_a_note_not_a_problem() -> None:
    prior = find_prior_mask(prior_line(), LABELS, configured_attribute="elsewhere-ref")
    assert prior.initial_value is None and prior.problem is None
    assert prior.notes == ("no prior mask: 'elsewhere-ref' is not on this manifest line",)


def test_two_candidate_priors_need_the_setting() -> None:
    prior = find_prior_mask(prior_line("a-ref") | prior_line("b-ref"), LABELS)
    assert prior.initial_value is None
    assert prior.problem == "several prior masks (a-ref, b-ref); set PRIOR_LABEL_ATTRIBUTE to choose one"


def _without_hex(line: dict) -> dict:
    color_map = line["first-pass-ref-metadata"]["internal-color-map"]
    del color_map["1"]["hex-color"]
    return line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (prior_line(**{"first-pass-ref": "http://out-1/a.png"}), "not an s3://bucket/key URI"),
        (prior_line(**{"first-pass-ref": "s3://out-1/a.jpg"}), "is not a .png"),
        (prior_line(**{"first-pass-ref": 5}), "missing or not a string"),
        (prior_line(**{"first-pass-ref-metadata": {"internal-color-map": []}}), "must be an object"),
        (_without_hex(prior_line()), "has no 'hex-color'"),
        (prior_line(labels=("road", "truck")), r"classes \['truck'\] are not in this job's labels"),
    ],
)
def test_malformed_priors_are_reported(line: dict, message: str) -> None:
    prior = find_prior_mask(line, LABELS)
    assert prior.initial_value is None
    assert prior.attribute == "first-pass-ref"
    assert prior.problem is not None
    assert prior.problem.startswith("prior mask 'first-pass-ref' is unusable: ")
    assert re.search(message, prior.problem)


def test_a_prior_that_failed_in_the_earlier_job_is_reported() -> None:
    line = prior_line()
    del line["first-pass-ref"]
    line["first-pass-ref-metadata"]["failure-reason"] = "no worker answered"
    prior = find_prior_mask(line, LABELS)
    assert prior.problem is not None
    assert "the earlier job failed on this object: no worker answered" in prior.problem


@settings(max_examples=100)
@given(
    st.dictionaries(
        st.sampled_from(["source-ref", "x-ref", "x-ref-metadata", "y-ref", "y-ref-metadata", "labels"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=30),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=15), c, max_size=3),
            max_leaves=12,
        ),
    )
)
def test_find_prior_mask_never_raises_on_odd_lines(line: dict) -> None:
    prior = find_prior_mask(line, LABELS)
    assert prior.initial_value is None or prior.problem is None


# --------------------------------------------------------------------------- gold objects

KNOWN_MASK = "s3://out-1/jobs/gold-set/masks/a.png"


def a_gold_line(**extra: Any) -> dict[str, Any]:
    reference = GoldReference.model_validate(
        {"mask": KNOWN_MASK, "internal-color-map": ClassMap.from_labels(LABELS).internal_color_map()}
    )
    return {**gold_line("s3://data-1/gold/a.jpg", reference), **extra}


def test_a_gold_objects_known_mask_is_never_a_prior() -> None:
    prior = find_prior_mask(a_gold_line(), LABELS)
    assert (prior.attribute, prior.initial_value, prior.problem) == (None, None, None)
    # not even when PRIOR_LABEL_ATTRIBUTE names the gold key
    named = find_prior_mask(a_gold_line(), LABELS, configured_attribute=GOLD_KEY)
    assert named.initial_value is None and named.problem is None
    assert named.notes and "never a prior" in named.notes[0]


def test_the_gold_key_does_not_compete_with_a_real_prior() -> None:
    prior = find_prior_mask(a_gold_line(**prior_line()), LABELS)
    assert prior.problem is None
    assert prior.attribute == "first-pass-ref"
    assert prior.initial_value is not None and prior.initial_value.src != KNOWN_MASK


def test_the_task_input_never_carries_the_known_mask() -> None:
    line = a_gold_line(site="plant-7")
    task_input = build_task_input(line["source-ref"], LABELS, line)
    assert task_input["manifestLine"] == {"source-ref": line["source-ref"], "site": "plant-7"}
    assert KNOWN_MASK not in json.dumps(task_input)
    assert GOLD_KEY in line  # the caller's line is left as it was


# --------------------------------------------------------------------------- model pre-labels


def test_prelabels_only_for_images_shown_as_stored() -> None:
    assert prelabel_blocker(ImageInfo(ImageFormat.JPEG, 40, 30)) is None
    for orientation in range(2, 9):
        reason = prelabel_blocker(ImageInfo(ImageFormat.JPEG, 40, 30, orientation))
        assert reason is not None and f"EXIF orientation {orientation}" in reason


def test_prelabels_only_with_enough_of_the_lambda_timeout_left() -> None:
    image = ImageInfo(ImageFormat.JPEG, 40, 30)
    assert prelabel_blocker(image, None) is None  # unknown (no Lambda context): ask
    assert prelabel_blocker(image, PRELABEL_MIN_REMAINING_MS) is None
    reason = prelabel_blocker(image, PRELABEL_MIN_REMAINING_MS - 1)
    assert reason is not None and "timeout left" in reason


def test_prelabel_key_is_stable_per_source() -> None:
    key = prelabel_key("job-1", "s3://data-1/a.jpg")
    assert key == f"prelabels/job-1/{hashlib.sha1(b's3://data-1/a.jpg').hexdigest()}.png"
    assert prelabel_key("job-1", "s3://data-1/a.jpg") == key
    assert prelabel_key("job-1", "s3://data-1/b.jpg") != key


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode=mode)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


INDICES = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 1, 1]], dtype=np.uint8)  # width 4, height 3


def test_decode_prelabel_from_a_greyscale_png() -> None:
    out = decode_prelabel(png_bytes(INDICES), "image/png", 4, (4, 3))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, INDICES)


def test_decode_prelabel_from_a_palette_png_uses_the_indices_not_the_colours() -> None:
    png = encode_prelabel_png(INDICES, LABELS)
    np.testing.assert_array_equal(decode_prelabel(png, None, 4, (4, 3)), INDICES)


def test_decode_prelabel_from_a_16_bit_png() -> None:
    png = png_bytes(INDICES.astype(np.uint16))
    np.testing.assert_array_equal(decode_prelabel(png, "image/png", 4, (4, 3)), INDICES)


def test_decode_prelabel_from_json_mask_and_json_png() -> None:
    as_list = json.dumps({"mask": INDICES.tolist()}).encode()
    np.testing.assert_array_equal(decode_prelabel(as_list, "application/json", 4, (4, 3)), INDICES)
    as_b64 = json.dumps({"png": base64.b64encode(png_bytes(INDICES)).decode()}).encode()
    np.testing.assert_array_equal(
        decode_prelabel(as_b64, "application/json; charset=utf-8", 4, None), INDICES
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (png_bytes(np.zeros((3, 4, 3), dtype=np.uint8)), "PNG is RGB; expected one channel"),
        (png_bytes(INDICES), "index 3 outside 0..2"),
        (png_bytes(np.zeros((4, 4), dtype=np.uint8)), "mask is 4x4 but the image is 4x3"),
        (json.dumps({"mask": [[0, 1, 0, 0], [0, 1], [0, 0, 0, 0]]}).encode(), "same, non-zero length"),
        (json.dumps({"mask": [[0, True, 0, 0]] * 3}).encode(), "must be integers"),
        (json.dumps({"mask": [[0, -1, 0, 0]] * 3}).encode(), "index -1 outside"),
        (json.dumps({"mask": []}).encode(), "non-empty list of rows"),
        (json.dumps({"png": "%%%not base64"}).encode(), "'png'"),
        (json.dumps({"labels": []}).encode(), "neither 'mask' nor 'png'"),
        (json.dumps([1, 2]).encode(), "must be an object"),
        (b"\x00\x01garbage", "neither a PNG nor JSON"),
    ],
)
def test_decode_prelabel_rejects_unusable_answers(body: bytes, message: str) -> None:
    with pytest.raises(PrelabelError, match=message):
        decode_prelabel(body, None, 3, (4, 3))


@settings(max_examples=100)
@given(
    body=st.binary(max_size=300), content_type=st.sampled_from([None, "image/png", "application/json", "x/y"])
)
def test_decode_prelabel_of_random_bytes_is_a_mask_or_a_prelabel_error(
    body: bytes, content_type: str | None
) -> None:
    try:
        out = decode_prelabel(body, content_type, 5, None)
    except PrelabelError:
        return
    assert out.dtype == np.uint8 and int(out.max()) < 5


def test_prelabel_png_reads_back_with_the_job_class_map() -> None:
    png = encode_prelabel_png(INDICES, LABELS)
    np.testing.assert_array_equal(read_class_mask(png, ClassMap.from_labels(LABELS)), INDICES)


def test_prelabel_initial_value_uses_the_job_colours() -> None:
    initial = prelabel_initial_value("s3://out-1/prelabels/j/x.png", LABELS)
    assert initial.to_task_input() == {
        "labelMappings": ClassMap.from_labels(LABELS).label_mappings(),
        "src": "s3://out-1/prelabels/j/x.png",
    }
    assert BACKGROUND not in initial.label_mappings


# --------------------------------------------------------------------------- task input


def test_task_input_has_the_keys_the_template_reads() -> None:
    line = {"source-ref": "s3://data-1/a.jpg", "header": "  Mark the road  ", "site": "plant-7"}
    task_input = build_task_input("s3://data-1/a.jpg", LABELS, line)
    assert task_input == {
        "taskObject": "s3://data-1/a.jpg",
        "labels": list(LABELS),
        "manifestLine": line,
        "header": "Mark the road",
    }
    assert task_input["manifestLine"] is not line  # a copy: later edits cannot leak into the answer


def test_task_input_carries_the_initial_value() -> None:
    initial = prelabel_initial_value("s3://out-1/p.png", LABELS)
    task_input = build_task_input("s3://data-1/a.jpg", LABELS, {"header": 3}, initial)
    assert task_input["initialValue"] == initial.to_task_input()
    assert "header" not in task_input  # a non-string header is ignored


def test_skipped_task_input_only_carries_the_reason() -> None:
    assert skipped_task_input("why") == {"skipReason": "why"}
