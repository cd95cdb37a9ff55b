"""``gtseg`` command line. Each subcommand lives in ``gtseg.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under gtseg.commands (imported only when needed, so the CLI starts fast and a
# command's heavier dependencies never load for another command).
COMMANDS: dict[str, str] = {
    "consolidate": "consolidate",
    "simulate": "simulate",
    "launch": "launch",
    "status": "status",
    "export": "export",
    "report": "report",
    "reconsolidate": "reconsolidate",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gtseg",
        description="Ground Truth semantic segmentation with your own pre-annotation and consolidation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module in COMMANDS.items():
        if wanted in COMMANDS and name != wanted:
            sub.add_parser(name, help=argparse.SUPPRESS)
            continue
        try:
            mod = importlib.import_module(f"gtseg.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gtseg.commands.{module}":
                raise
            continue
        mod.register(sub)
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


if __name__ == "__main__":
    sys.exit(main())
