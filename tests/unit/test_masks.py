"""Mask decoding and encoding: every PNG mode a worker UI might send, through the public API."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from gtseg.core.labels import GROUND_TRUTH_COLORS, ClassMap, default_colors
from gtseg.core.masks import (
    AMBIGUITY_MARGIN,
    DEFAULT_BLEND_TOLERANCE,
    MaskError,
    b64decode_png,
    decode_worker_mask,
    encode_index_png,
    indices_to_rgb,
    mask_to_png,
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


# --- anti-aliased edges: blends of two colours decode to the dominant one ----------------------

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
# Farther than 60 from every colour and than 8 from every blend of two colours of the palettes below.
FAR_COLORS = ((255, 0, 255), (0, 255, 255), (0, 0, 255), (255, 255, 0), (128, 0, 255), (0, 255, 128))


def job_palette(n_labels: int) -> tuple[ClassMap, dict[str, dict[str, str]]]:
    """Ground Truth's palette in its order, then ``default_colors``' spread beyond 20 labels."""
    colors = default_colors(n_labels)
    assert tuple(colors[:20]) == GROUND_TRUTH_COLORS[:n_labels]
    labels = [f"class {i}" for i in range(n_labels)]
    cmap = ClassMap.from_labels(labels, colors=dict(zip(labels, colors, strict=True)))
    return cmap, {label: {"color": color} for label, color in zip(labels, colors, strict=True)}


def canvas_blend(a: np.ndarray, b: np.ndarray, weight_a: float, mode: str) -> np.ndarray:
    """What a canvas stores for weight_a of RGBA colour a over b (float RGBA, 0..255)."""
    alpha = weight_a * a[3] + (1 - weight_a) * b[3]
    if alpha == 0:
        return np.zeros(4)
    # compositing runs premultiplied; "RGBA-premultiplied" stores that, the others un-premultiply
    rgb = (weight_a * a[:3] * a[3] + (1 - weight_a) * b[:3] * b[3]) / 255
    if mode != "RGBA-premultiplied":
        rgb = rgb * 255 / alpha
    return np.concatenate([rgb, [alpha]])


def anti_aliased_stripes(
    n_labels: int,
    background: str | None,
    mode: str,
    seed: int,
    boundaries: int = 1500,
    drawn: int | None = None,
):
    """Full-height vertical stripes (3-6 px) of random colours, many boundaries between random
    pairs; at each boundary a|b the last column of a is (3a+b)/4 and the first of b is (a+3b)/4.

    ``background``: None (labels only), "white/black" (opaque canvas) or "transparent" (alpha 0).
    ``mode``: RGB, RGBA, P (palette PNG) or RGBA-premultiplied (RGB stored times alpha).
    ``drawn``: how many of the labels the stripes use (all by default; a palette PNG holds 256).
    Returns the PNG, class map, labelMappings, true classes (h, w) and the band (h, w)."""
    rng = np.random.default_rng(seed)
    cmap, mappings = job_palette(n_labels)
    drawn = n_labels if drawn is None else drawn
    refs = [(*cmap.rgb(i), 255) for i in range(1, drawn + 1)]
    classes = list(range(1, drawn + 1))
    if background == "white/black":
        refs += [(*WHITE, 255), (*BLACK, 255)]
        classes += [0, 0]
    elif background == "transparent":
        refs += [(0, 0, 0, 0)]
        classes += [0]
    sequence = [int(rng.integers(len(refs)))]
    while len(sequence) <= boundaries:
        k = int(rng.integers(len(refs)))
        if k != sequence[-1] and classes[k] + classes[sequence[-1]] > 0:
            sequence.append(k)
    ref = np.array(refs, dtype=np.float64)
    columns, truth, band = [], [], []
    for s, (k, width) in enumerate(zip(sequence, rng.integers(3, 7, size=len(sequence)), strict=True)):
        for x in range(width):
            neighbour = sequence[s - 1] if x == 0 and s > 0 else None
            if x == width - 1 and s < len(sequence) - 1:
                neighbour = sequence[s + 1]
            color = ref[k] if neighbour is None else canvas_blend(ref[k], ref[neighbour], 0.75, mode)
            columns.append(np.floor(color + 0.5))
            truth.append(classes[k])
            band.append(neighbour is not None)
    height = 5
    pixels = np.repeat(np.array(columns, dtype=np.uint8)[None], height, axis=0)
    buf = io.BytesIO()
    if mode == "RGB":
        Image.fromarray(np.ascontiguousarray(pixels[..., :3])).save(buf, "PNG")
    elif mode == "P":
        rgb = pixels[..., :3].reshape(-1, 3)
        palette, index = np.unique(rgb, axis=0, return_inverse=True)
        assert len(palette) <= 256
        image = Image.fromarray(index.reshape(height, -1).astype(np.uint8))
        image.putpalette(palette.ravel().tolist())
        image.save(buf, "PNG")
    else:
        Image.fromarray(pixels).save(buf, "PNG")
    truth_img = np.repeat(np.array(truth)[None], height, axis=0)
    band_img = np.repeat(np.array(band)[None], height, axis=0)
    return buf.getvalue(), cmap, mappings, truth_img, band_img


BAND_CASES = [
    ("RGB", None),
    ("RGBA", None),
    ("P", None),
    ("RGB", "white/black"),
    ("RGBA", "white/black"),
    ("RGBA", "transparent"),
    ("RGBA-premultiplied", "transparent"),
]


@pytest.mark.parametrize("n_labels", [20, 30])
@pytest.mark.parametrize(("mode", "background"), BAND_CASES)
def test_anti_aliased_band_decodes_to_the_dominant_colour(n_labels, mode, background):
    drawn = 12 if mode == "P" else None  # 12 labels' blends fit in a 256-entry palette
    png, cmap, mappings, truth, band = anti_aliased_stripes(
        n_labels, background, mode, seed=n_labels, drawn=drawn
    )
    decoded = decode_worker_mask(png, mappings, cmap)
    correct = decoded.indices == truth
    assert correct[band].mean() >= 0.995, f"band accuracy {correct[band].mean():.4%}"
    assert correct[~band].all()  # exact colours stay exact
    # every pixel decoded to a label is an exact match or a snapped edge pixel
    assert decoded.matched_pixels + decoded.snapped_pixels == int(np.count_nonzero(decoded.indices))
    if background is None:
        assert decoded.unmatched_pixels == 0


def test_anti_aliased_band_decodes_the_same_through_the_many_colour_path():
    # > 256 distinct colours (a noise strip below the stripes) take the exact numpy path
    png, cmap, mappings, truth, band = anti_aliased_stripes(30, "white/black", "RGB", seed=7)
    few = decode_worker_mask(png, mappings, cmap)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    noise = np.random.default_rng(1).integers(0, 256, size=(3, rgb.shape[1], 3), dtype=np.uint8)
    padded = np.concatenate([rgb, np.repeat(rgb[-1:], 2, axis=0), noise])
    assert len(Image.fromarray(padded).getcolors(1 << 24) or ()) > 256
    many = decode_worker_mask(mask_to_png(padded), mappings, cmap)
    np.testing.assert_array_equal(many.indices[: len(rgb)], few.indices)
    assert (few.indices[band] == truth[band]).mean() >= 0.995


def test_blends_with_the_canvas_background_decode_to_the_dominant_side():
    cmap, mappings = job_palette(20)
    rows = []
    for i in range(1, 21):
        a = np.array([*cmap.rgb(i), 255], dtype=np.float64)
        for bg in ((*WHITE, 255), (*BLACK, 255), (0, 0, 0, 0)):
            b = np.array(bg, dtype=np.float64)
            for mode in ("RGBA", "RGBA-premultiplied"):
                # label | (3 label + bg)/4 | (label + 3 bg)/4 | bg
                rows.append([a, canvas_blend(a, b, 0.75, mode), canvas_blend(a, b, 0.25, mode), b])
    arr = np.floor(np.array(rows) + 0.5).astype(np.uint8)  # (rows, 4, 4)
    image = np.repeat(arr, 3, axis=0)  # three rows of each, so every pixel has neighbours
    decoded = decode_worker_mask(mask_to_png(image), mappings, cmap)
    expected = np.repeat(np.arange(1, 21), 3 * 2 * 3)[:, None] * np.array([[1, 1, 0, 0]])
    np.testing.assert_array_equal(decoded.indices, expected)


def test_colours_far_from_every_blend_stay_unmatched_and_vote_background():
    cmap, mappings = job_palette(30)
    row = []
    for i, far in enumerate(FAR_COLORS, start=1):
        row += [cmap.rgb(i), far, cmap.rgb(i)]
    image = np.repeat(np.array([row], dtype=np.uint8), 3, axis=0)
    decoded = decode_worker_mask(mask_to_png(image), mappings, cmap)
    expected = [c for i in range(1, len(FAR_COLORS) + 1) for c in (i, 0, i)]
    assert decoded.indices.tolist() == [expected] * 3
    assert decoded.unmatched_pixels == 3 * len(FAR_COLORS)
    assert decoded.snapped_pixels == 0


def test_a_colour_two_blends_explain_is_decided_by_its_neighbours():
    # #7f7f7f, #c7c7c7, white and black lie on one line: grey 149 is (3 #c7c7c7 + black)/4 and
    # also #7f7f7f blended with a little white. The colour alone cannot tell; its neighbours can.
    cmap, mappings = job_palette(20)
    grey8, grey18 = cmap.rgb(8), cmap.rgb(18)
    assert (grey8, grey18) == ((127, 127, 127), (199, 199, 199))
    row = [grey18, grey18, (149,) * 3, (50,) * 3, BLACK, BLACK, grey8, grey8, (149,) * 3, WHITE, WHITE]
    image = np.repeat(np.array([row], dtype=np.uint8), 3, axis=0)
    decoded = decode_worker_mask(mask_to_png(image), mappings, cmap)
    assert decoded.indices[1].tolist() == [18, 18, 18, 0, 0, 0, 8, 8, 8, 0, 0]


def _distance_to_stretch(q: np.ndarray, c: np.ndarray, d: np.ndarray, s0: float, s1: float) -> float:
    step = d - c
    s = np.clip(np.dot(q - c, step) / np.dot(step, step), s0, s1)
    return float(np.linalg.norm(q - (c + s * step)))


def _distance_to_other_dominants(
    q: np.ndarray, dominant: int, refs: list[np.ndarray], classes: list[int]
) -> float:
    """Distance from ``q`` to the nearest blend of two references whose dominant colour (weight
    >= 0.5; an even blend counts for both) has a class other than ``dominant``."""
    return min(
        _distance_to_stretch(q, refs[u], refs[v], s0, s1)
        for u, v in itertools.combinations(range(len(refs)), 2)
        for s0, s1, k in ((0.0, 0.5, classes[u]), (0.5, 1.0, classes[v]))
        if k != dominant
    )


# Rounding a blend to 8 bits moves it at most sqrt(3)/2. If the exact blend q is farther than
# sqrt(3) + AMBIGUITY_MARGIN from every blend (or colour) that another class dominates, every
# wrong explanation of the rounded pixel fits worse than the true one by more than the margin:
# the colour is not even ambiguous, so the dominant class is guaranteed whatever its neighbours.
# This covers the other half of the pair's own segment: |alpha - 0.5| |a - b| must exceed that
# bound, so the two colours must be far enough apart (> ~75 at alpha 0.45/0.55), and no third
# colour's blends may pass that close. About 87 % of random draws satisfy it; the rest are
# geometric near-coincidences that only the neighbourhood step (tested above) can decide.
GUARANTEE = float(np.sqrt(3)) + AMBIGUITY_MARGIN


@settings(max_examples=150, deadline=None)
@given(
    n_labels=st.integers(2, 30),
    pick=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    alpha=st.one_of(st.floats(0.0, 0.45), st.floats(0.55, 1.0)),
    mode=st.sampled_from(["RGB", "RGBA"]),
)
def test_blend_of_two_mapped_colours_decodes_to_the_dominant_one(n_labels, pick, alpha, mode):
    cmap, mappings = job_palette(n_labels)
    refs = [np.array(cmap.rgb(i), dtype=np.float64) for i in range(1, n_labels + 1)]
    refs += [np.array(WHITE, dtype=np.float64), np.array(BLACK, dtype=np.float64)]
    classes = [*range(1, n_labels + 1), 0, 0]
    i = pick[0] % len(refs)
    j = (i + 1 + pick[1] % (len(refs) - 1)) % len(refs)
    assume(classes[i] + classes[j] > 0)  # two distinct colours, at least one a label
    q = alpha * refs[i] + (1 - alpha) * refs[j]
    dominant = classes[i] if alpha >= 0.5 else classes[j]
    assume(_distance_to_other_dominants(q, dominant, refs, classes) > GUARANTEE)
    assert GUARANTEE < DEFAULT_BLEND_TOLERANCE  # the true blend is within the blend tolerance
    pixel = np.floor(q + 0.5)
    row = np.array([refs[i], pixel, refs[j]], dtype=np.uint8)[None]
    if mode == "RGBA":
        row = np.dstack([row, np.full(row.shape[:2], 255, dtype=np.uint8)])
    decoded = decode_worker_mask(mask_to_png(row), mappings, cmap)
    assert decoded.indices[0].tolist() == [classes[i], dominant, classes[j]]


def test_a_thin_line_without_one_exact_pixel_still_decodes_to_its_label():
    # blends are first sought among the colours the mask paints exactly; a 1-px anti-aliased line
    # paints none, so its pixels are tried against every pair of mapped colours
    cmap, mappings = job_palette(20)
    line = np.array(cmap.rgb(5), dtype=np.float64)
    image = np.full((5, 9, 3), 255, dtype=np.uint8)
    image[:, :3] = cmap.rgb(1)  # one painted region
    image[:, 5] = np.floor(0.75 * line + 0.25 * 255 + 0.5)
    image[:, 6] = np.floor(0.25 * line + 0.75 * 255 + 0.5)
    decoded = decode_worker_mask(mask_to_png(image), mappings, cmap)
    assert decoded.indices[2].tolist() == [1, 1, 1, 0, 0, 5, 0, 0, 0]
    assert decoded.snapped_pixels == 5
