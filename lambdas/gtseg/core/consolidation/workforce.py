"""What many objects show about each worker: the same people label a whole batch (and a whole
job), so every object's evidence about a worker informs every other object.

Per object, a worker is measured as ``consolidate_masks`` measures it (chance-corrected agreement
with the others, ``reliability``); on a gold object, against the known mask. For one object, the
worker's prior is the mean over the *other* objects it labelled, each counting as much evidence
as the object itself, so an object never votes for its own prior.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gtseg.core.consolidation.agreement import informative_workers, is_consensus, sampling_step
from gtseg.core.consolidation.reliability import (
    RoundVotes,
    WorkerPrior,
    class_balanced_kappa,
    estimate_reliability,
)
from gtseg.core.consolidation.tuples import encode_tuples
from gtseg.core.metrics import cohen_kappa, mean_iou, pixel_agreement


@dataclass(frozen=True)
class WorkerMeasure:
    """One worker on one object."""

    kappa: float
    accuracy: float
    gold_iou: float | None = None  # set on gold objects: mean IoU with the known mask
    balanced_kappa: float | None = None  # class-balanced, as vote weights are measured


def measure_workers(
    masks: Sequence[np.ndarray], worker_ids: Sequence[str], num_classes: int
) -> dict[str, WorkerMeasure]:
    """Each worker's agreement with the others on one object; empty when nobody agrees beyond
    chance with anybody (such an object says nothing about who is good)."""
    if len(masks) < 2:
        return {}
    table = encode_tuples(masks, num_classes)
    counts = table.counts.astype(np.float64)
    informative = informative_workers(table.tuples, counts)
    reliability = estimate_reliability(table.tuples, counts, num_classes, candidates=informative)
    if not reliability.trusted.any():
        return {}

    def sampled(workers: Sequence[int], max_pixels: int) -> list[np.ndarray]:
        step = sampling_step(masks[0].shape, max_pixels)
        return [masks[k][::step, ::step] for k in workers]

    if not is_consensus(reliability.trusted, informative, sampled, num_classes):
        # two workers agreeing only by where their regions fall, or one left trusted among
        # several informative ones: no consensus either, as the object's consolidation concludes
        return {}
    balanced = reliability.balanced_kappa
    return {
        worker_id: WorkerMeasure(
            float(reliability.kappa[k]),
            float(reliability.accuracy[k]),
            balanced_kappa=float(balanced[k]) if balanced is not None else None,
        )
        for k, worker_id in enumerate(worker_ids)
    }


def _balanced_kappa_against(mask: np.ndarray, known: np.ndarray, num_classes: int) -> float:
    table = encode_tuples([mask, known], num_classes)
    counts = table.counts.astype(np.float64)
    round_votes = RoundVotes.of(table.tuples, counts, np.ones(2), num_classes)
    return float(class_balanced_kappa(table.tuples, counts, round_votes)[0])


def measure_against_gold(
    masks: Sequence[np.ndarray], worker_ids: Sequence[str], known: np.ndarray, num_classes: int
) -> dict[str, WorkerMeasure]:
    """Each worker against a gold object's known mask (masks of another size are skipped)."""
    out = {}
    for worker_id, mask in zip(worker_ids, masks, strict=True):
        if mask.shape != known.shape:
            continue
        out[worker_id] = WorkerMeasure(
            kappa=cohen_kappa(mask, known, num_classes),
            accuracy=pixel_agreement(mask, known),
            gold_iou=mean_iou(mask, known, num_classes),
            balanced_kappa=_balanced_kappa_against(mask, known, num_classes),
        )
    return out


@dataclass(frozen=True)
class WorkerRecord:
    """A worker across a batch: the objects it was measured on (object key -> measure)."""

    measures: dict[str, WorkerMeasure]

    def prior_excluding(self, object_key: str) -> WorkerPrior | None:
        others = [m for key, m in self.measures.items() if key != object_key]
        if not others:
            return None
        balanced = [m.balanced_kappa for m in others if m.balanced_kappa is not None]
        return WorkerPrior(
            kappa=float(np.mean([m.kappa for m in others])),
            accuracy=float(np.mean([m.accuracy for m in others])),
            objects=float(len(others)),
            balanced_kappa=float(np.median(balanced)) if len(balanced) == len(others) else None,
        )

    def gold_iou(self) -> tuple[float | None, int]:
        scores = [m.gold_iou for m in self.measures.values() if m.gold_iou is not None]
        return (float(np.mean(scores)) if scores else None), len(scores)


def workforce(per_object: Mapping[str, Mapping[str, WorkerMeasure]]) -> dict[str, WorkerRecord]:
    """object key -> (worker -> measure)  =>  worker -> record."""
    records: dict[str, dict[str, WorkerMeasure]] = {}
    for object_key, measures in per_object.items():
        for worker_id, measure in measures.items():
            records.setdefault(worker_id, {})[object_key] = measure
    return {worker_id: WorkerRecord(measures) for worker_id, measures in records.items()}


def priors_for_object(
    records: Mapping[str, WorkerRecord], object_key: str, worker_ids: Sequence[str] = ()
) -> dict[str, WorkerPrior]:
    """Each worker's prior for one object, from the batch's other objects. A worker the other
    objects never measured is taken to be like the batch's average worker (one object's worth),
    so a known-bad worker never outweighs an unknown one just for being known."""
    out = {}
    for worker_id, record in records.items():
        prior = record.prior_excluding(object_key)
        if prior is not None:
            out[worker_id] = prior
    unknown = [w for w in worker_ids if w not in out]
    if unknown and out:
        balanced = [p.balanced_kappa for p in out.values() if p.balanced_kappa is not None]
        average = WorkerPrior(
            kappa=float(np.mean([p.kappa for p in out.values()])),
            accuracy=float(np.mean([p.accuracy for p in out.values()])),
            objects=1.0,
            balanced_kappa=float(np.mean(balanced)) if len(balanced) == len(out) else None,
        )
        out.update(dict.fromkeys(unknown, average))
    return out
