"""Binary-mask geometry for the error models: shifts, dilation/erosion, boundary distance, outline
tracing and polygon filling. numpy + Pillow only, so the unit tests can run them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# 8-neighbourhood in clockwise order on screen (y grows downwards): N NE E SE S SW W NW
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
_RING_INDEX = {d: i for i, d in enumerate(_RING)}


def shift(mask: np.ndarray, dy: int, dx: int, fill: int | bool = 0) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels; what moves in from outside is ``fill``."""
    out = np.full_like(mask, fill)
    h, w = mask.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[dst_y, dst_x] = mask[src_y, src_x]
    return out


def _grow_once(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    if diagonal:
        out[1:, 1:] |= mask[:-1, :-1]
        out[1:, :-1] |= mask[:-1, 1:]
        out[:-1, 1:] |= mask[1:, :-1]
        out[:-1, :-1] |= mask[1:, 1:]
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by an octagon of ``radius`` pixels (alternating cross and square steps, a close
    approximation of a disc)."""
    out = mask.astype(bool, copy=True)
    for step in range(max(0, radius)):
        out = _grow_once(out, diagonal=step % 2 == 1)
    return out


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion by the same octagon. Pixels outside the array count as inside the mask, so a region
    touching the image border is not eaten from the border (a person would paint up to it)."""
    out = ~mask.astype(bool)
    for step in range(max(0, radius)):
        out = _grow_once(out, diagonal=step % 2 == 1)
    return ~out


def grow(mask: np.ndarray, signed_radius: int) -> np.ndarray:
    """Dilate for a positive radius, erode for a negative one."""
    if signed_radius > 0:
        return dilate(mask, signed_radius)
    if signed_radius < 0:
        return erode(mask, -signed_radius)
    return mask.astype(bool, copy=True)


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (inside the array)."""
    inside = mask.astype(bool)
    core = inside.copy()
    core[1:, :] &= inside[:-1, :]
    core[:-1, :] &= inside[1:, :]
    core[:, 1:] &= inside[:, :-1]
    core[:, :-1] &= inside[:, 1:]
    return inside & ~core


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels whose label differs from one of their 4-neighbours."""
    edge = np.zeros(labels.shape, dtype=bool)
    diff_y = labels[1:, :] != labels[:-1, :]
    diff_x = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    return edge


def edge_distance(labels: np.ndarray, max_distance: int) -> np.ndarray:
    """Chessboard-ish distance (alternating 4- and 8-steps) of each pixel to the nearest label edge,
    capped at ``max_distance``; edge pixels are 0. uint8."""
    dist = np.full(labels.shape, max_distance, dtype=np.uint8)
    front = label_edges(labels)
    dist[front] = 0
    reached = front
    for d in range(1, max_distance):
        grown = _grow_once(reached, diagonal=d % 2 == 0)
        new = grown & ~reached
        dist[new] = d
        reached = grown
    return dist


def trace_outline(mask: np.ndarray) -> list[tuple[int, int]]:
    """The outer outline (x, y) of the component holding the first foreground pixel in raster order,
    by Moore-neighbour tracing with Jacob's stopping criterion. Empty for an empty mask."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask.astype(bool)
    flat = np.flatnonzero(padded)
    if flat.size == 0:
        return []
    stride = w + 2
    buf = padded.tobytes()
    start = int(flat[0])
    sy, sx = divmod(start, stride)
    offsets = [dy * stride + dx for dy, dx in _RING]
    back_of = {}  # (ring index of the new pixel, ring index of the previous check) -> backtrack index
    for i in range(8):
        for j in range(8):
            prev = (_RING[j][0] - _RING[i][0], _RING[j][1] - _RING[i][1])
            if prev in _RING_INDEX:
                back_of[(i, j)] = _RING_INDEX[prev]
    points = [(sx - 1, sy - 1)]
    p, back = start, 6  # entering from the west: that neighbour is background
    first_back = back
    limit = 4 * int(flat.size) + 8
    for _ in range(limit):
        for i in range(1, 9):
            d = (back + i) % 8
            q = p + offsets[d]
            if buf[q]:
                back = back_of[(d, (back + i - 1) % 8)]
                p = q
                break
        else:
            return points  # an isolated pixel
        if p == start and back == first_back:
            break
        y, x = divmod(p, stride)
        points.append((x - 1, y - 1))
    return points


def fill_polygon(points: Sequence[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """A filled polygon as a boolean mask of ``shape`` (outline included, as Pillow draws it)."""
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    if len(points) >= 3:
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    elif points:
        ImageDraw.Draw(canvas).line([(float(x), float(y)) for x, y in points], fill=1)
    return np.asarray(canvas, dtype=bool)


def ellipse_points(
    cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 24
) -> list[tuple[float, float]]:
    """Vertices of a rotated ellipse."""
    ca, sa = math.cos(angle), math.sin(angle)
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + ca * x - sa * y, cy + sa * x + ca * y))
    return pts


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of the foreground; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def smooth_field(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise of unit standard deviation: a coarse grid of normal values, one per
    ``cell`` pixels, upsampled bicubically. float32 (H, W)."""
    h, w = shape
    gh, gw = max(2, math.ceil(h / cell) + 2), max(2, math.ceil(w / cell) + 2)
    coarse = rng.normal(0.0, 1.0, size=(gh, gw)).astype(np.float32)
    image = Image.fromarray(coarse).resize(
        (w, h), Image.Resampling.BICUBIC, box=(0.5, 0.5, gw - 1.5, gh - 1.5)
    )
    field = np.asarray(image, dtype=np.float32)
    std = float(field.std())
    return (field - float(field.mean())) / std if std > 1e-6 else field
