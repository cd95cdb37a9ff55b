"""``consolidate_masks``: one object's worker masks -> one mask with confidence and worker scores.

Each method is a strategy that turns the object's tuple table (a ``Crowd``) into an ``Estimate``:
per-tuple class scores and the workers it trusted. What follows is shared by every method: the
arg-max decision (ties to the lowest class), the neighbourhood step for contested pixels when the
strategy asks for it, confidence, and each worker's quality against the final mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gtseg.core.consolidation.agreement import (
    informative_workers,
    is_consensus,
    no_consensus_pick,
    pairwise_kappas,
    sampling_step,
    simple_filter,
    worker_kappas,
)
from gtseg.core.consolidation.dawid_skene import SHRINKAGE_FRACTION, dawid_skene
from gtseg.core.consolidation.evidence import (
    EM,
    WEIGHTED,
    band_radius,
    break_ties,
    judge_candidates,
    trusted_share,
    tuple_candidates,
    undecided_tuples,
)
from gtseg.core.consolidation.methods import AppliedMethod, Method
from gtseg.core.consolidation.neighbourhood import (
    DEFAULT_NEIGHBOURHOOD_RADIUS,
    PixelTuples,
    resolve_contested,
)
from gtseg.core.consolidation.reliability import WorkerPrior, estimate_reliability, priors_for
from gtseg.core.consolidation.tuples import (
    TupleTable,
    argmax_lowest,
    encode_tuples,
    strict_majority_missing,
    weighted_votes,
)
from gtseg.core.metrics import cohen_kappa, pixel_agreement

# At or below this many trusted workers EM may not overrule a strict majority of them, and
# (gtseg) contested pixels are decided by their neighbourhood.
MAX_WORKERS_FOR_MAJORITY_GUARD = 3
# Batch prior: a worker whose mean quality on the batch's other objects reaches this is trusted
# on an object that has no consensus of its own.
PRIOR_TRUST_MIN = 0.5


@dataclass(frozen=True)
class WorkerQuality:
    worker_id: str
    quality: float  # max(0, kappa) against the final consensus, in [0, 1]
    agreement: float  # pixel accuracy against the final consensus
    weight: float  # relative influence in the final estimate (0 when excluded)
    excluded: bool


@dataclass(frozen=True)
class ConsolidationResult:
    labels: np.ndarray  # (H, W) uint8
    class_confidence: tuple[float, ...]
    image_confidence: float
    workers: tuple[WorkerQuality, ...]
    method: AppliedMethod
    unanimous_fraction: float
    class_fractions: tuple[float, ...] = ()
    distinct_tuples: int = 0
    iterations: int = 0


@dataclass(frozen=True)
class Crowd:
    """One object's workers as the tuple table every strategy works on."""

    table: TupleTable
    num_classes: int
    worker_ids: tuple[str, ...]
    shape: tuple[int, int]
    worker_priors: Mapping[str, WorkerPrior] | None = None
    max_radius: int = DEFAULT_NEIGHBOURHOOD_RADIUS

    @property
    def tuples(self) -> np.ndarray:
        return self.table.tuples

    @property
    def counts(self) -> np.ndarray:
        return self.table.counts.astype(np.float64)

    @property
    def size(self) -> int:
        return len(self.worker_ids)

    def votes(self, included: np.ndarray) -> np.ndarray:
        """(T, C) vote totals of the ``included`` workers."""
        return weighted_votes(self.tuples, included.astype(float), self.num_classes)

    def everyone(self) -> np.ndarray:
        return np.ones(self.size, dtype=bool)

    @cached_property
    def informative(self) -> np.ndarray:
        """(K,) the workers whose masks carry information (``informative_workers``)."""
        return informative_workers(self.tuples, self.counts)

    def sampled_masks(self, workers: Sequence[int], max_pixels: int) -> list[np.ndarray]:
        """The masks of ``workers`` on a regular grid of at most ``max_pixels`` pixels."""
        step = sampling_step(self.shape, max_pixels)
        codes = self.table.codes.reshape(self.shape)[::step, ::step]
        index = np.searchsorted(self.table.present, codes)
        return [self.tuples[index, k] for k in workers]


@dataclass(frozen=True)
class Contested:
    """Tuples whose trusted workers have no strict majority, and the trusted vote share per class,
    for the neighbourhood step."""

    tuples: np.ndarray  # (T,) bool
    share: np.ndarray  # (T, C)
    radius: int = DEFAULT_NEIGHBOURHOOD_RADIUS


@dataclass(frozen=True)
class Estimate:
    scores: np.ndarray  # (T, C): the decision is the arg-max per tuple
    included: np.ndarray  # (K,) bool: the workers the estimate trusts
    applied: AppliedMethod
    iterations: int = 0
    confidence_scale: float = 1.0  # < 1 when the agreement is no better than chance
    contested: Contested | None = None  # set: contested pixels are decided by their neighbourhood
    choice: str | None = None  # gtseg: the candidate the held-out workers chose
    weights: np.ndarray | None = None  # (K,) vote weights, when not equal among the included
    labels: np.ndarray | None = None  # (T,) the decision, when not simply the scores' arg-max
    checked_by: np.ndarray | None = None  # (K,) whose masks confidence compares with, if not ``included``


Strategy = Callable[[Crowd], Estimate]


def _majority(crowd: Crowd) -> Estimate:
    everyone = crowd.everyone()
    return Estimate(crowd.votes(everyone) / crowd.size, everyone, AppliedMethod.MAJORITY)


def _prior_trusted(crowd: Crowd) -> np.ndarray | None:
    """The workers the batch trusts, of those whose mask here carries information: a worker the
    batch never measured has the batch's average record, which says nothing about a mask of one
    class everywhere."""
    if not crowd.worker_priors:
        return None
    priors = crowd.worker_priors
    trusted = crowd.informative & np.array(
        [w in priors and priors[w].kappa >= PRIOR_TRUST_MIN for w in crowd.worker_ids], dtype=bool
    )
    return trusted if trusted.any() else None


def _without_consensus(crowd: Crowd, method: Method) -> Estimate:
    """No two workers agree beyond chance. The same workers may have been scored on the batch's
    other objects: trust the ones who agreed with their crowds there.

    Otherwise at most one of the masks is a real annotation (two real ones would agree beyond
    chance), and a per-pixel vote between masks that are independent of each other is a patchwork
    worse than any of them. gtseg keeps one whole mask of those that carry information (not one
    class everywhere): the odd one out among three or more, else the one that agrees with the
    other workers on the most pixels (``no_consensus_pick``). SIMPLE keeps the plain vote."""
    trusted = _prior_trusted(crowd)
    if trusted is not None:
        trusted_votes = crowd.votes(trusted)
        n_trusted = int(trusted.sum())
        return Estimate(
            trusted_votes / n_trusted,
            trusted,
            AppliedMethod.with_batch_prior(method),
            contested=_contested(trusted_votes, n_trusted) if method is Method.GTSEG else None,
        )
    if method is Method.GTSEG:
        informative = crowd.informative
        kept = np.zeros(crowd.size, dtype=bool)
        kept[no_consensus_pick(crowd.tuples, crowd.counts, informative)] = True
        # Confidence compares the kept mask with every informative mask, itself included: with a
        # real annotation and n - 1 noise masks that is about 1/n, which is what keeping one of n
        # masks nothing tells apart for sure is worth; 0.0 with one informative mask (nobody to check)
        return Estimate(
            crowd.votes(kept), kept, AppliedMethod.GTSEG_NO_CONSENSUS_PICK, checked_by=informative
        )
    everyone = crowd.everyone()
    # Agreement here is no better than chance (e.g. two spammers painting the same class): the
    # confidence says so, so the object stands out for review.
    pair = pairwise_kappas(crowd.tuples, crowd.counts, crowd.num_classes)
    np.fill_diagonal(pair, 0.0)
    return Estimate(
        crowd.votes(everyone) / crowd.size,
        everyone,
        AppliedMethod.no_consensus_vote(method),
        confidence_scale=float(np.clip(pair.max(), 0.0, 1.0)),
    )


def _contested(trusted_votes: np.ndarray, n_trusted: int) -> Contested | None:
    if n_trusted > MAX_WORKERS_FOR_MAJORITY_GUARD:
        return None
    # the fallbacks' neighbourhood: the radius the first version of gtseg fixed for every object
    return Contested(strict_majority_missing(trusted_votes), trusted_votes / max(n_trusted, 1), radius=2)


def _simple(crowd: Crowd) -> Estimate:
    filtered = simple_filter(crowd.tuples, crowd.counts, crowd.num_classes)
    if filtered is None:
        return _without_consensus(crowd, Method.SIMPLE)
    included = filtered.included
    return Estimate(
        crowd.votes(included) / included.sum(), included, AppliedMethod.SIMPLE, iterations=filtered.rounds
    )


def _em(
    crowd: Crowd,
    init: np.ndarray,
    included: np.ndarray,
    applied: AppliedMethod,
    *,
    iterations: int,
    neighbourhood: bool,
) -> Estimate:
    """Regularised Dawid-Skene over ``included``, from ``init``. With so few trusted workers that the
    confusion matrices are weakly identified, EM only decides where they have no strict majority."""
    trusted_votes = crowd.votes(included)
    n_trusted = int(included.sum())
    if n_trusted >= 2:
        counts = crowd.counts
        scores, _, em_iterations = dawid_skene(
            crowd.tuples,
            counts,
            init,
            included,
            crowd.num_classes,
            shrinkage=SHRINKAGE_FRACTION * counts.sum(),
        )
        iterations += em_iterations
        if n_trusted <= MAX_WORKERS_FOR_MAJORITY_GUARD:
            strict = ~strict_majority_missing(trusted_votes)
            winners = trusted_votes.argmax(axis=1)
            scores[strict] = 0.0
            scores[strict, winners[strict]] = 1.0
    else:
        scores = trusted_votes
    contested = _contested(trusted_votes, n_trusted) if neighbourhood else None
    return Estimate(scores, included, applied, iterations=iterations, contested=contested)


def _dawid_skene(crowd: Crowd) -> Estimate:
    """Plain (regularised) Dawid-Skene over everyone, from the majority vote."""
    everyone = crowd.everyone()
    init = argmax_lowest(crowd.votes(everyone))
    return _em(crowd, init, everyone, AppliedMethod.DAWID_SKENE, iterations=0, neighbourhood=False)


def _gtseg(crowd: Crowd) -> Estimate:
    """The held-out workers choose among the plain vote, the reliability-weighted vote and
    Dawid-Skene EM (``evidence``); pixels nothing in the votes decides follow their neighbourhood,
    over a box as wide as their band (``band_radius``)."""
    tuples, counts, num_classes = crowd.tuples, crowd.counts, crowd.num_classes
    informative = crowd.informative
    priors = priors_for(crowd.worker_ids, crowd.worker_priors)
    everyone = crowd.everyone()
    candidates, reliability = tuple_candidates(
        tuples, counts, num_classes, voters=everyone, informative=informative, priors=priors
    )
    if WEIGHTED not in candidates or not _consensus(
        crowd, candidates[WEIGHTED].weights > 0, informative, priors
    ):
        # nobody agrees with anybody beyond chance
        return _without_consensus(crowd, Method.GTSEG)
    judge_weight = reliability.weight
    em = candidates.get(EM)
    judgement, _ = judge_candidates(
        tuples,
        counts,
        num_classes,
        informative=informative,
        judge_weight=judge_weight,
        priors=priors,
        sensitivity=em.sensitivity if em is not None else None,
        is_consensus=lambda trusted, voters: _consensus(crowd, trusted, informative & voters, priors),
    )
    choice = judgement.choose(list(candidates))
    chosen = candidates[choice]
    trusted = chosen.weights > 0
    applied = AppliedMethod.GTSEG
    if priors is not None and not _object_alone_has_consensus(crowd, informative):
        applied = AppliedMethod.GTSEG_BATCH_PRIOR
    contested = None
    undecided = undecided_tuples(chosen.scores)
    if crowd.max_radius > 0 and undecided.any():
        radius = band_radius(PixelTuples.of(crowd.table, crowd.shape), undecided, crowd.max_radius)
        contested = Contested(undecided, trusted_share(tuples, trusted, num_classes), radius)
    return Estimate(
        chosen.scores,
        trusted,
        applied,
        contested=contested,
        choice=choice,
        weights=chosen.weights,
        labels=break_ties(chosen.scores, crowd.votes(everyone)),
    )


def _consensus(
    crowd: Crowd, trusted: np.ndarray, informative: np.ndarray, priors: Sequence[WorkerPrior | None] | None
) -> bool:
    return is_consensus(
        trusted, informative, crowd.sampled_masks, crowd.num_classes, backed_by_priors=priors is not None
    )


def _object_alone_has_consensus(crowd: Crowd, informative: np.ndarray) -> bool:
    alone = estimate_reliability(crowd.tuples, crowd.counts, crowd.num_classes, candidates=informative)
    return bool(alone.trusted.any())


STRATEGIES: dict[Method, Strategy] = {
    Method.GTSEG: _gtseg,
    Method.MAJORITY: _majority,
    Method.SIMPLE: _simple,
    Method.DAWID_SKENE: _dawid_skene,
}


# --------------------------------------------------------------------------- shared steps


@dataclass(frozen=True)
class Decision:
    """The final labels, as (tuple, label, pixel count) pairs: a tuple's pixels share one label
    unless the neighbourhood step split them."""

    labels: np.ndarray  # (H, W) uint8
    pair_tuple: np.ndarray  # (P,) tuple index of each pair
    pair_label: np.ndarray  # (P,) final label
    pair_count: np.ndarray  # (P,) float64 pixels
    tuple_labels: np.ndarray  # (T,) the most common final label of each tuple's pixels


def decide(estimate: Estimate, crowd: Crowd) -> Decision:
    if estimate.labels is not None:
        per_tuple = estimate.labels.astype(np.uint8)
    else:
        per_tuple = argmax_lowest(estimate.scores).astype(np.uint8)
    shape = crowd.shape
    relabelled = None
    if estimate.contested is not None and crowd.size > 1:
        contested = estimate.contested
        radius = min(contested.radius, crowd.max_radius)
        relabelled = resolve_contested(
            per_tuple, contested.tuples, contested.share, crowd.table, shape, radius
        )
    if relabelled is None:
        return Decision(
            labels=crowd.table.to_pixels(per_tuple).reshape(shape),
            pair_tuple=np.arange(len(crowd.tuples)),
            pair_label=per_tuple.astype(np.intp),
            pair_count=crowd.counts,
            tuple_labels=per_tuple,
        )
    table, num_classes = crowd.table, crowd.num_classes
    # int64: the codes may be uint16, and code * C would wrap around
    joint_codes = table.codes.astype(np.int64) * num_classes + relabelled.ravel()
    joint = np.bincount(joint_codes, minlength=table.space * num_classes)
    flat_pairs = np.flatnonzero(joint)
    code_of_pair, pair_label = np.divmod(flat_pairs, num_classes)
    pair_tuple = np.searchsorted(table.present, code_of_pair)
    pair_count = joint[flat_pairs].astype(np.float64)
    order = np.lexsort((pair_count, pair_tuple))  # per tuple, largest count last
    tuple_labels = np.zeros(len(crowd.tuples), dtype=np.intp)
    tuple_labels[pair_tuple[order]] = pair_label[order]
    return Decision(relabelled, pair_tuple, pair_label, pair_count, tuple_labels)


def class_confidence(
    decision: Decision, crowd: Crowd, included: np.ndarray, scale: float
) -> tuple[np.ndarray, float]:
    """Per class: the mean IoU of each trusted worker's extent of the class with the consolidated
    extent; the image: the mean over the classes anyone painted. A class the workers painted but
    the result lost scores 0 rather than vanishing, so the image value tracks the mean IoU a
    reviewer would measure. Zero with fewer than two trusted workers (nothing to compare)."""
    num_classes = crowd.num_classes
    if int(included.sum()) < 2:
        return np.zeros(num_classes), 0.0
    tuples, counts = crowd.tuples, crowd.counts
    class_pixels = np.bincount(decision.pair_label, weights=decision.pair_count, minlength=num_classes)
    iou_sum = np.zeros(num_classes)
    iou_n = np.zeros(num_classes)
    for k in np.flatnonzero(included):
        worker_labels = tuples[decision.pair_tuple, k]
        agrees = worker_labels == decision.pair_label
        inter = np.bincount(decision.pair_label, weights=decision.pair_count * agrees, minlength=num_classes)
        area = np.bincount(tuples[:, k], weights=counts, minlength=num_classes)
        union = area + class_pixels - inter
        seen = union > 0
        iou_sum[seen] += inter[seen] / union[seen]
        iou_n[seen] += 1
    painted = iou_n > 0
    per_class = scale * np.where(painted, iou_sum / np.maximum(iou_n, 1), 0.0)
    return per_class, float(per_class[painted].mean()) if painted.any() else 0.0


def worker_qualities(
    decision: Decision, crowd: Crowd, included: np.ndarray, vote_weights: np.ndarray | None = None
) -> tuple[WorkerQuality, ...]:
    kappas, accs = worker_kappas(crowd.tuples, crowd.counts, decision.tuple_labels, crowd.num_classes)
    raw = included.astype(float) if vote_weights is None else np.where(included, vote_weights, 0.0)
    weights = raw / max(float(raw.sum()), 1e-12)
    return tuple(
        WorkerQuality(
            worker_id=worker_id,
            # one worker is its own consensus: no quality can be estimated
            quality=round(float(max(0.0, kappas[k])), 4) if crowd.size > 1 else 0.0,
            agreement=round(float(accs[k]), 4),
            weight=round(float(weights[k]), 4),
            excluded=not bool(included[k]),
        )
        for k, worker_id in enumerate(crowd.worker_ids)
    )


def _check_masks(masks: Sequence[np.ndarray], num_classes: int) -> None:
    if not masks:
        raise ValueError("at least one mask is required")
    shape = masks[0].shape
    for i, mask in enumerate(masks):
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise ValueError(f"mask {i} must be a 2-D uint8 array")
        if mask.shape != shape:
            raise ValueError(f"mask {i} is {mask.shape}, expected {shape}")
    if not 1 <= num_classes <= 256:
        raise ValueError("num_classes must be 1..256")


def majority_vote(masks: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Plain per-pixel majority vote (ties to the lowest class index): the baseline."""
    _check_masks(masks, num_classes)
    table = encode_tuples(masks, num_classes)
    votes = weighted_votes(table.tuples, np.ones(len(masks)), num_classes)
    return table.to_pixels(argmax_lowest(votes).astype(np.uint8)).reshape(masks[0].shape)


def consolidate_masks(
    masks: Sequence[np.ndarray],
    num_classes: int,
    *,
    method: Method | str = Method.GTSEG,
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS,
    worker_ids: Sequence[str] | None = None,
    worker_priors: Mapping[str, WorkerPrior] | None = None,
) -> ConsolidationResult:
    """Merge K workers' masks of one object into one mask with confidence and worker scores.

    ``worker_priors`` (worker id -> what other objects of the batch, or gold objects, showed of
    that worker) add to this object's own evidence about each worker. ``smoothing`` is the largest
    neighbourhood radius the tied pixels may be decided over (0: never).
    """
    try:
        chosen = Method(method)
    except ValueError:
        raise ValueError(
            f"unknown method {method!r}; choose from {', '.join(m.value for m in Method)}"
        ) from None
    _check_masks(masks, num_classes)
    for i, mask in enumerate(masks):
        if mask.size and int(mask.max()) >= num_classes:
            raise ValueError(f"mask {i} has class {int(mask.max())} >= num_classes {num_classes}")
    ids = (
        tuple(str(w) for w in worker_ids)
        if worker_ids is not None
        else tuple(f"worker-{i}" for i in range(len(masks)))
    )
    if len(ids) != len(masks):
        raise ValueError("worker_ids must have one id per mask")
    shape = masks[0].shape
    crowd = Crowd(
        encode_tuples(masks, num_classes), num_classes, ids, shape, worker_priors, max(int(smoothing), 0)
    )

    if crowd.size == 1:
        estimate = Estimate(crowd.votes(crowd.everyone()), crowd.everyone(), AppliedMethod.SINGLE_WORKER)
    else:
        estimate = STRATEGIES[chosen](crowd)
    decision = decide(estimate, crowd)
    checked_by = estimate.included if estimate.checked_by is None else estimate.checked_by
    per_class, image_confidence = class_confidence(decision, crowd, checked_by, estimate.confidence_scale)
    tuples, counts = crowd.tuples, crowd.counts
    n_pixels = float(decision.pair_count.sum())
    class_pixels = np.bincount(decision.pair_label, weights=decision.pair_count, minlength=num_classes)
    unanimous = float(counts[(tuples == tuples[:, :1]).all(axis=1)].sum() / max(counts.sum(), 1))
    return ConsolidationResult(
        labels=decision.labels,
        class_confidence=tuple(round(float(c), 4) for c in per_class),
        image_confidence=round(image_confidence, 4),
        workers=worker_qualities(decision, crowd, estimate.included, estimate.weights),
        method=estimate.applied,
        unanimous_fraction=round(unanimous if crowd.size > 1 else 0.0, 4),
        class_fractions=tuple(round(float(p) / max(n_pixels, 1), 6) for p in class_pixels),
        distinct_tuples=len(tuples),
        iterations=estimate.iterations,
    )


def known_mask_result(
    known: np.ndarray, masks: Sequence[np.ndarray], worker_ids: Sequence[str], num_classes: int
) -> ConsolidationResult:
    """The result of a gold object: its known mask, full confidence, each worker scored against it."""
    qualities = []
    for worker_id, mask in zip(worker_ids, masks, strict=True):
        same = mask.shape == known.shape
        qualities.append(
            WorkerQuality(
                worker_id=worker_id,
                quality=round(max(0.0, cohen_kappa(mask, known, num_classes)), 4) if same else 0.0,
                agreement=round(pixel_agreement(mask, known), 4) if same else 0.0,
                weight=0.0,  # nobody's vote made this mask
                excluded=False,
            )
        )
    pixels = np.bincount(known.ravel(), minlength=num_classes).astype(np.float64)
    present = pixels > 0
    return ConsolidationResult(
        labels=known,
        class_confidence=tuple(1.0 if p else 0.0 for p in present),
        image_confidence=1.0,
        workers=tuple(qualities),
        method=AppliedMethod.GOLD,
        unanimous_fraction=0.0,
        class_fractions=tuple(round(float(p) / max(float(pixels.sum()), 1.0), 6) for p in pixels),
    )
