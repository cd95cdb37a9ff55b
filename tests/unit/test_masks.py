"""Mask decoding and encoding: every PNG mode a worker UI might send, through the public API."""

from __future__ import annotations

import base64
import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gtseg.core.labels import ClassMap, default_colors
from gtseg.core.masks import (
    MaskError,
    b64decode_png,
    decode_worker_mask,
    encode_index_png,
    indices_to_rgb,
    read_class_mask,
)
from gtseg.local.simulation import worker_png


@st.composite
def masks_and_maps(draw):
    n_labels = draw(st.integers(1, 12))
    labels = [f"label {i} ✓" for i in range(n_labels)]
    colors = default_colors(n_labels)
    order = draw(st.permutations(list(range(n_labels))))
    # the worker's UI may assign colours in any order: read them from its labelMappings
    cmap = ClassMap.from_labels(labels)
    worker_colors = {labels[i]: colors[order[i]] for i in range(n_labels)}
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    indices = np.random.default_rng(seed).integers(0, n_labels + 1, size=(h, w)).astype(np.uint8)
    return cmap, worker_colors, indices


def encode_as(indices: np.ndarray, cmap: ClassMap, worker_colors: dict[str, str], mode: str) -> bytes:
    """What a worker UI could send: worker colours, background transparent/black, in ``mode``."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for i, label in enumerate(cmap.labels, start=1):
        hx = worker_colors[label]
        lut[i] = [int(hx[1:3], 16), int(hx[3:5], 16), int(hx[5:7], 16)]
    buf = io.BytesIO()
    if mode == "P":
        image = Image.fromarray(indices)
        image.putpalette(lut.ravel().tolist())
        image.save(buf, format="PNG", transparency=0)
    elif mode == "RGBA":
        Image.fromarray(np.dstack([lut[indices], np.where(indices > 0, 255, 0).astype(np.uint8)])).save(
            buf, "PNG"
        )
    elif mode == "RGBA-dirty":  # transparent pixels keep a label's RGB: only alpha says background
        rgb = lut[np.where(indices > 0, indices, 1)]
        Image.fromarray(np.dstack([rgb, np.where(indices > 0, 255, 0).astype(np.uint8)])).save(buf, "PNG")
    elif mode == "RGB":
        Image.fromarray(lut[indices]).save(buf, "PNG")
    elif mode == "RGB-white":  # white background, as a canvas exported without alpha might be
        rgb = lut[indices]
        rgb[indices == 0] = 255
        Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["P", "RGBA", "RGBA-dirty", "RGB", "RGB-white"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=masks_and_maps())
def test_worker_masks_round_trip_in_every_png_mode(mode, data):
    cmap, worker_colors, indices = data
    png = encode_as(indices, cmap, worker_colors, mode)
    mappings = {label: {"color": color} for label, color in worker_colors.items()}
    decoded = decode_worker_mask(png, mappings, cmap, expected_size=(indices.shape[1], indices.shape[0]))
    np.testing.assert_array_equal(decoded.indices, indices)
    assert decoded.matched_pixels == int(np.count_nonzero(indices))
    assert decoded.unmatched_pixels == 0 and decoded.snapped_pixels == 0


@settings(max_examples=40, deadline=None)
@given(data=masks_and_maps())
def test_consolidated_png_is_palette_and_reads_back_as_indices_and_as_rgb(data):
    cmap, _, indices = data
    png = encode_index_png(indices, cmap)
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), indices)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), indices_to_rgb(indices, cmap))
    assert image.getpalette()[:3] == [255, 255, 255]
    np.testing.assert_array_equal(read_class_mask(png, cmap), indices)
    assert encode_index_png(indices, cmap) == png  # deterministic bytes


def test_read_class_mask_by_colour_when_palette_indices_are_wrong():
    # Ground Truth's 2020 masks had right colours but wrong indices: colour wins.
    cmap = ClassMap.from_labels(["cat", "dog"])
    truth = np.array([[0, 1, 2, 1]], dtype=np.uint8)
    swapped = Image.fromarray(np.array([[0, 2, 1, 2]], dtype=np.uint8))
    swapped.putpalette([255, 255, 255, *cmap.rgb(2), *cmap.rgb(1)])
    buf = io.BytesIO()
    swapped.save(buf, "PNG")
    np.testing.assert_array_equal(read_class_mask(buf.getvalue(), cmap), truth)
    # and an RGB colour mask
    buf = io.BytesIO()
    Image.fromarray(indices_to_rgb(truth, cmap)).save(buf, "PNG")
    np.testing.assert_array_equal(read_class_mask(buf.getvalue(), cmap), truth)


def test_anti_aliased_edges_snap_to_the_nearest_mapped_colour_and_far_colours_vote_background():
    cmap = ClassMap.from_labels(["road", "car"])
    road, car = cmap.rgb(1), cmap.rgb(2)
    blend = tuple((a + b) // 2 + 3 for a, b in zip(road, (255, 255, 255), strict=True))  # far from both
    near_car = tuple(min(255, v + 6) for v in car)
    arr = np.array([[(*road, 255), (*near_car, 255), (*blend, 255), (*car, 90)]], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    decoded = decode_worker_mask(buf.getvalue(), cmap.label_mappings(), cmap)
    assert decoded.indices.tolist() == [[1, 2, 0, 0]]  # alpha 90 < 128: background
    assert decoded.snapped_pixels == 1
    assert decoded.unmatched_pixels == 1


def test_black_and_white_are_background_unless_a_label_uses_them():
    cmap = ClassMap.from_labels(["ink"], colors={"ink": "#000000"})
    arr = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    assert decode_worker_mask(buf.getvalue(), {"ink": {"color": "#000000"}}, cmap).indices.tolist() == [
        [1, 0]
    ]


def test_labels_the_job_does_not_have_are_reported_and_vote_background():
    cmap = ClassMap.from_labels(["road"])
    png = worker_png(np.array([[1, 2]], dtype=np.uint8), ClassMap.from_labels(["road", "alien"]))
    other = ClassMap.from_labels(["road", "alien"])
    decoded = decode_worker_mask(png, other.label_mappings(), cmap)
    assert decoded.indices.tolist() == [[1, 0]]
    assert decoded.unknown_labels == ("alien",)


def test_two_labels_with_one_colour_are_ambiguous_and_vote_background():
    cmap = ClassMap.from_labels(["a", "b"])
    png = worker_png(np.array([[1, 2]], dtype=np.uint8), cmap)
    same = {"a": {"color": cmap.colors[1]}, "b": {"color": cmap.colors[1]}}
    assert decode_worker_mask(png, same, cmap).indices.tolist() == [[0, 0]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not a png at all", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
    ],
)
def test_corrupt_pngs_raise_mask_error(data, message):
    with pytest.raises(MaskError, match=message):
        decode_worker_mask(data, {}, ClassMap.from_labels(["a"]))


def test_size_mismatch_with_input_image_properties_is_an_error():
    cmap = ClassMap.from_labels(["a"])
    png = worker_png(np.zeros((4, 6), dtype=np.uint8), cmap)
    with pytest.raises(MaskError, match="6x4 but inputImageProperties says 7x4"):
        decode_worker_mask(png, cmap.label_mappings(), cmap, expected_size=(7, 4))


def test_bad_colour_in_label_mappings_is_a_mask_error():
    cmap = ClassMap.from_labels(["a"])
    png = worker_png(np.zeros((2, 2), dtype=np.uint8), cmap)
    with pytest.raises(MaskError, match="labelMappings"):
        decode_worker_mask(png, {"a": {"color": "green"}}, cmap)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data):
    cmap = ClassMap.from_labels(["a", "b"])
    try:
        decoded = decode_worker_mask(data, cmap.label_mappings(), cmap)
    except MaskError:
        return
    assert decoded.indices.dtype == np.uint8


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_base64_text_gives_bytes_or_mask_error(text):
    with contextlib.suppress(MaskError):
        assert isinstance(b64decode_png(text), bytes)


def test_data_url_prefix_is_accepted():
    png = worker_png(np.zeros((2, 2), dtype=np.uint8), ClassMap.from_labels(["a"]))
    assert b64decode_png("data:image/png;base64," + base64.b64encode(png).decode()) == png


def test_encode_rejects_indices_outside_the_class_map():
    with pytest.raises(MaskError, match="outside"):
        encode_index_png(np.array([[3]], dtype=np.uint8), ClassMap.from_labels(["a"]))
