"""``gtseg report``: a static HTML report of a finished semantic-segmentation job.

Per object: the image with the consolidated mask overlaid, a disagreement heatmap computed from
the workers' own masks (``annotations/worker-response/``), the confidence and each worker's
agreement with the consensus. Per class: area and confidence. Per worker: agreement with the
consensus, quality (Cohen's kappa against the consensus, or gtseg's sidecar value), time spent.
The lowest-agreement objects are listed and written as a manifest for an adjustment job.

Images are written as JPEG/PNG files next to the HTML (``<name>_files/``), never inlined, and
the manifest is streamed: only one object's pixels are in memory at a time.
"""

from __future__ import annotations

import heapq
import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import liquid
import numpy as np
from PIL import Image

from gtseg.core.consolidation import AppliedMethod
from gtseg.core.labels import BACKGROUND, ClassMap, LabelError, default_colors
from gtseg.core.layout import WORKER_RESPONSE_DIR, dataset_object_id_from_mask, job_prefix_from_mask_uri
from gtseg.core.manifest import (
    ManifestError,
    ManifestLine,
    dump_manifest_line,
    metadata_key,
    parse_manifest,
    safe_filename,
)
from gtseg.core.masks import MaskError, b64decode_png, decode_worker_mask, indices_to_rgb, read_class_mask
from gtseg.core.metrics import cohen_kappa, disagreement_map, mean_iou, pixel_agreement
from gtseg.core.sidecar import ConsolidationSidecar, SidecarWorker
from gtseg.protocol import ProtocolError, find_segmentation_answer
from gtseg.tools.class_maps import ClassReconciler, parse_color_map
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import (
    JobData,
    JobDataError,
    ProgressCallback,
    WorkerResponse,
    job_prefix_from_manifest,
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
    failure_reason,
    manifest_error_problem,
    object_color_map,
)

DEFAULT_LOWEST = 20
DEFAULT_MAX_SIDE = 640  # report images are downscaled to this many pixels on their long side
OVERLAY_ALPHA = 0.45
TEMPLATE = "report.html.liquid"  # in gtseg/tools/templates/, shipped as package data (not uploaded with the worker UI)


# --------------------------------------------------------------------------- pictures


def with_worker_labels(object_map: ClassMap, label_mappings: Any) -> ClassMap:
    """``object_map`` plus the worker's labels it lacks, appended (Ground Truth's built-in maps list
    only the classes in the consolidated mask). A class only this worker painted then counts as
    disagreement with the consensus instead of being read as background."""
    if not isinstance(label_mappings, Mapping):
        return object_map  # decode_worker_mask says what is wrong with it
    extra = [
        n for n in label_mappings if isinstance(n, str) and n != BACKGROUND and n not in object_map.names
    ]
    extra = extra[: 256 - len(object_map)]  # 8-bit masks
    if not extra:
        return object_map
    spare = (c for c in default_colors(len(object_map) + 2 * len(extra)) if c not in object_map.colors)
    return ClassMap(
        names=(*object_map.names, *extra), colors=(*object_map.colors, *(next(spare) for _ in extra))
    )


def heat_colors(values: np.ndarray) -> np.ndarray:
    """0..1 -> RGB: dark blue (everyone agrees) through red to yellow (nobody agrees)."""
    stops = np.array([[20, 24, 60], [200, 30, 40], [255, 230, 60]], dtype=np.float32)
    v = np.clip(values, 0.0, 1.0)[..., None] * 2.0
    low = stops[0] + (stops[1] - stops[0]) * np.clip(v, 0, 1)
    high = stops[1] + (stops[2] - stops[1]) * np.clip(v - 1, 0, 1)
    return np.where(v <= 1.0, low, high).astype(np.uint8)


def overlay(image: np.ndarray | None, indices: np.ndarray, class_map: ClassMap) -> np.ndarray:
    """The image with the class colours blended over every non-background pixel."""
    colors = indices_to_rgb(indices, class_map).astype(np.float32)
    if image is None or image.shape[:2] != indices.shape:
        base = np.full((*indices.shape, 3), 128, dtype=np.float32)
    else:
        base = image.astype(np.float32)
    blend = np.where((indices > 0)[..., None], base * (1 - OVERLAY_ALPHA) + colors * OVERLAY_ALPHA, base)
    return blend.astype(np.uint8)


def _scaled(array: np.ndarray, max_side: int, resample: Image.Resampling) -> Image.Image:
    image = Image.fromarray(array)
    scale = max_side / max(image.size)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, resample)
    return image


# --------------------------------------------------------------------------- collected figures


@dataclass
class WorkerFigures:
    worker_id: str
    objects: int = 0
    agreement_sum: float = 0.0
    quality_sum: float = 0.0
    quality_n: int = 0
    time_sum: float = 0.0
    time_n: int = 0
    rejected: int = 0
    gold_sum: float = 0.0  # mean IoU with the known mask, summed over the gold objects labelled
    gold_n: int = 0

    @property
    def gold_iou(self) -> float | None:
        return self.gold_sum / self.gold_n if self.gold_n else None

    @property
    def agreement(self) -> float | None:
        return self.agreement_sum / self.objects if self.objects else None

    @property
    def quality(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None

    @property
    def mean_time(self) -> float | None:
        return self.time_sum / self.time_n if self.time_n else None


@dataclass
class WorkerOnObject:
    worker_id: str
    agreement: float | None
    quality: float | None
    time_spent: float | None
    note: str = ""
    gold_iou: float | None = None  # on a gold object: mean IoU with its known mask


@dataclass(frozen=True)
class DecodedWorker:
    """One worker's answer on one object: its figures, and its mask when usable."""

    figures: WorkerOnObject
    mask: np.ndarray | None
    note: str = ""


@dataclass
class ObjectFigures:
    line: int
    object_id: str
    name: str
    source_ref: str | None
    confidence: float | None
    agreement: float | None  # mean worker agreement with the consensus
    classes: list[str]
    overlay: str  # file name relative to the HTML
    heatmap: str | None
    workers: list[WorkerOnObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rank_score(self) -> float:
        """Lower = worse; objects with no worker data rank by confidence."""
        for value in (self.agreement, self.confidence):
            if value is not None:
                return value
        return 1.0


@dataclass
class ClassFigures:
    name: str
    color: str
    pixels: int = 0
    objects: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0


@dataclass
class ReportSummary:
    html: str
    files_dir: str
    lowest_manifest: str
    objects: int = 0
    failed: list[LineProblem] = field(default_factory=list)
    errors: list[LineProblem] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    lowest: list[str] = field(default_factory=list)  # object ids, worst first
    job_prefix: str | None = None
    notes: list[str] = field(default_factory=list)  # job-wide problems (e.g. no worker responses)


# --------------------------------------------------------------------------- building


class _ReportBuilder:
    def __init__(self, manifest: str, out_html: Path, data: JobData, label_attribute: str | None,
                 job_prefix: str | None, lowest: int, max_side: int) -> None:  # fmt: skip
        self.manifest = manifest
        self.base = parent_ref(manifest)
        self.out_html = out_html
        self.files_dir = out_html.parent / f"{out_html.stem}_files"
        self.data = data
        self.chooser = AttributeChooser(label_attribute)
        self.job_prefix = job_prefix or job_prefix_from_manifest(manifest)
        self.lowest_n = lowest
        self.max_side = max_side
        self.reconciler = ClassReconciler()
        self.classes: dict[str, ClassFigures] = {}
        self.workers: dict[str, WorkerFigures] = {}
        self.objects: list[ObjectFigures] = []
        # a bounded max-heap (by negated score) of the worst objects and their manifest lines
        self._worst: list[tuple[float, int, str, dict[str, Any]]] = []
        self._responses: dict[str, list[str]] | None = None
        self._names: set[str] = set()
        self.problems: list[str] = []

    # ----------------------------------------------------------------- inputs

    def responses_for(self, object_id: str, mask_ref: str) -> list[str]:
        if self._responses is None:
            prefix = self.job_prefix or job_prefix_from_mask_uri(mask_ref)
            self.job_prefix = prefix
            self._responses = {}
            if prefix:
                try:
                    self._responses = worker_response_files(self.data, prefix)
                except JobDataError as exc:
                    self.problems.append(f"worker responses not read: {exc}")
                if not self._responses and not self.problems:
                    self.problems.append(
                        f"no worker responses under {join_ref(prefix, WORKER_RESPONSE_DIR)}: no worker figures "
                        "or disagreement heatmaps (--job names the job's output folder)"
                    )
        return self._responses.get(object_id, [])

    def _unique_name(self, wanted: str) -> str:
        name = safe_filename(wanted)
        candidate, n = name, 1
        while candidate.lower() in self._names:
            n += 1
            candidate = f"{name}-{n}"
        self._names.add(candidate.lower())
        return candidate

    def _read_image(self, source_ref: str | None, notes: list[str]) -> np.ndarray | None:
        if not source_ref:
            return None
        try:
            with Image.open(
                io.BytesIO(self.data.read_bytes(self.data.resolve(source_ref, self.base)))
            ) as img:
                return np.asarray(img.convert("RGB"))
        except (JobDataError, OSError, ValueError) as exc:
            notes.append(f"image not shown: {exc}")
            return None

    # ----------------------------------------------------------------- one object

    def add_line(self, line: ManifestLine, summary: ReportSummary) -> None:
        attribute = self.chooser.choose(line)
        if attribute is None:
            reason = failure_reason(line.data, self.chooser.chosen)
            if reason is not None:
                summary.failed.append(LineProblem(line.number, line.source_ref, reason))
            else:
                summary.errors.append(
                    LineProblem(line.number, line.source_ref, "no segmentation label on this line")
                )
            return
        mask_ref = line.data[attribute]
        try:
            auto_map_local_job(self.data, self.manifest, mask_ref)
            mask_where = self.data.resolve(mask_ref, self.base)
            object_map = parse_color_map(object_color_map(self.data, line.data, attribute, mask_where))
            consensus = read_class_mask(self.data.read_bytes(mask_where), object_map)
        except (JobDataError, LabelError, MaskError, ValueError) as exc:
            summary.errors.append(LineProblem(line.number, line.source_ref, str(exc)))
            return
        planned = self.reconciler.add(object_map)
        sidecar = read_sidecar(self.data, mask_where)
        object_id = (
            dataset_object_id_from_mask(mask_ref)
            or (sidecar.dataset_object_id if sidecar else None)
            or str(line.number - 1)  # Ground Truth numbers objects by input line, from 0
        )
        notes: list[str] = []
        image = self._read_image(line.source_ref, notes)
        name = self._unique_name(
            Path((line.source_ref or mask_ref).rsplit("/", 1)[-1]).stem or f"object-{object_id}"
        )

        workers, heat = self._workers_on_object(object_id, mask_ref, consensus, object_map, sidecar, notes)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        overlay_file = f"{name}-overlay.jpg"
        _scaled(overlay(image, consensus, object_map), self.max_side, Image.Resampling.BILINEAR).save(
            self.files_dir / overlay_file, format="JPEG", quality=85
        )
        heatmap_file = None
        if heat is not None:
            heatmap_file = f"{name}-disagreement.png"
            small = np.asarray(_scaled((heat * 255).astype(np.uint8), self.max_side, Image.Resampling.BOX))
            Image.fromarray(heat_colors(small.astype(np.float32) / 255.0)).save(self.files_dir / heatmap_file)

        confidence, class_conf = self._confidences(line.data.get(metadata_key(attribute)), sidecar)
        agreements = [w.agreement for w in workers if w.agreement is not None]
        counts = np.bincount(consensus.ravel(), minlength=len(object_map))
        present = []
        for i, pixels in enumerate(counts[: len(object_map)]):
            if not pixels:
                continue
            global_name = self.reconciler.names[planned.to_global[i]]
            figures = self.classes.setdefault(
                global_name, ClassFigures(global_name, self.reconciler.colors[planned.to_global[i]])
            )
            figures.pixels += int(pixels)
            figures.objects += 1
            if class_conf.get(object_map.names[i]) is not None:
                figures.confidence_sum += class_conf[object_map.names[i]]
                figures.confidence_n += 1
            if i:
                present.append(global_name)
        figures_obj = ObjectFigures(
            line=line.number,
            object_id=object_id,
            name=name,
            source_ref=line.source_ref,
            confidence=confidence,
            agreement=float(np.mean(agreements)) if agreements else None,
            classes=present,
            overlay=f"{self.files_dir.name}/{overlay_file}",
            heatmap=f"{self.files_dir.name}/{heatmap_file}" if heatmap_file else None,
            workers=workers,
            notes=notes,
        )
        self.objects.append(figures_obj)
        entry = (-figures_obj.rank_score, -line.number, object_id, line.data)
        if len(self._worst) < self.lowest_n:
            heapq.heappush(self._worst, entry)
        elif self.lowest_n and entry > self._worst[0]:
            heapq.heapreplace(self._worst, entry)

    def _workers_on_object(self, object_id: str, mask_ref: str, consensus: np.ndarray, object_map: ClassMap,
                           sidecar: ConsolidationSidecar | None,
                           notes: list[str]) -> tuple[list[WorkerOnObject], np.ndarray | None]:  # fmt: skip
        files = self.responses_for(object_id, mask_ref)
        responses, problems = read_worker_responses(self.data, files)
        notes.extend(problems)
        out: list[WorkerOnObject] = []
        masks: list[np.ndarray] = []
        seen: set[str] = set()
        for response in responses:
            decoded = self._worker_on_object(
                response,
                consensus,
                object_map,
                sidecar.worker(response.worker_id) if sidecar else None,
                gold=sidecar is not None and sidecar.method == AppliedMethod.GOLD,
            )
            if decoded.note:
                notes.append(f"{response.worker_id}: {decoded.note}")
            elif decoded.mask is not None:
                masks.append(decoded.mask)
            out.append(decoded.figures)
            seen.add(response.worker_id)
        for side in sidecar.workers if sidecar else ():  # sidecar-only workers (responses not available)
            if side.worker_id in seen:
                continue
            out.append(WorkerOnObject(side.worker_id, side.agreement, side.quality, None))
            seen.add(side.worker_id)
        if len(out) == 1 or (sidecar is not None and sidecar.method == AppliedMethod.SINGLE_WORKER):
            # one worker is its own consensus: no quality can be estimated (gtseg's sidecar says 0.0)
            for worker in out:
                worker.quality = None
        for worker in out:
            figures = self.workers.setdefault(worker.worker_id, WorkerFigures(worker.worker_id))
            if worker.agreement is None:
                figures.rejected += 1
                continue
            figures.objects += 1
            figures.agreement_sum += worker.agreement
            if worker.quality is not None:
                figures.quality_sum += worker.quality
                figures.quality_n += 1
            if worker.time_spent is not None:
                figures.time_sum += worker.time_spent
                figures.time_n += 1
            if worker.gold_iou is not None:
                figures.gold_sum += worker.gold_iou
                figures.gold_n += 1
        heat = disagreement_map(masks, consensus) if masks else None
        return out, heat

    def _worker_on_object(self, response: WorkerResponse, consensus: np.ndarray, object_map: ClassMap,
                          side: SidecarWorker | None, gold: bool = False) -> DecodedWorker:  # fmt: skip
        try:
            answer = find_segmentation_answer(response.content)
            decode_map = with_worker_labels(object_map, answer.label_mappings)
            decoded = decode_worker_mask(
                b64decode_png(answer.png_image_data), answer.label_mappings, decode_map,
                expected_size=answer.expected_size,
            )  # fmt: skip
            if decoded.shape != consensus.shape:
                raise MaskError(f"mask is {decoded.shape[1]}x{decoded.shape[0]}, consensus is "
                                f"{consensus.shape[1]}x{consensus.shape[0]}")  # fmt: skip
        except (ProtocolError, MaskError, LabelError, ValueError, TypeError, OverflowError) as exc:
            figures = WorkerOnObject(
                response.worker_id, None, None, response.time_spent_seconds, f"not usable: {exc}"
            )
            return DecodedWorker(figures, None, figures.note)
        agreement = pixel_agreement(decoded.indices, consensus)
        quality = side.quality if side is not None else None
        if quality is None:
            quality = cohen_kappa(decoded.indices, consensus, len(decode_map))
        figures = WorkerOnObject(response.worker_id, agreement, float(quality), response.time_spent_seconds)
        if gold:  # the consensus of a gold object is its known mask
            figures.gold_iou = mean_iou(decoded.indices, consensus, len(decode_map))
        return DecodedWorker(figures, decoded.indices)

    @staticmethod
    def _confidences(
        meta: Any, sidecar: ConsolidationSidecar | None
    ) -> tuple[float | None, dict[str, float]]:
        """Image confidence and per-class confidence (class name -> value) of one object."""
        per_class: dict[str, float] = sidecar.class_confidences() if sidecar else {}
        image_conf = sidecar.image_confidence if sidecar else None
        # the manifest's metadata is untyped JSON (Ground Truth's or gtseg's): check each value
        color_map = meta.get("internal-color-map") if isinstance(meta, Mapping) else None
        if isinstance(color_map, Mapping):
            for entry in color_map.values():
                if isinstance(entry, Mapping) and isinstance(entry.get("confidence"), int | float):
                    per_class.setdefault(str(entry.get("class-name")), float(entry["confidence"]))
        if image_conf is None and per_class:
            # built-in jobs give every class the image's confidence; take their mean to be safe
            image_conf = float(np.mean(list(per_class.values())))
        return image_conf, per_class

    # ----------------------------------------------------------------- outputs

    def worst(self) -> list[tuple[float, int, str, dict[str, Any]]]:
        return sorted(self._worst, key=lambda e: (-e[0], -e[1]))


def build_report(
    manifest: str,
    out_html: str | Path,
    *,
    label_attribute: str | None = None,
    job_prefix: str | None = None,
    lowest: int = DEFAULT_LOWEST,
    max_side: int = DEFAULT_MAX_SIDE,
    data: JobData | None = None,
    progress: ProgressCallback | None = None,
) -> ReportSummary:
    """Write ``out_html``, its ``<stem>_files/`` images and ``<stem>-lowest-agreement.manifest``."""
    data = data or JobData()
    out_path = Path(out_html)
    if out_path.is_dir():
        raise ToolError(f"--out {out_path} is a folder; name the HTML file, e.g. {out_path / 'report.html'}")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a parent of --out is an existing file
        raise ToolError(f"cannot create the folder for {out_path}: {exc.strerror or exc}") from exc
    builder = _ReportBuilder(manifest, out_path, data, label_attribute, job_prefix, max(lowest, 0), max_side)
    lowest_path = out_path.parent / f"{out_path.stem}-lowest-agreement.manifest"
    summary = ReportSummary(
        html=str(out_path), files_dir=str(builder.files_dir), lowest_manifest=str(lowest_path)
    )
    total = data.count_lines(manifest)
    for done, item in enumerate(parse_manifest(data.iter_lines(manifest)), start=1):
        if isinstance(item, ManifestError):
            summary.errors.append(manifest_error_problem(item))
        else:
            builder.add_line(item, summary)
        if progress:
            progress(done, total)
    worst = builder.worst()
    with open(lowest_path, "w", encoding="utf-8") as handle:
        for _, _, _, line_data in worst:
            handle.write(dump_manifest_line(line_data))
    summary.objects = len(builder.objects)
    summary.workers = sorted(builder.workers)
    summary.lowest = [object_id for _, _, object_id, _ in worst]
    summary.job_prefix = builder.job_prefix
    summary.notes = list(builder.problems)
    out_path.write_text(render_html(builder, summary, manifest), encoding="utf-8")
    return summary


# --------------------------------------------------------------------------- HTML
# The page is ``tools/templates/report.html.liquid``; the view-model below is everything it shows, with
# every figure already formatted, so the template holds layout only.


@dataclass(frozen=True)
class SummaryView:
    objects: int
    failed: int
    not_readable: int
    workers: int
    mean_confidence: str
    mean_agreement: str


@dataclass(frozen=True)
class ClassRow:
    name: str
    color: str
    area: str
    objects: int
    confidence: str


@dataclass(frozen=True)
class WorkerRow:
    worker_id: str
    objects: int
    agreement: str
    quality: str
    gold_iou: str
    mean_time: str
    total_time: str
    unusable: int


@dataclass(frozen=True)
class Link:
    href: str  # URL-quoted
    name: str


@dataclass(frozen=True)
class LowestRow:
    object_id: str
    name: str
    agreement: str
    confidence: str


@dataclass(frozen=True)
class ObjectWorkerRow:
    worker_id: str
    agreement: str
    quality: str
    time: str


@dataclass(frozen=True)
class ObjectView:
    object_id: str
    name: str
    line: int
    low: bool  # among the lowest-agreement objects
    overlay_src: str  # URL-quoted
    heatmap_src: str | None  # URL-quoted
    confidence: str
    agreement: str
    classes: str
    source_ref: str | None
    workers: list[ObjectWorkerRow]
    notes: list[str]


@dataclass(frozen=True)
class ReportPage:
    manifest: str
    job_prefix: str | None
    generated: str
    summary: SummaryView
    classes: list[ClassRow]
    workers: list[WorkerRow]
    lowest_manifest: Link
    lowest: list[LowestRow]
    problems: list[str]
    objects: list[ObjectView]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _url(relative_path: str) -> str:
    """A relative file path as an href/src: '#', '%', '?' and spaces in file names are kept literal."""
    return quote(relative_path)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def report_page(builder: _ReportBuilder, summary: ReportSummary, manifest: str) -> ReportPage:
    objects = builder.objects
    total_pixels = sum(c.pixels for c in builder.classes.values()) or 1
    worst_ids = set(summary.lowest)
    by_id = {o.object_id: o for o in objects}
    lowest_name = Path(summary.lowest_manifest).name
    return ReportPage(
        manifest=manifest,
        job_prefix=builder.job_prefix,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        summary=SummaryView(
            objects=len(objects),
            failed=len(summary.failed),
            not_readable=len(summary.errors),
            workers=len(builder.workers),
            mean_confidence=_num(_mean([o.confidence for o in objects if o.confidence is not None])),
            mean_agreement=_pct(_mean([o.agreement for o in objects if o.agreement is not None])),
        ),
        classes=[
            ClassRow(
                name=c.name,
                color=c.color,
                area=_pct(c.pixels / total_pixels),
                objects=c.objects,
                confidence=_num(c.confidence_sum / c.confidence_n if c.confidence_n else None),
            )
            for c in sorted(builder.classes.values(), key=lambda c: builder.reconciler.names.index(c.name))
        ],
        workers=[
            WorkerRow(
                worker_id=w.worker_id,
                objects=w.objects,
                agreement=_pct(w.agreement),
                quality=_num(w.quality),
                gold_iou=_num(w.gold_iou),
                mean_time=_num(w.mean_time, 1),
                total_time=_num(w.time_sum, 0),
                unusable=w.rejected,
            )
            for w in sorted(builder.workers.values(), key=lambda w: (w.agreement is None, w.agreement or 0.0))
        ],
        lowest_manifest=Link(href=_url(lowest_name), name=lowest_name),
        lowest=[
            LowestRow(o.object_id, o.name, _pct(o.agreement), _num(o.confidence))
            for o in (by_id.get(object_id) for object_id in summary.lowest)
            if o is not None
        ],
        problems=[
            *(f"failed in the job: {p}" for p in summary.failed),
            *(f"not readable: {p}" for p in summary.errors),
            *builder.problems,
        ],
        objects=[
            ObjectView(
                object_id=o.object_id,
                name=o.name,
                line=o.line,
                low=o.object_id in worst_ids,
                overlay_src=_url(o.overlay),
                heatmap_src=_url(o.heatmap) if o.heatmap else None,
                confidence=_num(o.confidence),
                agreement=_pct(o.agreement),
                classes=", ".join(o.classes) or "background only",
                source_ref=o.source_ref,
                workers=[
                    ObjectWorkerRow(w.worker_id, _pct(w.agreement), _num(w.quality), _num(w.time_spent, 1))
                    for w in o.workers
                ],
                notes=list(o.notes),
            )
            for o in objects
        ],
    )


@cache
def _template() -> liquid.BoundTemplate:
    # Autoescape is what keeps worker ids, file names and error notes from becoming markup; a
    # strict Undefined turns a misspelt name in the template into an error instead of a blank.
    environment = liquid.Environment(
        autoescape=True,
        undefined=liquid.StrictUndefined,
        loader=liquid.PackageLoader("gtseg.tools", package_path="templates"),
    )
    return environment.get_template(TEMPLATE)


def render_html(builder: _ReportBuilder, summary: ReportSummary, manifest: str) -> str:
    # Liquid reads values by key, not by attribute: the page goes in as plain dicts and lists.
    return _template().render(**asdict(report_page(builder, summary, manifest)))


def summary_json(summary: ReportSummary) -> str:
    return json.dumps(
        {
            "html": summary.html,
            "objects": summary.objects,
            "failed": len(summary.failed),
            "errors": len(summary.errors),
            "workers": len(summary.workers),
            "lowest-agreement-manifest": summary.lowest_manifest,
            "lowest": summary.lowest,
        }
    )


__all__ = [
    "ReportSummary",
    "ToolError",
    "build_report",
    "cohen_kappa",
    "disagreement_map",
    "pixel_agreement",
]
