"""``gtseg reconsolidate``: re-run consolidation over a finished job's worker responses.

Reads ``<job>/annotations/worker-response/`` (the raw answers Ground Truth keeps for every job,
gtseg or built-in), consolidates each object again with ``gtseg.core.consolidation`` and writes, beside
the old output manifest, a new one whose ``<lan>`` points at the new masks, plus a comparison of
old and new masks (per-object pixel agreement and the mean). Nothing of the old job is changed.

    <job>/manifests/output/<run>.manifest
    <job>/manifests/output/<run>.comparison.json
    <job>/annotations/consolidated-annotation/<run>/<datasetObjectId>.png (+ .json sidecar)

``<run>`` defaults to ``reconsolidated-<method>`` (plus ``-smooth<r>`` for a neighbourhood radius other
than the consolidation Lambda's default, so runs can sit side by side). The manifest is streamed twice: once to build
the class map (by class name, as ``gtseg export`` does), once to consolidate object by object.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gtseg.core.consolidation import (
    DEFAULT_NEIGHBOURHOOD_RADIUS,
    METHODS,
    ObjectConsolidation,
    WorkerAnswer,
    consolidate_decoded,
    decode_answers,
    gold_outcome,
)
from gtseg.core.consolidation.workforce import (
    WorkerMeasure,
    WorkerRecord,
    measure_against_gold,
    measure_workers,
    priors_for_object,
    workforce,
)
from gtseg.core.gold import GoldError, gold_reference
from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.layout import (
    CONSOLIDATED_DIR,
    OUTPUT_MANIFEST,
    WORKER_RESPONSE_DIR,
    dataset_object_id_from_mask,
    ref_basename,
    sidecar_ref,
)
from gtseg.core.manifest import (
    ADJUSTMENT_STATUS_KEY,
    JOB_NAME_PREFIX,
    ManifestError,
    ManifestLine,
    adjustment_status,
    dump_manifest_line,
    exact_job_name,
    iso_timestamp,
    metadata_key,
    parse_manifest,
    safe_filename,
    segmentation_metadata,
)
from gtseg.core.masks import MaskError, encode_index_png, read_class_mask
from gtseg.core.metrics import pixel_agreement
from gtseg.core.sidecar import ConsolidationSidecar
from gtseg.protocol import ProtocolError, find_segmentation_answer
from gtseg.tools.class_maps import ClassReconciler, parse_color_map
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import (
    JobData,
    JobDataError,
    ProgressCallback,
    WorkerResponse,
    is_s3,
    join_ref,
    parent_ref,
    read_sidecar,
    read_worker_responses,
    worker_response_files,
)
from gtseg.tools.manifest_lines import (
    AttributeChooser,
    LineProblem,
    auto_map_local_job,
    manifest_error_problem,
    object_color_map,
)

COMPARISON_SCHEMA = "gtseg/reconsolidation-comparison@1"


@dataclass
class ReconsolidationSummary:
    job_prefix: str
    old_manifest: str
    new_manifest: str
    comparison: str
    method: str
    smoothing: int
    objects: int = 0
    reconsolidated: int = 0
    kept: list[LineProblem] = field(default_factory=list)  # old line copied unchanged, with why
    errors: list[LineProblem] = field(default_factory=list)
    mean_agreement: float | None = None
    changed_objects: int = 0  # objects whose new mask differs from the old one anywhere
    job_level: bool = False
    workers_measured: int = 0  # --job-level: workers with evidence from at least one object
    mean_job_level_change: float | None = None  # --job-level: mean share of pixels it changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job_prefix,
            "old-manifest": self.old_manifest,
            "new-manifest": self.new_manifest,
            "comparison": self.comparison,
            "method": self.method,
            "smoothing": self.smoothing,
            "objects": self.objects,
            "reconsolidated": self.reconsolidated,
            "kept": len(self.kept),
            "errors": len(self.errors),
            "mean-agreement-old-vs-new": self.mean_agreement,
            "changed-objects": self.changed_objects,
            "job-level": self.job_level,
            "workers-measured": self.workers_measured,
            "mean-pixels-changed-by-job-level": self.mean_job_level_change,
        }


def answers_from_responses(
    responses: list, element_name: str | None
) -> tuple[list[WorkerAnswer], list[tuple[str, str]]]:
    """Worker-response answers -> consolidation inputs; malformed answers become (worker, reason)."""
    answers: list[WorkerAnswer] = []
    rejected: list[tuple[str, str]] = []
    for response in responses:
        try:
            answer = find_segmentation_answer(response.content, element_name)
        except (ProtocolError, ValueError, TypeError, OverflowError) as exc:  # e.g. width: Infinity
            rejected.append((response.worker_id, str(exc) or type(exc).__name__))
            continue
        answers.append(
            WorkerAnswer(
                response.worker_id, answer.png_image_data, answer.label_mappings, answer.expected_size
            )
        )
    return answers, rejected


def _label_colors(answers: list[WorkerAnswer]) -> dict[str, Any]:
    colors: dict[str, Any] = {}
    for answer in answers:
        for label, value in answer.label_mappings.items():
            color = value.get("color") if isinstance(value, Mapping) else value
            colors.setdefault(label, color)
    return colors


def _label_attribute_of(line: ManifestLine, chooser: AttributeChooser) -> str | None:
    """The line's label attribute, also for objects the job failed (only ``<lan>-metadata``)."""
    found = chooser.choose(line)
    if found:
        return found
    if chooser.chosen:
        return chooser.chosen
    for key, value in line.data.items():
        if key.endswith("-metadata") and isinstance(value, Mapping) and "failure-reason" in value:
            return key[: -len("-metadata")]
    return None


def _public_prefix(data: JobData, job_prefix: str) -> str:
    """The form new mask references take: the job's S3 URI when the folder is a mapped copy."""
    if is_s3(job_prefix):
        return job_prefix.rstrip("/")
    local = Path(job_prefix).resolve()
    for prefix, folder in data.mappings:
        if folder.resolve() == local:
            return prefix.rstrip("/")
    return str(local)


def reconsolidate_job(
    job_prefix: str,
    *,
    method: str = "gtseg",
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS,  # the consolidation Lambda's default
    label_attribute: str | None = None,
    manifest: str | None = None,
    run_name: str | None = None,
    element_name: str | None = None,
    job_level: bool = False,
    force: bool = False,
    data: JobData | None = None,
    progress: ProgressCallback | None = None,
) -> ReconsolidationSummary:
    """Consolidate every object of a finished job again from its worker responses.

    ``job_level``: first measure every worker on every object (and on gold objects against their
    known masks), then consolidate each object with what the job's *other* objects showed about
    its workers; the comparison then also says, per object, how much that changed.

    An earlier run of the same name is kept unless ``force``: its manifest may already be what a
    training set or a review job reads."""
    if method not in METHODS:
        raise ToolError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    data = data or JobData()
    job_prefix = job_prefix.rstrip("/") if is_s3(job_prefix) else str(Path(job_prefix))
    old_manifest = manifest or join_ref(job_prefix, OUTPUT_MANIFEST)
    if smoothing < 0:
        raise ToolError(f"smoothing must be >= 0, got {smoothing}")
    suffix = f"-smooth{smoothing}" if smoothing != DEFAULT_NEIGHBOURHOOD_RADIUS else ""
    run = run_name or f"reconsolidated-{method}{suffix}{'-job-level' if job_level else ''}"
    if run != safe_filename(run) or run.startswith("."):
        # the name becomes a file and a folder inside the job: no path separators, no '..'
        raise ToolError(
            f"--run-name {run!r}: use a plain name such as {safe_filename(run).lstrip('.') or 'rerun'!r}"
        )
    base = parent_ref(old_manifest)

    # Pass 1: the class map, by name, from every object's colour map (lines only, no pixels).
    reconciler = ClassReconciler()
    chooser = AttributeChooser(label_attribute)
    requested_seen = False  # --label-attribute as <lan> or <lan>-metadata on some line
    for item in parse_manifest(data.iter_lines(old_manifest)):
        if isinstance(item, ManifestError):
            continue
        requested_seen = requested_seen or bool(
            label_attribute and {label_attribute, metadata_key(label_attribute)} & item.data.keys()
        )
        attribute = chooser.choose(item)
        if attribute is None:
            continue
        mask_ref = item.data[attribute]
        auto_map_local_job(data, old_manifest, mask_ref)
        try:
            where = data.resolve(mask_ref, base)
            reconciler.add(parse_color_map(object_color_map(data, item.data, attribute, where)))
        except (LabelError, JobDataError):
            continue  # reported in pass 2
    if label_attribute and not requested_seen:
        # a typo would otherwise add a second label attribute to every line of the new manifest
        raise ToolError(f"no line of {old_manifest} carries the label attribute {label_attribute!r}")

    public = _public_prefix(data, job_prefix)
    output_dir = join_ref(public, CONSOLIDATED_DIR, run)
    new_manifest = join_ref(public, "manifests", "output", f"{run}.manifest")
    comparison_ref = join_ref(public, "manifests", "output", f"{run}.comparison.json")
    if not force and data.exists(new_manifest):
        raise ToolError(
            f"{data.resolve(new_manifest)} exists: a run named {run!r} was made before; "
            "choose another --run-name, or --force to replace it"
        )
    summary = ReconsolidationSummary(
        job_prefix, old_manifest, new_manifest, comparison_ref, method, smoothing
    )
    responses = worker_response_files(data, job_prefix)
    if not responses:
        raise ToolError(f"no worker responses under {join_ref(job_prefix, WORKER_RESPONSE_DIR)}")
    created = iso_timestamp(datetime.now(UTC))
    total = data.count_lines(old_manifest)
    agreements: list[float] = []
    summary.job_level = job_level
    run_context = _Run(data, base, chooser, reconciler, responses, output_dir, created, summary,
                       method, smoothing, element_name)  # fmt: skip
    if job_level:
        # Pass 1b: every worker measured on every object, before any object is consolidated.
        for item in parse_manifest(data.iter_lines(old_manifest)):
            if isinstance(item, ManifestLine):
                run_context.measure(item)
        run_context.records = workforce(run_context.per_object)
        summary.workers_measured = len(run_context.records)
    changes: list[float] = []

    # Pass 2: consolidate object by object; lines go to temporary files, uploaded at the end.
    with tempfile.TemporaryDirectory(prefix="gtseg-reconsolidate-") as tmp:
        lines_path, rows_path = Path(tmp) / "manifest", Path(tmp) / "rows"
        with (
            open(lines_path, "w", encoding="utf-8") as new_lines,
            open(rows_path, "w", encoding="utf-8") as rows,
        ):
            for n, item in enumerate(parse_manifest(data.iter_lines(old_manifest)), start=1):
                if isinstance(item, ManifestError):
                    summary.errors.append(manifest_error_problem(item))
                else:
                    summary.objects += 1
                    row = run_context.reconsolidate(item)
                    if row.get("job-level-change") is not None:
                        changes.append(row["job-level-change"])
                    new_lines.write(dump_manifest_line(row.pop("_line")))
                    rows.write(json.dumps(row, ensure_ascii=False) + "\n")
                    if row.get("agreement") is not None:
                        agreements.append(row["agreement"])
                        summary.changed_objects += row["agreement"] < 1.0
                if progress:
                    progress(n, total)
        summary.mean_agreement = round(float(np.mean(agreements)), 6) if agreements else None
        summary.mean_job_level_change = round(float(np.mean(changes)), 6) if changes else None
        data.write_bytes(new_manifest, lines_path.read_bytes(), "application/x-ndjson")
        data.write_bytes(comparison_ref, _comparison_document(summary, rows_path), "application/json")
    return summary


def _comparison_document(summary: ReconsolidationSummary, rows_path: Path) -> bytes:
    with open(rows_path, encoding="utf-8") as rows:
        objects = [json.loads(line) for line in rows]
    doc = {"schema": COMPARISON_SCHEMA, **summary.to_dict(), "objects-compared": objects}
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass
class _Run:
    """One reconsolidation: what every object's line is read and written with."""

    data: JobData
    base: str
    chooser: AttributeChooser
    reconciler: ClassReconciler
    responses: dict[str, list[str]]
    output_dir: str
    created: str
    summary: ReconsolidationSummary
    method: str
    smoothing: int
    element_name: str | None
    per_object: dict[str, dict[str, WorkerMeasure]] = field(default_factory=dict)
    records: dict[str, WorkerRecord] | None = None  # --job-level: the whole job's workforce
    adjustment: dict[str, str | None] = field(default_factory=dict)  # object id -> adjustment-status

    def _object_of(self, line: ManifestLine) -> tuple[str | None, str | None, str]:
        """(label attribute, old mask, datasetObjectId) of a line."""
        attribute = _label_attribute_of(line, self.chooser)
        old_mask = line.data.get(attribute) if attribute else None
        old_mask = old_mask if isinstance(old_mask, str) else None
        object_id = (dataset_object_id_from_mask(old_mask) if old_mask else None) or str(line.number - 1)
        return attribute, old_mask, object_id

    def _answers(self, object_id: str) -> tuple[list[WorkerAnswer], list[tuple[str, str]], list[str]] | None:
        files = self.responses.get(object_id)
        if not files:
            return None
        worker_responses, problems = read_worker_responses(self.data, files)
        answers, rejected = answers_from_responses(worker_responses, self.element_name)
        self.reconciler.add_labels(_label_colors(answers))
        self.adjustment[object_id] = adjustment_status(
            _modified(r, self.element_name) for r in worker_responses
        )
        return answers, rejected, problems

    def _known_mask(self, line: ManifestLine, class_map: ClassMap) -> np.ndarray | None:
        """A gold object's known mask in the run's classes (None: not gold, or not readable)."""
        try:
            reference = gold_reference(line.data)
            if reference is None:
                return None
            gold_map = reference.class_map()
            self.reconciler.add(gold_map)
            planned = self.reconciler.plan(gold_map)
            where = self.data.resolve(reference.mask, self.base)
            return planned.to_global[read_class_mask(self.data.read_bytes(where), gold_map)]
        except (GoldError, JobDataError, LabelError, MaskError, ValueError):
            return None

    def measure(self, line: ManifestLine) -> None:
        """--job-level, first pass: what this object shows about each of its workers."""
        attribute, _old, object_id = self._object_of(line)
        found = self._answers(object_id) if attribute else None
        if found is None:
            return
        answers, _rejected, _problems = found
        known = self._known_mask(line, self.reconciler.class_map())
        class_map = self.reconciler.class_map()
        decoded = decode_answers(answers, class_map)
        if known is not None:
            self.per_object[object_id] = measure_against_gold(
                decoded.masks, decoded.worker_ids, known, len(class_map)
            )
        else:
            self.per_object[object_id] = measure_workers(decoded.masks, decoded.worker_ids, len(class_map))

    def reconsolidate(self, line: ManifestLine) -> dict[str, Any]:
        """One object -> a comparison row; ``row["_line"]`` is the new manifest line."""
        summary = self.summary
        attribute, old_mask, object_id = self._object_of(line)
        row: dict[str, Any] = {"datasetObjectId": object_id, "line": line.number, "source-ref": line.source_ref,
                               "old-mask": old_mask, "new-mask": None, "agreement": None, "_line": line.data}  # fmt: skip

        def keep(reason: str) -> dict[str, Any]:
            summary.kept.append(LineProblem(line.number, line.source_ref, reason))
            row["note"] = reason
            return row

        if attribute is None:
            return keep("no label attribute on this line")
        found = self._answers(object_id)
        if found is None:
            return keep(f"no worker responses for datasetObjectId {object_id}")
        answers, rejected, problems = found
        known = self._known_mask(line, self.reconciler.class_map())
        class_map = self.reconciler.class_map()
        decoded = decode_answers(answers, class_map)
        priors = None
        if self.records is not None:
            priors = priors_for_object(self.records, object_id, [a.worker_id for a in answers])
        if known is not None and decoded.masks:
            outcome: ObjectConsolidation = gold_outcome(decoded, known, len(class_map))
        else:
            outcome = consolidate_decoded(
                decoded, class_map, method=self.method, smoothing=self.smoothing, worker_priors=priors or None
            )
        rejected += list(outcome.rejected)
        row["rejected"] = [{"workerId": w, "reason": r} for w, r in rejected] + [
            {"workerId": None, "reason": p} for p in problems
        ]
        if outcome.result is None:
            return keep(f"not consolidated: {outcome.failure_reason}")
        result = outcome.result
        if priors and known is None:
            # what the job's other objects changed: the same object consolidated on its own
            alone = consolidate_decoded(decoded, class_map, method=self.method, smoothing=self.smoothing)
            if alone.result is not None:
                row["job-level-change"] = round(1.0 - pixel_agreement(alone.result.labels, result.labels), 6)
                row["per-object-confidence"] = alone.result.image_confidence
        mask_ref = join_ref(self.output_dir, f"{object_id}.png")
        job_name = _job_name(line.data, attribute, summary.job_prefix, self.data, self.base)
        gold_scores = {w: r.gold_iou() for w, r in (self.records or {}).items()}
        try:
            self.data.write_bytes(mask_ref, encode_index_png(result.labels, class_map), "image/png")
            sidecar = ConsolidationSidecar.describe(
                dataset_object_id=object_id,
                job_name=job_name,
                label_attribute_name=attribute,
                source_ref=line.source_ref,
                class_map=class_map,
                outcome=outcome,
                mask=mask_ref,
                rejected=rejected,
                gold_scores=gold_scores,
                adjustment_status=self.adjustment.get(object_id),
            )
            self.data.write_bytes(sidecar_ref(mask_ref), sidecar.to_json_bytes(), "application/json")
        except (JobDataError, MaskError) as exc:
            summary.errors.append(LineProblem(line.number, line.source_ref, str(exc)))
            return keep(f"not written: {exc}")
        new_line = dict(line.data)
        new_line[attribute] = mask_ref
        adjustment = self.adjustment.get(object_id)
        new_line[metadata_key(attribute)] = segmentation_metadata(
            class_map, job_name=job_name, creation_date=self.created, confidences=result.class_confidence,
            extra={ADJUSTMENT_STATUS_KEY: adjustment} if adjustment else None,
        )  # fmt: skip
        row.update({"_line": new_line, "new-mask": mask_ref, "image-confidence": result.image_confidence,
                    "method": result.method, "workers": [w.worker_id for w in result.workers]})  # fmt: skip
        summary.reconsolidated += 1
        if old_mask is not None:
            row["agreement"] = _old_new_agreement(
                self.data, self.base, line, attribute, old_mask, self.reconciler, result.labels, row
            )
        return row


def _modified(response: WorkerResponse, element_name: str | None) -> bool | None:
    """The answer's ``initialValueModified`` (adjustment tasks only); None when it has none."""
    try:
        return find_segmentation_answer(response.content, element_name).initial_value_modified
    except (ProtocolError, ValueError, TypeError, OverflowError):
        return None


def _old_new_agreement(data: JobData, base: str, line: ManifestLine, attribute: str, old_mask: str,
                       reconciler: ClassReconciler, new_labels: np.ndarray, row: dict[str, Any]) -> float | None:  # fmt: skip
    """Pixel agreement between the job's mask and the new one, both in the reconciled class map."""
    try:
        old_where = data.resolve(old_mask, base)
        old_map = parse_color_map(object_color_map(data, line.data, attribute, old_where))
        planned = reconciler.plan(old_map)
        old = planned.to_global[read_class_mask(data.read_bytes(old_where), old_map)]
        return round(pixel_agreement(old, new_labels), 6)
    except (JobDataError, LabelError, MaskError, ValueError) as exc:
        row["comparison-note"] = f"old mask not compared: {exc}"
        return None


def _job_name(line: Mapping[str, Any], attribute: str, job_prefix: str, data: JobData, base: str) -> str:
    """The job's name in its own case: its sidecar's, else the metadata's (Ground Truth's custom-job
    metadata may carry it lower-cased, docs/protocol.md §2.4) spelt as the job folder when they
    match, else the job folder's name."""
    folder = ref_basename(job_prefix)
    mask = line.get(attribute)
    sidecar = read_sidecar(data, data.resolve(mask, base)) if isinstance(mask, str) else None
    if sidecar is not None and sidecar.job_name:
        return sidecar.job_name
    meta = line.get(metadata_key(attribute))
    if isinstance(meta, Mapping) and isinstance(meta.get("job-name"), str):
        return exact_job_name(meta["job-name"].removeprefix(JOB_NAME_PREFIX), folder)
    return folder


__all__ = ["ReconsolidationSummary", "answers_from_responses", "reconsolidate_job"]
