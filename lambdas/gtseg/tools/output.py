"""How the after-the-job tools write their results without ever destroying earlier ones.

Everything is written into a hidden staging folder beside the destination and moved into place
only when the run has finished. An existing result is refused unless ``force``; with ``force`` it
is replaced only by a complete new one. A run that stops on an error or Ctrl-C removes its
staging folder, so nothing partial is left that looks like a result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gtseg.tools.errors import ToolError


def _contains(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


@contextmanager
def staged_output(
    destination: Path, *, force: bool, entries: Sequence[str] | None = None, keep: Sequence[Path] = ()
) -> Iterator[Path]:
    """A staging folder whose contents become ``destination`` (a folder) when the block ends.

    With ``entries`` the destination is a folder that may hold other things: only those names
    in it are written (refused if any exists, replaced with ``force``). ``keep`` are paths that
    must survive (the input manifest): a destination that contains one is refused, force or not.
    """
    if destination.exists() and not destination.is_dir():
        raise ToolError(f"--out {destination} is a file; name a folder")
    taken = (
        [destination / name for name in entries if (destination / name).exists()]
        if entries is not None
        else ([destination] if destination.is_dir() and any(destination.iterdir()) else [])
    )
    if taken and not force:
        what = ", ".join(str(p) for p in taken) + (" exist" if len(taken) > 1 else " exists")
        if entries is None:
            what = f"--out {destination} is not empty"
        raise ToolError(f"{what}; choose another --out, or pass --force to replace it")
    if entries is None and force and taken:
        for path in (Path.cwd(), *keep):
            if _contains(destination, path):
                raise ToolError(
                    f"--out {destination} holds {path}; --force will not replace it, choose another --out"
                )
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"cannot create {destination.parent}: {exc.strerror or exc}") from exc
    parent = destination if entries is not None else destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the result's permissions
    try:
        yield staging
        if entries is None:
            _replace(staging, destination)
        else:
            for name in entries:
                if (staging / name).exists():
                    _replace(staging / name, destination / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(new: Path, old: Path) -> None:
    """``new`` takes ``old``'s place; ``old`` (if any) is removed only once ``new`` is there."""
    aside = None
    if old.exists() or old.is_symlink():
        aside = old.with_name(f".{old.name}.replaced-{os.getpid()}")
        old.rename(aside)
    new.rename(old)
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink()
