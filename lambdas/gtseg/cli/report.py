"""``gtseg report OUTPUT_MANIFEST --out report.html``: a static review page of a finished job."""

from __future__ import annotations

import argparse
import sys

from gtseg.cli.common import (
    add_force_option,
    add_manifest_argument,
    add_map_option,
    job_data_from_args,
    print_problems,
    run_with_progress,
)
from gtseg.tools.report import (
    DEFAULT_LOWEST,
    DEFAULT_MAX_SIDE,
    DEFAULT_REVIEW_BELOW,
    build_report,
    summary_json,
)

MIN_MAX_SIDE = 16  # smaller report images show nothing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a static review page of a finished job",
        description="A page that opens from disk: per object the photo with switchable layers (the "
        "consolidated mask, each worker's mask, a disagreement heatmap), a sortable and filterable table of "
        "the objects, per class area and confidence, per worker agreement, quality, time and exclusion, and "
        "a review selection the page turns into an adjustment job's manifest and spec. The objects whose "
        "confidence is below --review-below (or that fewer than two trusted workers labelled) are also "
        "written as <name>-review.manifest with <name>-review-job.json.",
    )
    add_manifest_argument(parser, "report on")
    parser.add_argument("--out", required=True, help="the HTML file to write (images go in <name>_files/)")
    parser.add_argument(
        "--job",
        metavar="JOB_OUTPUT_PREFIX",
        help="the job's output folder holding annotations/worker-response/ (default: derived from the "
        "manifest location or the mask URIs)",
    )
    parser.add_argument(
        "--review-below",
        type=float,
        default=DEFAULT_REVIEW_BELOW,
        metavar="CONFIDENCE",
        help=f"select objects whose confidence is below this for review (default {DEFAULT_REVIEW_BELOW})",
    )
    parser.add_argument(
        "--lowest",
        type=int,
        default=DEFAULT_LOWEST,
        metavar="N",
        help=f"at most N objects in the review selection, the lowest confidence first (default {DEFAULT_LOWEST})",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"report image size, long side (default {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force_option(parser, "report of the same name")
    add_map_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_side < MIN_MAX_SIDE:
        print(
            f"gtseg report: --max-side must be at least {MIN_MAX_SIDE} pixels, got {args.max_side}",
            file=sys.stderr,
        )
        return 2
    data = job_data_from_args(args)
    summary = run_with_progress(
        "report",
        args.quiet,
        lambda progress: build_report(
            args.manifest,
            args.out,
            label_attribute=args.label_attribute,
            job_prefix=args.job,
            lowest=args.lowest,
            max_side=args.max_side,
            review_below=args.review_below,
            data=data,
            progress=progress,
            force=args.force,
        ),
    )
    if summary is None:
        return 2
    print_problems("error", summary.errors)
    print_problems("note", summary.notes)
    print(summary_json(summary))
    return 1 if summary.errors else 0
