"""The benchmark's own scores (independent of gtseg.core.metrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_iou(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean IoU over the classes present in the truth or the prediction (background included)."""
    conf = np.bincount(
        truth.ravel().astype(np.int64) * num_classes + pred.ravel().astype(np.int64),
        minlength=num_classes * num_classes,
    )
    conf = conf.reshape(num_classes, num_classes).astype(np.float64)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 1.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN with fewer than three points or no spread."""
    if len(x) < 3:
        return math.nan
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.std() < 1e-12 or b.std() < 1e-12:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
