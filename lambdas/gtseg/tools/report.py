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
import html
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

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
from gtseg.core.metrics import cohen_kappa, disagreement_map, pixel_agreement
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
            or (
                str(sidecar["datasetObjectId"])
                if sidecar and sidecar.get("datasetObjectId") is not None
                else None
            )
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

        confidence, class_conf = self._confidences(
            line.data.get(metadata_key(attribute)), sidecar, object_map
        )
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
                           sidecar: Mapping[str, Any] | None, notes: list[str]):  # fmt: skip
        files = self.responses_for(object_id, mask_ref)
        responses, problems = read_worker_responses(self.data, files)
        notes.extend(problems)
        side_workers = {
            str(w.get("workerId")): w for w in (sidecar or {}).get("workers", []) if isinstance(w, Mapping)
        }
        out: list[WorkerOnObject] = []
        masks: list[np.ndarray] = []
        seen: set[str] = set()
        for response in responses:
            worker = self._worker_on_object(
                response, consensus, object_map, side_workers.get(response.worker_id)
            )
            if worker.note:
                notes.append(f"{response.worker_id}: {worker.note}")
            elif worker.mask is not None:
                masks.append(worker.mask)
            out.append(worker.figures)
            seen.add(response.worker_id)
        for worker_id, side in side_workers.items():  # sidecar-only workers (responses not available)
            if worker_id in seen:
                continue
            agreement = side.get("agreement") if isinstance(side.get("agreement"), int | float) else None
            quality = side.get("quality") if isinstance(side.get("quality"), int | float) else None
            out.append(WorkerOnObject(worker_id, agreement, quality, None))
        if len(out) == 1 or (sidecar or {}).get("method") == "single-worker":
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
        heat = disagreement_map(masks, consensus) if masks else None
        return out, heat

    def _worker_on_object(self, response: WorkerResponse, consensus: np.ndarray, object_map: ClassMap,
                          side: Mapping[str, Any] | None) -> DecodedWorker:  # fmt: skip
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
        quality = side.get("quality") if side and isinstance(side.get("quality"), int | float) else None
        if quality is None:
            quality = cohen_kappa(decoded.indices, consensus, len(decode_map))
        figures = WorkerOnObject(response.worker_id, agreement, float(quality), response.time_spent_seconds)
        return DecodedWorker(figures, decoded.indices)

    @staticmethod
    def _confidences(meta: Any, sidecar: Mapping[str, Any] | None, object_map: ClassMap):
        """Image confidence and per-class confidence (class name -> value) of one object."""
        per_class: dict[str, float] = {}
        image_conf = None
        if sidecar:
            if isinstance(sidecar.get("image-confidence"), int | float):
                image_conf = float(sidecar["image-confidence"])
            for entry in sidecar.get("classes") or []:
                if isinstance(entry, Mapping) and isinstance(entry.get("confidence"), int | float):
                    per_class[str(entry.get("class-name"))] = float(entry["confidence"])
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
            summary.errors.append(manifest_error_problem(item, done))
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

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #888;vertical-align:middle;margin-right:.3em}
.object{border-top:1px solid #ddd;padding:1rem 0}.object img{max-width:48%;margin-right:1%;vertical-align:top}
.low{color:#b00020;font-weight:600}.note{color:#8a5a00}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _url(relative_path: str) -> str:
    """A relative file path as an href/src: '#', '%', '?' and spaces in file names are kept literal."""
    return _e(quote(relative_path))


def render_html(builder: _ReportBuilder, summary: ReportSummary, manifest: str) -> str:
    objects = builder.objects
    known = [o.agreement for o in objects if o.agreement is not None]
    confs = [o.confidence for o in objects if o.confidence is not None]
    total_pixels = sum(c.pixels for c in builder.classes.values()) or 1
    worst_ids = set(summary.lowest)
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>gtseg report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Labeling job report</h1>",
        f"<p>Manifest <code>{_e(manifest)}</code>"
        + (f", job output <code>{_e(builder.job_prefix)}</code>" if builder.job_prefix else "")
        + f". Generated {_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))} by gtseg.</p>",
        '<section id="summary"><h2>Summary</h2><table>',
        f'<tr><th>Objects</th><td class="num">{len(objects)}</td></tr>',
        f'<tr><th>Failed in the job</th><td class="num">{len(summary.failed)}</td></tr>',
        f'<tr><th>Not readable</th><td class="num">{len(summary.errors)}</td></tr>',
        f'<tr><th>Workers</th><td class="num">{len(builder.workers)}</td></tr>',
        f'<tr><th>Mean confidence</th><td class="num">{_num(float(np.mean(confs)) if confs else None)}</td></tr>',
        f'<tr><th>Mean worker agreement with consensus</th><td class="num">'
        f"{_pct(float(np.mean(known)) if known else None)}</td></tr>",
        "</table></section>",
        '<section id="classes"><h2>Classes</h2><table><tr><th>Class</th><th>Area</th><th>Objects</th>'
        "<th>Mean confidence</th></tr>",
    ]
    for figures in sorted(builder.classes.values(), key=lambda c: builder.reconciler.names.index(c.name)):
        conf = figures.confidence_sum / figures.confidence_n if figures.confidence_n else None
        parts.append(
            f'<tr data-class="{_e(figures.name)}"><td><span class="swatch" style="background:{_e(figures.color)}">'
            f'</span>{_e(figures.name)}</td><td class="num">{_pct(figures.pixels / total_pixels)}</td>'
            f'<td class="num">{figures.objects}</td><td class="num">{_num(conf)}</td></tr>'
        )
    parts.append("</table></section>")
    parts.append(
        '<section id="workers"><h2>Workers</h2><table><tr><th>Worker</th><th>Objects</th>'
        "<th>Agreement with consensus</th><th>Quality</th><th>Mean time</th><th>Total time</th>"
        "<th>Unusable answers</th></tr>"
    )
    for worker in sorted(builder.workers.values(), key=lambda w: (w.agreement is None, w.agreement or 0.0)):
        parts.append(
            f'<tr data-worker-id="{_e(worker.worker_id)}"><td>{_e(worker.worker_id)}</td>'
            f'<td class="num">{worker.objects}</td><td class="num">{_pct(worker.agreement)}</td>'
            f'<td class="num">{_num(worker.quality)}</td>'
            f'<td class="num">{_num(worker.mean_time, 1)} s</td><td class="num">{_num(worker.time_sum, 0)} s</td>'
            f'<td class="num">{worker.rejected}</td></tr>'
        )
    parts.append("</table><p>Quality: Cohen's kappa against the consensus (chance-corrected; a worker who "
                 "paints one class everywhere scores 0), or gtseg's own score when its sidecar is present.</p>"
                 "</section>")  # fmt: skip
    parts.append(
        f'<section id="lowest"><h2>Lowest agreement</h2><p>Written as a manifest for an adjustment job: '
        f'<a href="{_url(Path(summary.lowest_manifest).name)}">{_e(Path(summary.lowest_manifest).name)}</a></p>'
        "<table><tr><th>Object</th><th>Agreement</th><th>Confidence</th></tr>"
    )
    by_id = {o.object_id: o for o in objects}
    for object_id in summary.lowest:
        obj = by_id.get(object_id)
        if obj is not None:
            parts.append(
                f'<tr><td><a href="#object-{_e(obj.object_id)}">{_e(obj.name)}</a></td>'
                f'<td class="num">{_pct(obj.agreement)}</td><td class="num">{_num(obj.confidence)}</td></tr>'
            )
    parts.append("</table></section>")
    if summary.failed or summary.errors or builder.problems:
        parts.append('<section id="problems"><h2>Problems</h2><ul>')
        for problem in summary.failed:
            parts.append(f"<li>failed in the job: {_e(problem)}</li>")
        for problem in summary.errors:
            parts.append(f"<li>not readable: {_e(problem)}</li>")
        for problem in builder.problems:
            parts.append(f"<li>{_e(problem)}</li>")
        parts.append("</ul></section>")
    parts.append('<section id="objects"><h2>Objects</h2>')
    for obj in objects:
        low = ' class="low"' if obj.object_id in worst_ids else ""
        parts.append(
            f'<div class="object" id="object-{_e(obj.object_id)}" data-object-id="{_e(obj.object_id)}">'
            f"<h3{low}>{_e(obj.name)} <small>(object {_e(obj.object_id)}, line {obj.line})</small></h3>"
            f'<img src="{_url(obj.overlay)}" alt="consolidated mask over the image" loading="lazy">'
        )
        if obj.heatmap:
            parts.append(f'<img src="{_url(obj.heatmap)}" alt="worker disagreement heatmap" loading="lazy">')
        parts.append(
            f"<p>Confidence {_num(obj.confidence)} · agreement {_pct(obj.agreement)} · classes: "
            f"{_e(', '.join(obj.classes) or 'background only')}"
            + (f" · source <code>{_e(obj.source_ref)}</code>" if obj.source_ref else "")
            + "</p>"
        )
        if obj.workers:
            parts.append("<table><tr><th>Worker</th><th>Agreement</th><th>Quality</th><th>Time</th></tr>")
            for worker in obj.workers:
                parts.append(
                    f'<tr data-worker-id="{_e(worker.worker_id)}"><td>{_e(worker.worker_id)}</td>'
                    f'<td class="num">{_pct(worker.agreement)}</td><td class="num">{_num(worker.quality)}</td>'
                    f'<td class="num">{_num(worker.time_spent, 1)} s</td></tr>'
                )
            parts.append("</table>")
        for note in obj.notes:
            parts.append(f'<p class="note">{_e(note)}</p>')
        parts.append("</div>")
    parts.append("</section></body></html>\n")
    return "\n".join(parts)


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
    "ToolError",
    "ReportSummary",
    "build_report",
    "cohen_kappa",
    "disagreement_map",
    "pixel_agreement",
]
