"""What the after-the-job commands share: the progress bar, the ``--map`` option and how a
job-data problem ends a command (one line on stderr, exit 2)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar

import boto3
from botocore.config import Config

from gtseg.aws.s3 import BOTO_CONFIG
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import JobData, JobDataError

T = TypeVar("T")


def make_client(service: str, config: Config = BOTO_CONFIG) -> Any:
    """boto3 client factory (tests replace it per command; AWS_ENDPOINT_URL_<SERVICE> is honoured)."""
    return boto3.client(service, config=config)


def print_problems(kind: str, problems: Iterable[object]) -> None:
    """Each problem of a finished run on its own stderr line, prefixed by its kind."""
    for problem in problems:
        print(f"{kind}: {problem}", file=sys.stderr)


class StderrProgress:
    """A one-line progress bar on stderr, redrawn at most ~10 times a second.

    Callable as ``progress(done, total)``; ``total`` None (unknown) shows a counter and rate.
    On a non-terminal stderr (CI logs) it prints nothing until ``close()``'s final line.
    """

    def __init__(self, label: str, stream: IO[str] | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._done = 0
        self._total: int | None = None
        self._live = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int | None) -> None:
        self._done, self._total = done, total
        now = time.monotonic()
        if self._live and (now - self._last_draw >= 0.1 or (total is not None and done >= total)):
            self._last_draw = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self._done / elapsed
        if self._total:
            filled = int(self.width * min(self._done / self._total, 1.0))
            bar = "#" * filled + "-" * (self.width - filled)
            return f"{self.label} [{bar}] {self._done}/{self._total} ({rate:.1f}/s)"
        return f"{self.label} {self._done} ({rate:.1f}/s)"

    def close(self) -> None:
        self.stream.write(("\r" if self._live else "") + self._line() + "\n")
        self.stream.flush()


def add_map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="S3_PREFIX=DIR",
        help="read (and write) S3 URIs under S3_PREFIX from local DIR instead, e.g. a job copied with "
        "'aws s3 sync' (repeatable; a job folder named like the job is mapped automatically)",
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


def run_with_progress(command: str, quiet: bool, work: Callable[[StderrProgress | None], T]) -> T | None:
    """Run ``work`` with a progress bar on stderr; a job-data problem is one line on stderr and
    ``None`` (the caller exits 2). Shared by export, report and reconsolidate."""
    progress = None if quiet else StderrProgress(command)
    try:
        return work(progress)
    except (ToolError, JobDataError) as exc:
        print(f"gtseg {command}: {exc}", file=sys.stderr)
        return None
    finally:
        if progress:
            progress.close()
