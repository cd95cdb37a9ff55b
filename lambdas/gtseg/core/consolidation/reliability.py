"""How far to trust each worker on this object, from how well they agree with the others.

Each worker is compared with the *others'* consensus, never with a consensus that contains their
own vote: with three workers a worker's own vote is a third of the consensus, which flatters
whoever is compared. The consensus is soft (the weighted vote share of each class), so a tie
between the others counts half for each side instead of going to an arbitrary class. Agreement
is chance-corrected (Cohen's kappa), so a worker who paints one class everywhere, or random
blobs, scores about 0 whatever the others did.

A worker's vote weight is the log-likelihood ratio its vote carries under kappa's own model (the
worker knows the class with probability kappa and guesses from the class distribution
otherwise): ``log(1 + kappa / (1 - kappa) * C_eff)``, ``C_eff`` the effective number of classes.
With independent workers a vote weighted so is the most probable answer; it is 0 at chance. The weights and the consensus are refined together
for a few rounds, starting from equal weights.

A prior (a worker's reliability measured on the batch's other objects, or on gold objects)
enters as pseudo-observations: each object of evidence behind it counts as much as this object's
own pixels. With an object where nobody agrees beyond chance, the prior decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Below this kappa a worker is no better than chance against the others: no weight.
CHANCE_KAPPA = 0.05
# Accuracy is kept inside (0, 1) so the log-odds stay finite; 1 pixel in 10^4.
_ACCURACY_CLIP = 1e-4
ROUNDS = 4


@dataclass(frozen=True)
class Reliability:
    kappa: np.ndarray  # (K,) chance-corrected agreement with the others' consensus
    accuracy: np.ndarray  # (K,) expected pixel agreement with the others' consensus
    weight: np.ndarray  # (K,) log-odds vote weight; 0 = not trusted
    # (K,) the class-balanced kappa the weights follow from (with the priors', when given)
    balanced_kappa: np.ndarray | None = None

    @property
    def trusted(self) -> np.ndarray:
        return self.weight > 0


@dataclass(frozen=True)
class WorkerPrior:
    """What is known about a worker from elsewhere (other objects of the batch, gold objects)."""

    kappa: float
    accuracy: float
    objects: float  # how many objects' worth of evidence (each counts as much as this object)
    balanced_kappa: float | None = None  # class-balanced kappa there, which vote weights follow


def soft_votes(tuples: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """(T, C) weighted vote totals per tuple (one bincount over every tuple's K votes)."""
    t = len(tuples)
    cells = (np.arange(t, dtype=np.int64)[:, None] * num_classes + tuples).ravel()
    return np.bincount(
        cells, weights=np.tile(np.asarray(weights, dtype=np.float64), t), minlength=t * num_classes
    ).reshape(t, num_classes)


@dataclass(frozen=True)
class RoundVotes:
    """One round's vote totals under the round's weights, and what both agreement measures read
    from them. Every worker votes once per tuple, so the others' total weight is the same on every
    tuple (all weights minus the worker's own) and each leave-self-out share follows from these
    totals without building it per worker."""

    weights: np.ndarray  # (K,) float64
    votes: np.ndarray  # (T, C) soft votes under ``weights``
    at_own: np.ndarray  # (T, K) the vote total of each worker's own label
    class_mass: np.ndarray  # (C,) pixel-weighted vote total of each class
    own_pixels: np.ndarray  # (K, C) pixels each worker gave each class

    @classmethod
    def of(cls, tuples: np.ndarray, counts: np.ndarray, weights: np.ndarray, num_classes: int) -> RoundVotes:
        votes = soft_votes(tuples, weights, num_classes)
        own_pixels = np.stack(
            [np.bincount(tuples[:, k], weights=counts, minlength=num_classes) for k in range(tuples.shape[1])]
        )
        return cls(
            weights=np.asarray(weights, dtype=np.float64),
            votes=votes,
            at_own=np.take_along_axis(votes, tuples.astype(np.intp), axis=1),
            class_mass=counts @ votes,
            own_pixels=own_pixels,
        )


def _agreement_with_others(
    tuples: np.ndarray, counts: np.ndarray, round_votes: RoundVotes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per worker: expected agreement and chance agreement with the others' soft consensus, and
    the pixel mass over which the others expressed an opinion."""
    weights = round_votes.weights
    k_workers = tuples.shape[1]
    pixels = float(counts.sum())
    others_total = float(np.sum(weights)) - np.asarray(weights, dtype=np.float64)  # (K,)
    has = others_total > 1e-12
    observed = np.zeros(k_workers)
    chance = np.zeros(k_workers)
    mass = np.where(has, pixels, 0.0)
    if pixels <= 0 or not has.any():
        return observed, chance, mass
    others_at_own = round_votes.at_own - weights[None, :]
    divisor = np.where(has, others_total, 1.0)
    observed = np.where(has, (counts @ others_at_own) / divisor / pixels, 0.0)
    for k in np.flatnonzero(has):
        worker_hist = round_votes.own_pixels[k] / pixels
        consensus_hist = (
            (round_votes.class_mass - weights[k] * worker_hist * pixels) / others_total[k] / pixels
        )
        chance[k] = float(worker_hist @ consensus_hist)
    return observed, chance, mass


def class_balanced_kappa(tuples: np.ndarray, counts: np.ndarray, round_votes: RoundVotes) -> np.ndarray:
    """Per worker: the mean over classes of its chance-corrected agreement (Cohen's kappa of "is it
    this class?") with the others' soft consensus.

    Class-balanced like the mean IoU the result is judged by: a thin structure (a pole, a ring)
    counts as much as the road, so a worker who keeps the thin structures the others lose is told
    apart from one who loses them too. Chance-corrected per class, so one class everywhere, or
    random blobs, score about 0."""
    k_workers = tuples.shape[1]
    out = np.zeros(k_workers)
    w = round_votes.weights
    num_classes = round_votes.votes.shape[1]
    total = float(counts.sum())
    if total <= 0:
        return out
    # The others' share of class c on a tuple is (votes - own vote) / others' weight, so every
    # per-class sum below follows from the round's totals and the worker's own labels: O(T) per
    # worker instead of building a (T, C) share table for each.
    for k in range(k_workers):
        others_total = float(w.sum() - w[k])
        if others_total <= 1e-12:
            continue
        own_pixels = round_votes.own_pixels[k]
        a = own_pixels / total  # P(worker says c)
        b = (round_votes.class_mass - w[k] * own_pixels) / others_total / total  # P(the others say c)
        at_own = round_votes.at_own[:, k]
        both = (
            np.bincount(tuples[:, k], weights=counts * (at_own - w[k]), minlength=num_classes)
            / others_total
            / total
        )
        observed = 1.0 - a - b + 2.0 * both  # agreement on "c" and on "not c"
        chance = a * b + (1.0 - a) * (1.0 - b)
        present = (a > 0) | (b > 1e-12)
        kappa = np.where(chance < 1.0 - 1e-12, (observed - chance) / np.maximum(1.0 - chance, 1e-12), 0.0)
        out[k] = float(kappa[present].mean()) if present.any() else 0.0
    return out


def _kappa(observed: np.ndarray, chance: np.ndarray) -> np.ndarray:
    denominator = np.maximum(1.0 - chance, 1e-12)
    return np.where(chance >= 1.0 - 1e-12, 0.0, (observed - chance) / denominator)


def vote_weight(kappa: np.ndarray, effective_classes: float) -> np.ndarray:
    """The log-likelihood ratio a worker's vote carries under kappa's own model: the worker knows
    the class with probability kappa, and otherwise picks one from the class distribution
    (``effective_classes`` = 1 / sum of squared class shares). Chance-corrected, so a worker
    who agrees only as much as chance predicts carries nothing."""
    k = np.clip(kappa, 0.0, 1.0 - _ACCURACY_CLIP)
    weight = np.log1p(k / (1.0 - k) * effective_classes)
    return np.where(kappa > CHANCE_KAPPA, weight, 0.0)


def _effective_classes(tuples: np.ndarray, counts: np.ndarray, num_classes: int) -> float:
    pixels_per_class = np.bincount(
        tuples.ravel(), weights=np.repeat(counts, tuples.shape[1]), minlength=num_classes
    ).astype(np.float64)
    class_share = pixels_per_class / max(float(pixels_per_class.sum()), 1e-12)
    return 1.0 / max(float(class_share @ class_share), 1e-12)


def estimate_reliability(
    tuples: np.ndarray,
    counts: np.ndarray,
    num_classes: int,
    *,
    candidates: np.ndarray,
    priors: Sequence[WorkerPrior | None] | None = None,
    rounds: int = ROUNDS,
) -> Reliability:
    """Reliability of every worker; only ``candidates`` (K bool) may get a weight.

    Whether a worker is trusted at all follows from its chance-corrected agreement over the whole
    object. How much its vote weighs follows from how often it sides with the others *where the
    candidates disagree*: everywhere else all votes say the same, and counting those pixels would
    make a careful and a sloppy worker look alike exactly where telling them apart decides pixels.
    The consensus a worker is compared with is built from the candidates' votes only, weighted by
    the previous round's weights (equal at first)."""
    k_workers = tuples.shape[1]
    effective_classes = _effective_classes(tuples, counts, num_classes)
    weights = candidates.astype(np.float64)
    kappa = np.zeros(k_workers)
    accuracy = np.zeros(k_workers)
    object_pixels = float(counts.sum())
    new_weights = np.zeros(k_workers)
    for _ in range(max(rounds, 1)):
        round_votes = RoundVotes.of(tuples, counts, weights, num_classes)
        observed, chance, mass = _agreement_with_others(tuples, counts, round_votes)
        if priors is not None:
            observed, chance, mass = _with_priors(observed, chance, mass, priors, object_pixels)
        kappa = _kappa(observed, chance)
        accuracy = observed
        trusted = candidates & (kappa > CHANCE_KAPPA)
        balanced = class_balanced_kappa(tuples, counts, round_votes)
        if priors is not None:
            balanced = _balanced_with_priors(balanced, priors)
        new_weights = np.where(trusted, np.maximum(vote_weight(balanced, effective_classes), 1e-3), 0.0)
        converged = np.allclose(new_weights, weights, rtol=1e-3, atol=1e-6)
        # nobody agreeing beyond chance with anybody leaves nothing to weight the consensus by
        if converged or not new_weights.any():
            break
        weights = new_weights
    return Reliability(kappa=kappa, accuracy=accuracy, weight=new_weights, balanced_kappa=balanced)


def _balanced_with_priors(balanced: np.ndarray, priors: Sequence[WorkerPrior | None]) -> np.ndarray:
    """The class-balanced kappa over this object and the prior's objects, each object counting
    once (as in ``_with_priors``). With two trusted workers this object alone cannot tell them
    apart (each is compared with the other, so both score the same): the other objects can."""
    out = balanced.copy()
    for k, prior in enumerate(priors):
        if prior is None or prior.objects <= 0 or prior.balanced_kappa is None:
            continue
        out[k] = (balanced[k] + prior.balanced_kappa * prior.objects) / (1.0 + prior.objects)
    return out


def _with_priors(
    observed: np.ndarray,
    chance: np.ndarray,
    mass: np.ndarray,
    priors: Sequence[WorkerPrior | None],
    object_pixels: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    observed, chance, mass = observed.copy(), chance.copy(), mass.copy()
    for k, prior in enumerate(priors):
        if prior is None or prior.objects <= 0:
            continue
        strength = prior.objects * object_pixels
        # the prior's chance level: what its kappa and accuracy imply (p_e = (p - k) / (1 - k))
        prior_chance = (prior.accuracy - prior.kappa) / max(1.0 - prior.kappa, 1e-12)
        total = mass[k] + strength
        observed[k] = (observed[k] * mass[k] + prior.accuracy * strength) / total
        chance[k] = (chance[k] * mass[k] + prior_chance * strength) / total
        mass[k] = total
    return observed, chance, mass


def priors_for(
    worker_ids: Sequence[str], known: Mapping[str, WorkerPrior] | None
) -> list[WorkerPrior | None] | None:
    if not known:
        return None
    found = [known.get(worker_id) for worker_id in worker_ids]
    return found if any(p is not None for p in found) else None
