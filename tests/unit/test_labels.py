"""gtseg.labels: label-category files, the job's class-index map and its colours."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtseg.core.labels import (
    BACKGROUND,
    BACKGROUND_COLOR,
    GROUND_TRUTH_COLORS,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    ClassMap,
    LabelCategoryConfig,
    LabelError,
    default_colors,
    hex_to_rgb,
    normalize_hex,
    rgb_to_hex,
    validate_labels,
)

label_text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and s != BACKGROUND)
label_lists = st.lists(label_text, min_size=1, max_size=30, unique=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


# --------------------------------------------------------------------------- colours


@pytest.mark.parametrize(
    ("raw", "expected"), [("#2CA02C", "#2ca02c"), ("2ca02c", "#2ca02c"), (" #FFFFFF ", "#ffffff")]
)
def test_normalize_hex_accepts_common_spellings(raw: str, expected: str) -> None:
    assert normalize_hex(raw) == expected


@pytest.mark.parametrize("raw", ["#fff", "#12345g", "red", "", "#1234567"])
def test_normalize_hex_rejects_other_strings(raw: str) -> None:
    with pytest.raises(LabelError, match="#rrggbb"):
        normalize_hex(raw)


@given(st.tuples(*[st.integers(0, 255)] * 3))
def test_rgb_hex_round_trip(rgb: tuple[int, int, int]) -> None:
    assert hex_to_rgb(rgb_to_hex(rgb)) == rgb


def test_default_colors_start_with_ground_truths_order() -> None:
    assert default_colors(3) == ["#2ca02c", "#1f77b4", "#ff7f0e"]


@pytest.mark.parametrize("count", [1, 10, 20, 21, 100, MAX_LABELS])
def test_default_colors_are_distinct_and_never_background(count: int) -> None:
    colors = default_colors(count)
    assert len(colors) == count
    assert len(set(colors)) == count
    assert BACKGROUND_COLOR not in colors
    assert all(normalize_hex(c) == c for c in colors)


# --------------------------------------------------------------------------- label lists


def test_validate_labels_keeps_order() -> None:
    assert validate_labels(["road", "car", "person"]) == ("road", "car", "person")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "at least one label"),
        (["car", "car"], "duplicate label 'car'"),
        (["car", "  "], r"labels\[1\] is empty"),
        (["x" * (MAX_LABEL_LENGTH + 1)], "257 characters; the limit is 256"),
        ([BACKGROUND], "reserved for class 0"),
        (["car", 3], r"labels\[1\] must be a string, got int"),
        ("car", "must be a list"),
        ([f"l{i}" for i in range(MAX_LABELS + 1)], "at most 255"),
    ],
)
def test_validate_labels_names_the_problem(labels: object, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        validate_labels(labels)  # type: ignore[arg-type]


def test_a_label_of_exactly_256_characters_is_allowed() -> None:
    assert validate_labels(["x" * MAX_LABEL_LENGTH]) == ("x" * MAX_LABEL_LENGTH,)


# --------------------------------------------------------------------------- label-category files


def test_parse_a_ground_truth_label_category_file() -> None:
    text = '{"document-version": "2018-11-28", "labels": [{"label": "road"}, {"label": "car"}]}'
    config = LabelCategoryConfig.parse(text)
    assert config.labels == ("road", "car")
    assert config.document_version == "2018-11-28"


def test_parse_keeps_extra_keys_and_writes_them_back() -> None:
    data = {
        "document-version": "2018-11-28",
        "instructions": {"shortInstruction": "<p>hi</p>", "fullInstruction": "<p>all</p>"},
        "labels": [{"label": "road"}],
    }
    config = LabelCategoryConfig.parse(data)
    assert config.extra == {"instructions": data["instructions"]}
    assert config.to_dict() == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"labels": [{"label": "a"}]}', "no 'document-version'"),
        ('{"document-version": "2020-03-01", "labels": [{"label": "a"}]}', "unsupported document-version"),
        ('{"document-version": "2018-11-28"}', "needs a 'labels' list"),
        ('{"document-version": "2018-11-28", "labels": ["a"]}', r"labels\[0\] must be an object"),
        ('{"document-version": "2018-11-28", "labels": []}', "at least one label"),
        ('{"document-version": "2018-11-28", "labels": [{"label": "a"}, {"label": "a"}]}', "duplicate"),
    ],
)
def test_parse_rejects_bad_files_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        LabelCategoryConfig.parse(text)


def test_parse_without_version_when_not_required() -> None:
    config = LabelCategoryConfig.parse({"labels": [{"label": "a"}]}, require_version=False)
    assert config.labels == ("a",)


@given(label_lists)
def test_label_category_file_round_trips(labels: list[str]) -> None:
    config = LabelCategoryConfig.from_labels(labels)
    again = LabelCategoryConfig.parse(config.to_json())
    assert again.labels == tuple(labels)
    assert json.loads(config.to_json())["document-version"] == "2018-11-28"


@settings(max_examples=200)
@given(st.one_of(json_values, st.binary(max_size=200), st.text(max_size=200)))
def test_parse_of_anything_is_a_config_or_a_label_error(data: object) -> None:
    if not isinstance(data, bytes | str):
        data = json.dumps(data)
    try:
        config = LabelCategoryConfig.parse(data)  # type: ignore[arg-type]
    except LabelError:
        return
    assert len(config.labels) >= 1


def test_the_shipped_default_file_is_valid() -> None:
    text = resources.files("gtseg").joinpath("templates/label-categories.json").read_text(encoding="utf-8")
    config = LabelCategoryConfig.parse(text)
    assert config.document_version == "2018-11-28"
    assert len(config.labels) >= 1


# --------------------------------------------------------------------------- class maps


def test_class_map_puts_background_first() -> None:
    class_map = LabelCategoryConfig.from_labels(["road", "car"]).class_map()
    assert class_map.names == (BACKGROUND, "road", "car")
    assert class_map.colors == (BACKGROUND_COLOR, *GROUND_TRUTH_COLORS[:2])
    assert class_map.labels == ("road", "car")
    assert len(class_map) == 3
    assert class_map.index_of("car") == 2


def test_index_of_an_unknown_label_names_it() -> None:
    with pytest.raises(LabelError, match="unknown label 'bus'"):
        ClassMap.from_labels(["car"]).index_of("bus")


def test_from_labels_uses_given_colours_and_fills_the_rest() -> None:
    class_map = ClassMap.from_labels(["road", "car", "tree"], {"car": "#2CA02C", "tree": "not a colour"})
    assert class_map.colors[2] == "#2ca02c"
    # road and tree get defaults that avoid the colour car took
    assert len(set(class_map.colors)) == 4
    assert "#2ca02c" not in (class_map.colors[1], class_map.colors[3])


def test_from_labels_never_gives_two_labels_one_colour() -> None:
    class_map = ClassMap.from_labels(["a", "b"], {"a": "#123456", "b": "#123456"})
    assert class_map.colors[1] == "#123456"
    assert class_map.colors[2] != "#123456"


def test_class_map_rejects_inconsistent_input() -> None:
    with pytest.raises(LabelError, match="class 0 must be BACKGROUND"):
        ClassMap(names=("road",), colors=("#ffffff",))
    with pytest.raises(LabelError, match="distinct"):
        ClassMap(names=(BACKGROUND, "a", "b"), colors=("#ffffff", "#000001", "#000001"))
    with pytest.raises(LabelError, match="one colour per class"):
        ClassMap(names=(BACKGROUND, "a"), colors=("#ffffff",))


def test_palette_is_256_entries_padded_with_white() -> None:
    palette = ClassMap.from_labels(["road"]).palette()
    assert len(palette) == 768
    assert palette[:6] == [255, 255, 255, 0x2C, 0xA0, 0x2C]
    assert set(palette[6:]) == {255}


@given(label_lists, st.lists(st.floats(0, 1), min_size=31, max_size=31))
def test_internal_color_map_round_trips(labels: list[str], confidences: list[float]) -> None:
    class_map = ClassMap.from_labels(labels)
    color_map = class_map.internal_color_map(confidences[: len(class_map)])
    assert color_map["0"] == {
        "class-name": BACKGROUND,
        "hex-color": "#ffffff",
        "confidence": round(confidences[0], 4),
    }
    assert ClassMap.from_internal_color_map(color_map) == class_map


def test_from_internal_color_map_sorts_numeric_keys() -> None:
    color_map = {
        "10": {"class-name": "j", "hex-color": "#00000a"},
        **{str(i): {"class-name": f"c{i}", "hex-color": f"#0000{i:02x}"} for i in range(1, 10)},
        "0": {"class-name": BACKGROUND, "hex-color": "#ffffff"},
    }
    class_map = ClassMap.from_internal_color_map(color_map)
    assert class_map.names[9:] == ("c9", "j")


@pytest.mark.parametrize(
    ("color_map", "message"),
    [
        ({"1": {"class-name": "a", "hex-color": "#000001"}}, "needs index 0"),
        ({}, "needs index 0"),
        (
            {"0": {"class-name": BACKGROUND, "hex-color": "#ffffff"}, "x": {"class-name": "a"}},
            "must be integers",
        ),
        (
            {"0": {"class-name": BACKGROUND, "hex-color": "#ffffff"}, "1": {"class-name": "a"}},
            "has no 'hex-color'",
        ),
        ({"0": {"class-name": BACKGROUND, "hex-color": "#ffffff"}, "1": "a"}, "need 'class-name'"),
        ({"0": {"class-name": "a", "hex-color": "#ffffff"}}, "class 0 must be BACKGROUND"),
    ],
)
def test_from_internal_color_map_names_the_problem(color_map: dict, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        ClassMap.from_internal_color_map(color_map)


def test_label_mappings_skip_background() -> None:
    class_map = ClassMap.from_labels(["road", "car"])
    assert class_map.label_mappings() == {"road": {"color": "#2ca02c"}, "car": {"color": "#1f77b4"}}


def test_index_gaps_are_closed_up_and_masks_still_read_by_colour() -> None:
    import io

    import numpy as np
    from PIL import Image

    from gtseg.core.masks import read_class_mask

    # an object that used only class 2 of the job, listed under its job index
    color_map = {
        "0": {"class-name": BACKGROUND, "hex-color": "#ffffff"},
        "2": {"class-name": "car", "hex-color": "#1f77b4"},
    }
    class_map = ClassMap.from_internal_color_map(color_map)
    assert class_map.names == (BACKGROUND, "car")
    png = Image.fromarray(np.array([[0, 2, 2]], dtype=np.uint8))
    png.putpalette([255, 255, 255, 44, 160, 44, 31, 119, 180])
    buf = io.BytesIO()
    png.save(buf, format="PNG")
    assert read_class_mask(buf.getvalue(), class_map).tolist() == [[0, 1, 1]]
