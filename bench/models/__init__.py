"""Worker error models: (scene = truth label map + instance map, worker profile, rng) -> the label map
that worker submits.

=========  ========================================================  ====================
model      what goes wrong                                           scenes
=========  ========================================================  ====================
polygon    gtseg.local.simulation's workers (polygon redraw)         sim-streets only
object     per-object bias, shifts, misses, confusions, polygons,    every family
           holes, border strips (``object_level``)
boundary   smooth warp, boundary-band noise, small-region flips      every family
           (``boundary``)
=========  ========================================================  ====================

Profiles: ``careful``, ``average``, ``sloppy`` (each worker draws its own parameters from the
profile's ranges) and the bad workers ``spammer`` and ``blobs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.models import bad, boundary, object_level, polygon
from bench.scenes import FAMILIES, POLYGON_FAMILIES, BenchScene

GOOD_PROFILES: tuple[str, ...] = ("careful", "average", "sloppy")
BAD_PROFILES: tuple[str, ...] = ("spammer", "blobs")


@dataclass(frozen=True)
class ErrorModel:
    name: str
    families: tuple[str, ...]
    sample_worker: Callable[[str, np.random.Generator], Any]
    paint: Callable[[BenchScene, Any, np.random.Generator], np.ndarray]
    own_bad_workers: bool = False  # True: the model paints spammer/blobs itself


MODELS: dict[str, ErrorModel] = {
    "polygon": ErrorModel("polygon", POLYGON_FAMILIES, polygon.sample_worker, polygon.paint, True),
    "object": ErrorModel("object", FAMILIES, object_level.sample_worker, object_level.paint),
    "boundary": ErrorModel("boundary", FAMILIES, boundary.sample_worker, boundary.paint),
}


@dataclass(frozen=True)
class Worker:
    """One simulated person: a model, a profile and the concrete parameters drawn for them."""

    model: str
    profile: str
    params: Any

    def paint(self, scene: BenchScene, rng: np.random.Generator) -> np.ndarray:
        model = MODELS[self.model]
        if self.profile in BAD_PROFILES and not model.own_bad_workers:
            fn = bad.spammer if self.profile == "spammer" else bad.blobs
            mask = fn(scene.shape, scene.num_classes, rng)
        else:
            mask = model.paint(scene, self.params, rng)
        if mask.dtype != np.uint8 or mask.shape != scene.shape:
            raise AssertionError(
                f"{self.model} painted {mask.dtype} {mask.shape}, expected uint8 {scene.shape}"
            )
        return mask


def make_worker(model: str, profile: str, rng: np.random.Generator) -> Worker:
    if model not in MODELS:
        raise ValueError(f"unknown error model {model!r}; choose from {', '.join(MODELS)}")
    if profile not in GOOD_PROFILES + BAD_PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    m = MODELS[model]
    if profile in BAD_PROFILES and not m.own_bad_workers:
        return Worker(model, profile, None)
    return Worker(model, profile, m.sample_worker(profile, rng))


def paint(model: str, scene: BenchScene, profile: str, rng: np.random.Generator) -> np.ndarray:
    """One fresh worker of ``profile`` painting ``scene``: the functional form of the models."""
    return make_worker(model, profile, rng).paint(scene, rng)
