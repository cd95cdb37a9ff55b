"""``gtseg export OUTPUT_MANIFEST --out DIR``: an output manifest -> a training-ready dataset."""

from __future__ import annotations

import argparse
import json
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
from gtseg.tools.class_maps import load_class_map_file
from gtseg.tools.export import DEFAULT_VAL_FRACTION, FORMATS, export_dataset
from gtseg.tools.jobdata import JobDataError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="convert an output manifest into a training-ready dataset",
        description="Convert a Ground Truth semantic-segmentation output manifest (gtseg or built-in job; "
        "local path or s3:// URI) into index masks with one stable class map, colour previews, images and "
        "a train/val split.",
    )
    add_manifest_argument(parser, "export")
    parser.add_argument(
        "--out", required=True, help="output folder: created, or an empty one (written in full at the end)"
    )
    parser.add_argument("--format", choices=FORMATS, default="index", help="dataset layout (default: index)")
    add_dataset_options(parser, DEFAULT_VAL_FRACTION)
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        help="start from this class order (a labels.json from an earlier export, or a label-category file) "
        "so several exports share class indices",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force_option(parser, "non-empty --out folder")
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
            force=args.force,
        ),
    )
    if summary is None:
        return 2
    print_problems("error", summary.errors)
    print_problems("skipped", summary.skipped)
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
