"""``gtseg stop JOB [--wait]``: stop a labeling job (a streaming job runs until it is stopped).

StopLabelingJob; the job is Stopping while Ground Truth cleans up, then Stopped. A job that has
already ended is left alone (exit code 0). For a streaming job, ``--wait`` waits until it is
Stopped and then gathers the objects its streaming dataset received into one manifest,
``<job>/gtseg/streaming/output.manifest`` (``gtseg export`` and ``report`` read it). Ground Truth
leaves the job's SQS queue ``GroundTruth-<job>`` behind (it may hold objects no worker got):
delete it yourself to stop SQS charges (the command says how).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.cli.common import aws_problem, described, make_client
from gtseg.cli.streaming import JobProblem, describe, job_root
from gtseg.core.streaming import input_topic_of, queue_name
from gtseg.streaming.output import gather_lines

ENDED = frozenset({"Completed", "Failed", "Stopped"})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stop",
        help="stop a labeling job (streaming jobs run until stopped)",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", metavar="JOB", help="labeling job name")
    parser.add_argument(
        "--wait", action="store_true", help="wait until it is Stopped (then gather a streaming job's dataset)"
    )
    parser.add_argument(
        "--interval", type=float, default=15.0, metavar="S", help="with --wait: seconds between polls (15)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="with --wait: give up after S seconds (1800)",
    )
    parser.set_defaults(func=run)


def stop(
    sagemaker: Any,
    store: S3Store | None,
    job: str,
    *,
    wait: bool = False,
    interval: float = 15.0,
    timeout: float = 1800.0,
    sleep: Callable[[float], None] | None = None,
    out: Callable[[str], None] = print,
) -> str:
    """Stop ``job`` and say what happened (through ``out``); returns the last status seen."""
    description = describe(sagemaker, job)
    name = str(description.get("LabelingJobName", job))
    status = str(description.get("LabelingJobStatus", "?"))
    streaming = input_topic_of(description) is not None
    if status in ENDED:
        out(f"{name}: already {status}; nothing to stop")
    elif status == "Stopping":
        out(f"{name}: already stopping")
    else:
        sagemaker.stop_labeling_job(LabelingJobName=name)
        out(f"{name}: stopping (Ground Truth cleans up, then the status is Stopped)")
        status = "Stopping"
    if wait and status == "Stopping":
        nap = sleep or time.sleep
        waited = 0.0
        while status == "Stopping":
            if waited >= timeout:
                raise JobProblem(
                    f"{name} is still Stopping after {timeout:.0f} s; run gtseg stop {name} --wait again"
                )
            nap(interval)
            waited += interval
            status = str(describe(sagemaker, name).get("LabelingJobStatus", "?"))
        out(f"{name}: {status}")
    if streaming:
        if status in ENDED and store is not None:
            manifest, count = gather_lines(store, job_root(description))
            out(f"  streaming dataset: {count} objects, manifest {manifest}")
        elif not wait:
            out(
                f"  run `gtseg stop {name} --wait` to gather its streaming dataset into one manifest once it is Stopped"
            )
        out(
            f"  Ground Truth leaves the queue {queue_name(name)} behind: delete it when you no longer need the "
            f"objects in it (aws sqs delete-queue --queue-url $(aws sqs get-queue-url --queue-name {queue_name(name)} "
            "--query QueueUrl --output text))"
        )
    return status


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0 or args.timeout <= 0:
        print("gtseg stop: --interval and --timeout must be positive", file=sys.stderr)
        return 2
    problem = None
    try:
        status = stop(
            make_client("sagemaker"), S3Store(client=make_client("s3")), args.job, wait=args.wait,
            interval=args.interval, timeout=args.timeout, out=lambda text: print(text, flush=True),
        )  # fmt: skip
    except (JobProblem, StorageError) as exc:
        problem = str(exc)
    except (BotoCoreError, ClientError) as exc:
        problem = aws_problem(exc)
    if problem is not None:
        print(f"gtseg stop: {problem}", file=sys.stderr)
        return 1
    return 1 if status == "Failed" else 0
