"""What a batch learns about each worker: per-object measures and the priors built from them."""

from __future__ import annotations

import numpy as np
import pytest

from gtseg.core.consolidation.workforce import (
    WorkerMeasure,
    WorkerRecord,
    measure_against_gold,
    measure_workers,
    priors_for_object,
    workforce,
)
from gtseg.local.simulation import PROFILES, SimulatedCrowd, make_scene, paint


def test_an_object_whose_two_trusted_workers_agree_only_by_chance_measures_nobody():
    # the fixture of test_two_masks_agreeing_only_by_where_their_regions_fall_are_no_consensus
    scene = make_scene(25, 160, 120)
    rng = np.random.default_rng(25)
    real, blobs = paint(scene, PROFILES["careful"], rng), paint(scene, PROFILES["blobs"], rng)
    assert measure_workers([real, blobs, np.zeros_like(real)], ["r", "b", "s"], len(scene.class_map)) == {}


@pytest.mark.parametrize("seed", [0, 23])
def test_an_object_with_one_worker_left_trusted_among_several_informative_ones_measures_nobody(seed):
    # a real worker and two blob painters where the reliability rounds end trusting one blob
    # painter alone: nobody agreed with anybody, as consolidation itself concludes
    scene = make_scene(seed, 160, 120)
    masks = SimulatedCrowd(["careful", "blobs", "blobs"], seed=seed).paint(scene)
    assert measure_workers(masks, ["r", "b1", "b2"], len(scene.class_map)) == {}


def test_real_workers_are_measured_with_their_class_balanced_kappa():
    scene = make_scene(3, 160, 120)
    rng = np.random.default_rng(3)
    masks = [paint(scene, PROFILES[p], rng) for p in ("careful", "average", "sloppy")]
    measures = measure_workers(masks, ["c", "a", "s"], len(scene.class_map))
    assert set(measures) == {"c", "a", "s"}
    for measure in measures.values():
        assert measure.balanced_kappa is not None and 0.2 < measure.balanced_kappa <= measure.kappa + 1e-9


def test_gold_measures_the_known_mask_itself_as_perfect_and_one_class_as_chance():
    scene = make_scene(5, 96, 64)
    known = scene.truth
    measures = measure_against_gold(
        [known, np.zeros_like(known)], ["exact", "empty"], known, len(scene.class_map)
    )
    assert measures["exact"].balanced_kappa == pytest.approx(1.0)
    assert measures["empty"].balanced_kappa == pytest.approx(0.0, abs=1e-9)


def test_the_balanced_prior_is_the_median_of_the_other_objects_so_one_odd_object_does_not_flip_it():
    record = WorkerRecord(
        {
            "a": WorkerMeasure(0.9, 0.95, balanced_kappa=0.80),
            "b": WorkerMeasure(0.9, 0.95, balanced_kappa=0.85),
            "c": WorkerMeasure(0.1, 0.40, balanced_kappa=0.03),  # paired with a blob painter
            "d": WorkerMeasure(0.9, 0.95, balanced_kappa=0.70),
        }
    )
    prior = record.prior_excluding("d")
    assert prior is not None and prior.objects == 3
    assert prior.balanced_kappa == pytest.approx(0.80)
    assert prior.kappa == pytest.approx((0.9 + 0.9 + 0.1) / 3)  # trust still weighs every object
    # an object measured without a balanced kappa leaves the prior without one
    partial = WorkerRecord({"a": WorkerMeasure(0.9, 0.95, balanced_kappa=0.8), "b": WorkerMeasure(0.5, 0.7)})
    assert partial.prior_excluding("x").balanced_kappa is None


def test_a_worker_the_other_objects_never_saw_gets_the_average_balanced_prior():
    records = workforce(
        {
            "1": {
                "p": WorkerMeasure(0.9, 0.95, balanced_kappa=0.8),
                "q": WorkerMeasure(0.5, 0.7, balanced_kappa=0.4),
            },
            "2": {"p": WorkerMeasure(0.9, 0.95, balanced_kappa=0.6)},
        }
    )
    priors = priors_for_object(records, "2", ["p", "new"])
    assert priors["p"].balanced_kappa == pytest.approx(0.8)
    assert priors["new"].objects == 1.0
    assert priors["new"].balanced_kappa == pytest.approx((0.8 + 0.4) / 2)
