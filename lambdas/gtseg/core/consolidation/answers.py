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
from gtseg.core.images import ImageFormat, ImageHeaderError, read_image_info
from gtseg.core.labels import ClassMap
from gtseg.core.masks import (
    MAX_MASK_PIXELS,
    DecodedMask,
    MaskError,
    b64decode_png,
    decode_worker_mask,
    open_png,
)


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


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, before a single pixel is decoded."""
    try:
        info = read_image_info(png[:64])
    except ImageHeaderError as exc:
        raise MaskError(f"not a readable PNG: {exc}") from None
    if info.format is not ImageFormat.PNG:
        raise MaskError(f"the mask is a {info.format.value.upper()}, not a PNG")
    if info.pixels > MAX_MASK_PIXELS:
        raise MaskError(f"mask is {info.width}x{info.height}; the limit is {MAX_MASK_PIXELS} pixels")
    return info.width, info.height


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def decode_answers(
    answers: Sequence[WorkerAnswer],
    class_map: ClassMap,
    *,
    image_sizes: Sequence[tuple[int, int]] = (),
) -> DecodedAnswers:
    """Decode each worker's PNG; a bad annotation is rejected with a reason, never raised.

    The image decides the size: ``image_sizes`` are the (width, height) the image may be shown at
    (as stored, and rotated by its EXIF orientation). Without them the workers' masks can only be
    checked against each other: the most common size is kept, a tie going to the smaller one. Sizes
    come from each PNG's header, so a mask of the wrong size is refused without being decoded."""
    sized: list[tuple[WorkerAnswer, bytes, tuple[int, int]]] = []
    rejected: list[tuple[str, str]] = []
    for answer in answers:
        try:
            png = b64decode_png(answer.png) if isinstance(answer.png, str) else answer.png
            size = _png_size(png)
            if not image_sizes and answer.expected_size is not None and size != tuple(answer.expected_size):
                raise MaskError(
                    f"mask is {_size_text(size)} but inputImageProperties says {_size_text(answer.expected_size)}"
                )
        except MaskError as exc:
            rejected.append((answer.worker_id, str(exc)))
            continue
        sized.append((answer, png, size))
    shown_at = [(int(w), int(h)) for w, h in image_sizes]
    allowed: set[tuple[int, int]]
    if shown_at:
        allowed = set(shown_at)
        wanted = "the image is " + " or ".join(_size_text(s) for s in dict.fromkeys(shown_at))
    else:
        sizes = [size for _, _, size in sized]
        modal = min(set(sizes), key=lambda s: (-sizes.count(s), s[0] * s[1], s)) if sizes else None
        allowed = {modal} if modal else set()
        wanted = f"the others are {_size_text(modal)}" if modal else ""
    usable = [(a, png, size) for a, png, size in sized if size in allowed]
    if len({size for _, _, size in usable}) > 1:
        # masks at both the stored and the rotated size: the larger group, ties to the display size
        counts = {size: sum(1 for _, _, s in usable if s == size) for size in allowed}
        keep = max(counts, key=lambda s: (counts[s], s == shown_at[-1]))
        usable = [(a, png, size) for a, png, size in usable if size == keep]
        wanted = f"the others are {_size_text(keep)}"
    kept_ids = {id(a) for a, _, _ in usable}
    for answer, _png, size in sized:
        if id(answer) not in kept_ids:
            rejected.append((answer.worker_id, f"mask is {_size_text(size)}, {wanted}"))
    decoded: list[tuple[str, DecodedMask]] = []
    for answer, png, _size in usable:
        try:
            # the size is settled: a worker's own inputImageProperties no longer matter
            mask = decode_worker_mask(open_png(png), answer.label_mappings, class_map)
        except MaskError as exc:
            rejected.append((answer.worker_id, str(exc)))
            continue
        decoded.append((answer.worker_id, mask))
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
