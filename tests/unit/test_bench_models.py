"""The benchmark's worker error models and its own reference aggregators (bench/, not shipped).

numpy + Pillow only: scikit-image, SimpleITK and crowd-kit (bench/requirements.txt) are not
needed here, and the scenes that need them are skipped when scikit-image is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import models, references, scenes  # noqa: E402
from bench.metrics import mean_iou  # noqa: E402

SIZE = (160, 120)
MASK_MODELS = ("object", "boundary")


def _scene(family: str = "streets13", index: int = 0) -> scenes.BenchScene:
    return scenes.make(family, index, SIZE)


def _iou(model: str, scene: scenes.BenchScene, profile: str, seeds: range = range(4)) -> float:
    return float(
        np.mean(
            [
                mean_iou(
                    models.paint(model, scene, profile, np.random.default_rng(s)),
                    scene.truth,
                    scene.num_classes,
                )
                for s in seeds
            ]
        )
    )


def test_streets13_has_13_classes_and_instances() -> None:
    scene = _scene()
    assert scene.num_classes == 14
    assert scene.truth.dtype == np.uint8 and scene.instances.dtype == np.int32
    assert scene.truth.shape == scene.instances.shape == (SIZE[1], SIZE[0])
    assert (scene.truth[scene.instances == 0] == 0).all()  # every labelled pixel belongs to an instance
    assert len(scene.instance_table) >= 10
    car, truck = (scene.labels.index(n) + 1 for n in ("car", "truck"))
    assert truck in scene.partners(car)


@pytest.mark.parametrize("model", [*MASK_MODELS, "polygon"])
def test_output_shape_dtype_and_determinism(model: str) -> None:
    scene = _scene("sim-streets") if model == "polygon" else _scene()
    for profile in models.GOOD_PROFILES + models.BAD_PROFILES:
        a = models.paint(model, scene, profile, np.random.default_rng(11))
        b = models.paint(model, scene, profile, np.random.default_rng(11))
        assert a.dtype == np.uint8 and a.shape == scene.shape
        assert int(a.max()) < scene.num_classes
        assert np.array_equal(a, b), f"{model}/{profile} is not deterministic for a seed"


@pytest.mark.parametrize("model", MASK_MODELS)
def test_quality_ordering(model: str) -> None:
    scene = _scene()
    careful, average, sloppy = (_iou(model, scene, p) for p in models.GOOD_PROFILES)
    assert careful > 0.8
    assert careful > average > sloppy
    assert sloppy > 0.3  # still a real attempt
    assert _iou(model, scene, "blobs") < 0.2


@pytest.mark.parametrize("model", MASK_MODELS)
def test_spammer_paints_one_class(model: str) -> None:
    scene = _scene()
    seen = set()
    for seed in range(8):
        mask = models.paint(model, scene, "spammer", np.random.default_rng(seed))
        values = np.unique(mask)
        assert values.size == 1
        seen.add(int(values[0]))
    assert 0 in seen and len(seen) > 1  # sometimes empty, sometimes a random label


def test_workers_differ_within_a_profile() -> None:
    rng = np.random.default_rng(3)
    a, b = (models.make_worker("object", "average", rng).params for _ in range(2))
    assert a != b


def test_references_agree_on_unanimous_masks_and_keep_shape() -> None:
    scene = _scene()
    masks = [scene.truth.copy() for _ in range(3)]
    for name in ("MV", "SIMPLE", "DS"):
        out = references.REFERENCES[name].run(masks, scene.num_classes)
        assert out.dtype == np.uint8 and out.shape == scene.shape
        assert np.array_equal(out, scene.truth), name


def test_weighted_references_are_sane_on_a_good_crowd_with_one_blob_painter() -> None:
    scene = _scene()
    profiles = ("careful", "careful", "average", "average", "blobs")
    masks = [models.paint("object", scene, p, np.random.default_rng(30 + i)) for i, p in enumerate(profiles)]
    score = {
        name: mean_iou(
            references.REFERENCES[name].run(masks, scene.num_classes), scene.truth, scene.num_classes
        )
        for name in ("MV", "SIMPLE", "DS")
    }
    worst_good = min(mean_iou(m, scene.truth, scene.num_classes) for m in masks[:4])
    assert score["MV"] > worst_good
    assert score["SIMPLE"] > score["MV"] - 0.05
    assert score["DS"] > score["MV"] - 0.1


def test_real_shapes_when_scikit_image_is_installed() -> None:
    pytest.importorskip("skimage")
    horse = scenes.make("horse", 0, (128, 128))
    phantom = scenes.make("phantom", 1, (128, 128))
    assert horse.num_classes == 2 and 0.1 < float((horse.truth == 1).mean()) < 0.6
    assert phantom.num_classes == 6 and len(np.unique(phantom.truth)) >= 5
    assert models.paint("object", phantom, "careful", np.random.default_rng(0)).shape == phantom.shape
