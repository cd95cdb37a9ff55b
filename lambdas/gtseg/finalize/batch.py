"""The map step: one batch of manifest lines -> one part file (``parts``) and a small outcome.

Objects are finalized on a few threads (the work is mostly S3 round trips: the sidecar, the mask,
the image copy, two PNG writes); the records keep line order. A line's problem is that line's
(kept as it was, reported); a fault of the store (after its own retries) fails the batch, which the
state machine retries and, failing that, the reduce reports by line range. A retry of a batch
writes the same bytes to the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from gtseg.finalize.models import BatchOutcome, FinalizePlan, MapItem
from gtseg.finalize.objects import ObjectContext, ObjectRecords, finalize_object
from gtseg.finalize.parts import PARTS_DIR, PartName
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import JobData, join_ref

DEFAULT_THREADS = 4


def part_ref(plan: FinalizePlan, name: PartName) -> str:
    return join_ref(plan.out, PARTS_DIR, name.file_name)


def map_batch(
    plan: FinalizePlan, items: Sequence[MapItem], data: JobData, *, threads: int = DEFAULT_THREADS
) -> BatchOutcome:
    """Finalize ``items`` (consecutive lines, as the Distributed Map batches them) into one part."""
    if not items:
        raise ToolError("a finalize batch needs at least one item")
    ordered = sorted(items, key=lambda i: i.index)
    first = ordered[0].index
    if [i.index for i in ordered] != list(range(first, first + len(ordered))):
        # the item batcher hands over consecutive items; anything else would break line order
        raise ToolError(f"batch items are not consecutive lines: {[i.index for i in ordered][:10]}")
    context = ObjectContext.of(plan, data)
    workers = max(1, min(threads, len(ordered)))
    if workers == 1:
        results: list[ObjectRecords] = [finalize_object(context, item) for item in ordered]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="finalize") as pool:
            results = list(pool.map(lambda item: finalize_object(context, item), ordered))
    name = PartName(first, len(ordered))
    body = "".join(record for result in results for record in result.records)
    ref = part_ref(plan, name)
    data.write_bytes(ref, body.encode("utf-8"), "text/tab-separated-values")
    statuses = [r.figures.status for r in results if r.figures is not None]
    return BatchOutcome(
        first=first,
        count=len(ordered),
        part=ref,
        labeled=statuses.count("labeled"),
        failed=statuses.count("failed"),
        errors=statuses.count("error"),
    )
