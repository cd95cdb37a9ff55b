"""The reduce step: every part, in line order, into the job's finalized outputs and its figures.

    <out>/output.manifest                 every line of the job, in its order, in the built-in form
    <out>/dataset/index.jsonl             gtseg export's index layout (the map step wrote images/,
    <out>/dataset/splits/{train,val}.txt  masks/ and previews/), with one class map for the job
    <out>/dataset/labels.json
    <out>/dataset/annotations/{train,val}.json   COCO, one RLE annotation per class per image
    <out>/work/figures.json               the job's figures (summary, report, notification)

Streaming throughout: a part at a time is read (a few ahead, to hide S3 latency), its records
appended to temporary files and its figures folded into running totals. A line range no part
covers (its batch failed after its retries) is copied from the job's manifest as it was and
reported, so the finalized manifest always has every line; nothing is dropped silently.
"""

from __future__ import annotations

import heapq
import json
import tempfile
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gtseg.core.labels import ClassMap, labels_json
from gtseg.core.layout import ref_basename
from gtseg.finalize import parts
from gtseg.finalize.models import (
    ClassTotals,
    FinalizePlan,
    JobFigures,
    LineProblem,
    ObjectFigures,
    WorkerTotals,
)
from gtseg.finalize.objects import DATASET_DIR
from gtseg.finalize.parts import PARTS_DIR, PartName
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import JobData, JobDataError, join_ref

OUTPUT_MANIFEST = "output.manifest"
FIGURES_FILE = "work/figures.json"
MAX_PROBLEMS = 100  # listed by line; the counts are always complete
PREFETCH = 8  # parts read ahead of the one being routed

ProgressCallback = Callable[[int, int | None], None]

# record kind -> the dataset file it is appended to (COCO parts are assembled at the end)
_FILES = {
    parts.MANIFEST: OUTPUT_MANIFEST,
    parts.INDEX_ROW: f"{DATASET_DIR}/index.jsonl",
    parts.SPLIT["train"]: f"{DATASET_DIR}/splits/train.txt",
    parts.SPLIT["val"]: f"{DATASET_DIR}/splits/val.txt",
}


@dataclass
class _Totals:
    """The job's figures, folded object by object (memory: a bounded heap, 4 bytes per labelled
    object for the report's even spread, and one entry per class and per worker)."""

    plan: FinalizePlan
    counts: Counter[str] = field(default_factory=Counter)
    confidence_sum: float = 0.0
    confidence_n: int = 0
    pixels: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    workers: dict[str, list[float]] = field(
        default_factory=dict
    )  # id -> [objects, agr sum, agr n, q sum, q n, excl]
    adjustment: Counter[str] = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    lowest: list[tuple[float, int]] = field(default_factory=list)  # max-heap of (-confidence, -index)
    labeled_indices: array = field(default_factory=lambda: array("I"))

    def add(self, figures: ObjectFigures) -> None:
        self.counts[figures.status] += 1
        if figures.adjustment:
            self.adjustment[figures.adjustment] += 1
        for worker in figures.workers:
            row = self.workers.setdefault(worker.id, [0, 0.0, 0, 0.0, 0, 0])
            row[0] += 1
            if worker.agreement is not None:
                row[1] += worker.agreement
                row[2] += 1
            if worker.quality is not None:
                row[3] += worker.quality
                row[4] += 1
            row[5] += int(worker.excluded)
        if figures.status == "error" and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(
                LineProblem(line=figures.line, source_ref=figures.source_ref, reason=figures.reason or "?")
            )
        if figures.status != "labeled":
            return
        self.labeled_indices.append(figures.index)
        for name, count in figures.classes.items():
            self.pixels[name] = self.pixels.get(name, 0) + count
            self.objects[name] = self.objects.get(name, 0) + 1
        if figures.confidence is not None:
            self.confidence_sum += figures.confidence
            self.confidence_n += 1
            half = max(self.plan.report_objects // 2, 0)
            entry = (-figures.confidence, -figures.index)
            if len(self.lowest) < half:
                heapq.heappush(self.lowest, entry)
            elif half and entry > self.lowest[0]:
                heapq.heapreplace(self.lowest, entry)

    def report_indices(self, lines: int) -> list[int]:
        """Every line of a job within the report's budget; else the lowest-confidence half and the
        rest spread evenly over the other labelled objects."""
        budget = self.plan.report_objects
        if lines <= budget:
            return list(range(lines))
        chosen = {-index for _, index in self.lowest}
        rest = [i for i in self.labeled_indices if i not in chosen]
        wanted = max(budget - len(chosen), 0)
        if rest and wanted:
            step = len(rest) / wanted
            chosen.update(rest[int(k * step)] for k in range(min(wanted, len(rest))))
        return sorted(chosen)

    def class_totals(self) -> list[ClassTotals]:
        return [
            ClassTotals(
                name=c.name,
                color=c.color,
                pixels=self.pixels.get(c.name, 0),
                objects=self.objects.get(c.name, 0),
            )
            for c in self.plan.classes
        ]

    def worker_totals(self) -> list[WorkerTotals]:
        return [
            WorkerTotals(
                id=worker_id,
                objects=int(row[0]),
                mean_agreement=round(row[1] / row[2], 6) if row[2] else None,
                mean_quality=round(row[3] / row[4], 6) if row[4] else None,
                excluded=int(row[5]),
            )
            for worker_id, row in sorted(self.workers.items())
        ]


class _OriginalLines:
    """The job's own manifest lines by index, read only when a range needs them."""

    def __init__(self, data: JobData, manifest: str) -> None:
        self._data, self._manifest = data, manifest
        self._lines: Iterator[str] | None = None
        self._position = 0

    def take(self, start: int, stop: int) -> Iterator[str]:
        if self._lines is None:
            self._lines = (t for t in (raw.strip() for raw in self._data.iter_lines(self._manifest)) if t)
        while self._position < start:
            next(self._lines, None)
            self._position += 1
        while self._position < stop:
            text = next(self._lines, None)
            self._position += 1
            if text is not None:
                yield text


def list_parts(data: JobData, plan: FinalizePlan) -> list[tuple[PartName, str]]:
    found = []
    for ref in data.list_files(join_ref(plan.out, PARTS_DIR)):
        name = PartName.parse(ref_basename(ref))
        if name is not None:
            found.append((name, ref))
    return sorted(found, key=lambda p: (p[0].first, p[0].count))


def _prefetched(data: JobData, refs: Sequence[str]) -> Iterator[bytes | JobDataError]:
    """Each part's bytes in order, a few read ahead on threads (never all of them at once)."""
    with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="parts") as pool:
        window: deque[Future[bytes]] = deque()
        pending = iter(refs)
        for ref in pending:
            window.append(pool.submit(data.read_bytes, ref))
            if len(window) >= PREFETCH:
                break
        while window:
            future = window.popleft()
            nxt = next(pending, None)
            if nxt is not None:
                window.append(pool.submit(data.read_bytes, nxt))
            try:
                yield future.result()
            except JobDataError as exc:
                yield exc


def reduce_job(
    plan: FinalizePlan,
    data: JobData,
    *,
    batch_failures: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> JobFigures:
    """Write the finalized manifest, the dataset's job-wide files and ``work/figures.json``."""
    totals = _Totals(plan)
    found = list_parts(data, plan)
    original = _OriginalLines(data, plan.manifest)
    not_finalized: list[tuple[int, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="gtseg-finalize-") as tmp:
        folder = Path(tmp)
        sinks: dict[str, IO[str]] = {}
        try:
            for kind in sorted(parts.KINDS - {parts.FIGURES}):
                sinks[kind] = open(folder / kind, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            position = 0
            usable: list[tuple[PartName, str]] = []
            for name, ref in found:  # one cover of 0..lines-1, in order; an overlapping range is skipped
                if name.first >= position and name.first + name.count <= plan.lines:
                    usable.append((name, ref))
                    position = name.first + name.count
            position = 0
            for (name, _), body in zip(usable, _prefetched(data, [r for _, r in usable]), strict=True):
                if name.first > position:
                    _copy_original(
                        original, position, name.first, sinks, not_finalized, "its batch left no result"
                    )
                if isinstance(body, JobDataError):
                    _copy_original(
                        original, name.first, name.first + name.count, sinks, not_finalized, str(body)
                    )
                else:
                    _route(body, name, original, sinks, totals, not_finalized)
                position = name.first + name.count
                if progress:
                    progress(position, plan.lines)
            if position < plan.lines:
                _copy_original(
                    original, position, plan.lines, sinks, not_finalized, "its batch left no result"
                )
        finally:
            for handle in sinks.values():
                handle.close()
        for kind, rel in _FILES.items():
            data.write_file(
                join_ref(plan.out, rel),
                folder / kind,
                "application/x-ndjson" if kind in (parts.MANIFEST, parts.INDEX_ROW) else "text/plain",
            )
        for split in ("train", "val"):
            coco = folder / f"coco-{split}.json"
            _assemble_coco(
                coco, plan, folder / parts.COCO_IMAGE[split], folder / parts.COCO_ANNOTATION[split]
            )
            data.write_file(
                join_ref(plan.out, DATASET_DIR, "annotations", f"{split}.json"), coco, "application/json"
            )
    class_totals = totals.class_totals()
    data.write_text(
        join_ref(plan.out, DATASET_DIR, "labels.json"), _labels_json(plan, class_totals), "application/json"
    )
    missing = sum(stop - start for start, stop, _ in not_finalized)
    figures = JobFigures(
        lines=plan.lines,
        labeled=totals.counts["labeled"],
        failed=totals.counts["failed"],
        errors=totals.counts["error"],
        not_finalized=missing,
        mean_confidence=round(totals.confidence_sum / totals.confidence_n, 6)
        if totals.confidence_n
        else None,
        classes=class_totals,
        workers=totals.worker_totals(),
        adjustment=dict(totals.adjustment),
        problems=totals.problems,
        batch_failures=[
            *(f"lines {start + 1}-{stop}: not finalized ({why})" for start, stop, why in not_finalized),
            *batch_failures,
        ][:MAX_PROBLEMS],
        report_indices=totals.report_indices(plan.lines),
    )
    data.write_text(
        join_ref(plan.out, FIGURES_FILE),
        figures.model_dump_json(by_alias=True, indent=1) + "\n",
        "application/json",
    )
    return figures


def _route(
    body: bytes,
    name: PartName,
    original: _OriginalLines,
    sinks: dict[str, IO[str]],
    totals: _Totals,
    not_finalized: list[tuple[int, int, str]],
) -> None:
    """One part's records to their files; a part that does not hold its lines is not used."""
    problem: str | None = None
    try:
        routed = list(parts.records(body.decode("utf-8").splitlines()))
    except (UnicodeDecodeError, ValueError) as exc:
        routed, problem = [], f"its part is unreadable ({exc})"
    else:
        lines = sum(1 for kind, _ in routed if kind == parts.MANIFEST)
        if lines != name.count:
            problem = f"its part holds {lines} lines, not {name.count}"
    if problem:
        _copy_original(original, name.first, name.first + name.count, sinks, not_finalized, problem)
        return
    for kind, payload in routed:
        if kind == parts.FIGURES:
            totals.add(ObjectFigures.model_validate_json(payload))
        else:
            sinks[kind].write(payload + "\n")


def _copy_original(
    original: _OriginalLines,
    start: int,
    stop: int,
    sinks: dict[str, IO[str]],
    not_finalized: list[tuple[int, int, str]],
    why: str,
) -> None:
    if stop <= start:
        return
    for text in original.take(start, stop):
        sinks[parts.MANIFEST].write(text + "\n")
    not_finalized.append((start, stop, why))


def _assemble_coco(target: Path, plan: FinalizePlan, images: Path, annotations: Path) -> None:
    """A COCO document from its image and annotation records, streamed (as gtseg export writes it)."""
    categories = [
        {"id": i, "name": c.name, "supercategory": "class", "color": c.color}
        for i, c in enumerate(plan.classes)
        if i > 0
    ]
    with open(target, "w", encoding="utf-8") as out:
        out.write('{"info": {"description": "gtseg finalize", "version": "1.0"}, "licenses": [],\n')
        out.write(f'"categories": {json.dumps(categories, ensure_ascii=False)},\n')
        for kind, part in (("images", images), ("annotations", annotations)):
            out.write(f'"{kind}": [')
            with open(part, encoding="utf-8") as records:
                for n, text in enumerate(records):
                    out.write(("," if n else "") + "\n" + text.rstrip("\n"))
            out.write("]" + (",\n" if kind == "images" else "\n"))
        out.write("}\n")


def _labels_json(plan: FinalizePlan, classes: Sequence[ClassTotals]) -> str:
    """``labels.json`` as ``gtseg export`` writes it: the dataset's class map and pixel counts."""
    class_map = ClassMap(names=tuple(c.name for c in classes), colors=tuple(c.color for c in classes))
    return labels_json(
        class_map, plan.label_attribute, pixels=[c.pixels for c in classes], source_manifest=plan.manifest
    )


def read_figures(data: JobData, plan: FinalizePlan) -> JobFigures:
    try:
        return JobFigures.model_validate_json(data.read_bytes(join_ref(plan.out, FIGURES_FILE)))
    except (JobDataError, ValueError) as exc:
        raise ToolError(f"the reduce step's figures cannot be read: {exc}") from exc
