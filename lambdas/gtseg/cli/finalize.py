"""``gtseg finalize OUTPUT_MANIFEST --out DIR``: a finished job's manifest in the built-in form, a
dataset, a report and a summary, with the same steps the deployed state machine runs."""

from __future__ import annotations

import argparse
import sys

from gtseg.cli.common import (
    add_dataset_options,
    add_force_option,
    add_manifest_argument,
    add_map_option,
    job_data_from_args,
    print_problems,
    run_with_progress,
)
from gtseg.core.labels import LabelError
from gtseg.finalize.plan import DEFAULT_REPORT_OBJECTS
from gtseg.finalize.runner import DEFAULT_BATCH_SIZE, finalize_manifest
from gtseg.tools.class_maps import load_class_map_file
from gtseg.tools.export import DEFAULT_VAL_FRACTION
from gtseg.tools.jobdata import JobDataError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finalize",
        help="turn a finished job's output into the built-in format, a dataset, a report and a summary",
        description="Rewrite every line of a Ground Truth output manifest (local path or s3:// URI) in the built-in "
        "semantic-segmentation form from gtseg's sidecars, and write DIR/output.manifest (same lines, same order), "
        "DIR/dataset/ (gtseg export's index layout plus COCO), DIR/report.html and DIR/summary.json. The deployed "
        "stack does the same when a job ends (docs/finalize.md).",
    )
    add_manifest_argument(parser, "finalize")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder or s3:// prefix (must be empty)"
    )
    parser.add_argument("--job-name", help="the job's name in its own case (default: from the sidecars)")
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="the job's label-category file (or an export's labels.json): the dataset's class order "
        "(default: from the lines' colour maps or the first sidecar)",
    )
    add_dataset_options(parser, DEFAULT_VAL_FRACTION)
    parser.add_argument(
        "--report-objects",
        type=int,
        default=DEFAULT_REPORT_OBJECTS,
        metavar="N",
        help=f"objects the report shows: all of a job this small, else the N/2 lowest-confidence ones and N/2 "
        f"spread over the job (default {DEFAULT_REPORT_OBJECTS})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"lines per batch (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force_option(parser, "--out folder")
    add_map_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = job_data_from_args(args)
    labels = None
    if args.labels:
        try:
            labels = list(load_class_map_file(data.read_bytes(args.labels)).labels)
        except (JobDataError, LabelError) as exc:
            print(f"gtseg finalize: --labels: {exc}", file=sys.stderr)
            return 2
    result = run_with_progress(
        "finalize",
        args.quiet,
        lambda progress: finalize_manifest(
            args.manifest,
            args.out,
            data=data,
            label_attribute=args.label_attribute,
            job_name=args.job_name,
            labels=labels,
            force=args.force,
            batch_size=args.batch_size,
            copy_images=args.copy_images,
            val_fraction=args.val_fraction,
            report_objects=args.report_objects,
            progress=progress.phase if progress is not None else (lambda *_: None),
        ),
    )
    if result is None:
        return 2
    figures = result.figures
    print_problems("error", [f"line {p.line}: {p.reason}" for p in figures.problems])
    print_problems("not finalized", figures.batch_failures)
    if result.report.error:
        print_problems("note", [result.report.error])
    print(result.notification.message, end="")
    return 1 if figures.errors or figures.not_finalized else 0
