"""The ``polygon`` error model: ``gtseg.local.simulation``'s own workers, unchanged (they redraw the
scene's polygons with vertex jitter, offset, misses and confusions; its bad workers are a
constant-class spammer and random blobs). Only for its own scenes (``sim-streets``)."""

from __future__ import annotations

import numpy as np

from bench.scenes import BenchScene


def sample_worker(profile: str, rng: np.random.Generator) -> str:
    from gtseg.local.simulation import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"gtseg.simulation has no profile {profile!r}")
    return profile


def paint(scene: BenchScene, worker: str, rng: np.random.Generator) -> np.ndarray:
    from gtseg.local.simulation import PROFILES
    from gtseg.local.simulation import paint as simulation_paint

    if scene.source is None:
        raise ValueError(f"the polygon model paints only sim-streets scenes, not {scene.family}")
    return simulation_paint(scene.source, PROFILES[worker], rng)
