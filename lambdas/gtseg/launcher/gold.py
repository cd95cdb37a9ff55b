"""Gold objects in a launch (issue 11): where a known mask may live, and where gold lines go.

Pure: no AWS call. ``gtseg.launcher.launch`` reads and checks the gold manifest and uses these.

Mixing is deterministic and even: with ``G`` gold objects among ``T`` manifest lines, gold
object ``i`` (in gold-manifest order) is line ``floor((2i + 1) * T / (2G))``, the middle of the
``i``-th of ``G`` equal stretches, and the real lines fill the other places in their own order.
Ground Truth takes objects in manifest order, so every stretch of ``ceil(T / G)`` consecutive
lines, and therefore every batch of at least that many objects, holds a gold object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from gtseg.core.gold import GOLD_MASK_PREFIX
from gtseg.core.uris import parse_s3_uri
from gtseg.launcher.settings import LauncherSettings

T = TypeVar("T")


def readable_mask_prefixes(settings: LauncherSettings) -> tuple[str, str]:
    """Where the consolidation Lambda's role can read a known mask (infra/access.py)."""
    return (
        f"s3://{settings.data_bucket}/{GOLD_MASK_PREFIX}",
        f"s3://{settings.output_bucket}/{GOLD_MASK_PREFIX}",
    )


def mask_location_problem(uri: str, settings: LauncherSettings) -> str | None:
    """Why the consolidation Lambda could not read the known mask at ``uri``; None when it can."""
    bucket, key = parse_s3_uri(uri)
    if bucket in (settings.data_bucket, settings.output_bucket) and key.startswith(GOLD_MASK_PREFIX):
        return None
    data, output = readable_mask_prefixes(settings)
    return (
        f"known mask {uri} is not where the consolidation Lambda can read it: put gold masks under "
        f"{data} or {output}"
    )


def gold_slots(total: int, gold: int) -> list[int]:
    """The 0-based manifest positions of ``gold`` gold objects among ``total`` lines (see above)."""
    if not 0 <= gold <= total:
        raise ValueError(f"cannot place {gold} gold objects among {total} lines")
    return [((2 * i + 1) * total) // (2 * gold) for i in range(gold)]


def mix_gold(lines: Sequence[T], gold_lines: Sequence[T]) -> list[T]:
    """``lines`` with ``gold_lines`` spread evenly among them; both keep their own order."""
    total = len(lines) + len(gold_lines)
    slots = set(gold_slots(total, len(gold_lines)))
    real = iter(lines)
    gold = iter(gold_lines)
    return [next(gold) if position in slots else next(real) for position in range(total)]
