"""Agreement between class-index masks: pixel agreement, Cohen's kappa, IoU, disagreement maps.

Pure numpy. The report, reconsolidation, the simulation's scores and the benchmark all measure
with these, so a figure means the same thing wherever it is printed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels where two class-index masks agree (1.0 for two empty masks)."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in size: {a.shape} vs {b.shape}")
    return float(np.count_nonzero(a == b) / a.size) if a.size else 1.0


def cohen_kappa(worker: np.ndarray, consensus: np.ndarray, num_classes: int) -> float:
    """Chance-corrected agreement of a worker with the consensus, clipped to [0, 1].

    A worker who paints one class everywhere scores 0 whatever the consensus is.
    """
    observed = pixel_agreement(worker, consensus)
    n = max(worker.size, 1)
    p_worker = np.bincount(worker.ravel(), minlength=num_classes) / n
    p_consensus = np.bincount(consensus.ravel(), minlength=num_classes) / n
    expected = float(np.dot(p_worker[:num_classes], p_consensus[:num_classes]))
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return float(min(max((observed - expected) / (1.0 - expected), 0.0), 1.0))


def disagreement_map(worker_masks: Sequence[np.ndarray], consensus: np.ndarray) -> np.ndarray:
    """Per pixel, the fraction of workers whose label differs from the consensus (float32 0..1)."""
    if not worker_masks:
        return np.zeros(consensus.shape, dtype=np.float32)
    total = np.zeros(consensus.shape, dtype=np.float32)
    for mask in worker_masks:
        total += mask != consensus
    return total / len(worker_masks)


def mean_iou(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in the truth or the prediction."""
    conf = np.bincount(truth.ravel().astype(np.int64) * num_classes + pred.ravel(), minlength=num_classes**2)
    conf = conf.reshape(num_classes, num_classes).astype(np.float64)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 1.0
