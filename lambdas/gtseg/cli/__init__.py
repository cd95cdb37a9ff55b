"""``gtseg`` command line. Each subcommand lives in ``gtseg.cli.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from gtseg import __version__

# The subcommands, each a module of this package, imported only when needed: the CLI starts fast
# and one command's heavier dependencies (moto for simulate, boto3 for launch) never load for another.
COMMANDS: tuple[str, ...] = (
    "simulate", "preview", "launch", "status", "export", "report", "reconsolidate", "finalize",
    "send", "stop",
)  # fmt: skip


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gtseg",
        description="Ground Truth semantic segmentation with your own pre-annotation and consolidation.",
    )
    parser.add_argument("--version", action="version", version=f"gtseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name in COMMANDS:
        if wanted in COMMANDS and name != wanted:
            sub.add_parser(name, help=argparse.SUPPRESS)
            continue
        importlib.import_module(f"gtseg.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system said no (permissions, disk full, a name taken by a folder)
        print(f"gtseg {args.command}: {exc}", file=sys.stderr)
        return 1
