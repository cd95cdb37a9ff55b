"""Worker answers -> one object's consolidation: decode each worker's PNG, reject what cannot be
used (with the reason), consolidate the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gtseg.core.consolidation.methods import Method
from gtseg.core.consolidation.neighbourhood import DEFAULT_NEIGHBOURHOOD_RADIUS
from gtseg.core.consolidation.reliability import WorkerPrior
from gtseg.core.consolidation.strategies import ConsolidationResult, consolidate_masks, known_mask_result
from gtseg.core.labels import ClassMap
from gtseg.core.masks import DecodedMask, MaskError, b64decode_png, decode_worker_mask, open_png


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


@dataclass(frozen=True)
class DecodedAnswers:
    """The usable masks of one object (class indices in the job's class map), and what was not."""

    masks: tuple[np.ndarray, ...]
    worker_ids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]
    stats: tuple[DecodeStats, ...]
    failure_reason: str | None  # set when no mask is usable


def decode_answers(answers: Sequence[WorkerAnswer], class_map: ClassMap) -> DecodedAnswers:
    """Decode each worker's PNG; a bad annotation is rejected with a reason, never raised."""
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
    failure = None
    if not answers:
        failure = "no worker annotated this object"
    elif not decoded:
        failure = "no usable annotation: " + "; ".join(f"{wid}: {why}" for wid, why in rejected)
    return DecodedAnswers(
        masks=tuple(m.indices for _, m in decoded),
        worker_ids=tuple(wid for wid, _ in decoded),
        rejected=tuple(rejected),
        stats=stats,
        failure_reason=failure,
    )


def consolidate_decoded(
    decoded: DecodedAnswers,
    class_map: ClassMap,
    *,
    method: Method | str = Method.GTSEG,
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS,
    worker_priors: Mapping[str, WorkerPrior] | None = None,
) -> ObjectConsolidation:
    if not decoded.masks:
        return ObjectConsolidation(None, decoded.rejected, decoded.stats, decoded.failure_reason)
    result = consolidate_masks(
        decoded.masks,
        len(class_map),
        method=method,
        smoothing=smoothing,
        worker_ids=decoded.worker_ids,
        worker_priors=worker_priors,
    )
    return ObjectConsolidation(result, decoded.rejected, decoded.stats, None)


def consolidate_worker_answers(
    answers: Sequence[WorkerAnswer],
    class_map: ClassMap,
    *,
    method: Method | str = Method.GTSEG,
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS,
    worker_priors: Mapping[str, WorkerPrior] | None = None,
) -> ObjectConsolidation:
    """Decode each worker's PNG and consolidate; a bad annotation is rejected with a reason,
    never failing the object. No usable annotation -> ``result=None`` and a ``failure_reason``."""
    return consolidate_decoded(
        decode_answers(answers, class_map),
        class_map,
        method=method,
        smoothing=smoothing,
        worker_priors=worker_priors,
    )


def gold_outcome(decoded: DecodedAnswers, known: np.ndarray, num_classes: int) -> ObjectConsolidation:
    """A gold object's result is its known mask; its workers are scored against it."""
    result = known_mask_result(known, decoded.masks, decoded.worker_ids, num_classes)
    return ObjectConsolidation(result, decoded.rejected, decoded.stats, None)


def without_pixels(outcome: ObjectConsolidation) -> ObjectConsolidation:
    """The same outcome without its label image, once that is written: a batch of thousands of
    objects must not keep thousands of full-resolution masks."""
    if outcome.result is None:
        return outcome
    return dataclasses.replace(outcome, result=dataclasses.replace(outcome.result, labels=_NO_PIXELS))


_NO_PIXELS = np.zeros((0, 0), dtype=np.uint8)
