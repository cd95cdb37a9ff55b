"""Who agrees with whom: Cohen's kappa between workers and against an estimate, and SIMPLE-style
filtering (Langerak et al. 2010) of the workers a consensus can be built from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtseg.core.consolidation.tuples import argmax_lowest, weighted_votes

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


def informative_workers(tuples: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Workers whose mask carries information about where things are.

    A mask of one class everywhere says nothing about where anything is, so it is not
    informative. Two or more such masks of the same class are a consensus only when the other
    workers agree the image is mostly that class (an image with nothing to label, one worker's
    stray strokes): two empty submissions do not outvote a worker who painted the scene."""
    constant_class = [int(col[0]) if (col == col[0]).all() else -1 for col in tuples.T]
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
