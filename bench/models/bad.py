"""Bad workers of the mask-based models (written here; the polygon model keeps gtseg.simulation's).

* spammer: one class everywhere; half of the time nothing at all (an empty mask = background),
  otherwise one random label.
* blobs: random rotated ellipses of random classes over an empty canvas.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from bench.geometry import ellipse_points


def spammer(shape: tuple[int, int], num_classes: int, rng: np.random.Generator) -> np.ndarray:
    if num_classes < 2 or rng.random() < 0.5:
        return np.zeros(shape, dtype=np.uint8)
    return np.full(shape, int(rng.integers(1, num_classes)), dtype=np.uint8)


def blobs(shape: tuple[int, int], num_classes: int, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 11))):
        r = rng.uniform(0.06, 0.3) * min(h, w)
        pts = ellipse_points(
            rng.uniform(0, w),
            rng.uniform(0, h),
            r,
            r * rng.uniform(0.35, 1.0),
            angle=rng.uniform(0, math.pi),
            n=28,
        )
        draw.polygon(pts, fill=int(rng.integers(1, max(2, num_classes))))
    return np.asarray(canvas, dtype=np.uint8).copy()
