"""Consolidation benchmark: accuracy under three independent worker error models, a batch with
recurring workers, speed and memory, each against references measured in the same run.

    make bench                                               # everything (installs bench/requirements.txt)
    .venv/bin/python bench/bench_consolidation.py --quick    # the same sections, fewer and smaller images
    .venv/bin/python bench/bench_consolidation.py --section accuracy --models object --k 3 --bad 1 --tracks full

Sections (``--section``, comma-separated or repeated):

accuracy  mean IoU vs truth of gtseg and the references (MV, SIMPLE, DS, STAPLE, and crowd-kit on
          the small track) for every error model x scene family, K = 3, 5, 9 x 0, 1, 2 bad workers;
          the worst case over error models, the leave-one-model-out view, confidence vs IoU.
batch     a workforce with recurring bad workers through BatchConsolidator.
speed     the handler end to end for one 1920x1080 object at each K, over the decode/encode floor.
memory    peak bytes per pixel per worker (fresh subprocess) at K = 5 and 9.

All figures are also written as JSON (``--json``, default bench/results/latest.json). Accuracy and
batch numbers are deterministic for a command line; the targets at the end may fail by design.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ first on sys.path; the package lives one level up.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench import accuracy, batch_section, models, perf, references, scenes  # noqa: E402
from bench.crowds import BAD_KINDS, configurations  # noqa: E402
from bench.metrics import pearson  # noqa: E402

SECTIONS = ("accuracy", "batch", "speed", "memory")

# The targets (issue 11), evaluated on the worst case.
MAX_BELOW_VOTE = 0.005
MAX_BELOW_BEST = 0.01
MIN_ABOVE_VOTE_WITH_BAD = 0.02
MIN_BATCH_GAIN = 0.03
MAX_HANDLER_RATIO = 2.5
MAX_BYTES_PER_PIXEL_PER_WORKER = 10.0


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _names(values: list[str] | None) -> list[str]:
    return [v.strip() for text in values or [] for v in text.split(",") if v.strip()]


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="fewer scenes, smaller images, fewer repeats (~3 min)"
    )
    p.add_argument(
        "--section", action="append", help=f"sections to run: {', '.join(SECTIONS)} (default: all)"
    )
    p.add_argument("--models", action="append", help=f"error models (default: {','.join(models.MODELS)})")
    p.add_argument(
        "--families", action="append", help=f"scene families (default: {','.join(scenes.FAMILIES)})"
    )
    p.add_argument("--tracks", default="full,small", help="accuracy tracks: full,small (default both)")
    p.add_argument(
        "--k", default="3,5,9", help="crowd sizes K (accuracy and speed; memory uses 5 and 9 of them)"
    )
    p.add_argument("--bad", default="0,1,2", help="bad workers per crowd (accuracy)")
    p.add_argument(
        "--bad-kind",
        choices=BAD_KINDS,
        help="make every bad worker of this kind (default: a spammer, then a blob painter, alternating; "
        "with 2 bad also two blob painters)",
    )
    p.add_argument("--scenes", type=int, help="scenes per street family (real shapes get half, at least 1)")
    p.add_argument("--size", type=_size, help="full-track street size WxH (real shapes: the larger side)")
    p.add_argument("--small-size", type=_size, help="small-track street size WxH")
    p.add_argument("--skip", action="append", help="reference methods to leave out, e.g. ck-EM,STAPLE")
    p.add_argument(
        "--gtseg-options",
        type=json.loads,
        default={},
        help="extra keyword arguments for consolidate_masks, as JSON, e.g. '{\"smoothing\": 0}'",
    )
    p.add_argument("--batch-objects", type=int, help="objects in the batch section")
    p.add_argument("--repeats", type=int, help="timing repeats, best of N")
    p.add_argument(
        "--speed-models", help="speed/memory scenarios by error model (default: all three; quick: object)"
    )
    p.add_argument(
        "--jobs", type=int, default=accuracy.default_jobs(), help="processes for the accuracy section"
    )
    p.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "latest.json", help="JSON output file"
    )
    return p.parse_args(argv)


def tracks_for(args: argparse.Namespace, skip: list[str]) -> list[accuracy.TrackSpec]:
    if args.quick:
        full_size, small_size, streets, real = (192, 144), (96, 72), 2, 1
    else:
        full_size, small_size, streets, real = (384, 288), (128, 96), 8, 4
    if args.scenes is not None:
        streets, real = args.scenes, max(1, args.scenes // 2)
    full_size = args.size or full_size
    small_size = args.small_size or small_size
    counts = (("sim-streets", streets), ("streets13", streets), ("horse", real), ("phantom", real))
    chosen = _names([args.tracks])
    out = []
    if "full" in chosen:
        out.append(
            accuracy.TrackSpec("full", full_size, full_size[0], counts, accuracy.methods_for("full", skip))
        )
    if "small" in chosen:
        out.append(
            accuracy.TrackSpec(
                "small", small_size, small_size[0], counts, accuracy.methods_for("small", skip)
            )
        )
    return out


def target_line(ok: bool | None, text: str) -> str:
    tag = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return f"  [{tag}] {text}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    sections = _names(args.section) or list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    model_names = _names(args.models) or list(models.MODELS)
    families = _names(args.families) or list(scenes.FAMILIES)
    bad_models = [m for m in model_names if m not in models.MODELS]
    bad_families = [f for f in families if f not in scenes.FAMILIES]
    if unknown or bad_models or bad_families:
        print(f"unknown section/model/family: {unknown + bad_models + bad_families}", file=sys.stderr)
        return 2
    ks, bads = _ints(args.k), _ints(args.bad)
    skip = _names(args.skip)
    notes = []
    for name in references.REFERENCES:
        why = references.available(name)
        if why and name not in skip:
            skip.append(name)
            notes.append(f"note: reference {name} left out: {why}")
    subset = (
        sorted(model_names) != sorted(models.MODELS)
        or sorted(families) != sorted(scenes.FAMILIES)
        or ks != (3, 5, 9)
        or bads != (0, 1, 2)
        or args.bad_kind is not None
        or set(_names([args.tracks])) != {"full", "small"}
        or bool(skip)
        or bool(args.gtseg_options)
    )
    print(
        f"gtseg consolidation benchmark ({'quick' if args.quick else 'full'} run; python {platform.python_version()}; "
        f"{args.jobs} process(es)); models: {', '.join(model_names)}; sections: {', '.join(sections)}"
    )
    if args.gtseg_options:
        print(f"gtseg options: {json.dumps(args.gtseg_options)}")
    for note in notes:
        print(note)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "notes": notes}
    summary = None

    if "accuracy" in sections:
        tracks = tracks_for(args, skip)
        configs = configurations(ks, bads, args.bad_kind)
        tasks = accuracy.build_tasks(tracks, model_names, families, configs, args.gtseg_options)
        t0 = time.perf_counter()
        results = accuracy.run_all(tasks, args.jobs)
        summary = accuracy.summarize(tasks, results, configs)
        for track in tracks:
            print("\n".join(accuracy.table_lines(summary, track)))
        print("\n".join(accuracy.worst_lines(summary, model_names)))
        print("\n".join(accuracy.confidence_lines(summary)))
        print("\n".join(accuracy.worker_lines(summary)))
        print("\n".join(accuracy.timing_lines(summary)))
        print(
            f"  ({len(tasks)} scene tasks x {len(configs)} configurations in {time.perf_counter() - t0:.0f} s)"
        )
        report["accuracy"] = accuracy.as_json(summary)
        report["accuracy"]["tracks"] = [t.describe() for t in tracks]

    errors: dict[str, str] = {}

    def guarded(section: str, fn: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """A section that raises is reported (and its targets fail), the others still run."""
        try:
            return fn()
        except Exception as exc:
            errors[section] = f"{type(exc).__name__}: {exc}"[:400]
            print(f"\n!! {section} section failed: {errors[section]}")
            traceback.print_exc(limit=3, file=sys.stdout)
            return []

    batch_rows: list[dict[str, Any]] = []
    if "batch" in sections:
        size = args.size or ((192, 144) if args.quick else (384, 288))
        objects = args.batch_objects or (8 if args.quick else 24)
        batch_rows = guarded("batch", lambda: batch_section.run(model_names, objects, size))
        print("\n".join(batch_section.lines(batch_rows)))
        report["batch"] = batch_rows

    repeats = args.repeats or (3 if args.quick else 5)
    wanted = (
        _names([args.speed_models])
        if args.speed_models
        else (["object"] if args.quick else list(model_names))
    )
    perf_scenarios = [s for s in perf.SCENARIOS if s[0] in wanted]
    speed_rows: list[dict[str, Any]] = []
    if "speed" in sections:
        speed_rows = guarded("speed", lambda: perf.speed(ks, repeats, perf_scenarios))
        print("\n".join(perf.speed_lines(speed_rows)))
        report["speed"] = speed_rows
    memory_rows: list[dict[str, Any]] = []
    if "memory" in sections:
        memory_ks = [k for k in ks if k in (5, 9)] or list(ks)
        memory_rows = guarded("memory", lambda: perf.memory(memory_ks, perf_scenarios))
        print("\n".join(perf.memory_lines(memory_rows)))
        report["memory"] = memory_rows
    report["errors"] = errors

    # ------------------------------------------------------------------ targets
    lines = ["\n== Targets (issue 11), on the worst case" + (" -- of this SUBSET only" if subset else "")]
    targets: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, text: str) -> None:
        targets.append({"target": name, "ok": ok, "detail": text})
        lines.append(target_line(ok, text))

    if summary is not None and summary.cells:
        worst_vote = min(
            ((accuracy.worst_gaps(summary, c.key)[0], c) for c in summary.configs), key=lambda gc: gc[0].value
        )
        worst_best = min(
            ((accuracy.worst_gaps(summary, c.key)[1], c) for c in summary.configs), key=lambda gc: gc[0].value
        )
        with_bad = [c for c in summary.configs if c.bad > 0]
        add(
            "never_below_vote",
            worst_vote[0].value >= -MAX_BELOW_VOTE,
            f"accuracy: never below MV by more than {MAX_BELOW_VOTE} (worst {worst_vote[0].value:+.3f}, "
            f"{worst_vote[1].key}, {worst_vote[0].where()})",
        )
        add(
            "near_best_reference",
            worst_best[0].value >= -MAX_BELOW_BEST,
            f"accuracy: within {MAX_BELOW_BEST} of the best reference everywhere (worst {worst_best[0].value:+.3f}, "
            f"{worst_best[1].key}, {worst_best[0].where()})",
        )
        if with_bad:
            wb = min(
                ((accuracy.worst_gaps(summary, c.key)[0], c) for c in with_bad), key=lambda gc: gc[0].value
            )
            add(
                "above_vote_with_bad",
                wb[0].value >= MIN_ABOVE_VOTE_WITH_BAD,
                f"accuracy: >= {MIN_ABOVE_VOTE_WITH_BAD} above MV wherever a bad worker is present "
                f"(worst {wb[0].value:+.3f}, {wb[1].key}, {wb[0].where()})",
            )
        else:
            add("above_vote_with_bad", None, "accuracy: no configuration with bad workers selected")
    else:
        add("never_below_vote", None, "accuracy: not run")
    if batch_rows:
        worst = min(batch_rows, key=lambda r: r["gain_over_alone"])
        failed = sum(r["failed"] for r in batch_rows)
        add(
            "batch_gain",
            worst["gain_over_alone"] >= MIN_BATCH_GAIN and not failed,
            f"batch: job-level / batch evidence >= {MIN_BATCH_GAIN} above per-object gtseg where bad workers recur "
            f"(worst {worst['gain_over_alone']:+.3f}, {worst['model']}/{worst['family']}"
            + (f"; {failed} object(s) failed)" if failed else ")"),
        )
    else:
        add("batch_gain", False if "batch" in errors else None, f"batch: {errors.get('batch', 'not run')}")
    if speed_rows:
        for k in sorted({r["k"] for r in speed_rows}):
            worst = max((r for r in speed_rows if r["k"] == k), key=lambda r: r["ratio"])
            add(
                f"speed_k{k}",
                worst["ratio"] <= MAX_HANDLER_RATIO,
                f"speed: handler <= {MAX_HANDLER_RATIO}x floor at K={k} (worst {worst['ratio']:.2f}x, "
                f"{worst['model']}/{worst['family']})",
            )
    else:
        add("speed", False if "speed" in errors else None, f"speed: {errors.get('speed', 'not run')}")
    if memory_rows:
        worst = max(memory_rows, key=lambda r: r["bytes_per_pixel_per_worker"])
        add(
            "memory",
            worst["bytes_per_pixel_per_worker"] <= MAX_BYTES_PER_PIXEL_PER_WORKER,
            f"memory: peak <= {MAX_BYTES_PER_PIXEL_PER_WORKER:.0f} bytes/pixel/worker at K="
            f"{','.join(str(k) for k in sorted({r['k'] for r in memory_rows}))} "
            f"(worst {worst['bytes_per_pixel_per_worker']:.1f}, {worst['model']}/{worst['family']} K={worst['k']})",
        )
    else:
        add("memory", False if "memory" in errors else None, f"memory: {errors.get('memory', 'not run')}")
    if summary is not None:
        rs = [pearson([c for c, _ in p], [i for _, i in p]) for p in summary.confidence.values()]
        finite = [r for r in rs if math.isfinite(r)]
        lines.append(
            f"  [INFO] confidence vs actual IoU: Pearson r from {min(finite):+.2f} to {max(finite):+.2f} "
            "over error models and tracks (see above)"
            if finite
            else "  [INFO] confidence vs actual IoU: not enough objects"
        )
    print("\n".join(lines))
    report["targets"] = targets
    report["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float, allow_nan=True) + "\n")
        print(f"\n(all figures in {args.json}; {report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
