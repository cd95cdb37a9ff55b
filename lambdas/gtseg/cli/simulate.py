"""``gtseg simulate``: a complete Ground Truth labeling job, emulated locally with no AWS account.

moto's S3 on 127.0.0.1, a local SageMaker stand-in, gtseg's launcher, pre-annotation and
consolidation handlers in Lambda runtime sandboxes (awslambdaric), the worker template rendered
with Ground Truth's Liquid filters, and simulated workers with known skill painting scenes whose
truth is known. ``make demo`` runs it with the defaults. See docs/local-run.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from gtseg.cli.common import CommandProgress, add_force_option, described, print_problems

DEFAULTS = "8 objects of 640x480, 5 workers: careful, average, average, sloppy, spammer"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a complete labeling job locally with simulated workers (no AWS account)",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--images", type=Path, metavar="DIR", help="label your own .jpg/.png images instead of scenes"
    )
    parser.add_argument(
        "--objects", type=int, metavar="N", help="data objects (default 8; all images with --images)"
    )
    parser.add_argument(
        "--workers", type=int, metavar="K", help="workers per object, 1-9 (default: one per profile)"
    )
    parser.add_argument(
        "--profiles",
        default="careful,average,average,sloppy,spammer",
        help="comma-separated worker profiles, cycled to K workers: careful, average, sloppy, spammer, blobs "
        "(default careful,average,average,sloppy,spammer)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for scenes and workers (default 0)")
    parser.add_argument("--size", default="640x480", metavar="WxH", help="scene size (default 640x480)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-output"),
        metavar="DIR",
        help="where results go: DIR/<job-name>/ (default demo-output)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=10, help="data objects per consolidation call (default 10)"
    )
    parser.add_argument("--job-name", default="gtseg-demo", help="labeling job name (default gtseg-demo)")
    parser.add_argument("--template", type=Path, help="worker task template to try (default: gtseg's own)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force_option(parser, "job folder DIR/<job-name>/ of an earlier gtseg simulate")
    parser.add_argument(
        "--human",
        action="store_true",
        help="you are one of the workers: each task opens in your browser (URL printed) and the job waits "
        "for your answer; the summary scores you like the simulated workers (default 3 objects)",
    )
    parser.add_argument(
        "--human-port",
        type=int,
        default=8765,
        metavar="N",
        help="with --human: the port on 127.0.0.1 of your task page (default 8765; 0 = any free one)",
    )
    parser.add_argument(
        "--human-timeout",
        type=float,
        metavar="SECONDS",
        help="with --human: how long the job waits for each of your answers (default: as long as it takes)",
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="a streaming job: it starts with a third of the images, takes the others while it runs (sent to "
        "its SNS input topic as `gtseg send` sends them, and uploaded under the bucket's upload prefix), "
        "announces each labeled object, which is finalized into its dataset, and is stopped at the end "
        "(moto SNS/SQS; docs/streaming.md)",
    )
    parser.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 16 or int(height) < 16:
        raise ValueError(f"--size wants WIDTHxHEIGHT of at least 16x16, e.g. 640x480; got {text!r}")
    return int(width), int(height)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_summary(result: Any) -> str:
    """The closing table: outcome, accuracy per source, confidence vs quality, time, next steps."""
    from gtseg.local.simulated_job import confidence_correlation

    summary = result.to_dict()
    report = result.report
    scored = [s for s in result.scores if s.consolidated_iou is not None]
    lines = []
    profiles = ", ".join(result.worker_profiles)
    lines.append(
        f"\nJob {report.job_name}: {report.status} - {len(report.objects)} objects, "
        f"{len(result.worker_profiles)} workers each ({profiles})"
    )
    if report.failure_reason:
        lines.append(f"  failure: {report.failure_reason}")
    lines.append(
        f"  objects: {summary['labeled']} labeled, {summary['failed']} failed, {summary['skipped']} skipped"
        + (f", {len(report.manifest_errors)} bad manifest lines" if report.manifest_errors else "")
    )
    truth = "synthetic scenes (exact truth)" if result.truth_kind == "synthetic" else (
        "your images; truth is a colour-quantised stand-in, so IoU only compares sources"
    )  # fmt: skip
    lines.append(f"\n  Mean IoU vs truth - {truth}")
    lines.append(f"  {'source':<26} {'workers':>7} {'mean IoU':>9} {'est. quality':>13}")
    consolidated = summary["meanIoU"]["consolidated"]
    majority = summary["meanIoU"]["majorityVote"]
    lines.append(f"  {'gtseg consolidation':<26} {'':>7} {_fmt(consolidated):>9} {'':>13}")
    lines.append(f"  {'majority vote (baseline)':<26} {'':>7} {_fmt(majority):>9} {'':>13}")
    for row in result.profile_summary():
        name = "you (human)" if row["profile"] == "human" else row["profile"]
        lines.append(
            f"  {'worker: ' + name:<26} {row['workers']:>7} {_fmt(row['mean_iou']):>9} "
            f"{_fmt(row['estimated_quality'], 2):>13}"
        )
    if "human" in result.worker_profiles:
        answered = sum(1 for s in result.scores for _, p, _ in s.worker_iou if p == "human")
        lines.append(
            f"  you answered {answered} of {len(result.scores)} objects; scored like the simulated workers"
        )
    if consolidated is not None and majority is not None:
        lines.append(f"  consolidation vs majority vote: {consolidated - majority:+.3f} IoU")
    confidences = [s.image_confidence for s in scored if s.image_confidence is not None]
    if confidences:
        r = confidence_correlation(result.scores)
        lines.append(
            f"\n  Confidence vs actual quality: image confidence {min(confidences):.2f}-{max(confidences):.2f}, "
            f"Pearson r with IoU = {_fmt(r, 2)} over {len(scored)} objects"
        )
        worst = min(scored, key=lambda s: s.consolidated_iou or 0.0)
        lines.append(
            f"  lowest IoU: object {worst.dataset_object_id} (IoU {_fmt(worst.consolidated_iou)}, "
            f"confidence {_fmt(worst.image_confidence, 2)})"
        )
    problems = summary["contractProblems"] + summary["problems"]
    if problems:
        lines.append("\n  Problems:")
        lines.extend(f"  - {p}" for p in problems[:10])
        if len(problems) > 10:
            lines.append(f"  ... and {len(problems) - 10} more in local-emulator/summary.json")
    sec = summary["seconds"]
    phases = (
        "samples",
        "upload",
        "launch",
        "pre-annotation",
        "workers",
        "consolidation",
        "download",
        "scoring",
    )
    lines.append(
        "\n  Time: "
        + ", ".join(f"{p} {sec[p]:.1f}s" for p in phases if p in sec)
        + f"; total {sec['total']:.1f}s"
    )
    job_dir = result.job_dir
    manifest = job_dir / "manifests" / "output" / "output.manifest"
    if not manifest.is_file():  # the job failed before Ground Truth would write its output
        lines.append(
            f"\nNo output manifest: the job ended before writing one. What happened is in {job_dir}/:"
        )
        lines.append("  local-emulator/job-report.json  the failure reason, per-object status")
        lines.append("  local-emulator/logs/            each Lambda's log")
        return "\n".join(lines)
    lines.append(f"\nResults in {job_dir}/ (Ground Truth's output layout, ':' in names replaced by '_'):")
    lines.append(f"  {manifest}  output manifest: input keys + the consolidated label")
    lines.append(f"  {job_dir}/annotations/consolidated-annotation/output/  masks (PNG) + sidecars (JSON)")
    lines.append(f"  {job_dir}/annotations/worker-response/  every simulated worker's answer")
    lines.append(
        f"  {job_dir}/local-emulator/  summary.json, job-report.json, rendered worker pages, Lambda logs"
    )
    # shell-quoted, so the commands still work when pasted with a path that has spaces or quotes
    q = shlex.quote
    job_map = f"{result.report.job_prefix}={job_dir}"
    data_map = f"s3://{_data_bucket()}={result.input_dir}"
    mapping = f"--map {q(job_map)} --map {q(data_map)}"
    gtseg = q(_gtseg_command())
    lines.append("\nNext:")
    lines.append(f"  {gtseg} report {q(str(manifest))} --out {q(f'{job_dir.parent}/report.html')} {mapping}")
    lines.append(f"  {gtseg} export {q(str(manifest))} --out {q(f'{job_dir.parent}/dataset')} {mapping}")
    lines.append(f"  {gtseg} simulate --profiles careful,spammer,spammer   # see how consolidation copes")
    lines.append(
        "  docs/local-run.md explains every step; deploy for real with `make synth` and `cdk deploy`."
    )
    return "\n".join(lines)


def _gtseg_command() -> str:
    """How the user can run gtseg from here: ``gtseg`` if on their PATH, else the venv's script.

    Under ``make demo`` the PATH is make's (it prepends .venv/bin), not the user's shell's.
    """
    script = Path(sys.executable).parent / "gtseg"
    on_users_path = shutil.which("gtseg") == str(script) and not os.environ.get("MAKELEVEL")
    if on_users_path or not script.exists():
        return "gtseg"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _data_bucket() -> str:
    from gtseg.local.simulated_job import DATA_BUCKET

    return DATA_BUCKET


def _streaming_runner() -> Any:
    from gtseg.local.streaming import run_streaming_job

    return run_streaming_job


def _run_with_human(options: Any, args: argparse.Namespace, progress: CommandProgress) -> Any:
    """The job with the person at the browser as one of its workers; None if the page cannot start."""
    import errno

    from gtseg.local.preview.human import HumanWorker
    from gtseg.local.simulated_job import run_simulation

    options.worker_profiles()  # bad options are refused before a page opens
    human = HumanWorker(port=args.human_port)
    try:
        url = human.start()
    except OSError as exc:
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror or exc})"
        print(
            f"gtseg simulate: port {args.human_port} on 127.0.0.1 {reason}; choose another with --human-port "
            "(0 = any free one)",
            file=sys.stderr,
        )
        return None
    print(
        f"gtseg simulate: you are one of the workers - open {url} in your browser; the job waits for each "
        "of your answers (Ctrl+C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        return run_simulation(options, progress=progress.phase, human=human)
    finally:
        human.stop()


def run(args: argparse.Namespace) -> int:
    # Imported here so `gtseg --help` stays fast and other commands never load moto/awslambdaric.
    from gtseg.local.simulated_job import TEMPLATE, SimulationError, SimulationOptions, run_simulation

    try:
        size = parse_size(args.size)
    except ValueError as exc:
        print(f"gtseg simulate: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.human_port <= 65535:
        print(f"gtseg simulate: --human-port must be 0..65535, got {args.human_port}", file=sys.stderr)
        return 2
    if args.streaming and args.human:
        print("gtseg simulate: --human is not available with --streaming", file=sys.stderr)
        return 2
    if args.human_timeout is not None and args.human_timeout <= 0:
        print(
            f"gtseg simulate: --human-timeout must be more than 0, got {args.human_timeout}", file=sys.stderr
        )
        return 2
    options = SimulationOptions(
        objects=args.objects,
        workers=args.workers,
        profiles=tuple(p.strip() for p in args.profiles.split(",") if p.strip()),
        seed=args.seed,
        size=size,
        images_dir=args.images,
        out_dir=args.out,
        batch_size=args.batch_size,
        job_name=args.job_name,
        template=args.template or TEMPLATE,
        human=args.human,
        human_timeout=args.human_timeout,
        force=args.force,
    )
    print(
        "gtseg simulate: a Ground Truth labeling job run locally - moto S3, a SageMaker stand-in, gtseg's "
        "Lambdas in awslambdaric sandboxes, simulated workers (nothing reaches AWS)",
        file=sys.stderr,
    )
    failure = None
    with CommandProgress(quiet=args.quiet) as progress:  # erased before anything below is printed
        try:
            if args.human:
                result = _run_with_human(options, args, progress)
            elif args.streaming:  # gtseg.local.streaming
                result = run_simulation(options, progress=progress.phase, job_runner=_streaming_runner())
            else:
                result = run_simulation(options, progress=progress.phase)
        except SimulationError as exc:
            failure = str(exc)
    if failure is not None:
        print(f"gtseg simulate: {failure}", file=sys.stderr)
        return 2
    if result is None:
        return 2
    print_problems("note", result.notes)
    print(format_summary(result))
    if args.streaming:
        print("\n".join(result.summary_lines()))
    ended = "Stopped" if args.streaming else "Completed"  # a streaming job runs until it is stopped
    ok = result.report.status == ended and not result.report.contract_problems
    ok = ok and result.report.count("failed") == 0
    return 0 if ok else 1
