"""``gtseg export OUTPUT_MANIFEST --out DIR``: an output manifest -> a training-ready dataset.

Also home of the progress bar and the ``--map`` option that ``report`` and ``reconsolidate`` share.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import IO, TypeVar

from gtseg.export import DEFAULT_VAL_FRACTION, FORMATS, ExportError, export_dataset, load_class_map_file
from gtseg.jobdata import JobData, JobDataError
from gtseg.labels import LabelError

T = TypeVar("T")


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
    except (ExportError, JobDataError) as exc:
        print(f"gtseg {command}: {exc}", file=sys.stderr)
        return None
    finally:
        if progress:
            progress.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="convert an output manifest into a training-ready dataset",
        description="Convert a Ground Truth semantic-segmentation output manifest (gtseg or built-in job; "
        "local path or s3:// URI) into index masks with one stable class map, colour previews, images and "
        "a train/val split.",
    )
    parser.add_argument("manifest", metavar="OUTPUT_MANIFEST", help="output.manifest (path or s3:// URI)")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--format", choices=FORMATS, default="index", help="dataset layout (default: index)")
    parser.add_argument(
        "--label-attribute", help="the label attribute to export (default: the only one present)"
    )
    parser.add_argument(
        "--no-copy-images",
        dest="copy_images",
        action="store_false",
        help="reference images instead of copying",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help=f"fraction of images in the validation split, by hash of source-ref (default {DEFAULT_VAL_FRACTION})",
    )
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        help="start from this class order (a labels.json from an earlier export, or a label-category file) "
        "so several exports share class indices",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_map_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = job_data_from_args(args)
    seed = None
    if args.class_map:
        try:
            seed = load_class_map_file(data.read_bytes(args.class_map))
        except (JobDataError, LabelError) as exc:
            print(f"gtseg export: --class-map: {exc}", file=sys.stderr)
            return 2
    summary = run_with_progress(
        "export",
        args.quiet,
        lambda progress: export_dataset(
            args.manifest,
            args.out,
            fmt=args.format,
            label_attribute=args.label_attribute,
            copy_images=args.copy_images,
            val_fraction=args.val_fraction,
            class_map=seed,
            data=data,
            progress=progress,
        ),
    )
    if summary is None:
        return 2
    for problem in summary.errors:
        print(f"error: {problem}", file=sys.stderr)
    for problem in summary.skipped:
        print(f"skipped: {problem}", file=sys.stderr)
    for name, colors in summary.color_conflicts.items():
        print(f"note: class {name!r} has several colours across objects ({', '.join(colors)}); "
              "matched by name, labels.json keeps one", file=sys.stderr)  # fmt: skip
    print(
        json.dumps(
            {
                "exported": summary.exported,
                "errors": len(summary.errors),
                "skipped": len(summary.skipped),
                "splits": summary.splits,
                "classes": summary.class_names,
                "out": summary.out_dir,
                "format": summary.format,
            }
        )
    )
    return 1 if summary.errors else 0
