"""``gtseg finalize``: the plan, map, reduce, report and summary steps in one process.

The same functions the state machine runs (``handlers.finalize``), with the batches taken one
after the other from the streamed manifest, so memory stays that of one batch whatever the job's
size. A local ``--out`` is written into a staging folder beside it and moved into place only
when everything is written (``tools.output.staged_output``: an existing non-empty folder is
refused unless ``force``, and then replaced only by a complete new result); an ``s3://`` ``--out``
is written in place (S3 has no rename), refused when anything is already there unless ``force``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtseg.core.manifest import ManifestError, parse_manifest
from gtseg.finalize.batch import DEFAULT_THREADS, map_batch
from gtseg.finalize.models import JobFigures, MapItem, Notification, ReportOutcome
from gtseg.finalize.plan import DEFAULT_REPORT_OBJECTS, plan_job
from gtseg.finalize.reduce import reduce_job
from gtseg.finalize.report import report_job
from gtseg.finalize.summary import notification, summary_document, write_summary
from gtseg.tools.errors import ToolError
from gtseg.tools.export import DEFAULT_VAL_FRACTION
from gtseg.tools.jobdata import JobData, is_s3
from gtseg.tools.output import staged_output

# Lines per map batch: the state machine's batch size (infra/settings.py), so a local run and a
# deployed one write the same part files.
DEFAULT_BATCH_SIZE = 50
WORK_DIR = "work"

# (phase, done, total or None)
PhaseCallback = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class FinalizeResult:
    out: str
    summary: dict[str, Any]
    notification: Notification
    figures: JobFigures
    report: ReportOutcome


def map_items(data: JobData, manifest: str, batch_size: int) -> Iterator[list[MapItem]]:
    """The manifest's non-blank lines as the Distributed Map hands them over, ``batch_size`` at a time."""
    batch: list[MapItem] = []
    index = 0
    for number, raw in enumerate(data.iter_lines(manifest), start=1):
        text = raw.strip()
        if not text:
            continue
        (parsed,) = list(parse_manifest([text]))
        if isinstance(parsed, ManifestError):
            batch.append(MapItem(index=index, number=number, text=text, error=parsed.reason))
        else:
            batch.append(MapItem(index=index, number=number, line=parsed.data))
        index += 1
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _noop(phase: str, done: int, total: int | None) -> None:
    return


def finalize_manifest(
    manifest: str,
    out: str,
    *,
    data: JobData | None = None,
    label_attribute: str | None = None,
    job_name: str | None = None,
    labels: Sequence[str] | None = None,
    force: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int = DEFAULT_THREADS,
    copy_images: bool = True,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    report_objects: int = DEFAULT_REPORT_OBJECTS,
    progress: PhaseCallback = _noop,
) -> FinalizeResult:
    """Finalize ``manifest`` into ``out``; ``ToolError`` or ``JobDataError`` for what stops the run."""
    if batch_size < 1:
        raise ToolError(f"--batch-size must be at least 1, got {batch_size}")
    if report_objects < 0:
        raise ToolError(f"--report-objects must be 0 or more, got {report_objects}")
    data = data or JobData()
    if not data.exists(manifest):  # before anything is created for a mistyped path
        raise ToolError(f"no manifest at {manifest}")
    options = _Options(label_attribute, job_name, tuple(labels) if labels else None, batch_size, threads,
                       copy_images, val_fraction, report_objects, progress)  # fmt: skip
    where = data.resolve(out)
    if is_s3(where):
        if data.list_files(out) and not force:
            raise ToolError(f"--out {out} is not empty; choose another --out, or pass --force to replace it")
        return _run(manifest, out, out, data, options)
    keep = [Path(data.resolve(manifest))] if not is_s3(data.resolve(manifest)) else []
    with staged_output(Path(where), force=force, keep=keep) as staging:
        result = _run(manifest, str(staging), out, data, options)
        # the parts and figures served the steps; the result is what summary.json lists
        shutil.rmtree(staging / WORK_DIR, ignore_errors=True)
    return result


@dataclass(frozen=True)
class _Options:
    label_attribute: str | None
    job_name: str | None
    labels: tuple[str, ...] | None
    batch_size: int
    threads: int
    copy_images: bool
    val_fraction: float
    report_objects: int
    progress: PhaseCallback


def _run(manifest: str, writing: str, out: str, data: JobData, options: _Options) -> FinalizeResult:
    """The steps, writing into ``writing``; ``out`` is where the results will be (for summary.json)."""
    progress = options.progress
    seconds: dict[str, float] = {}
    started = time.monotonic()
    plan = plan_job(
        manifest, writing, data=data, label_attribute=options.label_attribute, job_name=options.job_name,
        labels=options.labels, val_fraction=options.val_fraction, copy_images=options.copy_images,
        report_objects=options.report_objects, progress=lambda done, total: progress("plan", done, total),
    )  # fmt: skip
    seconds["plan"] = time.monotonic() - started
    started = time.monotonic()
    done = 0
    progress("finalize", 0, plan.lines)
    for items in map_items(data, manifest, options.batch_size):
        map_batch(plan, items, data, threads=options.threads)
        done += len(items)
        progress("finalize", done, plan.lines)
    seconds["map"] = time.monotonic() - started
    started = time.monotonic()
    figures = reduce_job(plan, data, progress=lambda d, t: progress("reduce", d, t))
    seconds["reduce"] = time.monotonic() - started
    started = time.monotonic()
    progress("report", 0, len(figures.report_indices))
    report = report_job(plan, data, figures)
    progress("report", len(figures.report_indices), len(figures.report_indices))
    seconds["report"] = time.monotonic() - started
    document = summary_document(plan, figures, report, public_out=out, seconds=seconds)
    write_summary(data, plan, document)
    # an s3:// --out keeps work/ (the parts and the figures), as the state machine does
    return FinalizeResult(out, document, notification(document), figures, report)
