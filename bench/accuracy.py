"""The accuracy section: every error model x scene family x crowd configuration, every method.

Two tracks, each its own set of images (all methods of a track see the same masks):

* ``full``: streets at the full bench size, real shapes likewise; MV, SIMPLE, DS, STAPLE, gtseg;
* ``small``: the same families at a small size, where crowd-kit's aggregators are affordable
  too; every method.

A *cell* is (track, error model, scene family); its figure for a method is the mean IoU vs truth
over the family's scenes. Worst cases are taken over cells, so one error model, scene family or
image size cannot hide a loss.

Every worker is seeded from (track, model, family, scene, crowd slot, profile), so a worker is the
same person in every configuration that has that slot and profile (K=5 bad=1 differs from K=5
bad=0 only in its last worker), and the numbers do not depend on the order tasks run in or on
which other models, configurations or families were selected.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import gtseg_adapter, models, references, scenes
from bench.crowds import Config
from bench.metrics import mean_iou, pearson

GTSEG = "gtseg"
VOTE = "MV"


@dataclass(frozen=True)
class TrackSpec:
    name: str
    street_size: tuple[int, int]
    real_longest: int
    scenes_per_family: tuple[tuple[str, int], ...]
    methods: tuple[str, ...]  # references then gtseg

    def size_of(self, family: str) -> tuple[int, int]:
        if family in ("horse", "phantom"):
            return (self.real_longest, self.real_longest)
        return self.street_size

    def describe(self) -> str:
        w, h = self.street_size
        counts = ", ".join(f"{f} {n}" for f, n in self.scenes_per_family)
        return f"streets {w}x{h}, real shapes {self.real_longest} px; scenes: {counts}"


@dataclass(frozen=True)
class Task:
    track: str
    model: str
    family: str
    index: int
    size: tuple[int, int]
    configs: tuple[Config, ...]
    methods: tuple[str, ...]
    gtseg_options: tuple[tuple[str, Any], ...] = ()

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.track, self.model, self.family)


def worker_seed(task: Task, slot: int, profile: str) -> int:
    return scenes.stable_seed("worker", task.track, task.model, task.family, task.index, slot, profile)


def run_method(
    name: str, masks: Sequence[np.ndarray], num_classes: int, options: dict[str, Any]
) -> tuple[np.ndarray, float | None]:
    if name == GTSEG:
        out = gtseg_adapter.consolidate(
            masks, num_classes, [f"worker-{i}" for i in range(len(masks))], options=options
        )
        return out.labels, out.image_confidence
    return references.REFERENCES[name].run(masks, num_classes), None


def run_task(task: Task) -> dict[str, Any]:
    """One scene of one family painted by one model's workers, every configuration and method."""
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    except Exception:  # STAPLE may be unavailable; it is then not in task.methods
        pass
    scene = scenes.make(task.family, task.index, task.size)
    painted: dict[tuple[int, str], np.ndarray] = {}
    iou: dict[str, dict[str, float]] = {}
    confidence: dict[str, float] = {}
    seconds: dict[str, float] = defaultdict(float)
    worker_iou: dict[str, float] = {}
    options = dict(task.gtseg_options)
    for config in task.configs:
        masks = []
        for slot, profile in enumerate(config.profiles):
            key = (slot, profile)
            if key not in painted:
                rng = np.random.default_rng(worker_seed(task, slot, profile))
                painted[key] = models.make_worker(task.model, profile, rng).paint(scene, rng)
                worker_iou[f"{slot}:{profile}"] = mean_iou(painted[key], scene.truth, scene.num_classes)
            masks.append(painted[key])
        row: dict[str, float] = {}
        for method in task.methods:
            start = time.perf_counter()
            labels, conf = run_method(method, masks, scene.num_classes, options)
            seconds[method] += time.perf_counter() - start
            row[method] = mean_iou(labels, scene.truth, scene.num_classes)
            if conf is not None:
                confidence[config.key] = conf
        iou[config.key] = row
    return {
        "cell": list(task.cell),
        "scene": scene.name,
        "pixels": int(scene.truth.size),
        "iou": iou,
        "confidence": confidence,
        "workers": worker_iou,
        "seconds": dict(seconds),
    }


def build_tasks(
    tracks: Sequence[TrackSpec],
    model_names: Sequence[str],
    families: Sequence[str],
    configs: Sequence[Config],
    gtseg_options: dict[str, Any],
) -> list[Task]:
    tasks = []
    for track in tracks:
        for model in model_names:
            for family, count in track.scenes_per_family:
                if family not in families or family not in models.MODELS[model].families:
                    continue
                for index in range(count):
                    tasks.append(
                        Task(
                            track.name,
                            model,
                            family,
                            index,
                            track.size_of(family),
                            tuple(configs),
                            track.methods,
                            tuple(sorted(gtseg_options.items())),
                        )
                    )
    return tasks


def run_all(tasks: Sequence[Task], jobs: int) -> list[dict[str, Any]]:
    """Every task, in parallel when ``jobs`` > 1; results in task order (progress on stderr)."""
    by_task: dict[int, dict[str, Any]] = {}
    step = max(1, len(tasks) // 10)

    def progress() -> None:
        if len(by_task) % step == 0 or len(by_task) == len(tasks):
            print(f"  accuracy: {len(by_task)}/{len(tasks)} scene tasks", file=sys.stderr, flush=True)

    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            by_task[i] = run_task(task)
            progress()
    else:
        # biggest first, for an even finish
        order = sorted(range(len(tasks)), key=lambda i: -math.prod(tasks[i].size))
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_task, tasks[i]): i for i in order}
            for future in as_completed(futures):
                by_task[futures[future]] = future.result()
                progress()
    return [by_task[i] for i in range(len(tasks))]


# --------------------------------------------------------------------------- aggregation

Cell = tuple[str, str, str]  # track, model, family


@dataclass
class Summary:
    configs: list[Config]
    cells: list[Cell]
    methods: dict[str, tuple[str, ...]]  # per track
    means: dict[Cell, dict[str, dict[str, float]]]  # cell -> config key -> method -> mean IoU
    scenes: dict[Cell, int]
    confidence: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # track -> method -> s/object
    worker_iou: dict[Cell, dict[str, float]] = field(default_factory=dict)  # mean per profile


def summarize(tasks: Sequence[Task], results: Sequence[dict[str, Any]], configs: Sequence[Config]) -> Summary:
    raw: dict[Cell, dict[str, dict[str, list[float]]]] = {}
    confidence: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    seconds: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    workers: dict[Cell, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    methods: dict[str, tuple[str, ...]] = {}
    counts: dict[Cell, int] = defaultdict(int)
    for task, result in zip(tasks, results, strict=True):
        cell = task.cell
        methods[task.track] = task.methods
        counts[cell] += 1
        per_cell = raw.setdefault(cell, {})
        for config_key, row in result["iou"].items():
            for method, value in row.items():
                per_cell.setdefault(config_key, {}).setdefault(method, []).append(value)
            if config_key in result["confidence"]:
                confidence[(task.track, task.model)].append((result["confidence"][config_key], row[GTSEG]))
        n_objects = len(result["iou"])
        for method, total in result["seconds"].items():
            seconds[task.track][method].append(total / max(1, n_objects))
        for slot_profile, value in result["workers"].items():
            workers[cell][slot_profile.split(":", 1)[1]].append(value)
    means = {
        cell: {ck: {m: float(np.mean(v)) for m, v in row.items()} for ck, row in per_config.items()}
        for cell, per_config in raw.items()
    }
    return Summary(
        configs=list(configs),
        cells=list(raw),
        methods=methods,
        means=means,
        scenes=dict(counts),
        confidence=dict(confidence),
        seconds={t: {m: float(np.mean(v)) for m, v in per.items()} for t, per in seconds.items()},
        worker_iou={c: {p: float(np.mean(v)) for p, v in per.items()} for c, per in workers.items()},
    )


@dataclass(frozen=True)
class Gap:
    value: float
    cell: Cell | None
    reference: str | None = None

    def where(self) -> str:
        if self.cell is None:
            return "-"
        track, model, family = self.cell
        ref = f" vs {self.reference}" if self.reference else ""
        return f"{model}/{family}[{track}]{ref}"


def best_reference(row: dict[str, float]) -> tuple[str, float]:
    refs = [(m, v) for m, v in row.items() if m != GTSEG]
    name, value = max(refs, key=lambda mv: mv[1])
    return name, value


def worst_gaps(summary: Summary, config_key: str, exclude_model: str | None = None) -> tuple[Gap, Gap]:
    """(worst gtseg - MV, worst gtseg - best reference) over the cells of one configuration."""
    to_vote, to_best = Gap(math.inf, None), Gap(math.inf, None)
    for cell in summary.cells:
        if exclude_model is not None and cell[1] == exclude_model:
            continue
        row = summary.means[cell].get(config_key)
        if not row or GTSEG not in row:
            continue
        gap = row[GTSEG] - row[VOTE]
        if gap < to_vote.value:
            to_vote = Gap(gap, cell)
        ref, value = best_reference(row)
        gap = row[GTSEG] - value
        if gap < to_best.value:
            to_best = Gap(gap, cell, ref)
    return to_vote, to_best


# --------------------------------------------------------------------------- printing


def _fmt_gap(value: float) -> str:
    return f"{value:+.3f}" if math.isfinite(value) else "   -  "


def table_lines(summary: Summary, track: TrackSpec) -> list[str]:
    methods = summary.methods.get(track.name)
    if not methods:
        return []
    lines = [f"\n== Accuracy [{track.name}]: mean IoU vs truth ({track.describe()})"]
    header = f"  {'model/family':22s}" + "".join(f"{m:>8s}" for m in methods) + "   gtseg-MV  gtseg-best"
    cells = [c for c in summary.cells if c[0] == track.name]
    for config in summary.configs:
        lines.append(config.label)
        lines.append(header)
        for cell in cells:
            row = summary.means[cell].get(config.key)
            if not row:
                continue
            ref, best = best_reference(row)
            lines.append(
                f"  {cell[1] + '/' + cell[2]:22s}"
                + "".join(f"{row[m]:8.3f}" for m in methods)
                + f"   {_fmt_gap(row[GTSEG] - row[VOTE]):>8s}  {_fmt_gap(row[GTSEG] - best):>7s} ({ref})"
            )
    return lines


def worst_lines(summary: Summary, model_names: Sequence[str]) -> list[str]:
    lines = ["\n== Worst case over error model x scene family x track: gtseg's gap (negative = gtseg worse)"]
    lines.append(f"  {'configuration':38s} {'to MV':>7s}  {'where':32s} {'to best':>7s}  where")
    for config in summary.configs:
        to_vote, to_best = worst_gaps(summary, config.key)
        lines.append(
            f"  {config.label:38s} {_fmt_gap(to_vote.value):>7s}  {to_vote.where():32s} "
            f"{_fmt_gap(to_best.value):>7s}  {to_best.where()}"
        )
    present = [m for m in model_names if any(c[1] == m for c in summary.cells)]
    if len(present) > 1:
        lines.append(
            "\n== Leave one model out: worst gap to MV / to best reference without that model's cells"
        )
        lines.append(
            f"  {'configuration':38s} {'all models':>15s}"
            + "".join(f"{'without ' + m:>18s}" for m in present)
        )
        for config in summary.configs:
            cols = []
            for excluded in [None, *present]:
                to_vote, to_best = worst_gaps(summary, config.key, excluded)
                cols.append(f"{_fmt_gap(to_vote.value)}/{_fmt_gap(to_best.value)}")
            lines.append(f"  {config.label:38s} {cols[0]:>15s}" + "".join(f"{c:>18s}" for c in cols[1:]))
        lines.append("  (a conclusion that flips when one model is left out rests on that model alone)")
    return lines


def confidence_lines(summary: Summary) -> list[str]:
    lines = ["\n== Confidence vs actual IoU (gtseg image_confidence, every object of every configuration)"]
    for (track, model), pairs in sorted(summary.confidence.items()):
        conf = [c for c, _ in pairs]
        iou = [i for _, i in pairs]
        r = pearson(conf, iou)
        lines.append(
            f"  {model:9s} [{track:5s}]  Pearson r = {r:+.2f}  (n={len(pairs)}, "
            f"mean confidence {np.mean(conf):.3f}, mean IoU {np.mean(iou):.3f})"
        )
    return lines


def worker_lines(summary: Summary) -> list[str]:
    lines = ["\n== The simulated workers alone: mean IoU vs truth per profile (sanity check of the models)"]
    profiles = ("careful", "average", "sloppy", "spammer", "blobs")
    lines.append(f"  {'cell':32s}" + "".join(f"{p:>9s}" for p in profiles))
    for cell in summary.cells:
        per = summary.worker_iou.get(cell, {})
        lines.append(
            f"  {cell[1] + '/' + cell[2] + '[' + cell[0] + ']':32s}"
            + "".join(f"{per[p]:9.3f}" if p in per else f"{'-':>9s}" for p in profiles)
        )
    return lines


def timing_lines(summary: Summary) -> list[str]:
    lines = ["\n== Accuracy-section time per object (s, mean over objects; one core)"]
    for track, per in summary.seconds.items():
        lines.append(f"  [{track}] " + "  ".join(f"{m} {v:.3f}" for m, v in per.items()))
    return lines


def as_json(summary: Summary) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": {}, "worst": {}, "leave_one_model_out": {}, "confidence": {}}
    for cell in summary.cells:
        out["cells"]["/".join(cell)] = {"scenes": summary.scenes[cell], "mean_iou": summary.means[cell]}
    models_present = sorted({c[1] for c in summary.cells})
    for config in summary.configs:
        to_vote, to_best = worst_gaps(summary, config.key)
        out["worst"][config.key] = {
            "profiles": list(config.profiles),
            "gap_to_vote": to_vote.value,
            "gap_to_vote_cell": to_vote.where(),
            "gap_to_best": to_best.value,
            "gap_to_best_cell": to_best.where(),
        }
        out["leave_one_model_out"][config.key] = {}
        for excluded in models_present:
            v, b = worst_gaps(summary, config.key, excluded)
            out["leave_one_model_out"][config.key][excluded] = {
                "gap_to_vote": v.value,
                "gap_to_best": b.value,
            }
    for (track, model), pairs in summary.confidence.items():
        out["confidence"][f"{track}/{model}"] = {
            "pearson_r": pearson([c for c, _ in pairs], [i for _, i in pairs]),
            "n": len(pairs),
        }
    out["seconds_per_object"] = summary.seconds
    out["worker_iou"] = {"/".join(c): v for c, v in summary.worker_iou.items()}
    return out


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def methods_for(track: str, skip: Iterable[str] = ()) -> tuple[str, ...]:
    skipped = set(skip)
    names = [
        name
        for name, ref in references.REFERENCES.items()
        if name not in skipped and (track == "small" or not ref.small_only)
    ]
    return (*names, GTSEG)
