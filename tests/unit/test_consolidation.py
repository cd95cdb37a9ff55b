"""Consolidation algorithms: known answers, robustness to bad workers, ties, degenerate crowds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtseg.core.consolidation import (
    METHODS,
    WorkerAnswer,
    consolidate_masks,
    consolidate_worker_answers,
    encode_tuples,
    majority_vote,
)
from gtseg.core.consolidation.agreement import agree_beyond_displacement, is_consensus
from gtseg.core.consolidation.reliability import CHANCE_KAPPA, WorkerPrior
from gtseg.core.consolidation.strategies import Crowd
from gtseg.core.labels import ClassMap
from gtseg.core.metrics import cohen_kappa, mean_iou
from gtseg.local.simulation import PROFILES, SimulatedCrowd, make_scene, paint, worker_answer


def test_majority_vote_known_answer_and_ties_go_to_lowest_index():
    a = np.array([[1, 2, 0, 3]], dtype=np.uint8)
    b = np.array([[1, 2, 2, 1]], dtype=np.uint8)
    c = np.array([[1, 0, 1, 2]], dtype=np.uint8)
    assert majority_vote([a, b, c], 4).tolist() == [[1, 2, 0, 1]]


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 9),
    classes=st.integers(2, 40),
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    seed=st.integers(0, 2**31),
)
def test_tuple_encoding_is_exact(k, classes, h, w, seed):
    rng = np.random.default_rng(seed)
    masks = [rng.integers(0, classes, (h, w)).astype(np.uint8) for _ in range(k)]
    table = encode_tuples(masks, classes)
    stack = np.stack([m.ravel() for m in masks], axis=1)
    per_pixel = table.tuples[table.to_pixels(np.arange(len(table.tuples)))]
    np.testing.assert_array_equal(per_pixel, stack)
    assert table.counts.sum() == h * w
    assert len(np.unique(table.tuples, axis=0)) == len(table.tuples)


@pytest.mark.parametrize("method", METHODS)
def test_single_worker_is_copied_with_zero_confidence(method):
    mask = make_scene(1, 80, 60).truth
    result = consolidate_masks([mask], 8, method=method)
    np.testing.assert_array_equal(result.labels, mask)
    assert result.image_confidence == 0.0 and set(result.class_confidence) == {0.0}
    assert result.workers[0].excluded is False


@pytest.mark.parametrize("method", METHODS)
def test_unanimous_workers_give_their_mask_and_full_confidence(method):
    mask = make_scene(2, 80, 60).truth
    result = consolidate_masks([mask, mask.copy(), mask.copy()], 8, method=method)
    np.testing.assert_array_equal(result.labels, mask)
    assert result.image_confidence == 1.0
    assert result.unanimous_fraction == 1.0
    present = np.unique(mask)
    assert all(result.class_confidence[c] == 1.0 for c in present)


def test_confidence_falls_as_agreement_falls():
    scene = make_scene(3, 160, 120)
    careful = SimulatedCrowd(["careful"] * 5, seed=1).paint(scene)
    sloppy = SimulatedCrowd(["sloppy"] * 5, seed=1).paint(scene)
    high = consolidate_masks(careful, 8)
    low = consolidate_masks(sloppy, 8)
    assert 0.0 <= low.image_confidence < high.image_confidence <= 1.0
    for c in high.class_confidence + low.class_confidence:
        assert 0.0 <= c <= 1.0


def test_spammer_painting_one_class_is_excluded_with_quality_zero():
    scene = make_scene(4, 160, 120)
    masks = SimulatedCrowd(["careful", "average", "average", "sloppy"], seed=2).paint(scene)
    spam = np.full_like(masks[0], 3)
    result = consolidate_masks([*masks, spam], 8, worker_ids=["a", "b", "c", "d", "spam"])
    by_id = {w.worker_id: w for w in result.workers}
    assert by_id["spam"].excluded and by_id["spam"].quality == 0.0 and by_id["spam"].weight == 0.0
    assert not any(by_id[w].excluded for w in "abcd")
    assert mean_iou(result.labels, scene.truth, 8) >= mean_iou(
        majority_vote([*masks, spam], 8), scene.truth, 8
    )


def test_two_spammers_out_of_three_leave_the_real_worker():
    scene = make_scene(5, 160, 120)
    rng = np.random.default_rng(0)
    real = paint(scene, PROFILES["average"], rng)
    result = consolidate_masks([real, np.full_like(real, 1), np.full_like(real, 4)], 8)
    np.testing.assert_array_equal(result.labels, real)
    assert [w.excluded for w in result.workers] == [False, True, True]
    assert result.image_confidence == 0.0  # nobody corroborates the one trusted worker


def test_workers_agreeing_on_an_empty_image_are_a_consensus_not_spam():
    empty = np.zeros((20, 20), dtype=np.uint8)
    blob = empty.copy()
    blob[5:10, 5:10] = 2
    result = consolidate_masks([empty, empty.copy(), blob], 4)
    np.testing.assert_array_equal(result.labels, empty)


def test_random_blob_worker_carries_next_to_no_weight_in_a_good_crowd():
    scene = make_scene(6, 160, 120)
    masks = SimulatedCrowd(["careful", "average", "average", "blobs"], seed=3).paint(scene)
    result = consolidate_masks(masks, 8)
    *good, blobs = result.workers
    # chance-corrected: the blobs overlap the big classes by chance only
    assert blobs.weight < 0.1 * min(w.weight for w in good)
    assert blobs.quality < 0.2 < min(w.quality for w in good)


@pytest.mark.parametrize(
    "profiles",
    [
        ["careful", "average", "sloppy"],
        ["careful", "average", "average", "sloppy", "sloppy"],
        ["careful", "average", "average", "sloppy", "spammer"],
        ["average", "average", "sloppy", "blobs", "spammer"],
    ],
)
def test_gtseg_is_at_least_as_good_as_majority_vote_on_average(profiles):
    gains = []
    for seed in range(4):
        scene = make_scene(100 + seed, 200, 150)
        masks = SimulatedCrowd(profiles, seed=seed).paint(scene)
        ours = mean_iou(consolidate_masks(masks, 8).labels, scene.truth, 8)
        vote = mean_iou(majority_vote(masks, 8), scene.truth, 8)
        gains.append(ours - vote)
    assert np.mean(gains) >= 0.0
    if any(PROFILES[p].bad for p in profiles):
        assert np.mean(gains) > 0.01


def test_two_workers_tracing_one_boundary_meet_in_the_middle():
    left = np.zeros((10, 20), dtype=np.uint8)
    right = left.copy()
    left[:, :8] = 1  # worker A: boundary at column 8
    right[:, :12] = 1  # worker B: boundary at column 12
    result = consolidate_masks([left, right], 3)
    boundary = [int(np.argmin(row)) for row in result.labels]
    assert all(9 <= b <= 11 for b in boundary), boundary


def test_no_consensus_among_three_informative_masks_keeps_the_odd_one_out():
    rng = np.random.default_rng(1)
    # two of them have the same class make-up (mostly class 0), independently of each other
    skewed = [0.6, 0.1, 0.1, 0.1, 0.1]
    masks = [rng.integers(0, 5, (30, 30)).astype(np.uint8)]
    masks += [rng.choice(5, size=(30, 30), p=skewed).astype(np.uint8) for _ in range(2)]
    result = consolidate_masks(masks, 5)
    assert result.method == "gtseg:no-consensus-pick" and result.method.no_consensus
    agreed = [sum(int((m == o).sum()) for j, o in enumerate(masks) if j != i) for i, m in enumerate(masks)]
    kept = int(np.argmin(agreed))
    assert kept == 0
    # one whole mask, never a per-pixel patchwork of masks that are independent of each other
    np.testing.assert_array_equal(result.labels, masks[kept])
    assert [w.excluded for w in result.workers] == [i != kept for i in range(3)]
    # confidence compares the kept mask with every informative mask, itself included: about one
    # third here (itself, and two masks that agree with it only at chance)
    assert 0.25 < result.image_confidence < 0.5
    # the SIMPLE method keeps the plain vote
    simple = consolidate_masks(masks, 5, method="simple")
    np.testing.assert_array_equal(simple.labels, majority_vote(masks, 5))
    assert simple.method == "simple:no-consensus-vote"


def test_no_consensus_between_two_informative_masks_keeps_the_one_agreeing_most_with_everyone():
    rng = np.random.default_rng(2)
    first, second = (rng.integers(0, 5, (30, 30)).astype(np.uint8) for _ in range(2))
    second[:6] = 3  # more of the spammer's class than the other has
    spammer = np.full_like(first, 3)
    result = consolidate_masks([first, second, spammer], 5)
    assert result.method == "gtseg:no-consensus-pick"
    np.testing.assert_array_equal(result.labels, second)


def test_one_real_worker_and_two_blob_painters_mostly_keep_the_real_mask():
    # With no consensus, at most one mask is real, so most workers are bad; two blob painters
    # resemble each other (the same class make-up) without agreeing beyond chance, and the real
    # mask resembles neither. Keeping the mask that agreed most with the others kept a blob mask
    # in all 30 of these crowds; the odd one out keeps the real one in most.
    kept_real = 0
    for seed in range(10):
        scene = make_scene(seed, 160, 120)
        rng = np.random.default_rng(seed)
        real = paint(scene, PROFILES["careful"], rng)
        blobs = [paint(scene, PROFILES["blobs"], rng) for _ in range(2)]
        for masks in ([real, *blobs], [blobs[0], real, blobs[1]], [*blobs, real]):
            result = consolidate_masks(masks, len(scene.class_map))
            kept_real += int(np.array_equal(result.labels, real))
    assert kept_real > 15  # 21 of 30 when written


def test_one_worker_trusted_among_several_informative_ones_is_no_consensus():
    def no_masks(workers, max_pixels):
        raise AssertionError("one trusted worker needs no displacement check")

    everyone = np.ones(3, dtype=bool)
    one = np.array([False, False, True])
    assert not is_consensus(one, everyone, no_masks, 2)
    assert is_consensus(one, everyone, no_masks, 2, backed_by_priors=True)
    only = np.array([True, False, False])
    assert is_consensus(only, only, no_masks, 2)


def test_the_batch_tells_apart_two_trusted_workers_this_object_cannot():
    # Two real workers and a spammer: each real worker is measured against the other, so on this
    # object alone both weigh the same. Their record on the batch's other objects (class-balanced
    # kappa, as weights are measured) decides whose outline wins where they disagree.
    scene = make_scene(4, 160, 120)
    rng = np.random.default_rng(4)
    careful, sloppy = paint(scene, PROFILES["careful"], rng), paint(scene, PROFILES["sloppy"], rng)
    masks, ids = [careful, sloppy, np.zeros_like(careful)], ["careful", "sloppy", "spam"]
    num_classes = len(scene.class_map)
    alone = consolidate_masks(masks, num_classes, worker_ids=ids)
    assert alone.workers[0].weight == alone.workers[1].weight
    record = {
        "careful": WorkerPrior(0.9, 0.95, objects=4, balanced_kappa=0.85),
        "sloppy": WorkerPrior(0.7, 0.85, objects=4, balanced_kappa=0.45),
    }
    helped = consolidate_masks(masks, num_classes, worker_ids=ids, worker_priors=record)
    assert helped.workers[0].weight > helped.workers[1].weight
    np.testing.assert_array_equal(helped.labels, careful)
    swapped = {"careful": record["sloppy"], "sloppy": record["careful"]}
    np.testing.assert_array_equal(
        consolidate_masks(masks, num_classes, worker_ids=ids, worker_priors=swapped).labels, sloppy
    )


def test_two_masks_agreeing_only_by_where_their_regions_fall_are_no_consensus():
    # A painted scene and random blobs: their pixel kappa is above the chance floor (regions, not
    # independent pixels), but no better than with the blobs displaced. Voting the two would be a
    # patchwork; one whole mask is kept instead.
    scene = make_scene(25, 160, 120)
    rng = np.random.default_rng(25)
    real = paint(scene, PROFILES["careful"], rng)
    blobs = paint(scene, PROFILES["blobs"], rng)
    num_classes = len(scene.class_map)
    assert cohen_kappa(blobs, real, num_classes) > 2 * CHANCE_KAPPA
    assert not agree_beyond_displacement(real, blobs, num_classes)
    result = consolidate_masks([real, blobs, np.zeros_like(real)], num_classes)
    assert result.method.no_consensus
    assert any(np.array_equal(result.labels, mask) for mask in (real, blobs))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_real_workers_agree_beyond_displacement_even_when_one_is_shifted(seed):
    scene = make_scene(seed, 160, 120)
    rng = np.random.default_rng(seed)
    careful, sloppy = paint(scene, PROFILES["careful"], rng), paint(scene, PROFILES["sloppy"], rng)
    num_classes = len(scene.class_map)
    assert agree_beyond_displacement(careful, sloppy, num_classes)
    assert agree_beyond_displacement(careful, np.roll(careful, (4, -5), axis=(0, 1)), num_classes)
    # too small to displace: the check does not claim anything
    assert agree_beyond_displacement(careful[:8, :8], sloppy[:8, :8], num_classes)


def test_sampled_masks_are_the_workers_masks_on_a_regular_grid():
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 4, (60, 90)).astype(np.uint8) for _ in range(3)]
    crowd = Crowd(encode_tuples(masks, 4), 4, ("a", "b", "c"), (60, 90))
    first, third = crowd.sampled_masks([0, 2], 60 * 90 // 9)
    np.testing.assert_array_equal(first, masks[0][::3, ::3])
    np.testing.assert_array_equal(third, masks[2][::3, ::3])


@pytest.mark.parametrize("spammer_sides_with", ["real", "blobs"])
def test_without_consensus_the_constant_mask_counts_as_agreement_not_as_a_vote(spammer_sides_with):
    # One real worker and a blob painter agree only at chance; the spammer's one class is the one
    # of whichever mask covers more of that class. That mask is kept whole; the spammer's class
    # never fills the pixels where the two disagree.
    scene = make_scene(9, 160, 120)
    rng = np.random.default_rng(3)
    real = paint(scene, PROFILES["average"], rng)
    blobs = paint(scene, PROFILES["blobs"], rng)
    chosen, other = (real, blobs) if spammer_sides_with == "real" else (blobs, real)
    share = [np.mean(chosen == c) - np.mean(other == c) for c in range(8)]
    spam = np.full_like(real, int(np.argmax(share)))
    result = consolidate_masks([real, blobs, spam], 8)
    assert result.method.no_consensus
    np.testing.assert_array_equal(result.labels, chosen)
    assert [w.weight for w in result.workers] == ([1.0, 0.0, 0.0] if chosen is real else [0.0, 1.0, 0.0])


def test_two_spammers_agreeing_on_one_class_do_not_outvote_the_real_worker_nor_make_confidence():
    scene = make_scene(8, 160, 120)
    real = paint(scene, PROFILES["careful"], np.random.default_rng(0))
    result = consolidate_masks([real, np.full_like(real, 2), np.full_like(real, 2)], 8)
    np.testing.assert_array_equal(result.labels, real)
    assert [w.weight for w in result.workers] == [1.0, 0.0, 0.0]
    # one worker nobody could cross-check: no confidence to claim
    assert result.image_confidence == 0.0 and max(result.class_confidence) == 0.0


@pytest.mark.parametrize(
    ("masks", "classes", "message"),
    [
        ([], 3, "at least one"),
        ([np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8)], 3, "expected"),
        ([np.zeros((2, 2), np.int32)], 3, "uint8"),
        ([np.full((2, 2), 5, np.uint8)], 3, ">= num_classes"),
    ],
)
def test_invalid_masks_are_rejected_clearly(masks, classes, message):
    with pytest.raises(ValueError, match=message):
        consolidate_masks(masks, classes)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        consolidate_masks([np.zeros((2, 2), np.uint8)], 2, method="vote")


def test_worker_answers_reject_bad_annotations_without_failing_the_object():
    scene = make_scene(7, 64, 48)
    good = SimulatedCrowd(["careful", "average"], seed=1).paint(scene)
    answers = []
    for i, mask in enumerate(good):
        body = worker_answer(mask, scene.class_map)["crowd-semantic-segmentation"]
        answers.append(
            WorkerAnswer(f"w{i}", body["labeledImage"]["pngImageData"], body["labelMappings"], (64, 48))
        )
    answers.append(WorkerAnswer("corrupt", "aGVsbG8=", {}, (64, 48)))
    odd = worker_answer(np.zeros((10, 10), np.uint8), scene.class_map)["crowd-semantic-segmentation"]
    answers.append(WorkerAnswer("odd-size", odd["labeledImage"]["pngImageData"], odd["labelMappings"], None))
    outcome = consolidate_worker_answers(answers, scene.class_map)
    assert outcome.result is not None and outcome.failure_reason is None
    assert {w for w, _ in outcome.rejected} == {"corrupt", "odd-size"}
    assert [w.worker_id for w in outcome.result.workers] == ["w0", "w1"]


def test_worker_answers_with_nothing_usable_report_a_failure():
    cmap = ClassMap.from_labels(["a"])
    none = consolidate_worker_answers([], cmap)
    assert none.result is None and "no worker annotated" in none.failure_reason
    bad = consolidate_worker_answers([WorkerAnswer("x", "!!!", {}, None)], cmap)
    assert bad.result is None and "x:" in bad.failure_reason


def test_batch_prior_decides_an_object_without_consensus_of_its_own():
    scene = make_scene(9, 160, 120)
    rng = np.random.default_rng(3)
    good = paint(scene, PROFILES["average"], rng)
    blobs = paint(scene, PROFILES["blobs"], rng)
    spam = np.full_like(good, 5)
    masks, ids = [good, blobs, spam], ["good", "blobs", "spam"]
    alone = consolidate_masks(masks, 8, worker_ids=ids)
    assert alone.method.no_consensus
    known = {"good": WorkerPrior(0.9, 0.95, objects=3), "blobs": WorkerPrior(0.0, 0.2, objects=3)}
    helped = consolidate_masks(masks, 8, worker_ids=ids, worker_priors=known)
    assert helped.method == "gtseg:batch-prior"
    np.testing.assert_array_equal(helped.labels, good)
    assert [w.excluded for w in helped.workers] == [False, True, True]
    # a prior about somebody else changes nothing
    unrelated = consolidate_masks(
        masks, 8, worker_ids=ids, worker_priors={"other": WorkerPrior(0.9, 0.95, 3)}
    )
    np.testing.assert_array_equal(unrelated.labels, alone.labels)


@pytest.mark.parametrize("k", [2, 3])
def test_confidence_after_neighbourhood_relabelling_matches_a_per_pixel_count(k):
    # Five workers and eight classes make the tuple codes large (8**5); two spammers leave
    # k <= 3 trusted workers, so contested pixels are relabelled from their neighbourhood. The
    # per-pixel definition of confidence (share of trusted workers agreeing) must still hold.
    rng = np.random.default_rng(11)
    scene = make_scene(12, 200, 150)
    masks = [paint(scene, PROFILES["average"], rng) for _ in range(k)]
    masks += [np.full_like(masks[0], 7 - i) for i in range(5 - k)]
    result = consolidate_masks(masks, 8, smoothing=2)
    assert sum(not w.excluded for w in result.workers) == k
    trusted = [m for m, w in zip(masks, result.workers, strict=True) if not w.excluded]
    for c in range(8):
        ious = [
            ((m == c) & (result.labels == c)).sum() / ((m == c) | (result.labels == c)).sum()
            for m in trusted
            if ((m == c) | (result.labels == c)).any()
        ]
        expected = float(np.mean(ious)) if ious else 0.0
        assert result.class_confidence[c] == pytest.approx(expected, abs=1e-3)
    assert result.image_confidence == pytest.approx(
        np.mean([v for v in result.class_confidence if v > 0]), abs=1e-3
    )
