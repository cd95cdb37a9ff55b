"""Tuples, not pixels: each pixel's K worker labels form a tuple, and a real scene has only a few
thousand distinct tuples even at 12 MP. Every pixel is encoded once into a tuple code, the models
iterate on the tuple table weighted by tuple counts, and a decision is mapped back with one lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Above this many (tuple x class) cells a step falls back to np.unique (sorting); real masks never
# get near it, adversarial noise might.
_MAX_DENSE_CODES = 1 << 22


@dataclass(frozen=True)
class TupleTable:
    codes: np.ndarray  # (N,) per-pixel code (mixed radix over the last compression)
    tuples: np.ndarray  # (T, K) uint8 labels of each distinct tuple
    counts: np.ndarray  # (T,) pixels per tuple
    present: np.ndarray  # (T,) the code of each tuple
    space: int  # codes are < space

    def to_pixels(self, per_tuple: np.ndarray) -> np.ndarray:
        """Map one value per tuple back to every pixel with a single lookup."""
        lut = np.zeros(self.space, dtype=per_tuple.dtype)
        lut[self.present] = per_tuple
        return lut[self.codes]


def encode_tuples(masks: Sequence[np.ndarray], num_classes: int) -> TupleTable:
    """Give each pixel a code for its tuple of worker labels, without sorting.

    Labels are combined in mixed radix (code = code * C + label); when the code space would
    outgrow ``_MAX_DENSE_CODES`` the codes seen so far are compressed to tuple ranks with a
    ``bincount`` first, so the space stays (distinct tuples) x C. Codes use the narrowest
    integer type that holds them (uint16 for 5 workers and 8 classes, else uint32 up to 16 MP):
    the per-pixel passes are memory-bound.
    """
    n = masks[0].size
    # Before each multiply the space is at most max(_MAX_DENSE_CODES, distinct tuples <= n), so
    # codes stay below max(_MAX_DENSE_CODES, n) * C: uint32 holds that for any image under
    # 16 megapixels (2^32 / 256), and halves the per-pixel traffic of int64.
    dtype: type[np.unsignedinteger[Any]] | type[np.signedinteger[Any]]
    if num_classes ** len(masks) <= 1 << 16:
        dtype = np.uint16
    elif max(_MAX_DENSE_CODES, n) * num_classes < 1 << 32:
        dtype = np.uint32
    else:
        dtype = np.int64
    codes: np.ndarray[Any, np.dtype[np.integer[Any]]] = np.zeros(n, dtype=dtype)
    tuples = np.zeros((1, 0), dtype=np.uint8)
    space, pending = 1, 0

    def compress() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Distinct codes, their pixel counts and (sparse spaces only) each pixel's rank."""
        nonlocal tuples
        inverse = None
        if space <= max(_MAX_DENSE_CODES, n):
            counts = np.bincount(codes, minlength=space)
            present = np.flatnonzero(counts)
            counts = counts[present]
        else:  # adversarial noise: almost every pixel its own tuple; sorting is the only option
            present, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        rest, labels = present.copy(), []
        for _ in range(pending):
            labels.append((rest % num_classes).astype(np.uint8))
            rest //= num_classes
        if pending:
            tuples = np.concatenate([tuples[rest], np.stack(labels[::-1], axis=1)], axis=1)
        return present, counts, inverse

    for mask in masks:
        if space * num_classes > _MAX_DENSE_CODES:
            present, _, inverse = compress()
            if inverse is None:
                rank = np.zeros(space, dtype=codes.dtype)
                rank[present] = np.arange(len(present))
                np.take(rank, codes, out=codes)
            else:
                codes = inverse.astype(codes.dtype, copy=False).ravel()
            space, pending = len(present), 0
        codes *= num_classes
        codes += mask.ravel()
        space *= num_classes
        pending += 1
    present, counts, inverse = compress()
    if inverse is not None:
        codes, present, space = inverse.ravel(), np.arange(len(present)), len(present)
    return TupleTable(codes, tuples, counts, present, space)


def weighted_votes(tuples: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """(T, C) weighted vote totals per tuple."""
    t = len(tuples)
    votes = np.zeros((t, num_classes), dtype=np.float64)
    rows = np.arange(t)
    for k, w in enumerate(weights):
        if w:
            np.add.at(votes, (rows, tuples[:, k]), w)
    return votes


def argmax_lowest(scores: np.ndarray) -> np.ndarray:
    """Row-wise arg-max; ties (within float noise) go to the lowest class index."""
    best = scores.max(axis=1, keepdims=True)
    return np.argmax(scores >= best - 1e-9 * np.maximum(1.0, np.abs(best)), axis=1)


def strict_majority_missing(votes: np.ndarray) -> np.ndarray:
    """(T,) True where the top vote total is not strictly above the second (contested tuples)."""
    if votes.shape[1] < 2:
        return np.zeros(len(votes), dtype=bool)
    ordered = np.sort(votes, axis=1)
    return ordered[:, -1] <= ordered[:, -2]
