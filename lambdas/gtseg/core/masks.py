"""Masks: worker PNGs -> class-index arrays, and class-index arrays -> palette PNGs.

Pure numpy + Pillow. A worker's PNG mode is unconfirmed (protocol doc §3.3), so decoding accepts
P, L, LA, RGB and RGBA (and anything Pillow can convert): each pixel is matched against that
worker's own ``labelMappings`` colours; transparent, black, white and unmatched pixels are a
background vote; anti-aliased edge pixels snap to the nearest mapped colour within a tolerance.
Palette images are decoded with a 256-entry lookup table, so no per-pixel colour search runs.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from PIL import Image, UnidentifiedImageError

from gtseg.core.labels import ClassMap, LabelError, hex_to_rgb

# Ground Truth accepts images up to 100 MP; a worker mask has the image's size.
MAX_MASK_PIXELS = 100_000_000
# Euclidean RGB distance within which an off-colour pixel snaps to the nearest mapped colour.
DEFAULT_SNAP_TOLERANCE = 60.0
# Partially transparent pixels at or above this alpha keep their colour (canvas anti-aliasing).
ALPHA_THRESHOLD = 128

_BACKGROUND_RGB = ((0, 0, 0), (255, 255, 255))


class MaskError(ValueError):
    """A mask that cannot be used: corrupt PNG, wrong size, unusable mappings."""


@dataclass(frozen=True)
class DecodedMask:
    indices: np.ndarray  # (height, width) uint8 class indices
    matched_pixels: int  # pixels whose colour exactly matched a mapped label colour
    snapped_pixels: int  # off-colour pixels snapped to the nearest label colour
    unmatched_pixels: int  # coloured pixels too far from every mapped colour (-> background)
    unknown_labels: tuple[str, ...] = ()  # labels in labelMappings that the job does not have

    @property
    def shape(self) -> tuple[int, int]:
        height, width = self.indices.shape
        return height, width


def b64decode_png(data: str | bytes) -> bytes:
    """Decode base64 PNG data, with or without a ``data:image/png;base64,`` prefix."""
    if isinstance(data, str):
        if data.startswith("data:"):
            data = data.partition(",")[2]
        if not data.isascii():
            raise MaskError("pngImageData is not valid base64: non-ASCII characters")
        data = data.encode("ascii")
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise MaskError(f"pngImageData is not valid base64: {exc}") from exc


def open_png(data: bytes) -> Image.Image:
    """Open and fully load an image, turning every decoder failure into ``MaskError``."""
    if not data:
        raise MaskError("empty image data")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_MASK_PIXELS:
            raise MaskError(f"mask is {width}x{height}; the limit is {MAX_MASK_PIXELS} pixels")
        image.load()
    except MaskError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MaskError(f"not a readable image: {exc}") from exc
    return image


def _mapping_color(value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("color", value.get("hex-color"))
    if not isinstance(value, str):
        raise LabelError(f"no colour in mapping {value!r}")
    return value


def colors_to_classes(
    label_mappings: Mapping[str, Any], class_map: ClassMap
) -> tuple[dict[tuple[int, int, int], int], tuple[str, ...]]:
    """``labelMappings`` ({label: {"color": "#rrggbb"}}) -> {rgb: class index}, unknown labels.

    Black and white mean background unless a label claims them. Two labels with one colour make
    that colour ambiguous: it is dropped (votes background) rather than guessed.
    """
    table: dict[tuple[int, int, int], int] = {}
    ambiguous: set[tuple[int, int, int]] = set()
    unknown: list[str] = []
    for label, value in label_mappings.items():
        if label == "BACKGROUND":
            continue
        try:
            rgb = hex_to_rgb(_mapping_color(value))
        except LabelError as exc:
            raise MaskError(f"labelMappings[{label!r}]: {exc}") from exc
        if label not in class_map.names:
            unknown.append(label)
            continue
        index = class_map.index_of(label)
        if rgb in table and table[rgb] != index:
            ambiguous.add(rgb)
        table[rgb] = index
    for rgb in ambiguous:
        del table[rgb]
    for rgb in _BACKGROUND_RGB:
        table.setdefault(rgb, 0)
    return table, tuple(sorted(unknown))


def _classify_colors(
    colors: np.ndarray, table: Mapping[tuple[int, int, int], int], tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For distinct colours (n, 3): class index, exact-match flag, snapped flag."""
    refs = np.array(list(table.keys()), dtype=np.int32).reshape(-1, 3)
    ref_class = np.array(list(table.values()), dtype=np.uint8)
    diff = colors[:, None, :].astype(np.int32) - refs[None, :, :]
    dist2 = np.einsum("nkc,nkc->nk", diff, diff)
    nearest = dist2.argmin(axis=1)
    best = dist2[np.arange(len(colors)), nearest]
    exact = best == 0
    snapped = (~exact) & (best <= tolerance * tolerance)
    cls = np.where(exact | snapped, ref_class[nearest], 0).astype(np.uint8)
    return cls, exact, snapped


def decode_color_mask(
    image: Image.Image,
    table: Mapping[tuple[int, int, int], int],
    *,
    tolerance: float = DEFAULT_SNAP_TOLERANCE,
) -> DecodedMask:
    """Map an image's colours to class indices with ``table`` ({rgb: class})."""
    mode = image.mode
    if mode in ("1", "I", "I;16", "F"):
        image = image.convert("L")
        mode = "L"
    if mode == "PA" or mode == "LA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("P", "L"):
        return _decode_lut(image, table, tolerance)
    if mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA")
    return _decode_rgb(image, table, tolerance)


def _decode_lut(
    image: Image.Image, table: Mapping[tuple[int, int, int], int], tolerance: float
) -> DecodedMask:
    if image.mode == "P":
        raw_palette = image.getpalette() or []
        palette = np.zeros((256, 3), dtype=np.int32)
        entries = np.array(raw_palette[:768], dtype=np.int32).reshape(-1, 3)
        palette[: len(entries)] = entries
        alpha = np.full(256, 255, dtype=np.int32)
        transparency = image.info.get("transparency")
        if isinstance(transparency, int):
            alpha[transparency] = 0
        elif isinstance(transparency, bytes | bytearray):
            alpha[: len(transparency)] = np.frombuffer(bytes(transparency), dtype=np.uint8)
    else:  # L: grey levels
        palette = np.repeat(np.arange(256, dtype=np.int32)[:, None], 3, axis=1)
        alpha = np.full(256, 255, dtype=np.int32)
    lut, exact, snapped = _classify_colors(palette, table, tolerance)
    transparent = alpha < ALPHA_THRESHOLD
    lut[transparent] = 0
    raw = np.asarray(image, dtype=np.uint8)
    counts = np.bincount(raw.ravel(), minlength=256)
    background_like = transparent | (lut == 0) & exact  # pure bg colours are not "unmatched"
    matched = int(counts[exact & ~transparent & (lut > 0)].sum())
    snapped_n = int(counts[snapped & ~transparent & (lut > 0)].sum())
    unmatched = int(counts[~exact & ~snapped & ~background_like].sum())
    return DecodedMask(lut[raw], matched, snapped_n, unmatched)


def _decode_rgb_via_palette(
    image: Image.Image, table: Mapping[tuple[int, int, int], int], tolerance: float
) -> DecodedMask | None:
    """Fast path for masks with at most 256 distinct colours (every real mask): classify each
    distinct colour once, let Pillow map pixels to them in C, verify by counts. ``None`` when
    the fast path cannot be trusted (the caller then uses the exact numpy path)."""
    colors = image.getcolors(256)
    if colors is None:
        return None
    counts = np.array([n for n, _ in colors], dtype=np.int64)
    # RGB(A) images: every colour is a tuple of channel values
    rgba = np.array([(*cast(tuple[int, ...], c), 255)[:4] for _, c in colors], dtype=np.int32)
    rgb_keys = (rgba[:, 0] << 16) | (rgba[:, 1] << 8) | rgba[:, 2]
    if len(np.unique(rgb_keys)) != len(rgb_keys):
        return None  # same RGB with different alpha: an RGB palette cannot tell them apart
    cls, exact, snapped = _classify_colors(rgba[:, :3], table, tolerance)
    transparent = rgba[:, 3] < ALPHA_THRESHOLD
    cls[transparent] = 0
    opaque = ~transparent
    background_like = transparent | ((cls == 0) & exact)
    matched = int(counts[exact & opaque & (cls > 0)].sum())
    snapped_n = int(counts[snapped & opaque & (cls > 0)].sum())
    unmatched = int(counts[~exact & ~snapped & ~background_like].sum())
    # When one channel alone tells the distinct colours apart (true for Ground Truth's palette),
    # a 256-entry lookup on that channel is the whole decode: two passes in C.
    for channel, band in enumerate("RGB"):
        values = rgba[:, channel]
        if len(np.unique(values)) == len(values):
            lut = np.zeros(256, dtype=np.uint8)
            lut[values] = cls
            classes = image.getchannel(band).point(lut.tolist())
            return DecodedMask(np.asarray(classes, dtype=np.uint8), matched, snapped_n, unmatched)
    palette_image = Image.new("P", (1, 1))
    palette_image.putpalette(rgba[:, :3].astype(np.uint8).ravel().tolist())
    rgb_image = image.convert("RGB") if image.mode != "RGB" else image
    quantized = rgb_image.quantize(palette=palette_image, dither=Image.Dither.NONE)
    # Pillow's palette lookup is cached per colour-cube cell, so near-identical colours could be
    # merged: the per-entry pixel counts must match getcolors() exactly.
    entry_counts = np.zeros(256, dtype=np.int64)
    for n, entry in quantized.getcolors(256) or ():
        entry_counts[cast(int, entry)] = n  # a palette image's colours are palette indices
    if not np.array_equal(entry_counts[: len(colors)], counts):
        return None
    indexed = np.asarray(quantized, dtype=np.uint8)
    lut = np.zeros(256, dtype=np.uint8)
    lut[: len(cls)] = cls
    return DecodedMask(lut[indexed], matched, snapped_n, unmatched)


def _decode_rgb(
    image: Image.Image, table: Mapping[tuple[int, int, int], int], tolerance: float
) -> DecodedMask:
    fast = _decode_rgb_via_palette(image, table, tolerance)
    if fast is not None:
        return fast
    arr = np.asarray(image, dtype=np.uint8)
    height, width = arr.shape[:2]
    key = arr[..., 0].astype(np.uint32) << 16
    key |= arr[..., 1].astype(np.uint32) << 8
    key |= arr[..., 2]
    transparent = arr[..., 3] < ALPHA_THRESHOLD if arr.shape[2] == 4 else None
    flat = key.ravel()

    ref_keys = np.array([(r << 16) | (g << 8) | b for r, g, b in table], dtype=np.uint32)
    ref_cls = np.array(list(table.values()), dtype=np.uint8)
    order = np.argsort(ref_keys)
    ref_keys, ref_cls = ref_keys[order], ref_cls[order]
    pos = np.searchsorted(ref_keys, flat)
    np.minimum(pos, len(ref_keys) - 1, out=pos)
    hit = ref_keys[pos] == flat
    out = np.where(hit, ref_cls[pos], 0).astype(np.uint8)
    if transparent is not None:
        tflat = transparent.ravel()
        hit &= ~tflat
        out[tflat] = 0
    matched = int(np.count_nonzero(hit & (out > 0)))
    snapped_n = unmatched = 0
    miss = ~hit
    if transparent is not None:
        miss &= ~transparent.ravel()
    miss_idx = np.flatnonzero(miss)
    if miss_idx.size:
        # Off-colour pixels are few (edges); classify each distinct colour once.
        colors, inverse = np.unique(flat[miss_idx], return_inverse=True)
        rgb = np.stack([(colors >> 16) & 0xFF, (colors >> 8) & 0xFF, colors & 0xFF], axis=1)
        cls, _exact, snap = _classify_colors(rgb, table, tolerance)
        out[miss_idx] = cls[inverse]
        per_pixel_snap = snap[inverse]
        snapped_n = int(np.count_nonzero(per_pixel_snap & (cls[inverse] > 0)))
        unmatched = int(np.count_nonzero(~per_pixel_snap))
    return DecodedMask(out.reshape(height, width), matched, snapped_n, unmatched)


def decode_worker_mask(
    png: bytes | Image.Image,
    label_mappings: Mapping[str, Any],
    class_map: ClassMap,
    *,
    expected_size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_SNAP_TOLERANCE,
) -> DecodedMask:
    """A worker's ``labeledImage`` PNG -> class indices in the job's ``class_map``.

    ``expected_size`` is (width, height) from ``inputImageProperties``; a mismatch is a
    ``MaskError`` (the caller rejects this annotation, not the whole object).
    """
    if not isinstance(label_mappings, Mapping):
        raise MaskError("labelMappings must be an object of {label: {color}}")
    image = png if isinstance(png, Image.Image) else open_png(png)
    if expected_size is not None and tuple(image.size) != tuple(expected_size):
        w, h = image.size
        ew, eh = expected_size
        raise MaskError(f"mask is {w}x{h} but inputImageProperties says {ew}x{eh}")
    table, unknown = colors_to_classes(label_mappings, class_map)
    decoded = decode_color_mask(image, table, tolerance=tolerance)
    if unknown:
        decoded = DecodedMask(
            decoded.indices, decoded.matched_pixels, decoded.snapped_pixels, decoded.unmatched_pixels, unknown
        )
    return decoded


def encode_index_png(indices: np.ndarray, class_map: ClassMap, *, compress_level: int = 6) -> bytes:
    """Class indices -> 8-bit palette PNG: pixel = class index, palette entry i = class i's colour.

    Reads correctly both as indices and as RGB. Deterministic: same input, same bytes.
    """
    if indices.dtype != np.uint8 or indices.ndim != 2:
        raise MaskError("indices must be a 2-D uint8 array")
    if indices.size and int(indices.max()) >= len(class_map):
        raise MaskError(f"index {int(indices.max())} is outside the {len(class_map)}-class map")
    image = Image.fromarray(indices)  # mode L
    image.putpalette(class_map.palette())  # -> mode P
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def read_class_mask(png: bytes | Image.Image, class_map: ClassMap) -> np.ndarray:
    """Read a consolidated mask (ours or Ground Truth's built-in) as class indices of ``class_map``.

    A palette PNG whose palette already matches the class colours is read by index; anything
    else is decoded by exact colour (Ground Truth's 2020 masks had wrong indices but right colours).
    """
    image = png if isinstance(png, Image.Image) else open_png(png)
    if image.mode == "P":
        pal = image.getpalette() or []
        n = len(class_map)
        expected = [v for i in range(n) for v in class_map.rgb(i)]
        if pal[: 3 * n] == expected:
            raw = np.asarray(image, dtype=np.uint8)
            if raw.size == 0 or int(raw.max()) < n:
                return raw.copy()
    table = {class_map.rgb(i): i for i in range(len(class_map))}
    return decode_color_mask(image, table, tolerance=0.0).indices


def indices_to_rgb(indices: np.ndarray, class_map: ClassMap) -> np.ndarray:
    """Class indices -> (H, W, 3) uint8 colour image using the class colours."""
    lut = np.array(class_map.palette(), dtype=np.uint8).reshape(256, 3)
    return lut[indices]


def mask_to_png(mask_rgb_or_indices: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3|4) uint8 array as PNG (previews, simulated workers)."""
    buf = io.BytesIO()
    Image.fromarray(mask_rgb_or_indices).save(buf, format="PNG")
    return buf.getvalue()
