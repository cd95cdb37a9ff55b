"""``gtseg send JOB IMAGE_OR_PREFIX...``: send images to a running streaming labeling job.

Each argument is an s3:// image (.jpg/.jpeg/.png) or an s3:// prefix, whose images are all sent.
Every image becomes one message on the job's SNS input topic: a manifest line with Ground Truth's
de-duplication key (``{"source-ref": URI, "dataset-objectid-attribute-name": "source-ref"}``), so
an image sent twice is labeled once. The job must be InProgress (Ground Truth takes objects from
the topic only then). Prints what was sent; exit code 0 when every image was sent, 1 when the job
or AWS said no (one line), 2 for arguments that are not s3:// images or prefixes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.aws.streaming import publish_lines
from gtseg.cli.common import CommandProgress, aws_problem, described, make_client
from gtseg.cli.streaming import JobProblem, describe, streaming_input_topic
from gtseg.core.streaming import MAX_DEDUPE_ID_CHARS, input_line
from gtseg.core.uris import parse_s3_prefix

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what Ground Truth labels (protocol doc §3.6)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "send",
        help="send images to a running streaming labeling job",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", metavar="JOB", help="the streaming labeling job's name")
    parser.add_argument(
        "images", metavar="IMAGE_OR_PREFIX", nargs="+", help="s3:// image, or s3:// prefix of images"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


class UsageProblem(ValueError):
    """An argument that is not an s3:// image or prefix (exit code 2)."""


def is_image(uri: str) -> bool:
    return uri.lower().endswith(IMAGE_SUFFIXES)


def check_arguments(arguments: list[str]) -> None:
    """Every argument must be an s3:// image or prefix (checked before any AWS call)."""
    for argument in arguments:
        if not argument.startswith("s3://"):
            raise UsageProblem(
                f"{argument!r} is not an s3:// image or prefix; upload local images first "
                "(aws s3 cp), or upload them under the stack's streamingUploadPrefix (docs/streaming.md)"
            )
        try:
            parse_s3_prefix(argument)
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None


def expand(store: S3Store, arguments: list[str]) -> list[str]:
    """The images the arguments name, each once, in argument order (a prefix's in key order)."""
    check_arguments(arguments)
    images: dict[str, None] = {}
    for argument in arguments:
        if is_image(argument):
            if not store.exists(argument):
                raise JobProblem(f"{argument} does not exist")
            images.setdefault(argument)
            continue
        found = [uri for uri in store.list_keys(argument) if is_image(uri)]
        if not found:
            raise JobProblem(f"no .jpg, .jpeg or .png images under {argument}")
        for uri in found:
            images.setdefault(uri)
    too_long = [uri for uri in images if len(uri) > MAX_DEDUPE_ID_CHARS]
    if too_long:
        raise JobProblem(
            f"{too_long[0][:80]}...: a URI over {MAX_DEDUPE_ID_CHARS} characters cannot be Ground Truth's "
            "de-duplication ID; give it a shorter key"
        )
    return list(images)


def send(sagemaker: Any, sns: Any, store: S3Store, job: str, arguments: list[str], *, dry_run: bool = False,
         progress: CommandProgress | None = None) -> dict[str, Any]:  # fmt: skip
    """Check the job and the images, then publish; the result as data (what --json prints)."""
    description = describe(sagemaker, job)
    topic = streaming_input_topic(description)
    status = description.get("LabelingJobStatus")
    if status != "InProgress" and not dry_run:
        why = (
            "Ground Truth takes objects from the topic once it is InProgress; try again shortly"
            if status == "Initializing"
            else "it takes no more objects"
        )
        raise JobProblem(f"{job} is {status}: {why}")
    images = expand(store, arguments)
    lines = [input_line(uri) for uri in images]
    result: dict[str, Any] = {"jobName": description.get("LabelingJobName", job), "inputTopicArn": topic}
    if dry_run:
        return {**result, "wouldSend": len(lines), "lines": lines, "sent": 0, "failed": []}
    report = publish_lines(sns, topic, lines, progress=progress if progress and progress.enabled else None)
    return {**result, "sent": report.sent, "failed": report.failed, "messageIds": report.message_ids}


def run(args: argparse.Namespace) -> int:
    try:
        check_arguments(list(args.images))
    except UsageProblem as exc:
        print(f"gtseg send: {exc}", file=sys.stderr)
        return 2
    problem = None
    code = 1
    with CommandProgress("send", quiet=args.quiet or args.json) as progress:
        try:
            result = send(
                make_client("sagemaker"), make_client("sns"), S3Store(client=make_client("s3")), args.job,
                list(args.images), dry_run=args.dry_run, progress=progress,
            )  # fmt: skip
        except UsageProblem as exc:
            problem, code = str(exc), 2
        except (JobProblem, StorageError) as exc:
            problem = str(exc)
        except (BotoCoreError, ClientError) as exc:
            problem = aws_problem(exc)
    if problem is not None:
        print(f"gtseg send: {problem}", file=sys.stderr)
        return code
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    elif args.dry_run:
        for line in result["lines"]:
            print(json.dumps(line))
        print(f"dry run: would send {result['wouldSend']} images to {result['jobName']}", file=sys.stderr)
    else:
        print(
            f"{result['jobName']}: sent {result['sent']} images to {result['inputTopicArn']} "
            "(an image sent before is not labeled again: Ground Truth de-duplicates by its URI)"
        )
        for failure in result["failed"][:10]:
            print(f"  not sent: {failure}", file=sys.stderr)
    return 1 if result["failed"] else 0
