"""The parts of consolidation that decide from an object's own evidence: worker reliability,
the held-out judges, the neighbourhood's radius, and Dawid-Skene fitted on the common tuples."""

from __future__ import annotations

import numpy as np
import pytest

from gtseg.core.consolidation import consolidate_masks
from gtseg.core.consolidation import dawid_skene as ds
from gtseg.core.consolidation.evidence import (
    EM,
    VOTE,
    WEIGHTED,
    Judgement,
    band_radius,
    break_ties,
    judge_candidates,
    tuple_candidates,
    undecided_tuples,
)
from gtseg.core.consolidation.neighbourhood import PixelTuples
from gtseg.core.consolidation.reliability import (
    RoundVotes,
    WorkerPrior,
    class_balanced_kappa,
    estimate_reliability,
)
from gtseg.core.consolidation.tuples import encode_tuples
from gtseg.core.metrics import mean_iou
from gtseg.local.simulation import SimulatedCrowd, make_scene


def _reliability(masks, num_classes, priors=None):
    table = encode_tuples(masks, num_classes)
    return estimate_reliability(
        table.tuples,
        table.counts.astype(float),
        num_classes,
        candidates=np.ones(len(masks), dtype=bool),
        priors=priors,
    )


def test_the_worker_who_keeps_the_thin_structures_weighs_most():
    # Road everywhere, a few thin poles; the careful worker paints them, two sloppy ones miss most
    truth = np.ones((120, 160), dtype=np.uint8)
    for x in range(10, 160, 20):
        truth[20:110, x : x + 2] = 2
    careful = truth.copy()
    sloppy_a, sloppy_b = truth.copy(), truth.copy()
    sloppy_a[:, 10:90][sloppy_a[:, 10:90] == 2] = 1
    sloppy_b[:, 70:160][sloppy_b[:, 70:160] == 2] = 1
    reliability = _reliability([careful, sloppy_a, sloppy_b], 3)
    assert reliability.weight[0] > reliability.weight[1] and reliability.weight[0] > reliability.weight[2]
    result = consolidate_masks([careful, sloppy_a, sloppy_b], 3)
    assert mean_iou(result.labels, truth, 3) >= mean_iou(sloppy_a, truth, 3)


def test_a_spammer_and_a_blob_painter_carry_no_weight_and_a_prior_can_speak_for_a_worker():
    scene = make_scene(21, 160, 120)
    masks = SimulatedCrowd(["careful", "average", "spammer", "blobs"], seed=4).paint(scene)
    reliability = _reliability(masks, 8)
    assert reliability.weight[2] == 0.0  # one class everywhere: chance agreement
    assert reliability.weight[3] < 0.1 * reliability.weight[0]
    # a worker the batch knows as bad loses the little weight it had
    known_bad = [None, None, None, WorkerPrior(kappa=0.0, accuracy=0.1, objects=4)]
    assert _reliability(masks, 8, known_bad).weight[3] < reliability.weight[3] or reliability.weight[3] == 0.0


def _judgement(per_judge: dict[str, list[float]], weights=(1.0, 1.0, 1.0)) -> Judgement:
    return Judgement(per_judge={k: list(v) for k, v in per_judge.items()}, weights=list(weights))


def test_the_weighted_vote_stands_unless_the_judges_clearly_prefer_another():
    available = [VOTE, WEIGHTED, EM]
    # a hair better for EM: not evidence
    assert _judgement({VOTE: [0.7] * 3, WEIGHTED: [0.7] * 3, EM: [0.705] * 3}).choose(available) == WEIGHTED
    # materially better for most of the judges' weight: EM
    assert _judgement({VOTE: [0.7] * 3, WEIGHTED: [0.7] * 3, EM: [0.75, 0.76, 0.69]}).choose(available) == EM
    # one heavy judge alone does not carry it
    assert (
        _judgement({VOTE: [0.7] * 3, WEIGHTED: [0.7] * 3, EM: [0.9, 0.69, 0.69]}, (1.0, 1.0, 1.0)).choose(
            available
        )
        == WEIGHTED
    )
    # one judge is never enough
    assert _judgement({WEIGHTED: [0.5], EM: [0.9]}, (1.0,)).choose(available) == WEIGHTED
    # without a weighted vote (nobody trusted) the plain vote is the default
    assert _judgement({}).choose([VOTE]) == VOTE


@pytest.mark.parametrize("band", [2, 4, 6])
def test_the_neighbourhood_reaches_half_across_the_band_two_outlines_leave(band):
    # two workers trace one vertical boundary `band` pixels apart
    left = np.zeros((60, 80), dtype=np.uint8)
    left[:, 40:] = 1
    right = np.zeros_like(left)
    right[:, 40 + band :] = 1
    table = encode_tuples([left, right], 2)
    scores = np.zeros((len(table.tuples), 2))
    for t, (a, b) in enumerate(table.tuples):
        scores[t, a] += 1
        scores[t, b] += 1
    undecided = undecided_tuples(scores)
    radius = band_radius(PixelTuples.of(table, left.shape), undecided, max_radius=8)
    assert radius == int(np.ceil(band / 2))
    assert band_radius(PixelTuples.of(table, left.shape), undecided, max_radius=1) == 1
    assert band_radius(PixelTuples.of(table, left.shape), undecided, max_radius=0) == 0


def test_two_unranked_workers_meet_in_the_middle_of_their_band():
    left = np.zeros((40, 60), dtype=np.uint8)
    left[:, 20:] = 1
    right = np.zeros_like(left)
    right[:, 26:] = 1
    result = consolidate_masks([left, right], 2)
    columns = result.labels[20]
    assert columns[:22].max() == 0 and columns[25:].min() == 1  # the boundary lands inside the band


def test_equal_evidence_goes_to_the_plain_vote_not_to_float_noise_or_the_lowest_class():
    # tuple 0: classes 1 and 2 level up to the last digits, the plain vote prefers 2;
    # tuple 1: a clear winner the vote disagrees with; tuple 2: level, the vote is level too
    scores = np.array([[0.0, 0.5 + 1e-12, 0.5], [0.0, 0.6, 0.4], [0.5, 0.5, 0.0]])
    votes = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    assert undecided_tuples(scores).tolist() == [True, False, True]
    assert break_ties(scores, votes).tolist() == [2, 1, 0]


def test_the_judged_candidates_break_equal_evidence_as_the_applied_estimate_does():
    # two real workers measured against each other weigh the same; where they disagree the
    # weighted vote is level, and the judges must see what would be applied there: the class
    # most workers painted (here the third worker's one class), not the lowest index
    rng = np.random.default_rng(3)
    truth = np.zeros((48, 64), dtype=np.uint8)
    truth[8:40, 10:54] = 1
    first, second = truth.copy(), truth.copy()
    first[8:40, 54:58] = 1  # one paints the box wider, the other taller
    second[40:44, 10:54] = 1
    first[rng.random(truth.shape) < 0.01] = 2
    constant = np.ones_like(truth)
    table = encode_tuples([first, second, constant], 3)
    tuples, counts = table.tuples, table.counts.astype(float)
    candidates, _ = tuple_candidates(
        tuples,
        counts,
        3,
        voters=np.ones(3, dtype=bool),
        informative=np.array([True, True, False]),
        priors=None,
    )
    weighted = candidates[WEIGHTED]
    assert weighted.weights[0] == pytest.approx(weighted.weights[1]) and weighted.weights[2] == 0
    level = undecided_tuples(weighted.scores)
    split = level & (tuples[:, 0] != tuples[:, 1])
    assert split.any()
    everyone = np.stack([np.bincount(row, minlength=3) for row in tuples]).astype(float)
    assert np.array_equal(weighted.labels, break_ties(weighted.scores, everyone))
    one_says_one = (tuples[:, 0] == 1) | (tuples[:, 1] == 1)
    assert (weighted.labels[split & one_says_one] == 1).all()


def test_a_judge_whose_others_are_no_consensus_without_it_does_not_judge():
    # two real workers among three blob painters: leaving one real worker out leaves one real
    # worker and the blob painters' chance agreement, and candidates rebuilt from that cannot
    # tell which estimate predicts the judge better
    scene = make_scene(11, 160, 120)
    num_classes = len(scene.class_map)
    masks = SimulatedCrowd(["careful", "average", "blobs", "blobs", "blobs"], seed=11).paint(scene)
    table = encode_tuples(masks, num_classes)
    tuples, counts = table.tuples, table.counts.astype(float)
    everyone = np.ones(5, dtype=bool)
    candidates, reliability = tuple_candidates(
        tuples, counts, num_classes, voters=everyone, informative=everyone, priors=None
    )
    assert (reliability.weight[:2] > 1.0).all()  # the two real workers lead
    asked = []

    def is_consensus(trusted, voters):
        asked.append(np.flatnonzero(~voters).tolist())
        return bool(voters[0] and voters[1])  # only with both real workers

    judgement, built = judge_candidates(
        tuples,
        counts,
        num_classes,
        informative=everyone,
        judge_weight=reliability.weight,
        priors=None,
        is_consensus=is_consensus,
    )
    assert [0] in asked and [1] in asked  # both real workers were the leading judges
    assert 0 not in built and 1 not in built
    assert judgement.choose(list(candidates)) == WEIGHTED  # one judge's view is no judgement
    # the whole pipeline: the blob painters' agreement never turns the weighted vote into the vote
    result = consolidate_masks(masks, num_classes)
    assert result.method == "gtseg" and not result.workers[0].excluded and not result.workers[1].excluded
    assert sum(w.excluded for w in result.workers) >= 2
    assert mean_iou(result.labels, scene.truth, num_classes) > 0.85


def test_a_band_wider_than_the_neighbourhood_follows_the_plain_vote_in_its_middle():
    # two equally trusted workers 16 px apart and a third who painted one class everywhere (no
    # weight): where the box cannot see out of the band, the plain vote decides, as the vote would
    left = np.zeros((40, 80), dtype=np.uint8)
    left[:, 20:] = 1
    right = np.zeros_like(left)
    right[:, 36:] = 1
    everywhere_one = np.ones_like(left)
    result = consolidate_masks([left, right, everywhere_one], 2)
    assert result.workers[2].weight == 0
    columns = result.labels[20]
    assert columns[:20].max() == 0 and columns[24:].min() == 1


def test_two_empty_submissions_do_not_outvote_the_worker_who_painted_the_scene():
    scene = make_scene(2, 160, 120)
    num_classes = len(scene.class_map)
    painted = SimulatedCrowd(["careful"], seed=2).paint(scene)[0]
    for lazy_class in (0, 1):  # nothing painted, or one label everywhere
        lazy = np.full_like(painted, lazy_class)
        result = consolidate_masks([painted, lazy, lazy.copy()], num_classes)
        assert [w.weight for w in result.workers] == [1.0, 0.0, 0.0]
        assert np.array_equal(result.labels, painted)


def test_two_empty_submissions_outvote_a_few_stray_strokes():
    # an image with nothing to label: the third worker slipped; the other two agree with the
    # image being mostly background, so theirs is a consensus and the vote stands
    empty = np.zeros((60, 80), dtype=np.uint8)
    slipped = empty.copy()
    slipped[10:14, 10:30] = 2
    result = consolidate_masks([empty, empty.copy(), slipped], 3)
    assert not result.labels.any()


@pytest.mark.parametrize("seed", range(6))
def test_a_spammer_among_real_workers_never_gets_a_vote(seed):
    scene = make_scene(seed, 320, 240)
    num_classes = len(scene.class_map)
    masks = SimulatedCrowd(["careful", "average", "sloppy", "spammer"], seed=seed).paint(scene)
    result = consolidate_masks(masks, num_classes)
    assert result.workers[3].weight == 0
    assert min(w.weight for w in result.workers[:3]) > 0


def test_dawid_skene_fitted_on_the_common_tuples_matches_the_full_fit(monkeypatch):
    scene = make_scene(33, 320, 240)
    masks = SimulatedCrowd(["careful", "average", "average", "sloppy", "sloppy", "blobs"], seed=8).paint(
        scene
    )
    table = encode_tuples(masks, 8)
    counts = table.counts.astype(float)
    init = table.tuples[:, 0].astype(np.intp)
    included = np.ones(len(masks), dtype=bool)
    assert len(counts) > 300
    monkeypatch.setattr(ds, "FIT_TUPLES", 10**9)
    full, _, _ = ds.dawid_skene(table.tuples, counts, init, included, 8, shrinkage=0.01 * counts.sum())
    monkeypatch.setattr(ds, "FIT_TUPLES", 100)
    fitted, _, _ = ds.dawid_skene(table.tuples, counts, init, included, 8, shrinkage=0.01 * counts.sum())
    agree = counts[full.argmax(axis=1) == fitted.argmax(axis=1)].sum() / counts.sum()
    assert agree > 0.995


def test_dawid_skene_over_some_workers_equals_em_on_their_own_tuple_table(monkeypatch):
    """Leaving a worker out (a judge, an untrusted worker) merges the tuples that differ only in its
    label; the posterior of every pixel is the one EM gives on the others' own tuple table."""
    scene = make_scene(5, 160, 120)
    masks = SimulatedCrowd(["careful", "average", "average", "sloppy", "sloppy"], seed=3).paint(scene)
    monkeypatch.setattr(ds, "FIT_TUPLES", 10**9)  # both fit on every tuple
    everyone = encode_tuples(masks, 8)
    included = np.array([True, True, False, True, True])
    assert len(np.unique(everyone.tuples[:, included], axis=0)) < len(everyone.tuples)  # merges some
    post, _, _ = ds.dawid_skene(
        everyone.tuples,
        everyone.counts.astype(float),
        everyone.tuples[:, 0].astype(np.intp),
        included,
        8,
        shrinkage=100.0,
        max_iterations=10,
    )
    own = encode_tuples([m for m, keep in zip(masks, included, strict=True) if keep], 8)
    expected, _, _ = ds.dawid_skene(
        own.tuples,
        own.counts.astype(float),
        own.tuples[:, 0].astype(np.intp),
        np.ones(4, dtype=bool),
        8,
        shrinkage=100.0,
        max_iterations=10,
    )
    per_pixel = post[np.searchsorted(everyone.present, everyone.codes)]
    expected_per_pixel = expected[np.searchsorted(own.present, own.codes)]
    np.testing.assert_allclose(per_pixel, expected_per_pixel, atol=1e-9)


def _class_balanced_kappa_by_definition(tuples, counts, weights, num_classes):
    """The per-class kappa of each worker with the others' soft share, built table by table."""
    total = counts.sum()
    rows = np.arange(len(tuples))
    out = np.zeros(tuples.shape[1])
    for k in range(tuples.shape[1]):
        others = [j for j in range(tuples.shape[1]) if j != k]
        others_total = sum(weights[j] for j in others)
        if others_total <= 1e-12:
            continue
        share = np.zeros((len(tuples), num_classes))
        for j in others:
            share[rows, tuples[:, j]] += weights[j] / others_total
        own = np.zeros_like(share)
        own[rows, tuples[:, k]] = 1.0
        a, b = counts @ own / total, counts @ share / total
        both = counts @ (own * share) / total
        observed, chance = 1 - a - b + 2 * both, a * b + (1 - a) * (1 - b)
        present = (a > 0) | (b > 1e-12)
        kappa = np.where(chance < 1 - 1e-12, (observed - chance) / np.maximum(1 - chance, 1e-12), 0.0)
        out[k] = kappa[present].mean() if present.any() else 0.0
    return out


@pytest.mark.parametrize("seed", range(6))
def test_class_balanced_kappa_matches_its_definition(seed):
    # the O(T)-per-worker form derives every per-class sum from the full vote totals; it must equal
    # the (T, C) tables of the definition, for unequal weights and a zero-weight worker too
    rng = np.random.default_rng(seed)
    k_workers, num_classes = int(rng.integers(2, 7)), int(rng.integers(2, 9))
    truth = rng.integers(0, num_classes, 400)
    masks = [
        np.where(rng.random(400) < rng.uniform(0.3, 0.95), truth, rng.integers(0, num_classes, 400))
        for _ in range(k_workers)
    ]
    table = encode_tuples([m.astype(np.uint8).reshape(20, 20) for m in masks], num_classes)
    counts = table.counts.astype(np.float64)
    weights = rng.uniform(0.0, 3.0, k_workers)
    weights[0] = 0.0
    np.testing.assert_allclose(
        class_balanced_kappa(table.tuples, counts, RoundVotes.of(table.tuples, counts, weights, num_classes)),
        _class_balanced_kappa_by_definition(table.tuples, counts, weights, num_classes),
        rtol=1e-9,
        atol=1e-12,
    )
