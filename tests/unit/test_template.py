"""The worker task template, rendered with python-liquid and read back with an HTML parser.

Ground Truth's Liquid has its own ``grant_read_access`` and ``to_json`` filters and Ruby's
``escape``; the stand-ins below behave like them (a presigned URL with ``&`` in its query string,
JSON with raw unicode, ``& < > " '`` escaped). What matters is what a browser would see: every
attribute must decode to exactly the JSON the task input carried.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from liquid import Environment

from gtseg.core.labels import BACKGROUND, ClassMap
from gtseg.core.uris import parse_s3_uri
from gtseg.pre_annotation.task import build_task_input, prelabel_initial_value, prior_initial_value
from gtseg.protocol import DEFAULT_ELEMENT_NAME

TEMPLATE_TEXT = (
    resources.files("gtseg")
    .joinpath("templates/semantic-segmentation.liquid.html")
    .read_text(encoding="utf-8")
)
ELEMENT = "crowd-semantic-segmentation"
AWKWARD_LABELS = [
    'say "cheese"',
    "Tom & Jerry's",
    "<b>not bold</b>",
    "café ☕ 道路",
    "back\\slash",
    "{{ task.input.taskObject }}",
    "it's } a {",
]


def grant_read_access(uri: str) -> str:
    bucket, key = parse_s3_uri(uri)  # Ground Truth only grants S3 URIs
    return f"https://{bucket}.s3.amazonaws.com/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=ab'c"


def ruby_escape(value: Any) -> str:
    text = str(value)
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        text = text.replace(raw, entity)
    return text


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def make_env(autoescape: bool = False) -> Environment:
    """Ground Truth's Liquid, either way it may escape.

    Without auto-escaping, ``escape`` is Ruby's; with it (as the local emulator renders),
    python-liquid's own Markup-aware ``escape`` stays, so nothing is escaped twice.
    """
    env = Environment(autoescape=autoescape)
    env.filters["grant_read_access"] = grant_read_access
    env.filters["to_json"] = to_json
    if not autoescape:
        env.filters["escape"] = ruby_escape
    return env


TEMPLATES = {
    mode: make_env(mode == "autoescape").from_string(TEMPLATE_TEXT) for mode in ("plain", "autoescape")
}
TEMPLATE = TEMPLATES["plain"]


class ElementCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: dict[str, list[dict[str, str | None]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.setdefault(tag, []).append(dict(attrs))


def render(task_input: dict[str, Any], mode: str = "plain") -> ElementCollector:
    html = TEMPLATES[mode].render(task={"input": task_input})
    parser = ElementCollector()
    parser.feed(html)
    parser.close()
    return parser


def segmentation_attributes(task_input: dict[str, Any], mode: str = "plain") -> dict[str, str | None]:
    elements = render(task_input, mode).elements.get(ELEMENT, [])
    assert len(elements) == 1
    return elements[0]


def task(labels: list[str], **extra: Any) -> dict[str, Any]:
    data_object = {"source-ref": "s3://data-bucket/images/street 1.jpg", **extra}
    return build_task_input(data_object["source-ref"], labels, data_object)


def test_element_name_is_what_consolidation_reads() -> None:
    attrs = segmentation_attributes(task(["road"]))
    assert attrs["name"] == DEFAULT_ELEMENT_NAME == ELEMENT


@pytest.mark.parametrize("mode", ["plain", "autoescape"])
def test_image_src_is_the_granted_url(mode: str) -> None:
    attrs = segmentation_attributes(task(["road"]), mode)
    assert attrs["src"] == grant_read_access("s3://data-bucket/images/street 1.jpg")


@pytest.mark.parametrize("mode", ["plain", "autoescape"])
def test_labels_decode_to_the_task_labels_even_when_awkward(mode: str) -> None:
    attrs = segmentation_attributes(task(AWKWARD_LABELS), mode)
    assert json.loads(attrs["labels"] or "") == AWKWARD_LABELS


@pytest.mark.parametrize("mode", ["plain", "autoescape"])
def test_no_initial_value_attribute_without_a_starting_mask(mode: str) -> None:
    attrs = segmentation_attributes(task(["road", "car"]), mode)
    assert "initial-value" not in attrs


@pytest.mark.parametrize("mode", ["plain", "autoescape"])
def test_prior_mask_becomes_initial_value_with_granted_src(mode: str) -> None:
    labels = AWKWARD_LABELS
    prior_classes = ClassMap.from_labels(labels)
    data_object = {
        "source-ref": "s3://data-bucket/a.png",
        "old-ref": "s3://out-bucket/job/annotations/consolidated-annotation/output/0_2024-05-01T12:00:05.png",
        "old-ref-metadata": {"internal-color-map": prior_classes.internal_color_map()},
    }
    initial = prior_initial_value(data_object, "old-ref", labels)
    attrs = segmentation_attributes(
        build_task_input("s3://data-bucket/a.png", labels, data_object, initial), mode
    )
    value = json.loads(attrs["initial-value"] or "")
    assert value == {
        "labelMappings": {
            name: {"color": color} for name, color in zip(labels, prior_classes.colors[1:], strict=True)
        },
        "src": grant_read_access(data_object["old-ref"]),
    }
    assert BACKGROUND not in value["labelMappings"]


def test_prelabel_initial_value_renders_the_same_way() -> None:
    initial = prelabel_initial_value("s3://out-bucket/prelabels/job/abc.png", ["road", "car"])
    attrs = segmentation_attributes(task(["road", "car"]) | {"initialValue": initial.to_task_input()})
    value = json.loads(attrs["initial-value"] or "")
    assert value["src"] == grant_read_access("s3://out-bucket/prelabels/job/abc.png")
    assert value["labelMappings"] == {"road": {"color": "#2ca02c"}, "car": {"color": "#1f77b4"}}


@pytest.mark.parametrize("mode", ["plain", "autoescape"])
def test_header_from_the_manifest_line_is_escaped_and_shown(mode: str) -> None:
    attrs = segmentation_attributes(task(["road"], header='Only the "main" road & its <edges>'), mode)
    assert attrs["header"] == 'Only the "main" road & its <edges>'


def test_default_header_when_the_task_has_none() -> None:
    attrs = segmentation_attributes(task(["road"]))
    assert attrs["header"]


def test_instructions_live_inside_the_element() -> None:
    html = TEMPLATE.render(task={"input": task(["road"])})
    start, end = html.index(f"<{ELEMENT}"), html.index(f"</{ELEMENT}>")
    inside = html[start:end]
    assert "<full-instructions" in inside and "</full-instructions>" in inside
    assert "<short-instructions>" in inside and "</short-instructions>" in inside


def test_template_is_inside_a_crowd_form_with_the_element_script() -> None:
    parsed = render(task(["road"]))
    assert "crowd-form" in parsed.elements
    scripts = [a.get("src") for a in parsed.elements.get("script", [])]
    assert "https://assets.crowd.aws/crowd-html-elements.js" in scripts


label_strings = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(lambda s: s.strip() and s != BACKGROUND)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(label_strings, min_size=1, max_size=8, unique=True),
    with_prior=st.booleans(),
    mode=st.sampled_from(["plain", "autoescape"]),
)
def test_any_labels_round_trip_through_the_rendered_html(
    labels: list[str], with_prior: bool, mode: str
) -> None:
    data_object: dict[str, Any] = {"source-ref": "s3://data-bucket/x.jpg"}
    initial = None
    if with_prior:
        data_object["p-ref"] = "s3://out-bucket/p.png"
        data_object["p-ref-metadata"] = {
            "internal-color-map": ClassMap.from_labels(labels).internal_color_map()
        }
        initial = prior_initial_value(data_object, "p-ref", labels)
    attrs = segmentation_attributes(
        build_task_input("s3://data-bucket/x.jpg", labels, data_object, initial), mode
    )
    assert json.loads(attrs["labels"] or "") == labels
    if with_prior:
        assert list(json.loads(attrs["initial-value"] or "")["labelMappings"]) == labels
    else:
        assert "initial-value" not in attrs


@pytest.mark.parametrize("missing_filter", ["grant_read_access", "to_json"])
def test_the_template_really_uses_ground_truths_filters(missing_filter: str) -> None:
    # Guards against the template silently dropping a filter Ground Truth needs.
    from liquid.exceptions import UnknownFilterError

    env = make_env()
    del env.filters[missing_filter]
    with pytest.raises(UnknownFilterError):
        env.from_string(TEMPLATE_TEXT).render(task={"input": task(["road"])})
