"""Protocol models: every documented and plausible variant of the Ground Truth events."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtseg.core.labels import ClassMap
from gtseg.core.manifest import (
    failure_content,
    parse_manifest,
    safe_filename,
    segmentation_attributes,
    segmentation_content,
    segmentation_metadata,
)
from gtseg.core.uris import parse_s3_prefix, parse_s3_uri
from gtseg.protocol import (
    ConsolidationRequest,
    PayloadItem,
    PreAnnotationResponse,
    ProtocolError,
    ValidationError,
    WorkerAnnotation,
    consolidation_entry,
    find_segmentation_answer,
)

BASE = {
    "version": "2018-10-16",
    "labelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/seg-job-001",
    "labelCategories": ["road", "car"],
    "labelAttributeName": "seg-job-001-ref",
    "roleArn": "arn:aws:iam::111122223333:role/GT",
    "payload": {"s3Uri": "s3://b/p.json"},
    "outputConfig": "s3://b/out",
}


@pytest.mark.parametrize(
    ("override", "labels"),
    [
        ({}, ["road", "car"]),
        ({"labelCategories": None}, None),
        ({"labelCategories": [{"label": "road"}, {"label": "car"}]}, ["road", "car"]),
        ({"labelCategories": '["road", "car"]'}, ["road", "car"]),
    ],
)
def test_label_categories_variants(override, labels):
    assert ConsolidationRequest.model_validate({**BASE, **override}).label_categories == labels


def test_missing_optional_keys_and_extra_keys_are_fine():
    event = {
        k: v for k, v in BASE.items() if k not in ("labelCategories", "outputConfig", "roleArn", "version")
    }
    event["somethingNew"] = 1
    request = ConsolidationRequest.model_validate(event)
    assert request.output_config is None and request.role_arn is None and request.label_categories is None
    assert request.job_name == "seg-job-001"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("s3://b/out", "s3://b/out"), ("", None), ({"S3OutputPath": "s3://b/x"}, "s3://b/x"), ({}, None)],
)
def test_output_config_variants(value, expected):
    assert ConsolidationRequest.model_validate({**BASE, "outputConfig": value}).output_config == expected


@pytest.mark.parametrize("key", ["s3Uri", "s3uri", "S3Uri"])
def test_payload_uri_spellings(key):
    assert (
        ConsolidationRequest.model_validate({**BASE, "payload": {key: "s3://b/p.json"}}).payload.s3_uri
        == "s3://b/p.json"
    )


def test_kms_key_is_read_when_sent():
    assert ConsolidationRequest.model_validate({**BASE, "kmsKeyId": "k"}).kms_key_id == "k"


@pytest.mark.parametrize("missing", ["labelAttributeName", "payload", "labelingJobArn"])
def test_required_fields(missing):
    with pytest.raises(ValidationError):
        ConsolidationRequest.model_validate({k: v for k, v in BASE.items() if k != missing})


def test_payload_item_ids_and_sources():
    item = PayloadItem.model_validate(
        {"datasetObjectId": 3, "dataObject": {"s3uri": "s3://i/1.jpg"}, "annotations": None}
    )
    assert item.dataset_object_id == "3" and item.annotations == [] and item.source_uri == "s3://i/1.jpg"
    with pytest.raises(ValidationError):
        PayloadItem.model_validate({"datasetObjectId": True})


@pytest.mark.parametrize("key", ["s3Uri", "s3uri"])
def test_annotation_data_s3_spellings(key):
    annotation = WorkerAnnotation.model_validate({"workerId": 7, "annotationData": {key: "s3://a/b"}})
    assert annotation.annotation_data.s3_uri == "s3://a/b" and annotation.worker_id == "7"


ANSWER = {
    "inputImageProperties": {"height": 4, "width": 6},
    "labelMappings": {"road": {"color": "#2ca02c"}},
    "labeledImage": {"pngImageData": "iVBORw0KGgo="},
}


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"crowd-semantic-segmentation": ANSWER}),
        {"crowd-semantic-segmentation": ANSWER},
        json.dumps({"annotatedResult": ANSWER, "comment": "hidden field"}),
        [{"crowd-semantic-segmentation": ANSWER}],
        ANSWER,
    ],
)
def test_find_segmentation_answer_variants(content):
    answer = find_segmentation_answer(content)
    assert answer.expected_size == (6, 4)
    assert answer.label_mappings == {"road": {"color": "#2ca02c"}}
    assert answer.png_image_data == "iVBORw0KGgo="


def test_named_element_wins_and_ambiguity_is_an_error():
    two = {"a": ANSWER, "b": ANSWER}
    with pytest.raises(ProtocolError, match="several"):
        find_segmentation_answer(two)
    assert find_segmentation_answer(two, element_name="b").element_name == "b"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ({"x": {"y": 1}}, "no semantic-segmentation answer"),
        ({"e": {"labeledImage": {}}}, "pngImageData"),
        ({"e": {"labeledImage": {"pngImageData": "x"}, "labelMappings": "red"}}, "labelMappings"),
        (
            {"e": {"labeledImage": {"pngImageData": "x"}, "inputImageProperties": {"width": "wide"}}},
            "numeric",
        ),
    ],
)
def test_bad_answers_raise_protocol_error(content, message):
    with pytest.raises(ProtocolError, match=message):
        find_segmentation_answer(content)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_content_yields_an_answer_or_a_protocol_error(value):
    for content in (value, json.dumps(value)):
        with contextlib.suppress(ProtocolError):
            find_segmentation_answer(content)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*list(BASE), "x"]), json_values, max_size=8))
def test_any_event_parses_or_raises_validation_error(event):
    with contextlib.suppress(ValidationError):
        ConsolidationRequest.model_validate(event)


def test_response_shapes():
    assert consolidation_entry("1", {"a": 1}) == {
        "datasetObjectId": "1",
        "consolidatedAnnotation": {"content": {"a": 1}},
    }
    response = PreAnnotationResponse(taskInput={"taskObject": "s3://x"}, isHumanAnnotationRequired=True)
    assert response.to_wire() == {"taskInput": {"taskObject": "s3://x"}, "isHumanAnnotationRequired": True}


def test_builtin_style_content_and_failure_content():
    cmap = ClassMap.from_labels(["road"])
    meta = segmentation_metadata(
        cmap, job_name="j", creation_date="2024-05-01T12:00:05.000000", confidences=[0.5, 0.5]
    )
    content = segmentation_content("j-ref", "s3://o/0.png", meta)
    assert content["j-ref"] == "s3://o/0.png"
    assert content["j-ref-metadata"] == {
        "internal-color-map": {
            "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.5},
            "1": {"class-name": "road", "hex-color": "#2ca02c", "confidence": 0.5},
        },
        "type": "groundtruth/semantic-segmentation",
        "human-annotated": "yes",
        "creation-date": "2024-05-01T12:00:05.000000",
        "job-name": "labeling-job/j",
    }
    failed = failure_content("j-ref", job_name="j", reason="why", creation_date="d")
    assert "j-ref" not in failed and failed["j-ref-metadata"]["failure-reason"] == "why"
    assert segmentation_attributes({"source-ref": "s3://i", **content}) == ["j-ref"]


def test_manifest_parsing_reports_bad_lines_without_stopping():
    lines = ['{"source-ref": "s3://a/1.jpg"}', "", "not json", "[1]", '{"source-ref": "s3://a/2.jpg"}']
    parsed = list(parse_manifest(lines))
    assert [getattr(p, "number", None) for p in parsed] == [1, None, None, 5]
    assert "line 3" in str(parsed[1]) and "line 4" in str(parsed[2])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0_2024-05-01T12:00:05.123.png", "0_2024-05-01T12_00_05.123.png"),
        ('a<b>c"d|e?f*g', "a_b_c_d_e_f_g"),
        ("..", "_"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_s3_uris():
    assert parse_s3_uri("s3://my-bucket/a/b c.png") == ("my-bucket", "a/b c.png")
    assert parse_s3_prefix("s3://my-bucket/") == ("my-bucket", "")
    for bad in ("http://x/y", "s3://", "s3://b", "s3://UPPER_/x", 3):
        with pytest.raises(ValueError):
            parse_s3_uri(bad)


# --------------------------------------------------------------------------- the job's own name

_LOWER_ARN = "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/test-labeling-job-20211118t021255"
_JOB = "test-labeling-job-20211118T021255"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # the payload's job folder keeps the case the ARN lost (a real event's shape)
        ({}, _JOB),
        # only the label attribute keeps it (payload somewhere else)
        ({"payload": {"s3Uri": "s3://b/elsewhere/p.json"}, "outputConfig": None}, _JOB),
        # outputConfig alone
        ({"payload": {"s3Uri": "s3://b/p.json"}, "labelAttributeName": "seg-ref"}, _JOB),
        # nothing matches: the ARN's name as it is
        ({"payload": {"s3Uri": "s3://b/p.json"}, "labelAttributeName": "seg-ref", "outputConfig": None},
         _JOB.lower()),
    ],
)  # fmt: skip
def test_the_job_name_comes_in_its_own_case_from_the_event(overrides, expected):
    from gtseg.protocol import ConsolidationRequest

    event = {
        "labelingJobArn": _LOWER_ARN,
        "labelAttributeName": f"{_JOB}-ref" if "labelAttributeName" not in overrides else None,
        "payload": {
            "s3Uri": f"s3://b/out/{_JOB}/annotations/consolidated-annotation/consolidation-request/iteration-1/x.json"
        },
        "outputConfig": f"s3://b/out/{_JOB}/annotations",
    }
    event.update(overrides)
    request = ConsolidationRequest.model_validate(event)
    assert request.arn_job_name == _JOB.lower()
    assert request.job_name == expected


def test_adjustment_status_and_output_config_job_folder():
    from gtseg.core.layout import job_folder_of_output_config
    from gtseg.core.manifest import adjustment_status

    assert adjustment_status([None, True, False]) == "adjusted"
    assert adjustment_status([False, False]) == "unadjusted"
    assert adjustment_status([None, None]) is None and adjustment_status([]) is None
    assert job_folder_of_output_config("s3://b/p/Job-A/annotations") == "Job-A"
    assert job_folder_of_output_config("s3://b/Job-A/annotations/consolidated-annotation/output/") == "Job-A"
    assert job_folder_of_output_config("s3://b/p/annotations-x/annotations") == "annotations-x"
    assert job_folder_of_output_config("s3://b/annotations") is None
    assert job_folder_of_output_config("s3://b/custom/out") is None
