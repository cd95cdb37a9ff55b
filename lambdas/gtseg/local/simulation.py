"""Synthetic street scenes and simulated workers, for the benchmark, the local demo and tests.

A scene is a list of polygons (large regions, small objects, thin poles) drawn in order; its
truth mask is exact. A simulated worker redraws the same polygons the way people paint them:
jittered vertices, a small offset, missed small objects, the odd wrong class, coarser outlines
when sloppy. Bad workers either paint one class everywhere (a spammer) or random blobs.
Deterministic for a given seed. Pure numpy + Pillow.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from gtseg.core.labels import ClassMap

DEFAULT_LABELS: tuple[str, ...] = ("road", "sidewalk", "building", "vegetation", "car", "person", "pole")
_KINDS = DEFAULT_LABELS  # the shape kinds the scene generator knows, in drawing order

# RGB look of each kind in the rendered picture (sky for background).
_KIND_RGB = {
    "background": (135, 180, 225),
    "road": (90, 90, 95),
    "sidewalk": (170, 165, 160),
    "building": (150, 110, 85),
    "vegetation": (60, 130, 55),
    "car": (180, 30, 40),
    "person": (230, 190, 150),
    "pole": (45, 45, 50),
}


@dataclass(frozen=True)
class Shape:
    kind: str
    class_index: int
    points: tuple[tuple[float, float], ...]
    small: bool  # small or thin objects are the ones workers miss


@dataclass(frozen=True)
class Scene:
    seed: int
    width: int
    height: int
    labels: tuple[str, ...]
    shapes: tuple[Shape, ...]

    @cached_property
    def class_map(self) -> ClassMap:
        return ClassMap.from_labels(self.labels)

    @cached_property
    def truth(self) -> np.ndarray:
        return render(self.shapes, self.width, self.height)

    @cached_property
    def image(self) -> np.ndarray:
        """An RGB picture of the scene: per-kind colours, sky gradient, shading and noise."""
        rng = np.random.default_rng(self.seed + 7919)
        kind_of_class = {0: "background"}
        for shape in self.shapes:
            kind_of_class.setdefault(shape.class_index, shape.kind)
        lut = np.zeros((256, 3), dtype=np.float32)
        for index in range(len(self.class_map)):
            kind = kind_of_class.get(index, "background")
            lut[index] = _KIND_RGB.get(kind, (128, 128, 128))
        img = lut[self.truth]
        shade = np.linspace(1.1, 0.85, self.height, dtype=np.float32)[:, None, None]
        img *= shade
        img += rng.normal(0.0, 9.0, size=img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def image_png(self) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, format="PNG")
        return buf.getvalue()

    def image_jpeg(self, quality: int = 90) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


def render(shapes: Sequence[Shape], width: int, height: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for shape in shapes:
        if len(shape.points) >= 3:
            draw.polygon(list(shape.points), fill=shape.class_index)
    return np.asarray(canvas, dtype=np.uint8).copy()


def _class_for(kind: str, labels: Sequence[str]) -> int:
    if kind in labels:
        return labels.index(kind) + 1
    return _KINDS.index(kind) % len(labels) + 1


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int, wobble: float, rng: np.random.Generator):
    phase = rng.uniform(0, 2 * math.pi)
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        r = 1.0 + wobble * math.sin(3 * t + phase)
        pts.append((cx + rx * r * math.cos(t), cy + ry * r * math.sin(t)))
    return tuple(pts)


def make_scene(
    seed: int, width: int = 640, height: int = 480, labels: Sequence[str] = DEFAULT_LABELS
) -> Scene:
    """A street-like scene: road and sidewalks, buildings, trees, poles, cars and people."""
    labels = tuple(labels)
    rng = np.random.default_rng(seed)
    w, h = float(width), float(height)
    s = min(w, h) / 480.0
    horizon = h * rng.uniform(0.38, 0.5)
    vx = w * rng.uniform(0.4, 0.6)  # vanishing point
    shapes: list[Shape] = []

    def add(kind: str, points, small: bool = False) -> None:
        shapes.append(
            Shape(kind, _class_for(kind, labels), tuple((float(x), float(y)) for x, y in points), small)
        )

    add(
        "sidewalk",
        [(0, h), (w, h), (w, h * 0.8), (vx + 0.12 * w, horizon), (vx - 0.12 * w, horizon), (0, h * 0.8)],
    )
    add("road", [(w * 0.08, h), (w * 0.92, h), (vx + 0.05 * w, horizon), (vx - 0.05 * w, horizon)])
    x = 0.0
    while x < w:
        bw = w * rng.uniform(0.08, 0.2)
        top = horizon - h * rng.uniform(0.1, 0.3)
        if abs(x + bw / 2 - vx) > 0.1 * w:
            add("building", [(x, top), (x + bw, top), (x + bw, horizon + 2 * s), (x, horizon + 2 * s)])
        x += bw + w * rng.uniform(0.0, 0.05)
    for _ in range(rng.integers(2, 5)):
        cx, cy = rng.uniform(0, w), horizon - h * rng.uniform(0.0, 0.12)
        r = h * rng.uniform(0.05, 0.11)
        add("vegetation", _ellipse(cx, cy, r * 1.2, r, 28, 0.18, rng))
    for _ in range(rng.integers(2, 5)):
        px = rng.uniform(0.02, 0.98) * w
        pw = max(2.0, 3.0 * s * rng.uniform(0.7, 1.4))
        top, bottom = horizon - h * rng.uniform(0.1, 0.25), horizon + h * rng.uniform(0.05, 0.3)
        add("pole", [(px, top), (px + pw, top), (px + pw, bottom), (px, bottom)], small=True)
    for _ in range(rng.integers(2, 6)):
        depth = rng.uniform(0.1, 1.0)  # 0 = far, 1 = near
        cy = horizon + (h - horizon) * depth * 0.85
        cw, ch = (30 + 110 * depth) * s, (16 + 55 * depth) * s
        cx = vx + (rng.uniform(-0.5, 0.5) * (w * 0.7) * depth)
        c = min(cw, ch) * 0.25
        x0, y0, x1, y1 = cx - cw / 2, cy - ch, cx + cw / 2, cy
        add(
            "car",
            [(x0 + c, y0), (x1 - c, y0), (x1, y0 + c), (x1, y1), (x0, y1), (x0, y0 + c)],
            small=depth < 0.45,
        )
    for _ in range(rng.integers(1, 5)):
        depth = rng.uniform(0.2, 1.0)
        foot = horizon + (h - horizon) * depth * 0.9
        ph, pw = (25 + 90 * depth) * s, (7 + 22 * depth) * s
        px = rng.choice([rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)]) * w
        add("person", _ellipse(px, foot - ph / 2, pw / 2, ph / 2, 16, 0.08, rng), small=True)
    return Scene(seed, width, height, labels, tuple(shapes))


# --------------------------------------------------------------------------- simulated workers


@dataclass(frozen=True)
class WorkerProfile:
    name: str
    vertex_jitter: float = 0.0  # px (at 480 px scene height) of per-vertex noise
    offset: float = 0.0  # px of whole-shape displacement
    miss_rate: float = 0.0  # chance of skipping a small object (large regions: a fifth of it)
    confusion_rate: float = 0.0  # chance of painting an object with another label
    coarse: bool = False  # drops every other vertex of detailed outlines
    behaviour: str = "painter"  # painter | constant | blobs
    bad: bool = False

    def __post_init__(self) -> None:
        if self.behaviour not in ("painter", "constant", "blobs"):
            raise ValueError(f"unknown behaviour {self.behaviour!r}")


PROFILES: dict[str, WorkerProfile] = {
    "careful": WorkerProfile("careful", vertex_jitter=1.0, offset=0.7, miss_rate=0.03, confusion_rate=0.01),
    "average": WorkerProfile("average", vertex_jitter=2.5, offset=1.8, miss_rate=0.1, confusion_rate=0.04),
    "sloppy": WorkerProfile(
        "sloppy", vertex_jitter=6.0, offset=4.0, miss_rate=0.3, confusion_rate=0.12, coarse=True
    ),
    "spammer": WorkerProfile("spammer", behaviour="constant", bad=True),
    "blobs": WorkerProfile("blobs", behaviour="blobs", bad=True),
}


def paint(scene: Scene, profile: WorkerProfile, rng: np.random.Generator) -> np.ndarray:
    """What a worker with ``profile`` submits for ``scene``, as class indices."""
    n_classes = len(scene.class_map)
    if profile.behaviour == "constant":
        return np.full((scene.height, scene.width), rng.integers(0, n_classes), dtype=np.uint8)
    if profile.behaviour == "blobs":
        blobs = []
        for _ in range(rng.integers(4, 12)):
            cx, cy = rng.uniform(0, scene.width), rng.uniform(0, scene.height)
            r = rng.uniform(0.05, 0.25) * min(scene.width, scene.height)
            cls = int(rng.integers(1, n_classes))
            blobs.append(
                Shape("blob", cls, _ellipse(cx, cy, r, r * rng.uniform(0.5, 1.5), 20, 0.2, rng), False)
            )
        return render(blobs, scene.width, scene.height)
    s = min(scene.width, scene.height) / 480.0
    drawn: list[Shape] = []
    for shape in scene.shapes:
        miss = profile.miss_rate if shape.small else profile.miss_rate / 5
        if rng.random() < miss:
            continue
        cls = shape.class_index
        confusion = profile.confusion_rate if shape.small else profile.confusion_rate / 5
        if n_classes > 2 and rng.random() < confusion:
            cls = int(rng.choice([c for c in range(1, n_classes) if c != shape.class_index]))
        pts = np.array(shape.points, dtype=np.float64)
        if profile.coarse and len(pts) > 8:
            pts = pts[::2]
        pts = pts + rng.normal(0.0, profile.offset * s, size=2)
        pts = pts + rng.normal(0.0, profile.vertex_jitter * s, size=pts.shape)
        drawn.append(Shape(shape.kind, cls, tuple(map(tuple, pts)), shape.small))
    return render(drawn, scene.width, scene.height)


def worker_png(indices: np.ndarray, class_map: ClassMap, png_mode: str = "RGBA") -> bytes:
    """Encode a worker's class indices the way the worker UI might (the exact mode is unconfirmed).

    RGBA: transparent background; RGB: black background; P: palette with index 0 transparent.
    """
    lut = np.array(class_map.palette(), dtype=np.uint8).reshape(256, 3)
    lut[0] = (0, 0, 0)
    if png_mode == "P":
        image = Image.fromarray(indices)
        image.putpalette(lut.ravel().tolist())
        image.info["transparency"] = 0
        buf = io.BytesIO()
        image.save(buf, format="PNG", transparency=0)
        return buf.getvalue()
    rgb = lut[indices]
    if png_mode == "RGBA":
        alpha = np.where(indices > 0, 255, 0).astype(np.uint8)
        arr = np.dstack([rgb, alpha])
    elif png_mode == "RGB":
        arr = rgb
    else:
        raise ValueError(f"unknown png_mode {png_mode!r}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def worker_answer(
    indices: np.ndarray,
    class_map: ClassMap,
    *,
    element_name: str = "crowd-semantic-segmentation",
    png_mode: str = "RGBA",
    only_used_labels: bool = False,
) -> dict[str, Any]:
    """The decoded ``annotationData.content`` of one worker, in the worker UI's output format."""
    mappings = class_map.label_mappings()
    if only_used_labels:
        used = set(np.unique(indices).tolist())
        mappings = {k: v for i, (k, v) in enumerate(mappings.items(), start=1) if i in used}
    height, width = indices.shape
    return {
        element_name: {
            "inputImageProperties": {"height": int(height), "width": int(width)},
            "labelMappings": mappings,
            "labeledImage": {
                "pngImageData": base64.b64encode(worker_png(indices, class_map, png_mode)).decode()
            },
        }
    }


@dataclass
class SimulatedCrowd:
    """K workers of given profiles painting a scene; reproducible from ``seed``."""

    profiles: Sequence[str]
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = [p for p in self.profiles if p not in PROFILES]
        if unknown:
            raise ValueError(f"unknown worker profiles {unknown}; choose from {sorted(PROFILES)}")
        self._rng = np.random.default_rng(self.seed)

    def paint(self, scene: Scene) -> list[np.ndarray]:
        return [paint(scene, PROFILES[name], self._rng) for name in self.profiles]
