"""Reference aggregators, written here independently of gtseg's code (except the two libraries).

* ``MV``: plain per-pixel majority vote, ties to the lowest class index.
* ``SIMPLE``: a SIMPLE-style weighted vote after Langerak et al., "Label fusion in atlas-based
  segmentation using a selective and iterative method for performance level estimation (SIMPLE)",
  IEEE TMI 29(12), 2010: start from the majority vote; score each worker against the current
  estimate (mean Dice over the foreground classes either paints); discard workers below mean - alpha * std of
  the remaining scores (alpha = 1; a discarded worker stays out); re-estimate by a vote weighted by
  the scores; iterate until nothing changes.
* ``DS``: plain Dawid-Skene EM: a full confusion matrix per worker and a class prior, initialised
  from the vote shares, no shrinkage (a 0.01-pixel pseudo-count only keeps logs finite).
* ``STAPLE``: SimpleITK's ``MultiLabelSTAPLE`` (undecided pixels take the vote).
* ``ck-MV``, ``ck-RASA``, ``ck-EM``: crowd-kit 1.4.2's ``SegmentationMajorityVote``,
  ``SegmentationRASA``, ``SegmentationEM``. They are binary, so each class is run one-vs-rest and
  a pixel takes, among the classes that claimed it, the one most workers painted there; a pixel no
  class claimed takes the vote.

All work on the K masks of one object (uint8 (H, W) each, classes < num_classes) and return labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Masks = Sequence[np.ndarray]


@dataclass(frozen=True)
class Tuples:
    """Each pixel's K labels as a row of a table of distinct tuples with pixel counts."""

    tuples: np.ndarray  # (T, K) int64
    counts: np.ndarray  # (T,) float64
    inverse: np.ndarray  # (H*W,) tuple of each pixel
    shape: tuple[int, int]

    def to_pixels(self, per_tuple: np.ndarray) -> np.ndarray:
        return per_tuple.astype(np.uint8)[self.inverse].reshape(self.shape)


def tuple_table(masks: Masks, num_classes: int) -> Tuples:
    k = len(masks)
    stack = np.stack([np.asarray(m).ravel() for m in masks]).astype(np.int64)
    if num_classes**k < 2**62:
        codes = np.zeros(stack.shape[1], dtype=np.int64)
        for row in stack:
            codes = codes * num_classes + row
        uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        tuples = np.zeros((uniq.size, k), dtype=np.int64)
        rest = uniq.copy()
        for j in range(k - 1, -1, -1):
            tuples[:, j] = rest % num_classes
            rest //= num_classes
    else:
        tuples, inverse, counts = np.unique(stack.T, axis=0, return_inverse=True, return_counts=True)
    return Tuples(
        tuples, counts.astype(np.float64), inverse.ravel(), (int(masks[0].shape[0]), int(masks[0].shape[1]))
    )


def _votes(tuples: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    votes = np.zeros((tuples.shape[0], num_classes))
    rows = np.arange(tuples.shape[0])
    for k in range(tuples.shape[1]):
        if weights[k]:
            votes[rows, tuples[:, k]] += weights[k]  # one entry per row: no repeated index
    return votes


def majority(masks: Masks, num_classes: int) -> np.ndarray:
    table = tuple_table(masks, num_classes)
    votes = _votes(table.tuples, np.ones(len(masks)), num_classes)
    return table.to_pixels(votes.argmax(axis=1))  # argmax: ties to the lowest index


def _dice_per_worker(table: Tuples, estimate: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean Dice of each worker against ``estimate`` (per tuple) over the foreground classes (the
    segmented structures, as in label fusion; background 0 is not one) that either paints; 1 when
    neither paints any."""
    n = table.counts
    est_area = np.bincount(estimate, weights=n, minlength=num_classes)
    out = np.ones(table.tuples.shape[1])
    for k in range(table.tuples.shape[1]):
        labels = table.tuples[:, k]
        area = np.bincount(labels, weights=n, minlength=num_classes)
        inter = np.bincount(labels, weights=n * (labels == estimate), minlength=num_classes)
        present = (area + est_area) > 0
        present[0] = False
        if present.any():
            out[k] = float((2 * inter[present] / (area + est_area)[present]).mean())
    return out


def simple(masks: Masks, num_classes: int, *, alpha: float = 1.0, max_rounds: int = 20) -> np.ndarray:
    table = tuple_table(masks, num_classes)
    k = len(masks)
    active = np.ones(k, dtype=bool)
    estimate = _votes(table.tuples, np.ones(k), num_classes).argmax(axis=1)
    for _ in range(max_rounds):
        perf = _dice_per_worker(table, estimate, num_classes)
        scores = perf[active]
        threshold = scores.mean() - alpha * scores.std()
        keep = active & (perf >= threshold)
        if not keep.any():
            keep = active & (perf == scores.max())
        weights = np.where(keep, perf, 0.0)
        if weights.sum() <= 0:
            weights = keep.astype(float)
        new = _votes(table.tuples, weights, num_classes).argmax(axis=1)
        done = bool((keep == active).all() and (new == estimate).all())
        active, estimate = keep, new
        if done:
            break
    return table.to_pixels(estimate)


def dawid_skene(
    masks: Masks, num_classes: int, *, max_iter: int = 50, tol: float = 1e-6, pseudo: float = 0.01
) -> np.ndarray:
    table = tuple_table(masks, num_classes)
    tuples, n = table.tuples, table.counts
    k, c = len(masks), num_classes
    q = _votes(tuples, np.ones(k), c)
    q /= q.sum(axis=1, keepdims=True)
    for _ in range(max_iter):
        # M-step: class prior and one confusion matrix (true class -> painted class) per worker
        prior = (n[:, None] * q).sum(axis=0) + pseudo
        prior /= prior.sum()
        log_q = np.log(prior)[None, :].repeat(len(tuples), axis=0)
        nq = n[:, None] * q
        for j in range(k):
            painted = tuples[:, j]
            conf = np.stack([np.bincount(painted, weights=nq[:, t], minlength=c) for t in range(c)]) + pseudo
            conf /= conf.sum(axis=1, keepdims=True)
            log_q += np.log(conf[:, painted]).T
        # E-step
        log_q -= log_q.max(axis=1, keepdims=True)
        new = np.exp(log_q)
        new /= new.sum(axis=1, keepdims=True)
        change = float(np.abs(new - q).max())
        q = new
        if change < tol:
            break
    return table.to_pixels(q.argmax(axis=1))


def staple(masks: Masks, num_classes: int) -> np.ndarray:
    import SimpleITK as sitk

    images = [sitk.GetImageFromArray(np.ascontiguousarray(m)) for m in masks]
    undecided = 255
    filt = sitk.MultiLabelSTAPLEImageFilter()
    filt.SetLabelForUndecidedPixels(undecided)
    out = sitk.GetArrayFromImage(filt.Execute(images)).astype(np.uint8)
    vote = majority(masks, num_classes)
    return np.where(out == undecided, vote, out).astype(np.uint8)


def _crowdkit(aggregator: Callable[[], object]) -> Callable[[Masks, int], np.ndarray]:
    def run(masks: Masks, num_classes: int) -> np.ndarray:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        k = len(masks)
        shape = masks[0].shape
        score = np.zeros((num_classes, *shape), dtype=np.int16)
        workers = [f"w{i}" for i in range(k)]
        for cls in range(num_classes):
            binary = [np.asarray(m) == cls for m in masks]
            votes = np.sum(binary, axis=0, dtype=np.int16)
            if not votes.any():
                continue
            frame = pd.DataFrame({"task": ["t"] * k, "worker": workers, "segmentation": binary})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted: Any = aggregator().fit(frame)  # type: ignore[attr-defined]
                claimed = np.asarray(fitted.segmentations_.loc["t"]).astype(bool)
            score[cls] = votes + claimed.astype(np.int16) * (k + 1)
        return score.argmax(axis=0).astype(np.uint8)

    return run


def _ck(name: str) -> Callable[[], object]:
    def make() -> object:
        import crowdkit.aggregation as ca

        return getattr(ca, name)()

    return make


@dataclass(frozen=True)
class Reference:
    name: str
    run: Callable[[Masks, int], np.ndarray]
    small_only: bool  # too slow for the full-size track
    requires: str | None = None  # the import it needs


REFERENCES: dict[str, Reference] = {
    "MV": Reference("MV", majority, False),
    "SIMPLE": Reference("SIMPLE", simple, False),
    "DS": Reference("DS", dawid_skene, False),
    "STAPLE": Reference("STAPLE", staple, False, "SimpleITK"),
    "ck-MV": Reference("ck-MV", _crowdkit(_ck("SegmentationMajorityVote")), True, "crowdkit.aggregation"),
    "ck-RASA": Reference("ck-RASA", _crowdkit(_ck("SegmentationRASA")), True, "crowdkit.aggregation"),
    "ck-EM": Reference("ck-EM", _crowdkit(_ck("SegmentationEM")), True, "crowdkit.aggregation"),
}


def available(name: str) -> str | None:
    """None when reference ``name`` can run here, else why not."""
    needs = REFERENCES[name].requires
    if needs is None:
        return None
    try:
        __import__(needs)
    except Exception as exc:  # an optional dependency may fail in any way on import
        return f"{needs} not importable ({type(exc).__name__}: {exc}); install bench/requirements.txt"
    return None
