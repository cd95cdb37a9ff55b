"""``gtseg reconsolidate JOB_OUTPUT_PREFIX``: consolidate a finished job's worker responses again."""

from __future__ import annotations

import argparse
import json
import sys

from gtseg.cli.common import add_map_option, job_data_from_args, print_problems, run_with_progress
from gtseg.core.consolidation import DEFAULT_NEIGHBOURHOOD_RADIUS, METHODS
from gtseg.tools.reconsolidate import reconsolidate_job


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reconsolidate",
        help="re-run consolidation over a finished job's worker responses",
        description="Consolidate every object of a finished job (gtseg or built-in) again from "
        "annotations/worker-response/ and write a new output manifest beside the old one, with the new "
        "masks and a comparison of old and new masks.",
    )
    parser.add_argument(
        "job",
        metavar="JOB_OUTPUT_PREFIX",
        help="the job's output folder: s3://bucket/prefix/<job> or a local copy",
    )
    parser.add_argument(
        "--method", choices=METHODS, default="gtseg", help="consolidation method (default gtseg)"
    )
    parser.add_argument(
        "--smoothing",
        type=int,
        default=DEFAULT_NEIGHBOURHOOD_RADIUS,
        help="neighbourhood radius in pixels for contested pixels, 0 = off "
        f"(default {DEFAULT_NEIGHBOURHOOD_RADIUS}, as the consolidation Lambda)",
    )
    parser.add_argument("--label-attribute", help="the label attribute (default: the only one present)")
    parser.add_argument(
        "--manifest", help="the old output manifest (default <job>/manifests/output/output.manifest)"
    )
    parser.add_argument(
        "--run-name", help="name of the new manifest/mask folder (default reconsolidated-<method>)"
    )
    parser.add_argument(
        "--element-name", help="the crowd element's name in the worker answers (default: found)"
    )
    parser.add_argument(
        "--job-level",
        action="store_true",
        help="first measure every worker on every object of the job (gold objects against their known "
        "masks), then consolidate each object with what the job's other objects showed about its workers; "
        "the comparison reports per object how much that changed (default run name ...-job-level)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an earlier run of the same name (default: refuse)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_map_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.smoothing < 0:
        print("gtseg reconsolidate: --smoothing must be >= 0", file=sys.stderr)
        return 2
    data = job_data_from_args(args)
    summary = run_with_progress(
        "reconsolidate",
        args.quiet,
        lambda progress: reconsolidate_job(
            args.job,
            method=args.method,
            smoothing=args.smoothing,
            label_attribute=args.label_attribute,
            manifest=args.manifest,
            run_name=args.run_name,
            element_name=args.element_name,
            job_level=args.job_level,
            force=args.force,
            data=data,
            progress=progress,
        ),
    )
    if summary is None:
        return 2
    print_problems("error", summary.errors)
    print_problems("kept old label", summary.kept)
    result = summary.to_dict()
    for key in ("new-manifest", "comparison"):
        # where the file was written: a local copy's S3 URIs (as the manifest references them) are mapped
        result[key] = data.resolve(result[key])
    print(json.dumps(result))
    return 1 if summary.errors else 0
