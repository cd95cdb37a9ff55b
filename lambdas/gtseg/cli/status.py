"""``gtseg status JOB [--watch] [--interval S] [--json]``: where a labeling job stands.

DescribeLabelingJob -> status, the label counters, the failure reason and the output manifest
URI. --watch polls until the job has ended, with a progress bar on a terminal. Exit code 1 when
the job failed (or does not exist, or AWS could not be asked), else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from gtseg.cli.common import CommandProgress, aws_problem, described, make_client
from gtseg.cli.streaming import streaming_status

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a labeling job's status and progress",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", metavar="JOB", help="labeling job name")
    parser.add_argument("--watch", action="store_true", help="poll until the job has ended")
    parser.add_argument(
        "--interval", type=float, default=30.0, metavar="S", help="seconds between polls (default 30)"
    )
    parser.add_argument("--json", action="store_true", help="print DescribeLabelingJob's answer as JSON")
    parser.set_defaults(func=run)


def counters(description: Mapping[str, Any]) -> tuple[int, int, int]:
    """(labeled, failed, total) from DescribeLabelingJob's LabelCounters."""
    label_counters = description.get("LabelCounters") or {}
    labeled = int(label_counters.get("TotalLabeled", 0))
    failed = int(label_counters.get("FailedNonRetryableError", 0))
    return labeled, failed, labeled + failed + int(label_counters.get("Unlabeled", 0))


def render_status(description: Mapping[str, Any]) -> str:
    label_counters = description.get("LabelCounters") or {}
    labeled, failed, total = counters(description)
    unlabeled = total - labeled - failed
    percent = f"{100 * labeled / total:.0f}%" if total else "-"
    lines = [
        f"job:      {description.get('LabelingJobName', '?')}",
        f"status:   {description.get('LabelingJobStatus', '?')}",
        f"progress: {labeled}/{total} labeled ({percent})",
        f"          human {label_counters.get('HumanLabeled', 0)}, machine {label_counters.get('MachineLabeled', 0)}, "
        f"failed {failed}, unlabeled {unlabeled}",
    ]
    if description.get("FailureReason"):
        lines.append(f"failure:  {description['FailureReason']}")
    output = (description.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if output:
        lines.append(f"output:   {output}")
    lines += streaming_status(description, make_client)  # streaming jobs only (cli/streaming.py)
    return "\n".join(lines)


def _jsonable(description: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in description.items() if k != "ResponseMetadata"}


def watch(
    sagemaker: Any,
    job: str,
    *,
    interval: float,
    out: TextIO | None = None,
    as_json: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    progress: CommandProgress | None = None,
) -> dict[str, Any]:
    """Print the status, then again whenever it changes, until the job ends; return the last answer.
    ``progress`` (on a terminal) shows the objects done (labeled or failed) as a bar meanwhile."""
    last_shown = None
    while True:
        description = sagemaker.describe_labeling_job(LabelingJobName=job)
        if progress is not None:
            labeled, failed, total = counters(description)
            progress.phase(str(description.get("LabelingJobStatus", "?")), labeled + failed, total or None)
        shown = (
            json.dumps(_jsonable(description), default=str, sort_keys=True)
            if as_json
            else render_status(description)
        )
        if shown != last_shown:
            print(shown, file=out or sys.stdout, flush=True)  # sys.stdout now: the bar may redirect it
            last_shown = shown
        if description.get("LabelingJobStatus") in TERMINAL_STATUSES:
            return description
        sleep(interval)


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("gtseg status: --interval must be positive", file=sys.stderr)
        return 2
    problem = None
    try:
        sagemaker = make_client("sagemaker")
        if args.watch:
            with CommandProgress(quiet=args.json) as progress:  # erased before any last line
                description = watch(
                    sagemaker,
                    args.job,
                    interval=args.interval,
                    as_json=args.json,
                    sleep=time.sleep,
                    progress=progress if progress.enabled else None,
                )
        else:
            description = sagemaker.describe_labeling_job(LabelingJobName=args.job)
            if args.json:
                print(json.dumps(_jsonable(description), default=str, indent=2, sort_keys=True))
            else:
                print(render_status(description))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("ResourceNotFound", "ResourceNotFoundException"):
            problem = f"no labeling job named {args.job!r}"
        else:
            problem = aws_problem(exc)
    except BotoCoreError as exc:
        problem = aws_problem(exc)
    if problem is not None:
        print(f"gtseg status: {problem}", file=sys.stderr)
        return 1
    return 1 if description.get("LabelingJobStatus") == "Failed" else 0
