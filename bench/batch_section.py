"""The batch section: a workforce whose members recur across a batch's objects, run through
``gtseg.consolidation.batch.BatchConsolidator`` (via the adapter), against the vote and against
gtseg on each object alone.

The workforce is six people (careful, two average, sloppy, a spammer, a blob painter); each object
is labelled by three of them at random, so the bad workers recur and the batch can learn who they
are. Each person keeps the parameters drawn for them on every object. One scenario per error model
(the polygon model on its own scenes, the mask-based models on streets13).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench import gtseg_adapter, models, references, scenes
from bench.metrics import mean_iou

WORKFORCE: tuple[str, ...] = ("careful", "average", "average", "sloppy", "spammer", "blobs")
SCENARIOS: dict[str, str] = {"polygon": "sim-streets", "object": "streets13", "boundary": "streets13"}


def run_scenario(model: str, objects: int, per_object: int, size: tuple[int, int]) -> dict[str, Any]:
    family = SCENARIOS[model]
    pick = np.random.default_rng(scenes.stable_seed("batch-pick", model))
    people = [
        models.make_worker(
            model, profile, np.random.default_rng(scenes.stable_seed("batch-person", model, i))
        )
        for i, profile in enumerate(WORKFORCE)
    ]
    ids = [f"worker-{i}-{p}" for i, p in enumerate(WORKFORCE)]
    batch_objects: list[tuple[list[str], list[np.ndarray]]] = []
    truths: list[np.ndarray] = []
    labels: tuple[str, ...] = ()
    num_classes = 0
    for i in range(objects):
        scene = scenes.make(family, 500 + i, size)  # indices the accuracy section does not use
        labels, num_classes = scene.labels, scene.num_classes
        chosen = sorted(pick.choice(len(WORKFORCE), size=per_object, replace=False).tolist())
        masks = [
            people[w].paint(scene, np.random.default_rng(scenes.stable_seed("batch-paint", model, i, w)))
            for w in chosen
        ]
        batch_objects.append(([ids[w] for w in chosen], masks))
        truths.append(scene.truth)
    outcome = gtseg_adapter.run_batch(labels, batch_objects)
    vote, alone, batch = [], [], []
    for truth, (worker_ids, masks), result in zip(truths, batch_objects, outcome.labels, strict=True):
        vote.append(mean_iou(references.majority(masks, num_classes), truth, num_classes))
        alone.append(
            mean_iou(gtseg_adapter.consolidate(masks, num_classes, worker_ids).labels, truth, num_classes)
        )
        batch.append(mean_iou(result, truth, num_classes) if result is not None else 0.0)
    return {
        "model": model,
        "family": family,
        "objects": objects,
        "per_object": per_object,
        "size": list(size),
        "vote": float(np.mean(vote)),
        "alone": float(np.mean(alone)),
        "batch": float(np.mean(batch)),
        "gain_over_alone": float(np.mean(batch) - np.mean(alone)),
        "prior_used": outcome.prior_used,
        "failed": len(outcome.failures),
        "first_failure": outcome.failures[0] if outcome.failures else None,
        "worst_vote": float(np.min(vote)),
        "worst_alone": float(np.min(alone)),
        "worst_batch": float(np.min(batch)),
    }


def run(model_names: Sequence[str], objects: int, size: tuple[int, int]) -> list[dict[str, Any]]:
    return [run_scenario(m, objects, 3, size) for m in model_names if m in SCENARIOS]


def lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    first = rows[0]
    out = [
        f"\n== Batch: {first['objects']} objects of {first['size'][0]}x{first['size'][1]}, each by 3 of a workforce "
        "of 6 (C A A S sp bl) who recur; BatchConsolidator vs gtseg per object vs the vote"
    ]
    out.append(
        f"  {'model/family':22s} {'MV':>7s} {'alone':>7s} {'batch':>7s} {'batch-alone':>12s}  prior used  worst object (MV / alone / batch)"
    )
    for r in rows:
        out.append(
            f"  {r['model'] + '/' + r['family']:22s} {r['vote']:7.3f} {r['alone']:7.3f} {r['batch']:7.3f} "
            f"{r['gain_over_alone']:+12.3f}  {r['prior_used']:>4d}/{r['objects']:<5d}  "
            f"{r['worst_vote']:.3f} / {r['worst_alone']:.3f} / {r['worst_batch']:.3f}"
        )
        if r["failed"]:
            out.append(
                f"    !! {r['failed']} object(s) got no mask from BatchConsolidator (scored 0): {r['first_failure']}"[
                    :300
                ]
            )
    return out
