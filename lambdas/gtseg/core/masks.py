"""Masks: worker PNGs -> class-index arrays, and class-index arrays -> palette PNGs.

Pure numpy + Pillow. A worker's PNG mode is unconfirmed (protocol doc §3.3), so decoding accepts
P, L, LA, RGB and RGBA (and anything Pillow can convert): each pixel is matched against that
worker's own ``labelMappings`` colours; transparent, black, white and unmatched pixels are a
background vote. An off-colour pixel (an anti-aliased edge) is read as the blend of two reference
colours that explains it best, and takes the dominant colour's class (``_classify_colors``).
Every distinct colour is classified once: palette images through a 256-entry lookup table, RGB(A)
images through their list of distinct colours, so no per-pixel colour search runs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from PIL import Image, UnidentifiedImageError

from gtseg.core.labels import ClassMap, LabelError, hex_to_rgb

# Ground Truth accepts images up to 100 MP; a worker mask has the image's size.
MAX_MASK_PIXELS = 100_000_000
# Euclidean RGB distance within which an off-colour pixel that no blend explains snaps to the
# nearest reference colour (noise near one colour). 0 means exact colours only.
DEFAULT_SNAP_TOLERANCE = 60.0
# Euclidean RGB distance from the straight line between two reference colours within which an
# off-colour pixel is read as their blend (canvas anti-aliasing: 8-bit rounding of a blend is at
# most sqrt(3)/2 ~ 0.9 away, premultiplied-alpha round trips at alpha >= 128 about 1.7).
DEFAULT_BLEND_TOLERANCE = 8.0
# Partially transparent pixels at or above this alpha keep their colour (canvas anti-aliasing).
ALPHA_THRESHOLD = 128

_BACKGROUND_RGB = ((0, 0, 0), (255, 255, 255))
# Two blends of different classes whose residuals differ by less than this (RGB distance) are
# ambiguous from the colour alone (8-bit rounding moves a blend up to ~0.9, a floor up to 1.7):
# such a colour's pixels are decided by the classes their 8 neighbours show.
AMBIGUITY_MARGIN = 2.0
_MAX_CANDIDATES = 6
# Class value that flags an ambiguous pixel in the class image until its neighbours decide it.
_MARK = 255
# Colours x pairs evaluated at once by the blend search: its temporaries stay in cache (256 KB).
_BLEND_CHUNK = 1 << 16
# Colour x pair evaluations one mask may spend on blends (~0.2 s): only a mask with thousands of
# distinct colours and a hundred or more labels reaches it; its rarest colours then only snap.
_BLEND_BUDGET = 1 << 24

RGB = tuple[int, int, int]


class MaskError(ValueError):
    """A mask that cannot be used: corrupt PNG, wrong size, unusable mappings."""


@dataclass(frozen=True)
class DecodedMask:
    indices: np.ndarray  # (height, width) uint8 class indices
    matched_pixels: int  # pixels whose colour exactly matched a mapped label colour
    # off-colour pixels decoded to a label: anti-aliased blends, colours near one label colour
    snapped_pixels: int
    # off-colour pixels that vote background without looking like it: far from every colour and
    # blend, a label the job does not have, the background side of an edge farther than the snap
    # tolerance from the background colour
    unmatched_pixels: int
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


@dataclass(frozen=True)
class _Classified:
    """Per distinct colour: class index and which count the colour's pixels go to; and for the
    colours a blend cannot resolve alone, the candidate classes their pixels choose from."""

    cls: np.ndarray  # (n,) uint8 class index
    exact: np.ndarray  # (n,) bool: the colour is a key of the table (a label or unclaimed bg)
    snapped: np.ndarray  # (n,) bool: off-colour, decoded to a label (by blend or nearness)
    unmatched: np.ndarray  # (n,) bool: off-colour, votes background, not near a canvas background
    near_background: np.ndarray  # (n,) bool: off-colour within ``tolerance`` of a canvas background
    ambiguous: np.ndarray  # (a,) indices of colours two blends of different classes explain
    candidates: np.ndarray  # (a, C) int16 candidate classes, best explanation first, -1 padding
    partners: np.ndarray  # (a, C) int16 the class each candidate is blended with


def _keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


@dataclass(frozen=True)
class _Pairs:
    """Every pair (c_i, c_j), i < j, of distinct reference colours, precomputed for the search."""

    first: np.ndarray  # (p,) index of c_i
    second: np.ndarray  # (p,) index of c_j
    base_t: np.ndarray  # (3, p) float32 c_i
    step_t: np.ndarray  # (3, p) float32 c_j - c_i, never zero
    step2: np.ndarray  # (p,) float32 |c_j - c_i|^2
    base_step: np.ndarray  # (p,) float32 c_i . (c_j - c_i)
    base2: np.ndarray  # (p,) float32 |c_i|^2
    cls_first: np.ndarray  # (p,) int16 class of c_i
    cls_second: np.ndarray  # (p,) int16 class of c_j

    @classmethod
    def of(cls, refs: np.ndarray, classes: np.ndarray) -> _Pairs:
        first, second = np.triu_indices(len(refs), 1)
        base = refs[first]
        step = refs[second] - base
        return cls(
            first,
            second,
            np.ascontiguousarray(base.T, dtype=np.float32),
            np.ascontiguousarray(step.T, dtype=np.float32),
            np.einsum("pc,pc->p", step, step).astype(np.float32),
            np.einsum("pc,pc->p", base, step).astype(np.float32),
            np.einsum("pc,pc->p", base, base).astype(np.float32),
            classes[first].astype(np.int16),
            classes[second].astype(np.int16),
        )


def _best_blends(
    x: np.ndarray, pairs: _Pairs, blend_tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read colours ``x`` (n, 3) as blends of two reference colours.

    For every pair (c_i, c_j) the weight ``t`` in [0, 1] minimising |x - ((1 - t) c_i + t c_j)|
    gives a residual and a dominant colour (c_i when its weight 1 - t >= 0.5, else c_j); the pair
    with the smallest residual explains the colour. The endpoints belong to every segment, so the
    residual is never above the distance to the nearest single reference. Returns the squared
    residual and the dominant class per colour; and the colours where a blend of another dominant
    class comes within ``AMBIGUITY_MARGIN`` of the best (both within ``blend_tolerance``): their
    indices and candidates, one per dominant class, best residual first, each with the class it
    is blended with (-1 padding).
    """
    # (n, p) arrays in float32 with in-place steps: this is the one loop over colours x pairs.
    # float32 rounding (~0.05 in squared residual) only matters between near-equal fits, which
    # the ambiguity margin below treats as equal anyway.
    x32 = x.astype(np.float32)
    along = x32 @ pairs.step_t
    along -= pairs.base_step  # (x - c_i) . (c_j - c_i)
    t = along / pairs.step2
    np.clip(t, 0.0, 1.0, out=t)
    # |x - c_i - t (c_j - c_i)|^2 expanded, so no (n, p, 3) array is formed
    r2 = x32 @ pairs.base_t
    r2 *= -2.0
    r2 += pairs.base2
    r2 += np.einsum("nc,nc->n", x32, x32)[:, None]
    along *= -2.0
    along += t * pairs.step2
    along *= t
    r2 += along
    np.maximum(r2, 0.0, out=r2)
    picked = np.arange(len(x))
    best = r2.argmin(axis=1)
    r1 = r2[picked, best].astype(np.float64)
    best_first = t[picked, best] <= 0.5
    best_cls = np.where(best_first, pairs.cls_first[best], pairs.cls_second[best]).astype(np.uint8)

    tol2 = blend_tolerance * blend_tolerance
    limit = np.minimum((np.sqrt(r1) + AMBIGUITY_MARGIN) ** 2, tol2).astype(np.float32)
    near = r2 <= limit[:, None]
    several = np.flatnonzero((np.count_nonzero(near, axis=1) > 1) & (r1 <= tol2))
    if several.size == 0:
        none = np.zeros((0, _MAX_CANDIDATES), dtype=np.int16)
        return r1, best_cls, several, none, none
    near = near[several]
    dom = np.where(t[several] <= 0.5, pairs.cls_first, pairs.cls_second)
    spread = np.where(near, dom, -1).max(axis=1) != np.where(near, dom, 1 << 14).min(axis=1)
    amb = several[spread]
    near, dom = near[spread], dom[spread]
    candidates = np.full((len(amb), _MAX_CANDIDATES), -1, dtype=np.int16)
    partners = candidates.copy()
    if amb.size:
        row, col = np.nonzero(near)
        order = np.lexsort((r2[amb[row], col], row))  # by colour, then residual
        row, col = row[order], col[order]
        d = dom[row, col].astype(np.int64)
        # the best-fitting pair of each (colour, dominant class): first in that order
        _, first = np.unique(row * (1 << 16) + d, return_index=True)
        first.sort()
        row, col, d = row[first], col[first], d[first]
        rank = np.arange(len(row)) - np.searchsorted(row, row)
        keep = rank < _MAX_CANDIDATES
        row, col, d, rank = row[keep], col[keep], d[keep], rank[keep]
        candidates[row, rank] = d
        partners[row, rank] = np.where(d == pairs.cls_first[col], pairs.cls_second[col], pairs.cls_first[col])
    return r1, best_cls, amb, candidates, partners


def _blend_search(
    x: np.ndarray, pairs: _Pairs, blend_tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_best_blends`` over chunks of colours, so no temporary exceeds ``_BLEND_CHUNK`` entries."""
    rows = max(1, _BLEND_CHUNK // len(pairs.first))
    if len(x) <= rows:
        return _best_blends(x, pairs, blend_tolerance)
    parts = [_best_blends(x[lo : lo + rows], pairs, blend_tolerance) for lo in range(0, len(x), rows)]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] + lo for p, lo in zip(parts, range(0, len(x), rows), strict=True)]),
        np.concatenate([p[3] for p in parts]),
        np.concatenate([p[4] for p in parts]),
    )


def _classify_colors(
    colors: np.ndarray,
    table: Mapping[tuple[int, int, int], int],
    tolerance: float,
    blend_tolerance: float = DEFAULT_BLEND_TOLERANCE,
    *,
    canvas: tuple[RGB, ...] = (),
    foreign: tuple[RGB, ...] = (),
    counts: np.ndarray | None = None,
    present: tuple[RGB, ...] = (),
) -> _Classified:
    """Classify distinct colours (n, 3), with their pixel ``counts`` when known.

    References are the table's colours (labels; black and white when no label claims them),
    ``canvas`` (other canvas background colours: a transparent pixel's RGB) and ``foreign``
    (colours that vote background but are not background: labels the job does not have, colours
    two labels share). A table colour is exact. Any other colour is read as the blend of the pair
    of references it lies closest to (within ``blend_tolerance``) and takes the dominant one's
    class; failing that it snaps to the nearest reference within ``tolerance``; failing that it is
    unmatched. With ``tolerance`` 0 only exact colours decode. Off-colour pixels that vote
    background count as unmatched unless they lie within ``tolerance`` of a canvas background
    colour (as before blends were read): far colours, and the background side of a label's edge.

    A canvas blends colours it has painted: blends are first sought between the references the
    image shows exactly (``colors`` with pixels, and ``present``) and the background colours, and
    only colours no such blend explains are tried against every pair. Colours are searched in
    order of pixel count within ``_BLEND_BUDGET`` pair evaluations; the rest only snap.
    """
    colors = np.asarray(colors, dtype=np.int64).reshape(-1, 3)
    n = len(colors)
    ref_rgb: list[RGB] = list(table.keys())
    ref_cls: list[int] = list(table.values())
    ref_quiet = [c == 0 for c in ref_cls]  # canvas background: its neighbourhood is not "unmatched"
    seen = set(ref_rgb)
    for group, is_canvas in ((canvas, True), (foreign, False)):
        for rgb in group:
            if rgb not in seen:
                seen.add(rgb)
                ref_rgb.append(rgb)
                ref_cls.append(0)
                ref_quiet.append(is_canvas)
    refs = np.array(ref_rgb, dtype=np.float64).reshape(-1, 3)
    classes = np.array(ref_cls, dtype=np.uint8)
    quiet = np.array(ref_quiet, dtype=bool)
    ref_keys = _keys(refs)
    color_keys = _keys(colors)

    cls = np.zeros(n, dtype=np.uint8)
    exact = np.zeros(n, dtype=bool)
    n_table = len(table)
    if n_table:
        order = np.argsort(ref_keys[:n_table])
        pos = np.minimum(np.searchsorted(ref_keys[:n_table][order], color_keys), n_table - 1)
        exact = ref_keys[:n_table][order][pos] == color_keys
        cls[exact] = classes[order[pos[exact]]]
    snapped = np.zeros(n, dtype=bool)
    unmatched = ~exact
    near_background = np.zeros(n, dtype=bool)
    off = np.flatnonzero(~exact)
    no_candidates = np.zeros((0, _MAX_CANDIDATES), dtype=np.int16)
    ambiguous: list[np.ndarray] = [np.zeros(0, dtype=np.intp)]
    candidates: list[np.ndarray] = [no_candidates]
    partners: list[np.ndarray] = [no_candidates]
    if tolerance > 0 and off.size and len(refs):
        x = colors[off].astype(np.float64)
        got = np.zeros(len(off), dtype=np.uint8)
        blended = np.zeros(len(off), dtype=bool)
        if blend_tolerance > 0 and len(refs) >= 2:
            used = set((color_keys if counts is None else color_keys[np.asarray(counts) > 0]).tolist())
            used.update((r << 16) | (g << 8) | b for r, g, b in present)
            shown = np.array([key in used for key in ref_keys.tolist()], dtype=bool)
            todo = np.arange(len(off))
            if counts is not None:  # most pixels first, in case the budget runs out
                todo = todo[np.argsort(-np.asarray(counts)[off], kind="stable")]
            budget = _BLEND_BUDGET
            subsets = [shown | quiet]
            if not subsets[0].all():
                subsets.append(np.ones(len(refs), dtype=bool))
            for subset in subsets:
                if todo.size == 0 or np.count_nonzero(subset) < 2:
                    continue
                pairs = _Pairs.of(refs[subset], classes[subset])
                todo = todo[: max(0, budget // len(pairs.first))]
                budget -= len(todo) * len(pairs.first)
                res2, blend_cls, amb, cand, part = _blend_search(x[todo], pairs, blend_tolerance)
                explained = res2 <= blend_tolerance * blend_tolerance
                got[todo[explained]] = blend_cls[explained]
                blended[todo[explained]] = True
                ambiguous.append(off[todo[amb]])
                candidates.append(cand)
                partners.append(part)
                todo = todo[~explained]  # unexplained: try every pair next
        # The nearest single reference: the class of colours no blend explains (within
        # ``tolerance``), and whether a background vote lies near a canvas background colour.
        near_bg = np.zeros(len(off), dtype=bool)
        rest = np.flatnonzero(~blended | (got == 0))
        refs2 = np.einsum("kc,kc->k", refs, refs)
        tol2 = tolerance * tolerance
        rows = max(1, _BLEND_CHUNK // len(refs))
        for lo in range(0, len(rest), rows):
            idx = rest[lo : lo + rows]
            xs = x[idx]
            d2 = np.einsum("nc,nc->n", xs, xs)[:, None] - 2.0 * (xs @ refs.T) + refs2  # (n, k)
            nearest = d2.argmin(axis=1)
            within = d2[np.arange(len(xs)), nearest] <= tol2
            got[idx] = np.where(blended[idx], got[idx], np.where(within, classes[nearest], 0))
            near_bg[idx] = (d2[:, quiet] <= tol2).any(axis=1)
        cls[off] = got
        snapped[off] = got > 0
        near_background[off] = near_bg
        unmatched[off] = (got == 0) & ~near_bg
    return _Classified(
        cls,
        exact,
        snapped,
        unmatched,
        near_background,
        np.concatenate(ambiguous),
        np.concatenate(candidates),
        np.concatenate(partners),
    )


@dataclass(frozen=True)
class _Ambiguity:
    """Distinct colours whose class depends on their pixels' neighbourhood."""

    colors: np.ndarray  # (a,) indices into the decoder's list of distinct colours
    candidates: np.ndarray  # (a, C) int16
    partners: np.ndarray  # (a, C) int16
    near_background: np.ndarray  # (a,) bool: background here is not "unmatched"

    @classmethod
    def of(cls, c: _Classified, colors: np.ndarray) -> _Ambiguity:
        return cls(colors, c.candidates, c.partners, c.near_background[c.ambiguous])


_NEIGHBOUR_DY = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
_NEIGHBOUR_DX = np.array([-1, 0, 1, -1, 1, -1, 0, 1])


def _resolve_ambiguous(
    classes: np.ndarray, pixels: np.ndarray, rows: np.ndarray, amb: _Ambiguity
) -> tuple[int, int]:
    """Decide the pixels of ambiguous colours in place: flat ``pixels`` (marked ``_MARK`` in
    ``classes``) and their colours' ``rows`` in ``amb``. Returns their snapped and unmatched
    counts.

    A blend sits between its two colours, so the candidate whose dominant class, and whose
    partner's class, show among the pixel's 8 neighbours wins; ambiguous neighbours (marked) are
    no evidence; ties keep the better-fitting blend (candidates are ordered by residual).
    """
    if pixels.size == 0:
        return 0, 0
    height, width = classes.shape
    ys, xs = np.divmod(pixels, width)
    # off the image the neighbour is the pixel itself: marked, so no evidence
    near_y = np.clip(ys[:, None] + _NEIGHBOUR_DY, 0, height - 1)
    near_x = np.clip(xs[:, None] + _NEIGHBOUR_DX, 0, width - 1)
    flat = classes.ravel()
    seen = flat[near_y * width + near_x].astype(np.int16)  # (m, 8)
    dominant = amb.candidates[rows]  # (m, C)
    partner = amb.partners[rows]
    has_dominant = np.zeros(dominant.shape, dtype=bool)
    has_partner = np.zeros(dominant.shape, dtype=bool)
    for k in range(seen.shape[1]):
        has_dominant |= seen[:, k, None] == dominant
        has_partner |= seen[:, k, None] == partner
    has_partner &= partner != dominant
    score = has_dominant.astype(np.int8) + has_partner
    score[dominant < 0] = -1
    final = dominant[np.arange(len(pixels)), score.argmax(axis=1)].astype(np.uint8)
    flat[pixels] = final
    background = final == 0
    return int(np.count_nonzero(~background)), int(np.count_nonzero(background & ~amb.near_background[rows]))


def _resolve_marked(
    classes: np.ndarray, values: np.ndarray, color_values: np.ndarray, amb: _Ambiguity | None
) -> tuple[int, int]:
    """Resolve the marked pixels when ``values`` (h, w) uint8 tells the distinct colours apart:
    colour ``i`` has value ``color_values[i]`` (a palette index, or one channel). Returns their
    snapped and unmatched counts."""
    if amb is None:
        return 0, 0
    pixels = np.flatnonzero(classes.ravel() == _MARK)
    row_of_value = np.full(256, -1, dtype=np.int16)
    row_of_value[color_values[amb.colors]] = np.arange(len(amb.colors))
    return _resolve_ambiguous(classes, pixels, row_of_value[values.ravel()[pixels]], amb)


def decode_color_mask(
    image: Image.Image,
    table: Mapping[tuple[int, int, int], int],
    *,
    tolerance: float = DEFAULT_SNAP_TOLERANCE,
    blend_tolerance: float = DEFAULT_BLEND_TOLERANCE,
    foreign_colors: tuple[RGB, ...] = (),
) -> DecodedMask:
    """Map an image's colours to class indices with ``table`` ({rgb: class}).

    ``foreign_colors`` vote background but take part in blends (a blend dominated by one of them
    is background, not the nearest label); see ``_classify_colors`` for the rule.
    """
    mode = image.mode
    if mode in ("1", "I", "I;16", "F"):
        image = image.convert("L")
        mode = "L"
    if mode == "PA" or mode == "LA":
        image = image.convert("RGBA")
        mode = "RGBA"
    rule = _Rule(table, tolerance, blend_tolerance, tuple(foreign_colors))
    if mode in ("P", "L"):
        return _decode_lut(image, rule)
    if mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA")
    return _decode_rgb(image, rule)


@dataclass(frozen=True)
class _Rule:
    table: Mapping[tuple[int, int, int], int]
    tolerance: float
    blend_tolerance: float
    foreign: tuple[RGB, ...]

    @property
    def can_mark(self) -> bool:
        """Whether ``_MARK`` is free to flag ambiguous pixels (no class 255: fewer than 255 labels;
        with 255 labels an ambiguous colour keeps its best-fitting blend's class)."""
        return max(self.table.values(), default=0) < _MARK

    def classify(
        self,
        colors: np.ndarray,
        canvas: tuple[RGB, ...] = (),
        counts: np.ndarray | None = None,
        present: tuple[RGB, ...] = (),
    ) -> _Classified:
        return _classify_colors(
            colors,
            self.table,
            self.tolerance,
            self.blend_tolerance,
            canvas=canvas,
            foreign=self.foreign,
            counts=counts,
            present=present,
        )


def _transparent_rgb(rgb: np.ndarray, alpha: np.ndarray, counts: np.ndarray) -> tuple[RGB, ...]:
    """The RGB most fully transparent pixels carry (what a label blends with in straight alpha)."""
    clear = np.flatnonzero((alpha == 0) & (counts > 0))
    if clear.size == 0:
        return ()
    r, g, b = (int(v) for v in rgb[clear[counts[clear].argmax()]])
    return ((r, g, b),)


def _classify_opaque(
    rule: _Rule, rgb: np.ndarray, alpha: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, int, int, int, _Ambiguity | None]:
    """Distinct colours with their alpha and pixel counts -> class per colour, the three counts
    and the ambiguous colours. Colours below ``ALPHA_THRESHOLD`` are background and counted
    nowhere; unused ones are skipped."""
    cls = np.zeros(len(rgb), dtype=np.uint8)
    opaque = np.flatnonzero((alpha >= ALPHA_THRESHOLD) & (counts > 0))
    if opaque.size == 0:
        return cls, 0, 0, 0, None
    c = rule.classify(rgb[opaque], _transparent_rgb(rgb, alpha, counts), counts[opaque])
    cls[opaque] = c.cls
    n = counts[opaque]
    matched = int(n[c.exact & (c.cls > 0)].sum())
    amb = None
    if c.ambiguous.size and rule.can_mark:
        amb = _Ambiguity.of(c, opaque[c.ambiguous])
        cls[amb.colors] = _MARK
        n = n.copy()
        n[c.ambiguous] = 0  # counted per pixel once their neighbours decide them
    return cls, matched, int(n[c.snapped].sum()), int(n[c.unmatched].sum()), amb


def _decode_lut(image: Image.Image, rule: _Rule) -> DecodedMask:
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
    raw = np.asarray(image, dtype=np.uint8)
    counts = np.bincount(raw.ravel(), minlength=256)[:256]
    lut, matched, snapped_n, unmatched, amb = _classify_opaque(rule, palette, alpha, counts)
    classes = lut[raw]
    more_snapped, more_unmatched = _resolve_marked(classes, raw, np.arange(256), amb)
    return DecodedMask(classes, matched, snapped_n + more_snapped, unmatched + more_unmatched)


def _decode_rgb_via_palette(image: Image.Image, rule: _Rule) -> DecodedMask | None:
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
    cls, matched, snapped_n, unmatched, amb = _classify_opaque(rule, rgba[:, :3], rgba[:, 3], counts)
    # When one channel alone tells the distinct colours apart (true for Ground Truth's palette),
    # a 256-entry lookup on that channel is the whole decode: two passes in C.
    for channel, band in enumerate("RGB"):
        values = rgba[:, channel]
        if len(np.unique(values)) == len(values):
            lut = np.zeros(256, dtype=np.uint8)
            lut[values] = cls
            channel_image = image.getchannel(band)
            classes = np.asarray(channel_image.point(lut.tolist()), dtype=np.uint8)
            if amb is not None:
                classes = classes.copy()  # writable, for the neighbourhood step
                more_snapped, more_unmatched = _resolve_marked(
                    classes, np.asarray(channel_image), values, amb
                )
                snapped_n += more_snapped
                unmatched += more_unmatched
            return DecodedMask(classes, matched, snapped_n, unmatched)
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
    classes = lut[indexed]
    more_snapped, more_unmatched = _resolve_marked(classes, indexed, np.arange(len(cls)), amb)
    return DecodedMask(classes, matched, snapped_n + more_snapped, unmatched + more_unmatched)


def _decode_rgb(image: Image.Image, rule: _Rule) -> DecodedMask:
    fast = _decode_rgb_via_palette(image, rule)
    if fast is not None:
        return fast
    table = rule.table
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
    canvas: tuple[RGB, ...] = ()
    if transparent is not None:
        tflat = transparent.ravel()
        hit &= ~tflat
        out[tflat] = 0
        # the RGB most fully transparent pixels carry, from a deterministic sample of pixels
        step = max(1, flat.size // 65536)
        sample = flat[::step][arr[..., 3].ravel()[::step] == 0]
        if sample.size:
            values, n = np.unique(sample, return_counts=True)
            top = int(values[n.argmax()])
            canvas = ((top >> 16 & 0xFF, top >> 8 & 0xFF, top & 0xFF),)
    matched = int(np.count_nonzero(hit & (out > 0)))
    snapped_n = unmatched = 0
    miss = ~hit
    if transparent is not None:
        miss &= ~transparent.ravel()
    miss_idx = np.flatnonzero(miss)
    classes = out.reshape(height, width)
    if miss_idx.size:
        # Off-colour pixels are few (edges); classify each distinct colour once.
        colors, inverse, color_counts = np.unique(flat[miss_idx], return_inverse=True, return_counts=True)
        rgb = np.stack([(colors >> 16) & 0xFF, (colors >> 8) & 0xFF, colors & 0xFF], axis=1)
        shown = np.bincount(out, minlength=256) > 0  # classes painted in exact colours so far
        present = tuple(rgb for rgb, index in table.items() if index > 0 and shown[index])
        c = rule.classify(rgb, canvas, color_counts, present)
        cls, snapped, unmatched_color = c.cls, c.snapped, c.unmatched
        marking = c.ambiguous.size and rule.can_mark
        if marking:  # counted per pixel once their neighbours decide them
            cls, snapped, unmatched_color = cls.copy(), snapped.copy(), unmatched_color.copy()
            cls[c.ambiguous] = _MARK
            snapped[c.ambiguous] = unmatched_color[c.ambiguous] = False
        out[miss_idx] = cls[inverse]
        snapped_n = int(np.count_nonzero(snapped[inverse]))
        unmatched = int(np.count_nonzero(unmatched_color[inverse]))
        if marking:
            row_of_color = np.full(len(colors), -1, dtype=np.intp)
            row_of_color[c.ambiguous] = np.arange(len(c.ambiguous))
            rows = row_of_color[inverse]
            chosen = rows >= 0
            amb = _Ambiguity.of(c, c.ambiguous)
            more_snapped, more_unmatched = _resolve_ambiguous(classes, miss_idx[chosen], rows[chosen], amb)
            snapped_n += more_snapped
            unmatched += more_unmatched
    return DecodedMask(classes, matched, snapped_n, unmatched)


def _foreign_colors(
    label_mappings: Mapping[str, Any], table: Mapping[tuple[int, int, int], int]
) -> tuple[RGB, ...]:
    """Colours in ``labelMappings`` that decode as background: labels the job does not have,
    colours two labels share. A worker's canvas blends them like any other colour, so they stay
    references for blends."""
    out: list[RGB] = []
    for value in label_mappings.values():
        try:
            rgb = hex_to_rgb(_mapping_color(value))
        except LabelError:
            continue
        if rgb not in table and rgb not in out:
            out.append(rgb)
    return tuple(out)


def decode_worker_mask(
    png: bytes | Image.Image,
    label_mappings: Mapping[str, Any],
    class_map: ClassMap,
    *,
    expected_size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_SNAP_TOLERANCE,
    blend_tolerance: float = DEFAULT_BLEND_TOLERANCE,
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
    with contextlib.suppress(LabelError):  # a BACKGROUND entry's colour is the canvas background
        table.setdefault(hex_to_rgb(_mapping_color(label_mappings.get("BACKGROUND"))), 0)
    decoded = decode_color_mask(
        image,
        table,
        tolerance=tolerance,
        blend_tolerance=blend_tolerance,
        foreign_colors=_foreign_colors(label_mappings, table),
    )
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
    """Encode an (H, W) or (H, W, 3|4) uint8 array as PNG: (H, W) class indices give the 8-bit
    index masks of datasets (export, finalize, the streaming dataset); RGB(A) gives previews."""
    buf = io.BytesIO()
    Image.fromarray(mask_rgb_or_indices).save(buf, format="PNG")
    return buf.getvalue()
