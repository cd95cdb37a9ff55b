"""What the commands share: the one progress display, the ``--map`` option, the one-line message
for an AWS problem, and how a job-data problem ends a command (one line on stderr, exit 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import IO, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gtseg.aws.s3 import BOTO_CONFIG
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import JobData, JobDataError

T = TypeVar("T")


def make_client(service: str, config: Config = BOTO_CONFIG) -> Any:
    """boto3 client factory (tests replace it per command; AWS_ENDPOINT_URL_<SERVICE> is honoured)."""
    return boto3.client(service, config=config)


def aws_problem(exc: BotoCoreError | ClientError) -> str:
    """One line for an AWS SDK failure, worded the same in every command."""
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in your AWS profile)"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials: configure them (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS: {exc}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS error {error.get('Code', 'unknown')}: {error.get('Message') or exc}"
    return f"AWS error: {exc}"


def described(doc: str | None) -> str:
    """A command module's docstring as its --help description, in the one style every command's
    help has: plain text (reST's ``literal`` quotes dropped, the text kept)."""
    return (doc or "").replace("``", "")


def print_problems(kind: str, problems: Iterable[object]) -> None:
    """Each problem of a finished run on its own stderr line, prefixed by its kind."""
    for problem in problems:
        print(f"{kind}: {problem}", file=sys.stderr)


class CommandProgress:
    """The one progress display of every long command: rich's bars on stderr, one per phase.

    Callable as ``progress(done, total)`` (a ``ProgressCallback`` of gtseg.tools: one bar named
    ``label``) and as ``progress.phase(name, done, total)`` (the emulator's phases: a bar each).
    ``total`` None shows a counter. It draws nothing with ``quiet`` or when the stream is not a
    terminal (CI logs, pipes), and it is transient: the bars are erased when it closes, so what a
    command prints afterwards (its result, or the one line of its failure) is never followed by a
    stray progress line. Use it as a context manager, or call ``close()``.
    """

    def __init__(self, label: str = "", *, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.label = label
        console = Console(file=stream or sys.stderr)
        self.enabled = not quiet and console.is_terminal
        self._bars = Progress(
            TextColumn("{task.description:<15}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not self.enabled,
        )
        self._tasks: dict[str, TaskID] = {}
        self._started = False

    def __call__(self, done: int, total: int | None) -> None:
        self.phase(self.label, done, total)

    def phase(self, name: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if not self._started:
            self._bars.start()
            self._started = True
        task = self._tasks.get(name)
        if task is None:
            task = self._tasks[name] = self._bars.add_task(name, total=total)
        self._bars.update(task, completed=done, total=total)

    def close(self) -> None:
        if self._started:
            self._bars.stop()
            self._started = False

    def __enter__(self) -> CommandProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# The name of the hand-drawn one-bar display that CommandProgress replaced (kept for callers of it).
StderrProgress = CommandProgress


def add_map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="S3_PREFIX=DIR",
        help="read (and write) S3 URIs under S3_PREFIX from local DIR instead, e.g. a job copied with "
        "'aws s3 sync' (repeatable; a job folder named like the job is mapped automatically)",
    )


def add_manifest_argument(parser: argparse.ArgumentParser, verb: str) -> None:
    """OUTPUT_MANIFEST and ``--label-attribute``, as every command reading a job's output takes them."""
    parser.add_argument("manifest", metavar="OUTPUT_MANIFEST", help="output.manifest (path or s3:// URI)")
    parser.add_argument(
        "--label-attribute", help=f"the label attribute to {verb} (default: the only one present)"
    )


def add_dataset_options(parser: argparse.ArgumentParser, default_val_fraction: float) -> None:
    """How a dataset is written: images copied or referenced, the validation split."""
    parser.add_argument(
        "--no-copy-images",
        dest="copy_images",
        action="store_false",
        help="reference images instead of copying",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=default_val_fraction,
        help=f"fraction of images in the validation split, by hash of source-ref (default {default_val_fraction})",
    )


def add_force_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace an existing {what} (by default an existing one is never overwritten)",
    )


def job_data_from_args(args: argparse.Namespace) -> JobData:
    """``--map`` options -> JobData; a bad one is a usage error (one line on stderr, exit 2)."""
    data = JobData()
    for item in args.map:
        prefix, sep, local = item.partition("=")
        problem = None
        if not sep or not prefix.startswith("s3://") or not local:
            problem = f"--map wants S3_PREFIX=DIR, got {item!r}"
        else:
            try:
                data.map_prefix(prefix, local)
            except ValueError:  # e.g. a bucket name S3 would refuse
                problem = f"--map {item!r}: {prefix!r} is not a valid S3 location (s3://bucket/prefix)"
        if problem:
            print(f"gtseg {getattr(args, 'command', None) or 'export'}: {problem}", file=sys.stderr)
            raise SystemExit(2)
    return data


def run_with_progress(command: str, quiet: bool, work: Callable[[CommandProgress | None], T]) -> T | None:
    """Run ``work`` with the progress display; a job-data problem (or an AWS one) is one line on
    stderr, after the display is gone, and ``None`` (the caller exits 2). Shared by export, report
    and reconsolidate."""
    problem = None
    with CommandProgress(command, quiet=quiet) as progress:
        try:
            return work(progress if progress.enabled else None)
        except (ToolError, JobDataError) as exc:
            problem = str(exc)
        except (BotoCoreError, ClientError) as exc:
            problem = aws_problem(exc)
    print(f"gtseg {command}: {problem}", file=sys.stderr)
    return None
