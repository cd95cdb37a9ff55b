"""Merging several workers' class-index masks into one mask with confidence (pure numpy).

How it works (design.md, "Consolidation"):

1. **Tuples, not pixels.** Each pixel's K worker labels form a tuple. Real masks have only a few
   thousand distinct tuples even at 12 MP, so every pixel is encoded once into a tuple id
   (progressively, one worker at a time, with ``bincount`` -- no sorting), the models iterate on
   the tuple table weighted by tuple counts, and the decision is mapped back with one lookup.
2. **Majority vote** is the floor and the starting point.
3. **Robust worker filtering** in the spirit of SIMPLE (Langerak et al. 2010): a mask of one
   class everywhere carries no information; the first consensus comes from workers who agree
   with at least one other worker beyond chance (pairwise Cohen's kappa), because when bad
   workers are the majority the raw vote already favours them; then each worker is scored by
   kappa against the consensus, workers far below the best are dropped and the consensus is
   recomputed. Kappa is chance-corrected, so a spammer scores 0 whatever the consensus is and a
   random-blob worker near 0. No pair above chance: the plain vote, with confidence near 0.
4. **Dawid-Skene EM** over the remaining workers (per-worker confusion matrices, class prior),
   initialised from the filtered vote. To keep it from inventing classes from a few object-level
   mistakes, each confusion row is shrunk toward that worker's one-coin model (overall accuracy,
   errors spread evenly) by a Dirichlet pseudo-count proportional to the image size: common
   classes are learnt from data, rare ones lean on the worker's overall accuracy.
5. **Neighbourhood for contested pixels**, as the built-in task uses neighbouring pixels: with
   three or fewer trusted workers, EM may not overrule their strict majority, and pixels with no
   strict majority (two workers tracing one boundary a few pixels apart) take the class with the
   larger trusted vote share in a (2r+1)^2 box around them (``smoothing`` = r, default 2), so the
   two outlines meet in the middle. Remaining ties go to the lowest class index.
6. **Batch prior** (``trusted_prior``): an object with no consensus of its own may trust the
   workers who agreed with their crowds on the other objects of the same batch.

Confidence per class is the mean IoU between each trusted worker's extent of the class and the
consolidated extent (a class workers painted but the result lost scores 0); the image confidence
is the mean over those classes, like a mean IoU; 0.0 when fewer than two trusted workers remain
(as Ground Truth reports 0.00 for a single worker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from gtseg.core.labels import ClassMap
from gtseg.core.masks import DecodedMask, MaskError, b64decode_png, decode_worker_mask, open_png

METHODS = ("gtseg", "majority", "simple", "dawid-skene")

# SIMPLE-style filtering: a worker is dropped when its kappa is below this fraction of the best
# worker's kappa, or below the absolute floor (chance-level agreement).
RELATIVE_KAPPA_CUTOFF = 0.5
ABSOLUTE_KAPPA_FLOOR = 0.15
# Dirichlet shrinkage of each confusion row toward the one-coin model, in pixels per class row,
# as a fraction of the image size.
SHRINKAGE_FRACTION = 0.01
EM_MAX_ITERATIONS = 25
# At or below this many trusted workers EM may not overrule a strict majority of them.
MAX_WORKERS_FOR_MAJORITY_GUARD = 3
# Batch prior: a worker whose mean quality on the batch's other objects reaches this is trusted
# on an object that has no consensus of its own.
PRIOR_TRUST_MIN = 0.5
# Box radius for contested pixels (make bench: r=2 is best on simulated crowds).
DEFAULT_NEIGHBOURHOOD_RADIUS = 2
EM_TOLERANCE = 1e-4
# Above this many (tuple x class) cells a step falls back to np.unique (sorting); real masks never
# get near it, adversarial noise might.
_MAX_DENSE_CODES = 1 << 22


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
    method: str
    unanimous_fraction: float
    class_fractions: tuple[float, ...] = ()
    distinct_tuples: int = 0
    iterations: int = 0


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
    integer type that holds them (uint16 for 5 workers and 8 classes): the per-pixel passes are
    memory-bound.
    """
    n = masks[0].size
    dtype = np.uint16 if num_classes ** len(masks) <= 1 << 16 else np.int64
    codes = np.zeros(n, dtype=dtype)
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


def _votes(tuples: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """(T, C) weighted vote totals per tuple."""
    t = len(tuples)
    votes = np.zeros((t, num_classes), dtype=np.float64)
    rows = np.arange(t)
    for k, w in enumerate(weights):
        if w:
            np.add.at(votes, (rows, tuples[:, k]), w)
    return votes


def _argmax_lowest(scores: np.ndarray) -> np.ndarray:
    """Row-wise arg-max; ties (within float noise) go to the lowest class index."""
    best = scores.max(axis=1, keepdims=True)
    return np.argmax(scores >= best - 1e-9 * np.maximum(1.0, np.abs(best)), axis=1)


def _kappas(tuples: np.ndarray, counts: np.ndarray, estimate: np.ndarray, num_classes: int):
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
            kappa = _kappas(tuples[:, [i]], counts, tuples[:, j].astype(np.int64), num_classes)[0][0]
            out[i, j] = out[j, i] = kappa
    return out


def informative_workers(tuples: np.ndarray) -> np.ndarray:
    """Workers whose mask carries information: not one class everywhere, unless another worker
    painted the same single class (then it is a consensus, e.g. an image with nothing to label)."""
    constant_class = [int(col[0]) if (col == col[0]).all() else -1 for col in tuples.T]
    out = np.ones(len(constant_class), dtype=bool)
    for k, c in enumerate(constant_class):
        if c >= 0 and constant_class.count(c) == 1:
            out[k] = False
    return out if out.any() else np.ones_like(out)


def _simple_filter(tuples: np.ndarray, counts: np.ndarray, num_classes: int, max_rounds: int = 5):
    """SIMPLE-style iterative filtering.

    The first consensus comes from workers who agree with at least one other worker beyond
    chance (their best pairwise kappa), not from the raw vote: when bad workers are the
    majority the raw vote is already corrupted and would favour them. Returns (estimate per
    tuple, included mask, rounds) or ``None`` when no two workers agree beyond chance (no
    consensus to learn from: the caller falls back to the plain vote).
    """
    informative = informative_workers(tuples)
    if informative.sum() == 1:
        return tuples[:, informative][:, 0].astype(np.int64), informative, 0
    pair = pairwise_kappas(tuples, counts, num_classes)
    np.fill_diagonal(pair, -np.inf)
    pair[~informative, :] = pair[:, ~informative] = -np.inf
    partner = pair.max(axis=1)
    best = partner.max()
    if best < ABSOLUTE_KAPPA_FLOOR:
        return None
    included = (partner >= ABSOLUTE_KAPPA_FLOOR) & (partner >= RELATIVE_KAPPA_CUTOFF * best)
    estimate = _argmax_lowest(_votes(tuples, included.astype(float), num_classes))
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - rounds is reported
        kappas, _ = _kappas(tuples, counts, estimate, num_classes)
        best = kappas[included].max()
        keep = (kappas >= RELATIVE_KAPPA_CUTOFF * best) & (kappas >= ABSOLUTE_KAPPA_FLOOR)
        if not keep.any():
            keep = included
        # ties between equally many trusted votes go to the better-agreeing workers
        tie_break = 1e-6 * _votes(tuples, np.where(keep, np.clip(kappas, 0.0, 1.0), 0.0), num_classes)
        new_estimate = _argmax_lowest(_votes(tuples, keep.astype(float), num_classes) + tie_break)
        if np.array_equal(keep, included) and np.array_equal(new_estimate, estimate):
            break
        included, estimate = keep, new_estimate
    return estimate, included, rounds


def _dawid_skene(
    tuples: np.ndarray,
    counts: np.ndarray,
    init: np.ndarray,
    included: np.ndarray,
    num_classes: int,
    *,
    shrinkage: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Regularised Dawid-Skene EM over the included workers. Returns (posterior (T,C), log-confusions, iterations)."""
    workers = np.flatnonzero(included)
    t = len(tuples)
    post = np.zeros((t, num_classes))
    post[np.arange(t), init] = 1.0
    iterations = 0
    log_pi = np.zeros((len(workers), num_classes, num_classes))
    for iterations in range(1, EM_MAX_ITERATIONS + 1):  # noqa: B007
        weighted = post * counts[:, None]  # (T, C) pixel mass per tuple and class
        mass = weighted.sum(axis=0)  # (C,)
        prior = (mass + 1.0) / (mass.sum() + num_classes)
        for j, k in enumerate(workers):
            conf = np.zeros((num_classes, num_classes))
            for c in range(num_classes):
                if mass[c] > 0:
                    conf[c] = np.bincount(tuples[:, k], weights=weighted[:, c], minlength=num_classes)
            acc = np.trace(conf) / max(conf.sum(), 1e-12)
            acc = float(np.clip(acc, 1e-3, 1 - 1e-3))
            one_coin = np.full((num_classes, num_classes), (1 - acc) / max(num_classes - 1, 1))
            np.fill_diagonal(one_coin, acc)
            pi = conf + shrinkage * one_coin
            pi /= pi.sum(axis=1, keepdims=True)
            log_pi[j] = np.log(np.clip(pi, 1e-12, None))
        log_post = np.tile(np.log(prior), (t, 1))
        for j, k in enumerate(workers):
            log_post += log_pi[j][:, tuples[:, k]].T
        log_post -= log_post.max(axis=1, keepdims=True)
        new_post = np.exp(log_post)
        new_post /= new_post.sum(axis=1, keepdims=True)
        delta = float(np.abs(new_post - post).max())
        post = new_post
        if delta < EM_TOLERANCE:
            break
    return post, log_pi, iterations


def _resolve_contested(
    decision: np.ndarray,
    contested: np.ndarray,
    share: np.ndarray,
    table: TupleTable,
    shape: tuple[int, int],
    radius: int,
) -> np.ndarray | None:
    """Relabel pixels whose trusted workers have no strict majority by the trusted vote share
    around them (box filter of ``radius``, in C via Pillow). Two workers who trace the same
    boundary a few pixels apart then meet in the middle instead of one of them winning the whole
    band. Returns the new label image, or ``None`` when nothing is contested."""
    if radius <= 0 or not contested.any():
        return None
    labels = table.to_pixels(decision).reshape(shape)
    where = np.flatnonzero(table.to_pixels(contested))
    if where.size == 0:
        return None
    candidates = np.flatnonzero(share[contested].max(axis=0) > 0)
    blur = ImageFilter.BoxBlur(radius)
    current = labels.ravel()[where]
    planes = {}
    for c in candidates:
        plane = table.to_pixels(np.round(share[:, c] * 250).astype(np.uint8)).reshape(shape)
        planes[c] = np.asarray(Image.fromarray(plane).filter(blur), dtype=np.int32).ravel()[where]
    best = np.full(where.size, -1, dtype=np.int32)
    for c in candidates:  # the current decision keeps equal scores
        best = np.where(current == c, planes[c], best)
    chosen = current.copy()
    for c in candidates:
        better = planes[c] > best
        best[better] = planes[c][better]
        chosen[better] = c
    out = labels.ravel().copy()
    out[where] = chosen
    return out.reshape(shape)


def _prior_trusted(ids: Sequence[str], prior: Mapping[str, float] | None) -> np.ndarray | None:
    if not prior:
        return None
    trusted = np.array([prior.get(worker_id, 0.0) >= PRIOR_TRUST_MIN for worker_id in ids])
    return trusted if trusted.any() else None


def majority_vote(masks: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Plain per-pixel majority vote (ties to the lowest class index): the baseline."""
    _check_masks(masks, num_classes)
    table = encode_tuples(masks, num_classes)
    votes = _votes(table.tuples, np.ones(len(masks)), num_classes)
    return table.to_pixels(_argmax_lowest(votes).astype(np.uint8)).reshape(masks[0].shape)


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


def consolidate_masks(
    masks: Sequence[np.ndarray],
    num_classes: int,
    *,
    method: str = "gtseg",
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS,
    worker_ids: Sequence[str] | None = None,
    trusted_prior: Mapping[str, float] | None = None,
) -> ConsolidationResult:
    """Merge K workers' masks of one object into one mask with confidence and worker scores.

    ``trusted_prior`` (worker id -> quality on other objects of the same batch) is used only when
    this object alone has no consensus: workers at or above ``PRIOR_TRUST_MIN`` are trusted.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    _check_masks(masks, num_classes)
    for i, mask in enumerate(masks):
        if mask.size and int(mask.max()) >= num_classes:
            raise ValueError(f"mask {i} has class {int(mask.max())} >= num_classes {num_classes}")
    k_workers = len(masks)
    ids = (
        [str(w) for w in worker_ids] if worker_ids is not None else [f"worker-{i}" for i in range(k_workers)]
    )
    if len(ids) != k_workers:
        raise ValueError("worker_ids must have one id per mask")
    shape = masks[0].shape
    table = encode_tuples(masks, num_classes)
    tuples, counts = table.tuples, table.counts.astype(np.float64)
    iterations = 0
    confidence_scale = 1.0

    if k_workers == 1 or method == "majority":
        included = np.ones(k_workers, dtype=bool)
        scores = _votes(tuples, np.ones(k_workers), num_classes) / k_workers
    elif (
        method in ("simple", "gtseg")
        and (filtered := _simple_filter(tuples, counts, num_classes)) is None
        and (prior_trusted := _prior_trusted(ids, trusted_prior)) is not None
    ):
        # No consensus inside this object, but the same workers were scored on other objects of
        # the batch: trust the ones who agreed with their crowds there.
        method = f"{method}:batch-prior"
        included = prior_trusted
        trusted_votes = _votes(tuples, included.astype(float), num_classes)
        ordered = np.sort(trusted_votes, axis=1)
        contested = ordered[:, -1] <= ordered[:, -2]
        scores = trusted_votes / included.sum()
    elif method in ("simple", "gtseg") and filtered is None:
        # No two workers agree beyond chance: nothing to estimate reliability from, so the plain
        # vote (the floor) is the honest answer.
        method = f"{method}:no-consensus-vote"
        included = np.ones(k_workers, dtype=bool)
        scores = _votes(tuples, included.astype(float), num_classes) / k_workers
        # Agreement here is no better than chance (e.g. two spammers painting the same class):
        # the confidence says so, so the object stands out for review.
        pair = pairwise_kappas(tuples, counts, num_classes)
        np.fill_diagonal(pair, 0.0)
        confidence_scale = float(np.clip(pair.max(), 0.0, 1.0))
    elif method == "simple":
        _, included, iterations = filtered
        scores = _votes(tuples, included.astype(float), num_classes) / included.sum()
    else:
        if method == "gtseg":
            init, included, iterations = filtered
        else:  # plain (regularised) Dawid-Skene over everyone, from the majority vote
            included = np.ones(k_workers, dtype=bool)
            init = _argmax_lowest(_votes(tuples, np.ones(k_workers), num_classes))
        trusted_votes = _votes(tuples, included.astype(float), num_classes)
        ordered = np.sort(trusted_votes, axis=1)
        contested = ordered[:, -1] <= ordered[:, -2]
        if included.sum() >= 2:
            scores, _, em_iter = _dawid_skene(
                tuples, counts, init, included, num_classes, shrinkage=SHRINKAGE_FRACTION * counts.sum()
            )
            iterations += em_iter
            if included.sum() <= MAX_WORKERS_FOR_MAJORITY_GUARD:
                # With so few trusted workers the confusion matrices are weakly identified: EM
                # only decides where the trusted workers have no strict majority.
                strict = ~contested
                winners = trusted_votes.argmax(axis=1)
                scores[strict] = 0.0
                scores[strict, winners[strict]] = 1.0
        else:
            scores = _votes(tuples, included.astype(float), num_classes)

    decision_per_tuple = _argmax_lowest(scores).astype(np.uint8)
    relabelled = None
    if (
        method in ("gtseg", "gtseg:batch-prior")
        and k_workers > 1
        and included.sum() <= MAX_WORKERS_FOR_MAJORITY_GUARD
    ):
        share = trusted_votes / max(included.sum(), 1)
        relabelled = _resolve_contested(decision_per_tuple, contested, share, table, shape, int(smoothing))
    if relabelled is not None:
        labels, decision_per_tuple = relabelled, None
    else:
        labels = table.to_pixels(decision_per_tuple).reshape(shape)

    # Confidence = share of trusted workers agreeing with the final label, computed per tuple
    # (after smoothing, per (tuple, final label) pair, since smoothing can split a tuple).
    n_trusted = int(included.sum())
    if decision_per_tuple is not None:
        pair_tuple = np.arange(len(tuples))
        pair_label = decision_per_tuple.astype(np.intp)
        pair_count = counts
    else:
        # int64: the codes may be uint16, and code * C would wrap around
        joint_codes = table.codes.astype(np.int64) * num_classes + labels.ravel()
        joint = np.bincount(joint_codes, minlength=table.space * num_classes)
        flat_pairs = np.flatnonzero(joint)
        code_of_pair, pair_label = np.divmod(flat_pairs, num_classes)
        pair_tuple = np.searchsorted(table.present, code_of_pair)
        pair_count = joint[flat_pairs].astype(np.float64)
    n_pixels = float(pair_count.sum())
    class_pixels = np.bincount(pair_label, weights=pair_count, minlength=num_classes)
    if n_trusted >= 2:
        # Per class: mean IoU of each trusted worker's extent of the class with the consolidated
        # extent. A class the workers painted but the result lost scores 0 rather than vanishing,
        # so the image value (mean over classes) tracks the mean IoU a reviewer would measure
        # (make bench: r = 0.58 with actual IoU over random crowds, 0.19 for a pixel-agreement mean).
        iou_sum = np.zeros(num_classes)
        iou_n = np.zeros(num_classes)
        for k in np.flatnonzero(included):
            worker_labels = tuples[pair_tuple, k]
            inter = np.bincount(
                pair_label, weights=pair_count * (worker_labels == pair_label), minlength=num_classes
            )
            area = np.bincount(tuples[:, k], weights=counts, minlength=num_classes)
            union = area + class_pixels - inter
            seen = union > 0
            iou_sum[seen] += inter[seen] / union[seen]
            iou_n[seen] += 1
        painted = iou_n > 0
        class_conf = confidence_scale * np.where(painted, iou_sum / np.maximum(iou_n, 1), 0.0)
        image_conf = float(class_conf[painted].mean()) if painted.any() else 0.0
    else:
        class_conf = np.zeros(num_classes)
        image_conf = 0.0

    if decision_per_tuple is not None:
        final_tuple_labels = decision_per_tuple
    else:  # the most common final label among each tuple's pixels
        order = np.lexsort((pair_count, pair_tuple))  # per tuple, largest count last
        final_tuple_labels = np.zeros(len(tuples), dtype=np.intp)
        final_tuple_labels[pair_tuple[order]] = pair_label[order]
    kappas, accs = _kappas(tuples, counts, final_tuple_labels, num_classes)
    weights = included.astype(float) / max(n_trusted, 1)
    workers = tuple(
        WorkerQuality(
            worker_id=ids[k],
            quality=round(float(max(0.0, kappas[k])), 4) if k_workers > 1 else 0.0,
            agreement=round(float(accs[k]), 4),
            weight=round(float(weights[k]), 4),
            excluded=not bool(included[k]),
        )
        for k in range(k_workers)
    )
    unanimous = float(counts[(tuples == tuples[:, :1]).all(axis=1)].sum() / max(counts.sum(), 1))
    return ConsolidationResult(
        labels=labels,
        class_confidence=tuple(round(float(c), 4) for c in class_conf),
        image_confidence=round(image_conf, 4),
        workers=workers,
        method="single-worker" if k_workers == 1 else method,
        unanimous_fraction=round(unanimous if k_workers > 1 else 0.0, 4),
        class_fractions=tuple(round(float(p) / max(n_pixels, 1), 6) for p in class_pixels),
        distinct_tuples=len(tuples),
        iterations=iterations,
    )


# --------------------------------------------------------------------------- worker answers -> result


@dataclass(frozen=True)
class WorkerAnswer:
    worker_id: str
    png: bytes | str  # PNG bytes, or the base64 text from pngImageData
    label_mappings: Mapping[str, Any]
    expected_size: tuple[int, int] | None = None  # (width, height) from inputImageProperties


@dataclass(frozen=True)
class DecodeStats:
    worker_id: str
    matched_pixels: int
    snapped_pixels: int
    unmatched_pixels: int
    unknown_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectConsolidation:
    result: ConsolidationResult | None
    rejected: tuple[tuple[str, str], ...] = ()
    decode_stats: tuple[DecodeStats, ...] = ()
    failure_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def consolidate_worker_answers(
    answers: Sequence[WorkerAnswer],
    class_map: ClassMap,
    *,
    method: str = "gtseg",
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS,
    trusted_prior: Mapping[str, float] | None = None,
) -> ObjectConsolidation:
    """Decode each worker's PNG and consolidate; a bad annotation is rejected with a reason,
    never failing the object. No usable annotation -> ``result=None`` and a ``failure_reason``."""
    decoded: list[tuple[str, DecodedMask]] = []
    rejected: list[tuple[str, str]] = []
    for answer in answers:
        try:
            png = b64decode_png(answer.png) if isinstance(answer.png, str) else answer.png
            mask = decode_worker_mask(
                open_png(png), answer.label_mappings, class_map, expected_size=answer.expected_size
            )
        except MaskError as exc:
            rejected.append((answer.worker_id, str(exc)))
            continue
        decoded.append((answer.worker_id, mask))
    if decoded:
        # Without inputImageProperties sizes can only be checked against each other: keep the
        # most common size, reject the rest.
        sizes = [m.shape for _, m in decoded]
        modal = max(set(sizes), key=lambda s: (sizes.count(s), s))
        kept = []
        for worker_id, mask in decoded:
            if mask.shape != modal:
                rejected.append(
                    (worker_id, f"mask is {mask.shape[1]}x{mask.shape[0]}, others are {modal[1]}x{modal[0]}")
                )
            else:
                kept.append((worker_id, mask))
        decoded = kept
    stats = tuple(
        DecodeStats(wid, m.matched_pixels, m.snapped_pixels, m.unmatched_pixels, m.unknown_labels)
        for wid, m in decoded
    )
    if not decoded:
        reason = (
            "no usable annotation"
            if not answers
            else "no usable annotation: " + "; ".join(f"{wid}: {why}" for wid, why in rejected)
        )
        if not answers:
            reason = "no worker annotated this object"
        return ObjectConsolidation(None, tuple(rejected), stats, reason)
    result = consolidate_masks(
        [m.indices for _, m in decoded],
        len(class_map),
        method=method,
        smoothing=smoothing,
        worker_ids=[wid for wid, _ in decoded],
        trusted_prior=trusted_prior,
    )
    return ObjectConsolidation(result, tuple(rejected), stats, None)
