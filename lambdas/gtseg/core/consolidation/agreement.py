"""Who agrees with whom: Cohen's kappa between workers and against an estimate, and SIMPLE-style
filtering (Langerak et al. 2010) of the workers a consensus can be built from."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gtseg.core.consolidation.tuples import argmax_lowest, weighted_votes
from gtseg.core.metrics import cohen_kappa

# A worker is dropped when its kappa is below this fraction of the best worker's kappa, or below
# the absolute floor (chance-level agreement).
RELATIVE_KAPPA_CUTOFF = 0.5
ABSOLUTE_KAPPA_FLOOR = 0.15


@dataclass(frozen=True)
class Filtered:
    """The filtered consensus: an estimate per tuple, the workers it trusts, the rounds it took."""

    estimate: np.ndarray  # (T,) class per tuple
    included: np.ndarray  # (K,) bool
    rounds: int


def worker_kappas(
    tuples: np.ndarray, counts: np.ndarray, estimate: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa and pixel accuracy of every worker against ``estimate`` (per tuple)."""
    total = counts.sum()
    kappas, accs = [], []
    est_hist = np.bincount(estimate, weights=counts, minlength=num_classes) / total
    for k in range(tuples.shape[1]):
        lab = tuples[:, k]
        p_o = counts[lab == estimate].sum() / total
        lab_hist = np.bincount(lab, weights=counts, minlength=num_classes) / total
        p_e = float(est_hist @ lab_hist)
        kappa = 0.0 if p_e >= 1.0 - 1e-12 else (p_o - p_e) / (1.0 - p_e)
        kappas.append(float(kappa))
        accs.append(float(p_o))
    return np.array(kappas), np.array(accs)


def pairwise_kappas(tuples: np.ndarray, counts: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) Cohen's kappa between every pair of workers (diagonal 1)."""
    k_workers = tuples.shape[1]
    out = np.eye(k_workers)
    for i in range(k_workers):
        for j in range(i + 1, k_workers):
            kappa = worker_kappas(tuples[:, [i]], counts, tuples[:, j].astype(np.int64), num_classes)[0][0]
            out[i, j] = out[j, i] = kappa
    return out


# The displacements of ``agree_beyond_displacement``: every combination of 1/6 .. 5/6 of the
# height and of the width (25), so a pair of unrelated masks passes about 1 time in 26.
_DISPLACEMENT_FRACTIONS = (1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6)


def agree_beyond_displacement(first: np.ndarray, second: np.ndarray, num_classes: int) -> bool:
    """Whether two (H, W) masks agree (Cohen's kappa) as painted at least as well as with one
    displaced against the other by any of 25 cyclic shifts.

    Kappa's chance level assumes independent pixels; masks are made of regions, so two masks that
    have nothing to do with each other (a painted scene and random blobs) agree at kappa up to
    about +-0.15 just by where their regions happen to fall. A displaced copy keeps both masks'
    shapes and class areas and loses only their alignment: it is chance for these shapes. Masks
    too small to displace count as agreeing."""
    height, width = first.shape
    if min(height, width) < 2 * len(_DISPLACEMENT_FRACTIONS):
        return True
    # cohen_kappa is clipped at 0: a displaced copy can only beat a pair that agrees beyond 0
    in_place = cohen_kappa(first, second, num_classes)
    for fy in _DISPLACEMENT_FRACTIONS:
        for fx in _DISPLACEMENT_FRACTIONS:
            shifted = np.roll(second, (round(fy * height), round(fx * width)), axis=(0, 1))
            if cohen_kappa(first, shifted, num_classes) > in_place:
                return False
    return True


# Two trusted workers are checked against displaced copies of each other on at most this many
# pixels (a regular subsample): region shapes survive it, and it costs a few milliseconds.
DISPLACEMENT_CHECK_PIXELS = 1 << 16

SampledMasks = Callable[[Sequence[int], int], Sequence[np.ndarray]]


def sampling_step(shape: tuple[int, int], max_pixels: int) -> int:
    """The stride of a regular grid over ``shape`` with at most ``max_pixels`` pixels."""
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / max_pixels)))


def is_consensus(
    trusted: np.ndarray,
    informative: np.ndarray,
    sampled_masks: SampledMasks,
    num_classes: int,
    *,
    backed_by_priors: bool = False,
) -> bool:
    """Whether the trusted workers (K bool) are a consensus: two or more who agree beyond chance,
    the only informative worker, or one worker a record from elsewhere backs.

    With exactly two trusted workers every pixel they disagree on is a tie, so a consensus of the
    two is a patchwork unless they really agree: beyond what displaced copies of their masks show
    (``agree_beyond_displacement``), not just above kappa's pixel-by-pixel chance level. One
    worker left trusted among several informative ones with no record from elsewhere is where the
    reliability rounds ended, not anyone agreeing with anyone.
    ``sampled_masks(workers, max_pixels)`` gives the workers' masks on a regular grid."""
    pair = np.flatnonzero(trusted)
    if len(pair) < 2:
        return int(informative.sum()) < 2 or backed_by_priors
    if len(pair) > 2:
        return True
    first, second = sampled_masks(pair.tolist(), DISPLACEMENT_CHECK_PIXELS)
    return agree_beyond_displacement(first, second, num_classes)


def no_consensus_pick(tuples: np.ndarray, counts: np.ndarray, informative: np.ndarray) -> int:
    """The one mask to keep when no two workers agree beyond chance, of the ``informative`` ones.

    Then at most one mask is a real annotation (two would agree beyond chance), so most of the
    workers are bad. With three or more informative masks, at least two are noise, and noise of
    one kind (blobs, near-empty submissions) resembles itself: similar class make-up, so the
    masks agree on many pixels without agreeing beyond chance. A real annotation follows the
    scene and resembles none of them: keep the informative mask that agrees least with the other
    informative masks. Two informative masks agree with each other equally from both sides, so
    that cannot single one out (nor can masks of one class that agree the image is empty): keep
    the one that agrees most with all the other workers, as a single answer the best predictor of
    a held-out worker. Ties go to the lowest index."""
    candidates = np.flatnonzero(informative)
    # masks of one class are informative only as the consensus that the image is that class
    # (``informative_workers``): then they are the answer, not noise alike
    constant = constant_classes(tuples)
    odd_one_out = len(candidates) >= 3 and all(constant[k] < 0 for k in candidates)
    others = informative if odd_one_out else np.ones(tuples.shape[1], dtype=bool)
    score = np.full(tuples.shape[1], -np.inf)
    for k in candidates:
        same = tuples[:, others] == tuples[:, [k]]
        agreed = float(counts @ same.sum(axis=1)) - float(counts.sum())  # minus k's own column
        score[k] = -agreed if odd_one_out else agreed
    return int(np.argmax(score))


def constant_classes(tuples: np.ndarray) -> list[int]:
    """Per worker, the one class its mask has everywhere, or -1 for a mask of several."""
    return [int(col[0]) if (col == col[0]).all() else -1 for col in tuples.T]


def informative_workers(tuples: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Workers whose mask carries information about where things are.

    A mask of one class everywhere says nothing about where anything is, so it is not
    informative. Two or more such masks of the same class are a consensus only when the other
    workers agree the image is mostly that class (an image with nothing to label, one worker's
    stray strokes): two empty submissions do not outvote a worker who painted the scene."""
    constant_class = constant_classes(tuples)
    structured = [k for k, c in enumerate(constant_class) if c < 0]
    total = max(float(counts.sum()), 1e-12)
    out = np.ones(len(constant_class), dtype=bool)
    for k, c in enumerate(constant_class):
        if c < 0:
            continue
        agreed = constant_class.count(c) > 1
        mostly_that_class = all(float(counts[tuples[:, s] == c].sum()) >= total / 2 for s in structured)
        out[k] = agreed and mostly_that_class
    return out if out.any() else np.ones_like(out)


def simple_filter(
    tuples: np.ndarray, counts: np.ndarray, num_classes: int, max_rounds: int = 5
) -> Filtered | None:
    """SIMPLE-style iterative filtering.

    The first consensus comes from workers who agree with at least one other worker beyond
    chance (their best pairwise kappa), not from the raw vote: when bad workers are the
    majority the raw vote is already corrupted and would favour them. ``None`` when no two
    workers agree beyond chance (no consensus to learn from: the caller falls back).
    """
    informative = informative_workers(tuples, counts)
    if informative.sum() == 1:
        return Filtered(tuples[:, informative][:, 0].astype(np.int64), informative, 0)
    pair = pairwise_kappas(tuples, counts, num_classes)
    np.fill_diagonal(pair, -np.inf)
    pair[~informative, :] = pair[:, ~informative] = -np.inf
    partner = pair.max(axis=1)
    best = partner.max()
    if best < ABSOLUTE_KAPPA_FLOOR:
        return None
    included = (partner >= ABSOLUTE_KAPPA_FLOOR) & (partner >= RELATIVE_KAPPA_CUTOFF * best)
    estimate = argmax_lowest(weighted_votes(tuples, included.astype(float), num_classes))
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - rounds is reported
        kappas, _ = worker_kappas(tuples, counts, estimate, num_classes)
        best = kappas[included].max()
        keep = (kappas >= RELATIVE_KAPPA_CUTOFF * best) & (kappas >= ABSOLUTE_KAPPA_FLOOR)
        if not keep.any():
            keep = included
        # ties between equally many trusted votes go to the better-agreeing workers
        tie_break = 1e-6 * weighted_votes(tuples, np.where(keep, np.clip(kappas, 0.0, 1.0), 0.0), num_classes)
        new_estimate = argmax_lowest(weighted_votes(tuples, keep.astype(float), num_classes) + tie_break)
        if np.array_equal(keep, included) and np.array_equal(new_estimate, estimate):
            break
        included, estimate = keep, new_estimate
    return Filtered(estimate, included, rounds)
