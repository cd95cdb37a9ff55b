"""``gtseg status JOB [--watch] [--interval S] [--json]``: where a labeling job stands.

DescribeLabelingJob -> status, the label counters as a progress bar, the failure reason and the
output manifest URI. ``--watch`` polls until the job has ended. Exit code 1 when the job failed
(or does not exist), else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from gtseg.cli.common import make_client

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
BAR_WIDTH = 30


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a labeling job's status and progress",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", metavar="JOB", help="labeling job name")
    parser.add_argument("--watch", action="store_true", help="poll until the job has ended")
    parser.add_argument(
        "--interval", type=float, default=30.0, metavar="S", help="seconds between polls (default 30)"
    )
    parser.add_argument("--json", action="store_true", help="print DescribeLabelingJob's answer as JSON")
    parser.set_defaults(func=run)


def progress_bar(labeled: int, failed: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####!....]``: ``#`` labeled, ``!`` failed, ``.`` still to do."""
    if total <= 0:
        return "[" + "." * width + "]"
    labeled_cells = round(width * labeled / total)
    failed_cells = min(width - labeled_cells, round(width * failed / total))
    if failed and not failed_cells and labeled_cells < width:
        failed_cells = 1  # a failure is never invisible
    rest = width - labeled_cells - failed_cells
    return "[" + "#" * labeled_cells + "!" * failed_cells + "." * rest + "]"


def render_status(description: Mapping[str, Any]) -> str:
    counters = description.get("LabelCounters") or {}
    labeled = int(counters.get("TotalLabeled", 0))
    failed = int(counters.get("FailedNonRetryableError", 0))
    unlabeled = int(counters.get("Unlabeled", 0))
    total = labeled + failed + unlabeled
    percent = f"{100 * labeled / total:.0f}%" if total else "-"
    lines = [
        f"job:      {description.get('LabelingJobName', '?')}",
        f"status:   {description.get('LabelingJobStatus', '?')}",
        f"progress: {progress_bar(labeled, failed, total)} {labeled}/{total} labeled ({percent})",
        f"          human {counters.get('HumanLabeled', 0)}, machine {counters.get('MachineLabeled', 0)}, "
        f"failed {failed}, unlabeled {unlabeled}",
    ]
    if description.get("FailureReason"):
        lines.append(f"failure:  {description['FailureReason']}")
    output = (description.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if output:
        lines.append(f"output:   {output}")
    return "\n".join(lines)


def _jsonable(description: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in description.items() if k != "ResponseMetadata"}


def watch(
    sagemaker: Any,
    job: str,
    *,
    interval: float,
    out: TextIO,
    as_json: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Print the status, then again whenever it changes, until the job ends; return the last answer."""
    last_shown = None
    while True:
        description = sagemaker.describe_labeling_job(LabelingJobName=job)
        shown = (
            json.dumps(_jsonable(description), default=str, sort_keys=True)
            if as_json
            else render_status(description)
        )
        if shown != last_shown:
            print(shown, file=out, flush=True)
            last_shown = shown
        if description.get("LabelingJobStatus") in TERMINAL_STATUSES:
            return description
        sleep(interval)


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("gtseg status: --interval must be positive", file=sys.stderr)
        return 2
    sagemaker = make_client("sagemaker")
    try:
        if args.watch:
            description = watch(
                sagemaker,
                args.job,
                interval=args.interval,
                out=sys.stdout,
                as_json=args.json,
                sleep=time.sleep,
            )
        else:
            description = sagemaker.describe_labeling_job(LabelingJobName=args.job)
            if args.json:
                print(json.dumps(_jsonable(description), default=str, indent=2, sort_keys=True))
            else:
                print(render_status(description))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in ("ResourceNotFound", "ResourceNotFoundException"):
            print(f"gtseg status: no labeling job named {args.job!r}", file=sys.stderr)
        else:
            print(f"gtseg status: {error.get('Code', 'error')}: {error.get('Message', exc)}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"gtseg status: {exc}", file=sys.stderr)
        return 1
    return 1 if description.get("LabelingJobStatus") == "Failed" else 0
