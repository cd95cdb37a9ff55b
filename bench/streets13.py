"""A street-scene generator of the benchmark's own, independent of ``gtseg.local.simulation``.

13 classes in Cityscapes' spirit, with the similar pairs real crowds confuse (car/truck/bus,
road/sidewalk/terrain, pole/traffic sign/traffic light, building/wall, vegetation/terrain), drawn
as composite objects (a car = body + cabin, a truck = cab + cargo box, a tree = trunk + crown of
overlapping discs, a sign or a light on a pole) with depth ordering, so objects occlude each other
and instances are split. Returns the truth label map and an instance map. numpy + Pillow.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from bench.geometry import ellipse_points

LABELS: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "vegetation",
    "terrain",
    "car",
    "truck",
    "bus",
    "person",
    "pole",
    "traffic sign",
    "traffic light",
)
CLASS = {name: i + 1 for i, name in enumerate(LABELS)}  # 0 = background (sky, unlabelled)
CONFUSABLE: tuple[tuple[str, str], ...] = (
    ("car", "truck"),
    ("car", "bus"),
    ("truck", "bus"),
    ("road", "sidewalk"),
    ("sidewalk", "terrain"),
    ("pole", "traffic sign"),
    ("pole", "traffic light"),
    ("traffic sign", "traffic light"),
    ("building", "wall"),
    ("vegetation", "terrain"),
)
SMALL = frozenset({"pole", "traffic sign", "traffic light", "person"})

Points = list[tuple[float, float]]


class _Canvas:
    """Draws each object into a class image and an instance image (one id per object)."""

    def __init__(self, width: int, height: int) -> None:
        self.cls = Image.new("L", (width, height), 0)
        self.inst = Image.new("I", (width, height), 0)
        self._dc = ImageDraw.Draw(self.cls)
        self._di = ImageDraw.Draw(self.inst)
        self.next_id = 1

    def new_object(self) -> int:
        oid = self.next_id
        self.next_id += 1
        return oid

    def polygon(self, oid: int, label: str, points: Points) -> None:
        self._dc.polygon(points, fill=CLASS[label])
        self._di.polygon(points, fill=oid)

    def rect(self, oid: int, label: str, x0: float, y0: float, x1: float, y1: float) -> None:
        self.polygon(oid, label, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def disc(self, oid: int, label: str, cx: float, cy: float, r: float) -> None:
        self.polygon(oid, label, ellipse_points(cx, cy, r, r, n=max(12, int(r))))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.cls, dtype=np.uint8).copy(), np.asarray(self.inst, dtype=np.int32).copy()


def _edge(x_bottom: float, x_top: float, y_bottom: float, y_top: float, bend: float, n: int = 10) -> Points:
    """A road/sidewalk edge from the bottom to the horizon, bent by ``bend`` px in the middle."""
    pts = []
    for i in range(n + 1):
        t = i / n
        pts.append(
            (x_bottom + (x_top - x_bottom) * t + bend * 4 * t * (1 - t), y_bottom + (y_top - y_bottom) * t)
        )
    return pts


def make_streets13(seed: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(truth uint8 (H, W), instances int32 (H, W)) of a seeded 13-class street scene."""
    rng = np.random.default_rng(seed)
    w, h = float(width), float(height)
    s = min(w, h) / 384.0
    canvas = _Canvas(width, height)
    horizon = h * rng.uniform(0.36, 0.5)
    vx = w * rng.uniform(0.35, 0.65)
    bend = w * rng.uniform(-0.08, 0.08)

    # buildings along the horizon, some with an upper storey set back, some walls in front
    x = -w * rng.uniform(0.0, 0.05)
    while x < w:
        bw = w * rng.uniform(0.07, 0.22)
        if rng.random() < 0.85 and abs(x + bw / 2 - vx) > 0.06 * w:
            oid = canvas.new_object()
            top = horizon - h * rng.uniform(0.12, 0.34)
            base = horizon + 3 * s
            canvas.rect(oid, "building", x, top, x + bw, base)
            if rng.random() < 0.4:
                inset = bw * rng.uniform(0.15, 0.3)
                canvas.rect(
                    oid, "building", x + inset, top - h * rng.uniform(0.04, 0.1), x + bw - inset, top + 1
                )
        x += bw + w * rng.uniform(0.0, 0.04)
    for _ in range(rng.integers(0, 3)):
        oid = canvas.new_object()
        x0 = rng.uniform(0, w * 0.85)
        canvas.rect(
            oid,
            "wall",
            x0,
            horizon - h * rng.uniform(0.03, 0.07),
            x0 + w * rng.uniform(0.08, 0.2),
            horizon + 4 * s,
        )

    # terrain strips and hedges at the foot of the buildings
    for side in (0, 1):
        if rng.random() < 0.7:
            oid = canvas.new_object()
            y0 = horizon + rng.uniform(0, 4) * s
            y1 = horizon + h * rng.uniform(0.05, 0.12)
            xs = (0.0, vx - 0.2 * w) if side == 0 else (vx + 0.2 * w, w)
            canvas.polygon(
                oid,
                "terrain",
                [(xs[0], y0), (xs[1], y0), (xs[1] - (1 - 2 * side) * 0.1 * w, y1), (xs[0], y1)],
            )

    # sidewalks, then the road over them (both bent by the same curve)
    left_bottom, right_bottom = w * rng.uniform(0.05, 0.2), w * rng.uniform(0.8, 0.95)
    road_top_half = w * rng.uniform(0.03, 0.06)
    walk = w * rng.uniform(0.2, 0.35)
    oid = canvas.new_object()
    left_outer = _edge(left_bottom - walk, vx - road_top_half - 0.08 * w, h, horizon, bend)
    left_inner = _edge(left_bottom, vx - road_top_half, h, horizon, bend)
    canvas.polygon(oid, "sidewalk", left_outer + left_inner[::-1])
    oid = canvas.new_object()
    right_inner = _edge(right_bottom, vx + road_top_half, h, horizon, bend)
    right_outer = _edge(right_bottom + walk, vx + road_top_half + 0.08 * w, h, horizon, bend)
    canvas.polygon(oid, "sidewalk", right_inner + right_outer[::-1])
    oid = canvas.new_object()
    canvas.polygon(oid, "road", left_inner + right_inner[::-1])

    def road_x(depth: float, lateral: float) -> float:
        """x on the road at ``depth`` (0 = horizon, 1 = bottom), lateral in [-1, 1] across it."""
        t = 1 - depth
        cx = (left_bottom + right_bottom) / 2 * (1 - t) + vx * t + bend * 4 * t * (1 - t)
        half = (right_bottom - left_bottom) / 2 * (1 - t) + road_top_half * t
        return cx + lateral * half

    # trees (trunk + crown of discs) and standalone vegetation blobs behind the sidewalk
    for _ in range(rng.integers(2, 6)):
        oid = canvas.new_object()
        depth = rng.uniform(0.0, 0.35)
        tx = rng.choice([rng.uniform(0.0, 0.3), rng.uniform(0.7, 1.0)]) * w
        foot = horizon + (h - horizon) * depth * 0.6
        size = (18 + 60 * depth) * s * rng.uniform(0.8, 1.3)
        canvas.rect(oid, "vegetation", tx - size * 0.08, foot - size * 1.6, tx + size * 0.08, foot)
        for _ in range(rng.integers(3, 7)):
            canvas.disc(
                oid,
                "vegetation",
                tx + rng.normal(0, size * 0.35),
                foot - size * 1.6 - rng.uniform(0, size * 0.6),
                size * rng.uniform(0.35, 0.65),
            )

    # vehicles on the road, far to near
    vehicles = sorted(rng.uniform(0.08, 0.95, size=rng.integers(2, 7)))
    for depth in vehicles:
        kind = rng.choice(["car", "car", "car", "truck", "bus"])
        scale = (0.12 + 0.88 * depth) * s
        cx = road_x(depth, rng.uniform(-0.6, 0.6))
        base = horizon + (h - horizon) * depth
        oid = canvas.new_object()
        if kind == "car":
            bw, bh = 150 * scale, 42 * scale
            canvas.polygon(
                oid,
                "car",
                [
                    (cx - bw / 2, base - bh * 0.3),
                    (cx - bw / 2 + bh * 0.2, base - bh),
                    (cx + bw / 2 - bh * 0.2, base - bh),
                    (cx + bw / 2, base - bh * 0.3),
                    (cx + bw / 2, base),
                    (cx - bw / 2, base),
                ],
            )
            canvas.polygon(
                oid,
                "car",
                [
                    (cx - bw * 0.3, base - bh + 1),
                    (cx - bw * 0.18, base - bh * 1.75),
                    (cx + bw * 0.2, base - bh * 1.75),
                    (cx + bw * 0.34, base - bh + 1),
                ],
            )
        elif kind == "truck":
            bw, bh = 190 * scale, 120 * scale
            facing = rng.choice([-1.0, 1.0])
            cab = bw * 0.28
            x_cargo0, x_cargo1 = (
                (cx - bw / 2, cx + bw / 2 - cab) if facing > 0 else (cx - bw / 2 + cab, cx + bw / 2)
            )
            canvas.rect(oid, "truck", x_cargo0, base - bh, x_cargo1, base - bh * 0.12)
            cab_x0, cab_x1 = (x_cargo1, cx + bw / 2) if facing > 0 else (cx - bw / 2, x_cargo0)
            canvas.polygon(
                oid,
                "truck",
                [
                    (cab_x0, base - bh * 0.7),
                    (cab_x1 - facing * cab * 0.25, base - bh * 0.7),
                    (cab_x1, base - bh * 0.4),
                    (cab_x1, base),
                    (cab_x0, base),
                ],
            )
            canvas.rect(oid, "truck", x_cargo0, base - bh * 0.14, cab_x0 if facing > 0 else cab_x1, base)
        else:
            bw, bh = 260 * scale, 110 * scale
            r = bh * 0.12
            canvas.polygon(
                oid,
                "bus",
                [
                    (cx - bw / 2 + r, base - bh),
                    (cx + bw / 2 - r, base - bh),
                    (cx + bw / 2, base - bh + r),
                    (cx + bw / 2, base),
                    (cx - bw / 2, base),
                    (cx - bw / 2, base - bh + r),
                ],
            )

    # people on the sidewalks: head + body + legs
    for _ in range(rng.integers(1, 6)):
        oid = canvas.new_object()
        depth = rng.uniform(0.2, 1.0)
        ph = (30 + 110 * depth) * s
        side = rng.choice([-1.0, 1.0])
        px = road_x(depth, side * rng.uniform(1.15, 1.6))
        foot = horizon + (h - horizon) * depth
        canvas.disc(oid, "person", px, foot - ph * 0.9, ph * 0.08)
        canvas.polygon(oid, "person", ellipse_points(px, foot - ph * 0.6, ph * 0.12, ph * 0.22, n=18))
        leg = ph * 0.04
        canvas.rect(oid, "person", px - 3 * leg, foot - ph * 0.42, px - leg, foot)
        canvas.rect(oid, "person", px + leg, foot - ph * 0.42, px + 3 * leg, foot)

    # poles at the road edge, some carrying a traffic sign or a traffic light (separate objects)
    for _ in range(rng.integers(2, 7)):
        depth = rng.uniform(0.1, 1.0)
        side = rng.choice([-1.0, 1.0])
        px = road_x(depth, side * rng.uniform(1.02, 1.12))
        foot = horizon + (h - horizon) * depth
        pole_h = (70 + 200 * depth) * s
        pole_w = max(1.5, (1.5 + 4.5 * depth) * s * rng.uniform(0.7, 1.3))
        oid = canvas.new_object()
        top = foot - pole_h
        canvas.rect(oid, "pole", px - pole_w / 2, top, px + pole_w / 2, foot)
        carry = rng.random()
        if carry < 0.45:
            oid = canvas.new_object()
            r = max(2.5, (5 + 14 * depth) * s)
            shape = rng.integers(0, 3)
            cy = top + r
            if shape == 0:
                canvas.disc(oid, "traffic sign", px, cy, r)
            elif shape == 1:
                canvas.polygon(
                    oid, "traffic sign", [(px - r, cy - r * 0.8), (px + r, cy - r * 0.8), (px, cy + r)]
                )
            else:
                canvas.rect(oid, "traffic sign", px - r * 1.3, cy - r * 0.7, px + r * 1.3, cy + r * 0.7)
        elif carry < 0.75:
            oid = canvas.new_object()
            lw = max(2.0, (4 + 8 * depth) * s)
            arm = side * -1 * lw * rng.uniform(0.0, 2.0)
            canvas.rect(oid, "traffic light", px + arm - lw / 2, top, px + arm + lw / 2, top + lw * 2.8)
        if rng.random() < 0.15:  # a wire from the pole top, labelled pole as well
            oid = canvas.new_object()
            x_end = px - side * w * rng.uniform(0.1, 0.4)
            thick = max(1.0, 1.2 * s)
            sag = h * 0.03
            pts = [(px + (x_end - px) * t, top + sag * math.sin(math.pi * t)) for t in np.linspace(0, 1, 12)]
            upper = [(x, y - thick / 2) for x, y in pts]
            lower = [(x, y + thick / 2) for x, y in pts[::-1]]
            canvas.polygon(oid, "pole", upper + lower)
    return canvas.arrays()
