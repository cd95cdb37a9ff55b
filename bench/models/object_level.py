"""The ``object`` error model: mistakes a person makes about whole objects, not pixels.

Each worker gets concrete parameters drawn from its profile's ranges (so a pool of "average"
workers is not one clone), then paints the scene's instances largest first (small ones on top),
each from its own truth pixels:

* **consistent bias**: every object of a worker is dilated or eroded by a few px, drawn per object
  around the worker's own tendency (some people paint fat, some thin);
* **outline as a simplified polygon**: with a probability per object, the outer contour is traced
  and only every n-th vertex kept (n = the worker's vertex spacing), holes kept;
* **object shift**: the object moved by a few px; **whole-mask shift**: everything moved at the end;
* **missed small and thin objects**: with a probability that falls off with the object's width
  (2 x area / boundary length), so poles, wires and signs go first;
* **class confusion**: a whole object painted as a similar class (the scene's confusion pairs);
  part of a large region (cut by a random line) painted as its similar class;
* **unpainted holes** inside large objects and **unpainted border strips** along image edges.

Pixel parameters are for a 384-px-high image and scale with the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.geometry import ellipse_points, fill_polygon, grow, inner_boundary, shift, trace_outline
from bench.scenes import BenchScene

Range = tuple[float, float]


@dataclass(frozen=True)
class ObjectProfile:
    bias_mean: Range  # px: the worker's tendency (negative = thin)
    bias_sd: Range  # px: per-object spread around it
    object_shift_p: Range
    object_shift_px: Range
    mask_shift_p: Range
    mask_shift_px: Range
    miss_max: Range  # miss probability of a zero-width object
    miss_width: Range  # px: the width at which the miss probability falls by e
    confuse_p: Range  # whole object painted as a similar class
    region_confuse_p: Range  # part of a large region painted as a similar class
    polygon_p: Range  # outline drawn as a simplified polygon
    polygon_spacing: Range  # px between kept vertices
    hole_p: Range
    hole_size: Range  # radius as a fraction of sqrt(area)
    border_p: Range
    border_px: Range


@dataclass(frozen=True)
class ObjectWorker:
    bias_mean: float
    bias_sd: float
    object_shift_p: float
    object_shift_px: float
    mask_shift_p: float
    mask_shift_px: float
    miss_max: float
    miss_width: float
    confuse_p: float
    region_confuse_p: float
    polygon_p: float
    polygon_spacing: float
    hole_p: float
    hole_size: float
    border_p: float
    border_px: float


PROFILES: dict[str, ObjectProfile] = {
    "careful": ObjectProfile(
        bias_mean=(-0.8, 0.8),
        bias_sd=(0.3, 0.7),
        object_shift_p=(0.0, 0.15),
        object_shift_px=(0.5, 1.0),
        mask_shift_p=(0.0, 0.05),
        mask_shift_px=(0.5, 1.0),
        miss_max=(0.1, 0.3),
        miss_width=(1.0, 2.0),
        confuse_p=(0.0, 0.03),
        region_confuse_p=(0.0, 0.02),
        polygon_p=(0.1, 0.3),
        polygon_spacing=(3.0, 6.0),
        hole_p=(0.0, 0.03),
        hole_size=(0.05, 0.1),
        border_p=(0.0, 0.05),
        border_px=(1.0, 3.0),
    ),
    "average": ObjectProfile(
        bias_mean=(-2.0, 2.0),
        bias_sd=(0.6, 1.2),
        object_shift_p=(0.1, 0.35),
        object_shift_px=(1.0, 2.5),
        mask_shift_p=(0.05, 0.2),
        mask_shift_px=(1.0, 2.5),
        miss_max=(0.3, 0.6),
        miss_width=(2.0, 4.0),
        confuse_p=(0.03, 0.1),
        region_confuse_p=(0.02, 0.08),
        polygon_p=(0.3, 0.7),
        polygon_spacing=(6.0, 12.0),
        hole_p=(0.02, 0.08),
        hole_size=(0.08, 0.15),
        border_p=(0.05, 0.2),
        border_px=(2.0, 7.0),
    ),
    "sloppy": ObjectProfile(
        bias_mean=(-3.5, 3.5),
        bias_sd=(1.0, 2.0),
        object_shift_p=(0.3, 0.6),
        object_shift_px=(2.0, 5.0),
        mask_shift_p=(0.15, 0.4),
        mask_shift_px=(2.0, 5.0),
        miss_max=(0.6, 0.9),
        miss_width=(4.0, 8.0),
        confuse_p=(0.08, 0.2),
        region_confuse_p=(0.05, 0.15),
        polygon_p=(0.7, 1.0),
        polygon_spacing=(12.0, 24.0),
        hole_p=(0.05, 0.15),
        hole_size=(0.1, 0.2),
        border_p=(0.15, 0.4),
        border_px=(4.0, 14.0),
    ),
}


def sample_worker(profile: str, rng: np.random.Generator) -> ObjectWorker:
    ranges = PROFILES[profile]
    values = {name: float(rng.uniform(*getattr(ranges, name))) for name in ObjectWorker.__dataclass_fields__}
    return ObjectWorker(**values)


def _stochastic_round(value: float, rng: np.random.Generator) -> int:
    """Round so that the expectation is ``value`` (a 0.4-px bias is 1 px four times in ten)."""
    return math.floor(value + rng.random())


def _simplify(mask: np.ndarray, spacing: float) -> np.ndarray:
    """The main component's outer outline as a polygon through every ``spacing``-th contour pixel;
    holes and other components stay as they were."""
    outline = trace_outline(mask)
    step = max(2, round(spacing))
    if len(outline) < 3 * step:
        return mask
    full = fill_polygon(outline, mask.shape)
    holes = full & ~mask
    others = mask & ~full
    simple = fill_polygon(outline[::step], mask.shape)
    return (simple & ~holes) | others


def paint(scene: BenchScene, worker: ObjectWorker, rng: np.random.Generator) -> np.ndarray:
    """What this worker submits for ``scene`` (its truth and instance map), as class indices."""
    h, w = scene.shape
    s = min(h, w) / 384.0
    canvas = np.zeros((h, w), dtype=np.uint8)
    instances = scene.instances
    max_move = math.ceil((abs(worker.bias_mean) + 3 * worker.bias_sd + 3 * worker.object_shift_px) * s) + 2
    order = sorted(scene.instance_table, key=lambda info: (-info.area, info.instance_id))
    for info in order:
        y0, y1, x0, x1 = info.box
        y0, x0 = max(0, y0 - max_move), max(0, x0 - max_move)
        y1, x1 = min(h, y1 + max_move), min(w, x1 + max_move)
        mask = instances[y0:y1, x0:x1] == info.instance_id
        width = 2.0 * info.area / max(1, int(inner_boundary(mask).sum()))
        if rng.random() < worker.miss_max * math.exp(-width / max(1e-6, worker.miss_width * s)):
            continue
        cls = info.class_index
        partners = scene.partners(cls)
        if partners and rng.random() < worker.confuse_p:
            cls = int(rng.choice(partners))
        if info.area >= 16 and rng.random() < worker.polygon_p:
            mask = _simplify(mask, worker.polygon_spacing * s)
        bias = _stochastic_round(rng.normal(worker.bias_mean, worker.bias_sd) * s, rng)
        mask = grow(mask, bias)
        if rng.random() < worker.object_shift_p:
            dy, dx = (_stochastic_round(v, rng) for v in rng.normal(0.0, worker.object_shift_px * s, size=2))
            mask = shift(mask, dy, dx, False)
        region = canvas[y0:y1, x0:x1]
        region[mask] = cls
        if partners and info.area > 0.03 * h * w and rng.random() < worker.region_confuse_p:
            ys, xs = np.nonzero(mask)
            if ys.size:
                k = int(rng.integers(ys.size))
                angle = rng.uniform(0, 2 * math.pi)
                yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0]
                side = (xx - xs[k]) * math.cos(angle) + (yy - ys[k]) * math.sin(angle) > 0
                region[mask & side] = int(rng.choice(partners))
        if info.area > (15 * s) ** 2 and rng.random() < worker.hole_p:
            ys, xs = np.nonzero(mask)
            for _ in range(int(rng.integers(1, 3)) if ys.size else 0):
                k = int(rng.integers(ys.size))
                r = worker.hole_size * math.sqrt(info.area) * rng.uniform(0.6, 1.4)
                hole = fill_polygon(
                    ellipse_points(xs[k], ys[k], r, r * rng.uniform(0.5, 1.0), rng.uniform(0, math.pi)),
                    mask.shape,
                )
                region[hole & mask] = 0
    if rng.random() < worker.mask_shift_p:
        dy, dx = (_stochastic_round(v, rng) for v in rng.normal(0.0, worker.mask_shift_px * s, size=2))
        canvas = shift(canvas, dy, dx, 0)
    if rng.random() < worker.border_p:
        for side in rng.choice(4, size=int(rng.integers(1, 3)), replace=False).tolist():
            px = max(1, _stochastic_round(worker.border_px * s * rng.uniform(0.5, 1.5), rng))
            if side == 0:
                canvas[:px, :] = 0
            elif side == 1:
                canvas[-px:, :] = 0
            elif side == 2:
                canvas[:, :px] = 0
            else:
                canvas[:, -px:] = 0
    return canvas
