"""Choosing how to consolidate one object from the object's own evidence.

The default is the reliability-weighted vote (``reliability``). The other candidates are the
plain vote, SIMPLE's selection of the best workers (Langerak et al. 2010), Dawid-Skene EM, and EM
deciding only where the trusted workers have no strict majority. They are judged by held-out
workers: each of the most reliable workers (a "judge") is left out in turn, every candidate is
rebuilt from the others, and scored by its mean IoU with the judge, each class weighted by the
judge's own sensitivity to it. A candidate replaces the weighted vote only when the judges find it
*materially* better (by more than ``MATERIAL_DIFFERENCE``, most of their weight agreeing): held-out
workers share the crowd's systematic errors (they miss the same poles), so their preference is
evidence when it is clear, never by a hair.

Pixels nothing in the votes decides (two workers whose reliabilities nothing tells apart,
disagreeing) follow their neighbourhood over a box as wide as half their band (``band_radius``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gtseg.core.consolidation.dawid_skene import SHRINKAGE_FRACTION, dawid_skene
from gtseg.core.consolidation.neighbourhood import PixelTuples
from gtseg.core.consolidation.reliability import Reliability, WorkerPrior, estimate_reliability, soft_votes
from gtseg.core.consolidation.tuples import argmax_lowest, strict_majority_missing

# The candidates. "ties-em" lets EM decide only where the trusted workers have no strict majority
# (with few workers their confusion matrices are weakly identified), "em" everywhere.
VOTE, WEIGHTED, SELECTED, TIES_EM, EM = "vote", "weighted", "selected", "ties-em", "em"
CANDIDATES = (VOTE, WEIGHTED, SELECTED, TIES_EM, EM)
# A candidate is only "better" when the judges' mean IoU with it is higher by more than this: the
# judges are noisy copies of the truth, and a difference this small is within their own noise.
MATERIAL_DIFFERENCE = 0.01
MIN_WORKERS_FOR_EM = 3
# Three judges are the fewest whose weighted majority is not one worker's view, and each judge
# costs one rebuild of every candidate. Against five, `make bench` measured no loss in any
# error model (per-cell changes within -0.006..+0.012 mean IoU at K=5 and 9) for 40 % less work.
MAX_JUDGES = 3
# EM as a candidate runs as many iterations as it does when the judges rebuild it, so the estimate
# applied is the estimator they compared (not a longer-run variant of it). `make bench`: changing
# the applied EM from 25 iterations to these 10 moved no cell by more than 0.001 mean IoU.
EM_ITERATIONS = 10


def judged_iou(
    judge: np.ndarray, estimate: np.ndarray, counts: np.ndarray, num_classes: int, trust: np.ndarray
) -> float:
    """A judge's mean IoU with an estimate, each class weighted by how reliable the judge is on it.

    Class-balanced, as a mean IoU is: a small class (a pole, a sign) counts as much as the road.
    Weighted by the judge's own sensitivity per class (from the whole crowd's EM), because a worker
    who misses poles would otherwise vote against every estimate that finds them."""
    joint = np.bincount(
        judge.astype(np.int64) * num_classes + estimate, weights=counts, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    inter = np.diag(joint)
    union = joint.sum(axis=0) + joint.sum(axis=1) - inter
    present = union > 0
    weights = trust[present]
    if not present.any() or weights.sum() <= 0:
        return 1.0
    return float((inter[present] / union[present]) @ weights / weights.sum())


@dataclass(frozen=True)
class TupleEstimate:
    """One candidate's answer per tuple, and the trusted workers' weights it came from."""

    labels: np.ndarray  # (T,) class per tuple
    weights: np.ndarray  # (K,) vote weights of the workers it trusts (0 = not)
    scores: np.ndarray  # (T, C) the evidence behind the labels (for ties and confidence)
    sensitivity: np.ndarray | None = None  # (K, C) EM's P(worker says c | truth is c); EM only


def tuple_candidates(
    tuples: np.ndarray,
    counts: np.ndarray,
    num_classes: int,
    *,
    voters: np.ndarray,
    informative: np.ndarray,
    priors: Sequence[WorkerPrior | None] | None,
) -> tuple[dict[str, TupleEstimate], Reliability]:
    """Every candidate from the workers in ``voters`` (K bool); ``informative`` may get weights."""
    # the plain vote of the workers whose masks carry information: one class painted everywhere
    # is never a vote worth having, even as a fallback
    voting = voters & informative if (voters & informative).any() else voters
    equal = voting.astype(np.float64)
    vote_scores = soft_votes(tuples, equal, num_classes)
    out = {VOTE: TupleEstimate(argmax_lowest(vote_scores), equal, vote_scores)}
    reliability = estimate_reliability(
        tuples, counts, num_classes, candidates=voters & informative, priors=priors
    )
    weights = reliability.weight
    if int((voters & informative).sum()) == 1:
        # the only worker whose mask carries information (the others painted one class each):
        # nobody to compare with, nobody to prefer over
        weights = (voters & informative).astype(np.float64)
    if not weights.any():
        return out, reliability
    weighted_scores = soft_votes(tuples, weights, num_classes)
    # Every candidate's labels break equal evidence as the applied estimate does (``break_ties``:
    # the class most of the voters painted, then the lowest index), so the judges score what
    # would be applied. A 1e-9 tie-break term would vanish in ``argmax_lowest``'s tolerance.
    everyone_scores = soft_votes(tuples, voters.astype(np.float64), num_classes)
    weighted_labels = break_ties(weighted_scores, everyone_scores)
    out[WEIGHTED] = TupleEstimate(weighted_labels, weights, weighted_scores)
    trusted = weights > 0
    selected = _selected(reliability.kappa, trusted)
    if selected is not None:
        selected_weights = np.where(selected, weights, 0.0)
        selected_scores = soft_votes(tuples, selected_weights, num_classes)
        out[SELECTED] = TupleEstimate(
            break_ties(selected_scores, everyone_scores), selected_weights, selected_scores
        )
    # Confusion matrices are identifiable from three conditionally independent workers up; with
    # two, EM would only restate which of the two it happened to start closer to.
    if int(trusted.sum()) >= MIN_WORKERS_FOR_EM:
        posterior, log_confusion, _ = dawid_skene(
            tuples,
            counts,
            weighted_labels,
            trusted,
            num_classes,
            shrinkage=SHRINKAGE_FRACTION * float(counts.sum()),
            max_iterations=EM_ITERATIONS,
        )
        sensitivity = np.zeros((tuples.shape[1], num_classes))
        sensitivity[trusted] = np.exp(np.diagonal(log_confusion, axis1=1, axis2=2))
        out[EM] = TupleEstimate(break_ties(posterior, everyone_scores), weights, posterior, sensitivity)
        undecided = strict_majority_missing(soft_votes(tuples, trusted.astype(np.float64), num_classes))
        ties_scores = np.where(undecided[:, None], posterior, weighted_scores)
        out[TIES_EM] = TupleEstimate(break_ties(ties_scores, everyone_scores), weights, ties_scores)
    return out, reliability


def _selected(kappa: np.ndarray, trusted: np.ndarray) -> np.ndarray | None:
    """SIMPLE's selection (Langerak et al. 2010): the trusted workers whose agreement is not below
    the trusted workers' mean by more than one standard deviation; None when that drops nobody."""
    if int(trusted.sum()) < 3:
        return None
    scores = kappa[trusted]
    keep = trusted & (kappa >= scores.mean() - scores.std())
    return keep if int(keep.sum()) < int(trusted.sum()) else None


@dataclass
class Judgement:
    """What the held-out workers said: each candidate's mean IoU with each judge."""

    per_judge: dict[str, list[float]] = field(default_factory=dict)  # candidate -> score per judge
    weights: list[float] = field(default_factory=list)  # judge weights, in the same order

    def score(self, name: str) -> float:
        return float(np.average(self.per_judge[name], weights=self.weights))

    def gain(self, name: str, over: str) -> float | None:
        """How much better the judges find ``name`` than ``over`` (their weighted mean IoU), when
        the gain is material (more than ``MATERIAL_DIFFERENCE``) and most of their weight sees it;
        None otherwise."""
        if len(self.weights) < 2 or name not in self.per_judge or over not in self.per_judge:
            return None  # one judge's view is that judge's quirks
        diff = np.asarray(self.per_judge[name]) - np.asarray(self.per_judge[over])
        w = np.asarray(self.weights) / np.sum(self.weights)
        mean = float(w @ diff)
        return mean if mean > MATERIAL_DIFFERENCE and float(w[diff > 0].sum()) > 0.5 else None

    def choose(self, available: Sequence[str]) -> str:
        """The reliability-weighted vote, unless the judges find another candidate materially
        better (then the one they find best). Held-out workers share the crowd's systematic errors,
        so their preference is taken only when it is clear, never by a hair."""
        default = WEIGHTED if WEIGHTED in available else VOTE
        gains = {name: self.gain(name, default) for name in available if name != default}
        better = {name: g for name, g in gains.items() if g is not None}
        return max(better, key=lambda n: better[n]) if better else default


def judge_candidates(
    tuples: np.ndarray,
    counts: np.ndarray,
    num_classes: int,
    *,
    informative: np.ndarray,
    judge_weight: np.ndarray,
    priors: Sequence[WorkerPrior | None] | None,
    sensitivity: np.ndarray | None = None,
    is_consensus: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> tuple[Judgement, dict[int, dict[str, TupleEstimate]]]:
    """Score every candidate on every judge (a worker with ``judge_weight`` > 0) left out.
    Returns the judgement and, per judge, the candidates built without it (for the neighbourhood).

    A judge is predicted from the others, so it judges only when the others are a consensus
    without it (``is_consensus(trusted, voters)``, the rule the whole crowd passed): with two real
    workers among blob painters, leaving one out leaves the blob painters' chance agreement, and
    candidates built from that say nothing about which estimate is better."""
    k_workers = tuples.shape[1]
    built: dict[int, dict[str, TupleEstimate]] = {}
    everyone = np.ones(k_workers, dtype=bool)
    # the most reliable workers judge (``MAX_JUDGES`` of them)
    ranked = [int(j) for j in np.argsort(-judge_weight, kind="stable") if judge_weight[j] > 0]
    for j in ranked[:MAX_JUDGES]:
        others = everyone.copy()
        others[j] = False
        if not (others & informative).any():
            continue
        rebuilt, _ = tuple_candidates(
            tuples,
            counts,
            num_classes,
            voters=others,
            informative=informative,
            priors=priors,
        )
        weighted = rebuilt.get(WEIGHTED)
        if is_consensus is not None and (weighted is None or not is_consensus(weighted.weights > 0, others)):
            continue
        built[int(j)] = rebuilt
    judgement = Judgement(weights=[float(judge_weight[j]) for j in built])
    # a candidate some judge could not build (too few trusted workers without it) is not compared
    shared = [n for n in CANDIDATES if built and all(n in c for c in built.values())]
    trust = sensitivity if sensitivity is not None else np.ones((k_workers, num_classes))
    for name in shared:
        judgement.per_judge[name] = [
            judged_iou(tuples[:, j], candidates[name].labels, counts, num_classes, trust[j])
            for j, candidates in built.items()
        ]
    return judgement, built


# --------------------------------------------------------------------------- the neighbourhood


# Evidence within this fraction of the leading class's counts as equal: weights estimated from the
# same masks differ in their last digits without one worker being more reliable than the other.
_EQUAL_EVIDENCE = 1e-6


def _level(scores: np.ndarray) -> np.ndarray:
    """(T, C) True for the classes whose evidence equals the leading class's."""
    top = scores.max(axis=1, keepdims=True)
    return (top - scores <= _EQUAL_EVIDENCE * np.maximum(np.abs(top), 1e-12)) & (top > 0)


def undecided_tuples(scores: np.ndarray) -> np.ndarray:
    """(T,) True where the estimate's two leading classes have equal evidence: two workers whose
    reliabilities nothing tells apart, disagreeing. Nothing in the trusted votes decides these."""
    if scores.shape[1] < 2:
        return np.zeros(len(scores), dtype=bool)
    return _level(scores).sum(axis=1) >= 2


def break_ties(scores: np.ndarray, vote_scores: np.ndarray) -> np.ndarray:
    """(T,) each tuple's class: the leading one, and among classes of equal evidence the one
    most workers painted (the untrusted included: their votes are all the evidence left), then
    the lowest index. Float noise in the weights never picks the winner."""
    level = _level(scores)
    labels = argmax_lowest(np.where(level, vote_scores, -np.inf))
    return np.where(level.any(axis=1), labels, argmax_lowest(scores))


def trusted_share(tuples: np.ndarray, trusted: np.ndarray, num_classes: int) -> np.ndarray:
    """(T, C) each class's share of the trusted workers' votes."""
    share = soft_votes(tuples, trusted.astype(np.float64), num_classes)
    return share / np.maximum(share.sum(axis=1, keepdims=True), 1e-12)


def band_radius(pixels: PixelTuples, undecided: np.ndarray, max_radius: int) -> int:
    """The box radius that lets an undecided pixel see past the middle of its band.

    Two outlines of one boundary leave a band between them; its width is about twice its area
    over its boundary length (for a band of width w and length L: area wL, boundary 2L). A box
    reaching half a width across sees both sides of the band, so the two outlines meet in its
    middle; a wider box would also erode what only one worker painted."""
    if max_radius <= 0:
        return 0
    tied = undecided[pixels.ranks]
    where = np.flatnonzero(tied)
    if where.size == 0:
        return 0
    height, width = pixels.shape
    ys, xs = np.divmod(where, width)
    tied_2d = tied.reshape(height, width)
    on_edge = np.zeros(where.size, dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        neighbour_tied = np.ones(where.size, dtype=bool)  # the image border does not end a band
        neighbour_tied[inside] = tied_2d[ny[inside], nx[inside]]
        on_edge |= ~neighbour_tied
    edge = int(on_edge.sum())
    band_width = 2.0 * where.size / edge if edge else float(max_radius) * 2
    return int(np.clip(np.ceil(band_width / 2.0), 1, max_radius))
