"""``gtseg preview``: paint the worker task yourself, in a real browser, with nothing from the network.

Renders the worker task template exactly as ``gtseg simulate`` does (python-liquid with Ground
Truth's filters), serves it on 127.0.0.1 with gtseg's stand-in for crowd-html-elements.js and the
images served locally, and prints the URL. Each submission is written to --out as
answer-<n>.json (the form output a worker submits) and answer-<n>.png (the mask as gtseg's
consolidation decodes it), and the decode is printed: the area of every class and the pixels that
match no label colour. See docs/preview.md.
"""

from __future__ import annotations

import argparse
import errno
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

from gtseg.cli.common import described

DEFAULT_PORT = 8765


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "preview",
        help="try the worker task in your browser: paint, submit, see how gtseg decodes the answer",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--template", type=Path, metavar="FILE", help="worker task template (default: gtseg's own)"
    )
    parser.add_argument(
        "--image",
        type=Path,
        metavar="PATH_OR_DIR",
        help="a .jpg/.png image or a folder of them, one task each (default: a synthetic street scene)",
    )
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", metavar="a,b,c", help="the job's labels, in class order")
    labels.add_argument(
        "--label-file",
        type=Path,
        metavar="FILE",
        help="a label-category file (default: gtseg's label-categories.json)",
    )
    parser.add_argument(
        "--prior",
        type=Path,
        metavar="MASK",
        help="start from this mask, as an adjustment task does: a PNG of the image's size (class colours, or "
        "8-bit class indices), or a folder of <image name>.png",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free one)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("preview-output"),
        metavar="DIR",
        help="where answers go (default preview-output)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in your web browser")
    parser.add_argument(
        "--exit-after", type=int, metavar="N", help="stop after N answers (default: run until Ctrl+C)"
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    one_line = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"gtseg preview: {one_line}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from gtseg.core.labels import ClassMap
    from gtseg.local.preview.server import PageServer
    from gtseg.local.preview.session import (
        TEMPLATE,
        PreviewError,
        PreviewSession,
        build_tasks,
        images_from,
        labels_from,
    )

    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be 0..65535, got {args.port}")
    if args.exit_after is not None and args.exit_after < 1:
        return _fail(f"--exit-after must be at least 1, got {args.exit_after}")
    if args.out.exists() and not args.out.is_dir():
        return _fail(f"--out {args.out} is a file, not a folder")
    template = args.template or TEMPLATE
    try:
        source = template.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"--template {template}: {getattr(exc, 'strerror', None) or exc}")
    try:
        labels = labels_from(args.labels, args.label_file)
        images = images_from(args.image, labels)
        tasks = build_tasks(images, ClassMap.from_labels(labels), args.prior)
    except PreviewError as exc:
        return _fail(str(exc))

    done = threading.Event()

    def on_answer(saved: Any) -> None:
        print("\n".join(saved.describe()), flush=True)
        if args.exit_after is not None and len(session.answers) >= args.exit_after:
            done.set()

    def on_error(message: str) -> None:
        print(f"gtseg preview: {message}", file=sys.stderr, flush=True)

    session = PreviewSession(source, tasks, labels, args.out, on_answer=on_answer, on_error=on_error)
    try:
        problems = session.check()
    except PreviewError as exc:
        return _fail(f"--template {template}: {exc}")
    server = PageServer(session, port=args.port)
    try:
        url = server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _fail(
                f"port {args.port} on 127.0.0.1 is in use; choose another with --port (0 = any free one)"
            )
        return _fail(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
    try:
        names = ", ".join(t.image.name for t in tasks[:5]) + (", ..." if len(tasks) > 5 else "")
        priors = sum(1 for t in tasks if t.prior_png)
        print(f"gtseg preview: the worker task is at {url}  (Ctrl+C stops)", flush=True)
        print(f"  template  {template}")
        print(f"  images    {len(tasks)}: {names}")
        print(f"  labels    {', '.join(labels)}")
        if args.prior is not None:
            print(f"  prior     {args.prior} ({priors} of {len(tasks)} tasks start from a mask)")
        print(f"  answers   {args.out}/answer-<n>.json and answer-<n>.png")
        for problem in problems:
            print(f"  template problem: {problem}")
        sys.stdout.flush()
        if args.open:
            webbrowser.open(url)
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
