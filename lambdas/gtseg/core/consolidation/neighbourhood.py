"""Tied pixels decided by their neighbourhood, as the built-in task uses neighbouring pixels.

Where the trusted workers tie (two of them tracing one boundary a few pixels apart), a pixel may
take whichever of its two leading classes has the larger trusted vote share summed over the
(2r+1)^2 box around it (image edges replicated): the two outlines then meet in the middle instead
of one of them winning the whole band. The base decision keeps equal sums.

Only the tied pixels are visited. Few tied pixels are read box by box; many are served by one
integral image per class involved, so the cost is bounded by the image either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gtseg.core.consolidation.tuples import TupleTable

# The largest box radius tried; CONSOLIDATION_SMOOTHING lowers it (0 turns the step off).
DEFAULT_NEIGHBOURHOOD_RADIUS = 3
_TIE = 1e-9


@dataclass(frozen=True)
class PixelTuples:
    """Each pixel's tuple index, so neighbourhoods can be read pixel by pixel."""

    ranks: np.ndarray  # (H*W,) int32 tuple index per pixel
    shape: tuple[int, int]

    @classmethod
    def of(cls, table: TupleTable, shape: tuple[int, int]) -> PixelTuples:
        return cls(table.to_pixels(np.arange(len(table.tuples), dtype=np.int32)), shape)


def leading_pair(share: np.ndarray, tuple_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two classes with the largest trusted share at each pixel (ties to the lower class)."""
    own = share[tuple_index]
    order = np.argsort(-own, axis=1, kind="stable")
    return order[:, 0], order[:, 1]


def _gathered_sums(
    pixels: PixelTuples,
    where: np.ndarray,
    share: np.ndarray,
    classes: Sequence[np.ndarray],
    radii: Sequence[int],
) -> dict[int, list[np.ndarray]]:
    """Box sums of ``share[:, classes[i][p]]`` around each pixel ``where[p]``, for every radius,
    built ring by ring so all radii together cost one box of the largest."""
    height, width = pixels.shape
    ys, xs = np.divmod(where, width)
    sums = [np.zeros(where.size) for _ in classes]
    out: dict[int, list[np.ndarray]] = {}
    done = -1
    for radius in sorted(radii):
        for dy in range(-radius, radius + 1):
            row = np.clip(ys + dy, 0, height - 1) * width
            for dx in range(-radius, radius + 1):
                if max(abs(dy), abs(dx)) <= done:
                    continue  # inside the box of the previous radius: already summed
                neighbour = pixels.ranks[row + np.clip(xs + dx, 0, width - 1)]
                for total, cls in zip(sums, classes, strict=True):
                    total += share[neighbour, cls]
        done = radius
        out[radius] = [total.copy() for total in sums]
    return out


def _integral_sums(
    pixels: PixelTuples, where: np.ndarray, share: np.ndarray, classes: Sequence[np.ndarray], radius: int
) -> list[np.ndarray]:
    """The same box sums from one integral image per class involved (for many tied pixels)."""
    height, width = pixels.shape
    ys, xs = np.divmod(where, width)
    involved = np.unique(np.concatenate(list(classes)))
    sums = [np.zeros(where.size) for _ in classes]
    for c in involved:
        plane = share[:, c][pixels.ranks].reshape(height, width)
        padded = np.pad(plane, radius, mode="edge")
        integral = np.zeros((height + 2 * radius + 1, width + 2 * radius + 1))
        integral[1:, 1:] = padded.cumsum(axis=0).cumsum(axis=1)
        side = 2 * radius + 1
        box = (
            integral[ys + side, xs + side]
            - integral[ys, xs + side]
            - integral[ys + side, xs]
            + integral[ys, xs]
        )
        for total, cls in zip(sums, classes, strict=True):
            hit = cls == c
            total[hit] = box[hit]
    return sums


def neighbourhood_labels(
    pixels: PixelTuples,
    where: np.ndarray,
    share: np.ndarray,
    base: np.ndarray,
    radii: Sequence[int],
) -> dict[int, np.ndarray]:
    """For each radius: the label of each pixel ``where`` (flat indices) after the neighbourhood
    step; ``share`` (T, C) is the trusted vote share per tuple, ``base`` (T,) the decision without it."""
    tuple_index = pixels.ranks[where]
    first, second = leading_pair(share, tuple_index)
    base_labels = base[tuple_index].astype(np.intp)
    height, width = pixels.shape
    out: dict[int, np.ndarray] = {}
    # reading (2r+1)^2 neighbours per pixel beats one full-image pass per class while the tied
    # pixels are fewer than about one in (2r+1)^2 of the image
    largest = max(radii)
    if where.size * (2 * largest + 1) ** 2 <= 2 * height * width:
        by_radius = _gathered_sums(pixels, where, share, (first, second), radii)
    else:
        by_radius = {r: _integral_sums(pixels, where, share, (first, second), r) for r in radii}
    for radius, (sum_first, sum_second) in by_radius.items():
        labels = np.where(sum_first > sum_second + _TIE, first, base_labels)
        out[radius] = np.where(sum_second > sum_first + _TIE, second, labels)
    return out


def resolve_contested(
    decision: np.ndarray,
    contested: np.ndarray,
    share: np.ndarray,
    table: TupleTable,
    shape: tuple[int, int],
    radius: int,
) -> np.ndarray | None:
    """The label image with the contested pixels decided by their neighbourhood, or ``None`` when
    nothing is contested (or the radius is 0)."""
    if radius <= 0 or not contested.any():
        return None
    pixels = PixelTuples.of(table, shape)
    where = np.flatnonzero(contested[pixels.ranks])
    if where.size == 0:
        return None
    labels = table.to_pixels(decision).astype(np.uint8)
    labels[where] = neighbourhood_labels(pixels, where, share, decision, (radius,))[radius]
    return labels.reshape(shape)
