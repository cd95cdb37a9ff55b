"""The ``boundary`` error model: pixel-level errors with a structure unlike the object model's.

* **smooth warp**: the truth resampled through a random displacement field of low-frequency noise
  (a coarse grid of normal values, upsampled bicubically), so every boundary wanders smoothly by a
  worker-specific amplitude and wavelength, objects and regions alike;
* **boundary band noise**: near a boundary a pixel takes the label of a random pixel a little
  further away, with a probability that decays exponentially with the distance to the boundary
  (drawn in 2x2 blocks, like a brush, not salt and pepper);
* **small-region flips**: a few small ellipses where one class is repainted as a similar class
  (the scene's confusion pairs) or, without one, another class present nearby.

Workers draw concrete parameters from their profile's ranges. Pixel parameters are for a 384-px
image and scale with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.geometry import edge_distance, ellipse_points, fill_polygon, smooth_field
from bench.scenes import BenchScene

Range = tuple[float, float]


@dataclass(frozen=True)
class BoundaryProfile:
    warp_px: Range  # standard deviation of the displacement
    warp_cell: Range  # px: its wavelength
    band_p: Range  # relabel probability on the boundary
    band_decay: Range  # px: distance at which it falls by e
    flip_rate: Range  # small-region flips per 100x100 px
    flip_radius: Range  # px


@dataclass(frozen=True)
class BoundaryWorker:
    warp_px: float
    warp_cell: float
    band_p: float
    band_decay: float
    flip_rate: float
    flip_radius: float


PROFILES: dict[str, BoundaryProfile] = {
    "careful": BoundaryProfile(
        warp_px=(0.4, 1.0),
        warp_cell=(60.0, 120.0),
        band_p=(0.1, 0.25),
        band_decay=(0.6, 1.0),
        flip_rate=(0.0, 0.05),
        flip_radius=(3.0, 6.0),
    ),
    "average": BoundaryProfile(
        warp_px=(1.2, 2.2),
        warp_cell=(40.0, 90.0),
        band_p=(0.25, 0.4),
        band_decay=(1.0, 1.8),
        flip_rate=(0.05, 0.15),
        flip_radius=(4.0, 10.0),
    ),
    "sloppy": BoundaryProfile(
        warp_px=(2.5, 4.5),
        warp_cell=(25.0, 60.0),
        band_p=(0.35, 0.5),
        band_decay=(1.5, 3.0),
        flip_rate=(0.15, 0.4),
        flip_radius=(6.0, 16.0),
    ),
}


def sample_worker(profile: str, rng: np.random.Generator) -> BoundaryWorker:
    ranges = PROFILES[profile]
    values = {
        name: float(rng.uniform(*getattr(ranges, name))) for name in BoundaryWorker.__dataclass_fields__
    }
    return BoundaryWorker(**values)


def _blocks(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Half-resolution values repeated into 2x2 blocks and cropped to ``shape``."""
    return values.repeat(2, axis=0).repeat(2, axis=1)[: shape[0], : shape[1]]


def paint(scene: BenchScene, worker: BoundaryWorker, rng: np.random.Generator) -> np.ndarray:
    h, w = scene.shape
    s = min(h, w) / 384.0
    yy, xx = np.mgrid[0:h, 0:w]
    cell = max(4.0, worker.warp_cell * s)
    dy = smooth_field((h, w), cell, rng) * (worker.warp_px * s)
    dx = smooth_field((h, w), cell, rng) * (worker.warp_px * s)
    sy = np.clip(np.rint(yy + dy), 0, h - 1).astype(np.intp)
    sx = np.clip(np.rint(xx + dx), 0, w - 1).astype(np.intp)
    out = scene.truth[sy, sx]

    decay = max(0.3, worker.band_decay * s)
    max_d = min(24, math.ceil(4 * decay) + 1)
    dist = edge_distance(out, max_d)
    half = ((h + 1) // 2, (w + 1) // 2)
    p = worker.band_p * np.exp(-dist.astype(np.float32) / decay)
    p[dist >= max_d] = 0.0
    flip = _blocks(rng.random(half, dtype=np.float32), (h, w)) < p
    if flip.any():
        reach = dist.astype(np.float32) + 1.5
        oy = np.rint(_blocks(rng.uniform(-1, 1, half).astype(np.float32), (h, w)) * reach)
        ox = np.rint(_blocks(rng.uniform(-1, 1, half).astype(np.float32), (h, w)) * reach)
        fy = np.clip(yy[flip] + oy[flip].astype(np.intp), 0, h - 1)
        fx = np.clip(xx[flip] + ox[flip].astype(np.intp), 0, w - 1)
        base = out.copy()
        out[flip] = base[fy, fx]

    n_flips = int(rng.poisson(worker.flip_rate * h * w / (100.0 * s) ** 2))
    for _ in range(n_flips):
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        r = max(1.5, worker.flip_radius * s * rng.uniform(0.5, 1.0))
        y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
        x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
        region = out[y0:y1, x0:x1]
        old = int(out[cy, cx])
        partners = scene.partners(old)
        if partners:
            new = int(rng.choice(partners))
        else:
            present = [c for c in np.unique(region).tolist() if c != old]
            if not present:
                continue
            new = int(rng.choice(present))
        blob = fill_polygon(
            ellipse_points(cx - x0, cy - y0, r, r * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi), n=16),
            region.shape,
        )
        region[blob & (region == old)] = new
    return out
