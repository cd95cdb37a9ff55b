"""Property tests for the emulator's parsers of outside input: rendered worker pages, consolidation
responses (user code) and SageMaker request bodies."""

from __future__ import annotations

import html
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtseg.local.ground_truth import (
    JobFailed,
    ObjectOutcome,
    TemplateRenderer,
    apply_consolidation_response,
    inspect_rendered_task,
)
from gtseg.local.sagemaker_standin import SageMakerStandin, StandinError
from gtseg.local.simulated_job import TEMPLATE

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)


def _presign(uri: str) -> str:
    return "http://127.0.0.1:9/" + uri.removeprefix("s3://") + "?X-Amz-Signature=abc&X-Amz-Expires=3600"


GTSEG_TEMPLATE = TemplateRenderer(TEMPLATE.read_text(), _presign)
STANDIN = SageMakerStandin()  # not started: dispatch is what its HTTP handler calls


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(label_text, min_size=1, max_size=6, unique=True))
def test_gtsegs_template_carries_any_labels_to_the_page_intact(labels):
    """Quotes, ampersands, angle brackets and unicode survive to_json | escape and HTML decoding."""
    page = GTSEG_TEMPLATE.render({"taskObject": "s3://bucket/images/a & b.png", "labels": labels})
    rendered = inspect_rendered_task(page, labels)
    assert rendered.problems == ()
    assert list(rendered.labels) == labels
    assert rendered.src == _presign("s3://bucket/images/a & b.png")
    assert rendered.element_name == "crowd-semantic-segmentation"


def test_a_prior_mask_reaches_the_page_as_a_loadable_initial_value():
    initial = {"labelMappings": {"road": {"color": "#2ca02c"}}, "src": "s3://bucket/prior/0.png"}
    page = GTSEG_TEMPLATE.render(
        {"taskObject": "s3://bucket/a.png", "labels": ["road"], "initialValue": initial}
    )
    rendered = inspect_rendered_task(page, ["road"])
    assert rendered.problems == ()
    assert json.loads(rendered.initial_value) == {**initial, "src": _presign("s3://bucket/prior/0.png")}


@pytest.mark.parametrize(
    ("initial_value", "problem"),
    [
        ("{'src': 'x'}", "initial-value is not JSON"),
        ('{"labelMappings": {}, "src": "s3://b/p.png"}', "is not a URL a browser can load"),
        ('{"src": "https://h/p.png"}', "no labelMappings object"),
    ],
)
def test_broken_initial_values_are_named(initial_value, problem):
    page = (
        '<crowd-semantic-segmentation name="x" src="http://h/i.png" labels=\'["road"]\' '
        f"initial-value='{initial_value}'></crowd-semantic-segmentation>"
    )
    (found,) = inspect_rendered_task(page, ["road"]).problems
    assert problem in found


@settings(max_examples=100, deadline=None)
@given(page=st.text(max_size=300))
def test_inspecting_any_page_never_raises(page):
    rendered = inspect_rendered_task(page, ["road"])
    assert isinstance(rendered.problems, tuple)


@pytest.mark.parametrize(
    ("attribute", "problem"),
    [
        ('labels="[&quot;road&quot;"', "labels attribute is not JSON"),
        ('labels="[]"', "non-empty JSON list of strings"),
        ('labels="[&quot;car&quot;]"', "label categories are ['road']"),
    ],
)
def test_bad_labels_attributes_are_named(attribute, problem):
    page = f'<crowd-semantic-segmentation name="x" src="http://h/i.png" {attribute}></crowd-semantic-segmentation>'
    (found,) = inspect_rendered_task(page, ["road"]).problems
    assert problem in found


def _batch(n: int) -> list[ObjectOutcome]:
    return [ObjectOutcome(str(i), {"source-ref": f"s3://b/{i}.png"}) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(response=json_values, size=st.integers(1, 4))
def test_any_consolidation_response_leaves_every_object_labeled_or_failed(response, size):
    batch = _batch(size)
    try:
        problems = apply_consolidation_response(batch, response, "job-ref")
    except JobFailed:
        assert not isinstance(response, list)
        return
    assert all(o.status in ("labeled", "failed") for o in batch)
    assert all(o.failure_reason for o in batch if o.status == "failed")
    # A response that labels nothing is never silently accepted.
    if not any(o.status == "labeled" for o in batch):
        assert problems or all(o.failure_reason for o in batch)


@settings(max_examples=100, deadline=None)
@given(
    entries=st.lists(
        st.fixed_dictionaries(
            {"datasetObjectId": st.sampled_from(["0", "1", "2", 3, "x"])},
            optional={"consolidatedAnnotation": st.fixed_dictionaries({}, optional={"content": json_values})},
        ),
        max_size=5,
    )
)
def test_well_formed_entries_are_taken_and_the_rest_reported(entries):
    batch = _batch(3)
    problems = apply_consolidation_response(batch, entries, "job-ref")
    for outcome in batch:
        if outcome.status == "labeled":
            assert "job-ref" in outcome.content
    ids = [str(e["datasetObjectId"]) for e in entries]
    for missing in {"0", "1", "2"} - set(ids):
        assert any(f"{missing!r} is missing" in p for p in problems)


def test_a_correct_response_has_no_problems():
    batch = _batch(2)
    response = [
        {"datasetObjectId": "0", "consolidatedAnnotation": {"content": {"job-ref": "s3://o/0.png"}}},
        {"datasetObjectId": "1", "consolidatedAnnotation": {"content": {"job-ref-metadata": {"failure-reason": "no usable annotation"}}}},
    ]  # fmt: skip
    assert apply_consolidation_response(batch, response, "job-ref") == []
    assert [o.status for o in batch] == ["labeled", "failed"]
    assert batch[1].failure_reason == "no usable annotation"


def test_out_of_order_responses_are_reported():
    batch = _batch(2)
    response = [
        {"datasetObjectId": i, "consolidatedAnnotation": {"content": {"job-ref": f"s3://o/{i}.png"}}}
        for i in ("1", "0")
    ]
    assert apply_consolidation_response(batch, response, "job-ref") == [
        "the response is not in payload order (design.md contract)"
    ]


@settings(max_examples=150, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["LabelingJobName", "LabelAttributeName", "InputConfig", "OutputConfig",
                                             "RoleArn", "HumanTaskConfig", "Tags", "Other"]),
                            json_values, max_size=6))  # fmt: skip
def test_the_standin_answers_any_request_body_with_a_result_or_an_api_error(body):
    for operation in ("CreateLabelingJob", "DescribeLabelingJob"):
        try:
            result = STANDIN.dispatch(f"SageMaker.{operation}", json.loads(json.dumps(body)))
        except StandinError as exc:
            assert exc.code in ("ValidationException", "ResourceNotFound", "ResourceInUse")
            assert exc.message
        else:
            assert isinstance(result, dict)


def test_escape_and_autoescape_make_values_safe_and_decode_back():
    renderer = TemplateRenderer('<p title="{{ task.input.v | escape }}">{{ task.input.v }}</p>', _presign)
    value = "\"<a href='x'>&amp;</a>\""
    page = renderer.render({"v": value})
    title, body = page.removeprefix('<p title="').removesuffix("</p>").split('">')
    for part in (title, body):
        assert not set("<>\"'") & set(part)  # nothing left that could end the attribute or open a tag
        assert html.unescape(part) == value  # escaped once (not twice) by escape + autoescape
