"""The benchmark's scene families, each a truth label map plus an instance map.

* ``sim-streets``: ``gtseg.local.simulation.make_scene`` (7 classes, polygons); the only family the
  ``polygon`` error model can paint (it redraws the scene's polygons).
* ``streets13``: ``bench.streets13`` (13 classes, composite objects, similar pairs).
* ``horse``: scikit-image's horse silhouette (2 classes), flipped / rescaled per scene index.
* ``phantom``: scikit-image's Shepp-Logan phantom quantized to its 5 intensity levels (6 classes
  with the background), flipped / rotated / rescaled per scene index.

Instances: one per polygon or drawn object (streets), connected components (horse, phantom).
Each scene also lists the class pairs workers confuse. scikit-image is imported only for the two
real-shape families.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench import streets13

FAMILIES: tuple[str, ...] = ("sim-streets", "streets13", "horse", "phantom")
# The polygon model's scenes; the mask-based models paint every family.
POLYGON_FAMILIES: tuple[str, ...] = ("sim-streets",)
# What each family's default size means: streets are (width, height); the real shapes scale their
# native size (horse 400x328, phantom 400x400) so that the longer side matches ``width``.
SIM_CONFUSABLE = (("road", "sidewalk"), ("person", "pole"), ("building", "vegetation"))
PHANTOM_LABELS = ("tissue-0.1", "tissue-0.2", "tissue-0.3", "tissue-0.4", "skull")


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: int
    class_index: int
    area: int
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 (end-exclusive)


@dataclass(frozen=True)
class BenchScene:
    family: str
    index: int
    labels: tuple[str, ...]  # without BACKGROUND; class i + 1 = labels[i]
    truth: np.ndarray  # (H, W) uint8, 0 = background
    instances: np.ndarray  # (H, W) int32, 0 = no instance
    confusable: tuple[tuple[int, int], ...] = ()
    source: Any = field(default=None, compare=False)  # the gtseg Scene of sim-streets

    @property
    def num_classes(self) -> int:
        return len(self.labels) + 1

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.truth.shape[0]), int(self.truth.shape[1]))

    @property
    def name(self) -> str:
        return f"{self.family}#{self.index}"

    def partners(self, class_index: int) -> tuple[int, ...]:
        """The classes a worker may paint instead of ``class_index``."""
        out = {b for a, b in self.confusable if a == class_index}
        out |= {a for a, b in self.confusable if b == class_index}
        return tuple(sorted(out))

    @cached_property
    def instance_table(self) -> tuple[InstanceInfo, ...]:
        """Every instance with its class, area and bounding box (one sort over the image)."""
        flat = self.instances.ravel()
        order = np.argsort(flat, kind="stable")
        ids, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
        width = self.instances.shape[1]
        table = []
        for iid, start, count in zip(ids.tolist(), starts.tolist(), counts.tolist(), strict=True):
            if iid == 0:
                continue
            pix = order[start : start + count]
            ys, xs = np.divmod(pix, width)
            cls = int(self.truth.ravel()[pix[0]])
            if cls == 0:
                continue
            box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
            table.append(InstanceInfo(int(iid), cls, int(count), box))
        return tuple(table)


def stable_seed(*parts: object) -> int:
    """A seed from a tuple of names and numbers, identical across runs and processes (``hash()`` of
    a string is salted per process)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _pairs(labels: tuple[str, ...], pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[int, int], ...]:
    return tuple((labels.index(a) + 1, labels.index(b) + 1) for a, b in pairs)


def sim_streets(index: int, width: int, height: int) -> BenchScene:
    from gtseg.local.simulation import make_scene

    scene = make_scene(1000 + index, width, height)
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for i, shape in enumerate(scene.shapes, start=1):
        if len(shape.points) >= 3:
            draw.polygon(list(shape.points), fill=i)
    labels = tuple(scene.labels)
    return BenchScene(
        "sim-streets",
        index,
        labels,
        scene.truth.copy(),
        np.asarray(canvas, dtype=np.int32).copy(),
        _pairs(labels, SIM_CONFUSABLE),
        source=scene,
    )


def streets13_scene(index: int, width: int, height: int) -> BenchScene:
    truth, instances = streets13.make_streets13(stable_seed("streets13", index), width, height)
    return BenchScene(
        "streets13", index, streets13.LABELS, truth, instances, _pairs(streets13.LABELS, streets13.CONFUSABLE)
    )


def _variant(
    labels: np.ndarray, index: int, longest: int, *, rotate: bool
) -> tuple[np.ndarray, tuple[int, int]]:
    """A seeded flip / 90-degree rotation / rescale of a real shape, nearest-neighbour."""
    rng = np.random.default_rng(stable_seed("variant", index))
    out = labels
    if index % 2 == 1:
        out = out[:, ::-1]
    if rotate and index % 4 >= 2:
        out = np.rot90(out)
    scale = longest / max(out.shape) * (1.0 if index == 0 else rng.uniform(0.8, 1.0))
    size = (max(8, round(out.shape[1] * scale)), max(8, round(out.shape[0] * scale)))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(out)).resize(size, Image.Resampling.NEAREST))
    # pad back to the family's frame (the object no longer fills it exactly)
    frame_h = round(labels.shape[0] * longest / max(labels.shape))
    frame_w = round(labels.shape[1] * longest / max(labels.shape))
    if rotate and index % 4 >= 2:
        frame_h, frame_w = frame_w, frame_h
    frame = np.zeros((max(frame_h, small.shape[0]), max(frame_w, small.shape[1])), dtype=np.uint8)
    oy = int(rng.integers(0, frame.shape[0] - small.shape[0] + 1))
    ox = int(rng.integers(0, frame.shape[1] - small.shape[1] + 1))
    frame[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
    return frame, (int(frame.shape[0]), int(frame.shape[1]))


def _components(truth: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    instances = np.zeros(truth.shape, dtype=np.int32)
    next_id = 1
    for cls in np.unique(truth).tolist():
        if cls == 0:
            continue
        comp = label(truth == cls, connectivity=2)
        instances[comp > 0] = comp[comp > 0] + next_id - 1
        next_id += int(comp.max())
    return instances


def horse(index: int, longest: int) -> BenchScene:
    from skimage import data

    silhouette = (~data.horse()).astype(np.uint8)  # True is the white background
    truth, _ = _variant(silhouette, index, longest, rotate=False)
    return BenchScene("horse", index, ("horse",), truth, _components(truth))


def phantom(index: int, longest: int) -> BenchScene:
    from skimage import data

    levels = np.rint(data.shepp_logan_phantom() * 10).astype(np.int64)  # 0, 1, 2, 3, 4, 10
    lut = np.zeros(11, dtype=np.uint8)
    lut[[1, 2, 3, 4, 10]] = [1, 2, 3, 4, 5]
    truth, _ = _variant(lut[levels], index, longest, rotate=True)
    pairs = ((1, 2), (2, 3), (3, 4))  # neighbouring intensities
    return BenchScene("phantom", index, PHANTOM_LABELS, truth, _components(truth), pairs)


def make(family: str, index: int, size: tuple[int, int]) -> BenchScene:
    """Scene ``index`` of ``family``; ``size`` = (width, height) for streets, the longer side is
    ``width`` for the real shapes."""
    width, height = size
    if family == "sim-streets":
        return sim_streets(index, width, height)
    if family == "streets13":
        return streets13_scene(index, width, height)
    if family == "horse":
        return horse(index, width)
    if family == "phantom":
        return phantom(index, width)
    raise ValueError(f"unknown scene family {family!r}; choose from {', '.join(FAMILIES)}")
