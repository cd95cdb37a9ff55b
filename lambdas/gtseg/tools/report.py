"""``gtseg report``: a static review page of a finished semantic-segmentation job.

One HTML file and its ``<name>_files/`` folder, opened from disk with no server and no network.
Per object: the photo with switchable layers (the consolidated mask, each worker's own mask, the
disagreement heatmap with its colour scale), the class legend in the colours the layers are drawn
in, the confidence and each worker's figures. A sortable, filterable table of all objects (with
thumbnails, loaded lazily), a per-worker view, and a review selection (by confidence threshold or
by hand) that the page turns into an adjustment job's manifest and job spec for ``gtseg launch``.
The command itself writes the objects below ``--review-below`` as ``<name>-review.manifest``.

Figures that cannot be estimated are shown as "n/a" with the reason (report_figures.py). The
manifest is streamed: one object's pixels are in memory at a time; the page keeps one small row
per object.
"""

from __future__ import annotations

import io
import json
import os
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

from gtseg.core.builtin_output import builtin_line, job_name_of, needs_sidecar
from gtseg.core.consolidation import AppliedMethod
from gtseg.core.labels import BACKGROUND, ClassMap, LabelError, default_colors
from gtseg.core.layout import (
    WORKER_RESPONSE_DIR,
    dataset_object_id_from_mask,
    job_prefix_from_mask_uri,
    sidecar_ref,
)
from gtseg.core.manifest import (
    ManifestError,
    ManifestLine,
    dump_manifest_line,
    metadata_key,
    parse_manifest,
    safe_filename,
)
from gtseg.core.masks import MaskError, b64decode_png, decode_worker_mask, read_class_mask
from gtseg.core.metrics import cohen_kappa, disagreement_map, mean_iou, pixel_agreement
from gtseg.core.sidecar import ConsolidationSidecar, SidecarWorker
from gtseg.protocol import ProtocolError, find_segmentation_answer
from gtseg.tools.class_maps import ClassReconciler, parse_color_map
from gtseg.tools.errors import ToolError
from gtseg.tools.images import ImagePairError, Orientation, orientation_for, upright_rgb
from gtseg.tools.jobdata import (
    JobData,
    JobDataError,
    ProgressCallback,
    WorkerResponse,
    is_s3,
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
from gtseg.tools.output import staged_output
from gtseg.tools.report_figures import (
    NOT_MEASURED,
    ClassFigures,
    ObjectFigures,
    Trust,
    WorkerFigures,
    WorkerOnObject,
)

DEFAULT_LOWEST = 20  # at most this many objects in the review selection
DEFAULT_REVIEW_BELOW = 0.8  # objects whose confidence is below this are selected for review
DEFAULT_MAX_SIDE = 640  # report images are downscaled to this many pixels on their long side
THUMB_SIDE = 160
DIMMED = 0.45  # the photo under a thumbnail's mask: grey, at this brightness, so colours stay true
TEMPLATE = "report.html.liquid"  # in gtseg/tools/templates/, shipped as package data (not uploaded with the worker UI)
# The disagreement heatmap's colour scale (share of workers off the consensus -> colour); the page's
# scale bar is drawn from the same stops. 0 is transparent: the photo shows where everyone agrees.
HEAT_STOPS = ((0.0, "#ffe135"), (0.5, "#f03b20"), (1.0, "#7a0177"))


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


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


@cache
def _heat_lut(workers: int) -> np.ndarray:
    """(256, 4) RGBA for the shares 0/255..255/255 of workers off the consensus, along HEAT_STOPS;
    0 is transparent, and one worker of ``workers`` off is already opaque (the averaged edges of a
    downscaled map fade in)."""
    v = np.arange(256, dtype=np.float32) / 255.0
    (x0, c0), (x1, c1), (x2, c2) = ((x, _rgb(c)) for x, c in HEAT_STOPS)
    low = c0 + (c1 - c0) * np.clip((v - x0) / (x1 - x0), 0, 1)[..., None]
    high = c1 + (c2 - c1) * np.clip((v - x1) / (x2 - x1), 0, 1)[..., None]
    rgb = np.where((v <= x1)[..., None], low, high)
    alpha = np.clip(v * max(workers, 1), 0.0, 1.0) * 255
    return np.round(np.column_stack([rgb, alpha])).astype(np.uint8)


def heat_rgba(shares: np.ndarray, workers: int) -> np.ndarray:
    """(H, W) uint8 shares (255 = every worker off the consensus) -> (H, W, 4) RGBA."""
    return _heat_lut(workers)[shares]


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def mask_layer_png(indices: np.ndarray, class_map: ClassMap, size: tuple[int, int]) -> bytes:
    """A mask as a layer: a palette PNG in the class colours, background transparent, scaled with
    nearest-neighbour so every pixel keeps exactly its class colour (the legend's colour)."""
    image = Image.fromarray(indices)
    image.putpalette(class_map.palette())
    if image.size != size:
        image = image.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", transparency=0, optimize=False, compress_level=6)
    return buf.getvalue()


def thumbnail_jpeg(photo: np.ndarray | None, indices: np.ndarray, class_map: ClassMap) -> bytes:
    """The table's thumbnail: the mask in its class colours over the photo in dimmed grey (so no
    photo colour mixes into a class colour); background pixels show the photo."""
    size = _scaled_size(indices.shape[1], indices.shape[0], THUMB_SIDE)
    mask = np.asarray(Image.fromarray(indices).resize(size, Image.Resampling.NEAREST))
    if photo is None:
        base = np.full((size[1], size[0], 3), 96, dtype=np.uint8)
    else:
        grey = Image.fromarray(photo).convert("L").resize(size, Image.Resampling.BILINEAR)
        base = np.repeat((np.asarray(grey, dtype=np.float32) * DIMMED).astype(np.uint8)[..., None], 3, axis=2)
    colors = np.array([_rgb(c) for c in class_map.colors], dtype=np.uint8)
    out = np.where((mask > 0)[..., None], colors[np.minimum(mask, len(colors) - 1)], base)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# --------------------------------------------------------------------------- the summary


@dataclass
class ReportSummary:
    html: str
    files_dir: str
    review_manifest: str  # the objects selected for review, as an adjustment job's input manifest
    review_spec: str  # a job spec for that adjustment job (gtseg launch SPEC)
    objects: int = 0
    failed: list[LineProblem] = field(default_factory=list)
    errors: list[LineProblem] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    lowest: list[str] = field(default_factory=list)  # the review selection's object ids, worst first
    job_prefix: str | None = None
    notes: list[str] = field(default_factory=list)  # job-wide problems (e.g. no worker responses)

    @property
    def lowest_manifest(self) -> str:
        """The review manifest's earlier name."""
        return self.review_manifest


# --------------------------------------------------------------------------- building


@dataclass
class _ObjectRecord:
    """What the page keeps of an object besides its figures: the manifest line for a review job."""

    figures: ObjectFigures
    review_line: dict[str, Any]


class _ReportBuilder:
    def __init__(self, manifest: str, out_html: Path, staging: Path, data: JobData, label_attribute: str | None,
                 job_prefix: str | None, max_side: int) -> None:  # fmt: skip
        self.manifest = manifest
        self.base = parent_ref(manifest)
        self.out_html = out_html
        self.files_name = f"{out_html.stem}_files"
        self.files_dir = staging / self.files_name
        self.data = data
        self.chooser = AttributeChooser(label_attribute)
        self.job_prefix = job_prefix or job_prefix_from_manifest(manifest)
        self.max_side = max_side
        self.reconciler = ClassReconciler()
        self.classes: dict[str, ClassFigures] = {}
        self.workers: dict[str, WorkerFigures] = {}
        self.records: list[_ObjectRecord] = []
        self._responses: dict[str, list[str]] | None = None
        self._names: set[str] = set()
        self.problems: list[str] = []
        self.job_name: str | None = None
        self.label_attribute: str | None = None
        self.remote_job_prefix: str | None = None  # the job's S3 prefix (from the mask URIs)

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
                        f"no worker responses under {join_ref(prefix, WORKER_RESPONSE_DIR)}: no worker figures, "
                        "worker masks or disagreement heatmaps (--job names the job's output folder)"
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

    def _link(self, ref: str) -> str:
        """A link the page can follow from disk: a local file relative to the HTML's folder (URL-
        quoted), an S3 URI as it is (shown as text to copy)."""
        where = self.data.resolve(ref, self.base)
        if is_s3(where):
            return where
        try:
            relative = os.path.relpath(Path(where).resolve(), self.out_html.parent.resolve())
        except ValueError:  # another drive (Windows)
            return Path(where).resolve().as_uri()
        return quote(Path(relative).as_posix())

    def _write(self, name: str, data: bytes) -> str:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        (self.files_dir / name).write_bytes(data)
        return quote(f"{self.files_name}/{name}")

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
            color_map = object_color_map(self.data, line.data, attribute, mask_where)
            object_map = parse_color_map(color_map)
            consensus = read_class_mask(self.data.read_bytes(mask_where), object_map)
        except (JobDataError, LabelError, MaskError, ValueError) as exc:
            summary.errors.append(LineProblem(line.number, line.source_ref, str(exc)))
            return
        self.label_attribute = attribute
        self.remote_job_prefix = self.remote_job_prefix or job_prefix_from_mask_uri(mask_ref)
        planned = self.reconciler.add(object_map)
        sidecar = read_sidecar(self.data, mask_where)
        meta = line.data.get(metadata_key(attribute))
        self._note_job_name(line.data, attribute, sidecar)
        object_id = (
            dataset_object_id_from_mask(mask_ref)
            or (sidecar.dataset_object_id if sidecar else None)
            or str(line.number - 1)  # Ground Truth numbers objects by input line, from 0
        )
        notes: list[str] = []
        title = Path((line.source_ref or mask_ref).rsplit("/", 1)[-1]).stem or f"object-{object_id}"
        name = self._unique_name(title)  # the report's file names; the page shows the title
        photo, orientation = self._read_photo(line.source_ref, consensus.shape, notes)
        upright = orientation.upright_mask(consensus)
        height, width = upright.shape
        size = _scaled_size(width, height, self.max_side)

        workers, masks = self._workers_on_object(object_id, mask_ref, consensus, object_map, sidecar, notes)
        trust = Trust.of(sidecar, [w.worker_id for w in workers if w.agreement is not None])
        for worker in workers:
            side = sidecar.worker(worker.worker_id) if sidecar else None
            if side is not None:
                worker.excluded = worker.worker_id in trust.excluded
                worker.weight = side.weight
            unmeasured = trust.unmeasured(worker.excluded)
            if unmeasured and worker.agreement is not None:
                # the only trusted worker is the consensus (agreeing with itself says nothing), or
                # there was none (workers who did not agree: one mask kept, or a plain vote)
                worker.agreement, worker.quality, worker.note = None, None, unmeasured
        for k, (worker_id, (mask, mask_map)) in enumerate(masks.items(), start=1):
            worker = next(w for w in workers if w.worker_id == worker_id)
            worker.mask_file = self._write(
                f"{name}-worker-{k}.png", mask_layer_png(orientation.upright_mask(mask), mask_map, size)
            )
        for worker in workers:
            self.workers.setdefault(worker.worker_id, WorkerFigures(worker.worker_id)).add(worker)

        counted = [m for wid, (m, _) in masks.items() if wid not in trust.excluded]
        heatmap = None
        if len(counted) >= 2:
            heat = disagreement_map(counted, consensus)
            small = Image.fromarray(orientation.upright_mask((heat * 255).astype(np.uint8)))
            small = small.resize(size, Image.Resampling.BOX) if small.size != size else small
            rgba = heat_rgba(np.asarray(small, dtype=np.uint8), len(counted))
            buf = io.BytesIO()
            Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
            heatmap = self._write(f"{name}-disagreement.png", buf.getvalue())

        confidence, class_conf = self._confidences(meta, sidecar)
        confidence_note = ""
        if not trust.cross_checked:
            confidence, class_conf, confidence_note = None, {}, trust.why_not
        elif confidence is None:
            confidence_note = "not in the output"
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
            elif not trust.cross_checked:
                figures.not_estimated += 1
            if i:
                present.append(global_name)
        if sidecar is not None:
            for rejection in sidecar.rejected:
                notes.append(
                    f"rejected by the consolidation: {rejection.worker_id or 'an answer'}: {rejection.reason}"
                )
            if sidecar.duplicates:
                notes.append(
                    f"the payload held this object {1 + len(sidecar.duplicates)} times; answered once"
                )
        agreements = [w.agreement for w in workers if w.agreement is not None and not w.excluded]
        links = {"mask": self._link(mask_ref)}
        if line.source_ref:
            links["image"] = self._link(line.source_ref)
        if sidecar is not None:
            links["sidecar"] = self._link(sidecar_ref(mask_ref))
        figures_obj = ObjectFigures(
            line=line.number,
            object_id=object_id,
            name=title,
            source_ref=line.source_ref,
            confidence=confidence,
            confidence_note=confidence_note,
            agreement=float(np.mean(agreements)) if agreements else None,
            classes=present,
            trust=trust,
            method=str(sidecar.method) if sidecar and sidecar.method else None,
            photo=self._write(f"{name}.jpg", _jpeg(photo, size)) if photo is not None else None,
            thumbnail=self._write(f"{name}-thumb.jpg", thumbnail_jpeg(photo, upright, object_map)),
            mask_layer=self._write(f"{name}-mask.png", mask_layer_png(upright, object_map, size)),
            heatmap=heatmap,
            heatmap_workers=len(counted) if heatmap else 0,
            width=size[0],
            height=size[1],
            links=links,
            workers=workers,
            notes=notes,
            failures=sum(1 for w in workers if w.agreement is None and w.note not in NOT_MEASURED)
            + (len(sidecar.rejected) if sidecar else 0),
            gold=sidecar is not None and sidecar.method == AppliedMethod.GOLD,
        )
        self.records.append(_ObjectRecord(figures_obj, self._review_line(line.data, attribute, sidecar)))

    def _note_job_name(
        self, line: dict[str, Any], attribute: str, sidecar: ConsolidationSidecar | None
    ) -> None:
        self.job_name = self.job_name or job_name_of(line, attribute, sidecar)

    @staticmethod
    def _review_line(
        line: dict[str, Any], attribute: str, sidecar: ConsolidationSidecar | None
    ) -> dict[str, Any]:
        """The line as an adjustment job's input: as it is, except that a custom job's replaced
        metadata (no colour map, which the launcher needs for the prior mask) is rebuilt from the sidecar."""
        if sidecar is None or not needs_sidecar(line, attribute):
            return line
        try:
            return builtin_line(line, attribute, sidecar=sidecar)
        except LabelError:
            return line  # the launcher skips it, saying why

    def _read_photo(self, source_ref: str | None, mask_shape: tuple[int, ...],
                    notes: list[str]) -> tuple[np.ndarray | None, Orientation]:  # fmt: skip
        upright = Orientation(1, turn_masks=False)
        if not source_ref:
            return None, upright
        try:
            data = self.data.read_bytes(self.data.resolve(source_ref, self.base))
            orientation = orientation_for(data, mask_shape)
            photo = upright_rgb(data, orientation)
        except (JobDataError, ImagePairError, OSError) as exc:
            notes.append(f"image not shown: {exc}")
            return None, upright
        if orientation.note():
            notes.append(str(orientation.note()))
        return photo, orientation

    def _workers_on_object(self, object_id: str, mask_ref: str, consensus: np.ndarray, object_map: ClassMap,
                           sidecar: ConsolidationSidecar | None,
                           notes: list[str]) -> tuple[list[WorkerOnObject], dict[str, tuple[np.ndarray, ClassMap]]]:  # fmt: skip
        files = self.responses_for(object_id, mask_ref)
        responses, problems = read_worker_responses(self.data, files)
        notes.extend(problems)
        out: list[WorkerOnObject] = []
        masks: dict[str, tuple[np.ndarray, ClassMap]] = {}
        gold = sidecar is not None and sidecar.method == AppliedMethod.GOLD
        for response in responses:
            side = sidecar.worker(response.worker_id) if sidecar else None
            figures, mask = self._worker_on_object(response, consensus, object_map, side, gold)
            if figures.note:
                notes.append(f"{response.worker_id}: {figures.note}")
            elif mask is not None and response.worker_id not in masks:
                masks[response.worker_id] = mask
            out.append(figures)
        seen = {w.worker_id for w in out}
        for side in sidecar.workers if sidecar else ():  # sidecar-only workers (responses not available)
            if side.worker_id not in seen:
                out.append(WorkerOnObject(side.worker_id, side.agreement, side.quality, None))
                seen.add(side.worker_id)
        return out, masks

    def _worker_on_object(self, response: WorkerResponse, consensus: np.ndarray, object_map: ClassMap,
                          side: SidecarWorker | None,
                          gold: bool) -> tuple[WorkerOnObject, tuple[np.ndarray, ClassMap] | None]:  # fmt: skip
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
            return WorkerOnObject(response.worker_id, None, None, response.time_spent_seconds,
                                  note=f"not usable: {exc}"), None  # fmt: skip
        agreement = pixel_agreement(decoded.indices, consensus)
        quality = side.quality if side is not None else None
        if quality is None:
            quality = cohen_kappa(decoded.indices, consensus, len(decode_map))
        figures = WorkerOnObject(response.worker_id, agreement, float(quality), response.time_spent_seconds)
        if gold:  # the consensus of a gold object is its known mask
            figures.gold_iou = mean_iou(decoded.indices, consensus, len(decode_map))
        return figures, (decoded.indices, decode_map)

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


def _jpeg(photo: np.ndarray, size: tuple[int, int]) -> bytes:
    image = Image.fromarray(photo)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def review_selection(records: list[ObjectFigures], below: float, limit: int) -> list[ObjectFigures]:
    """The objects to review, worst first: confidence below ``below``, and every object nothing
    cross-checked (fewer than two trusted workers, or no consensus); at most ``limit``."""
    chosen = [
        o for o in records if (o.confidence is not None and o.confidence < below) or not o.trust.cross_checked
    ]
    return sorted(chosen, key=lambda o: (o.review_score, o.line))[:limit]


def build_report(
    manifest: str,
    out_html: str | Path,
    *,
    label_attribute: str | None = None,
    job_prefix: str | None = None,
    lowest: int = DEFAULT_LOWEST,
    max_side: int = DEFAULT_MAX_SIDE,
    review_below: float = DEFAULT_REVIEW_BELOW,
    data: JobData | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> ReportSummary:
    """Write ``out_html``, its ``<stem>_files/`` folder, ``<stem>-review.manifest`` (at most
    ``lowest`` objects with a confidence below ``review_below``, or not cross-checked) and
    ``<stem>-review-job.json`` (an adjustment job's spec for them). Everything is staged and moved
    into place at the end; existing files of these names are refused unless ``force``."""
    if lowest < 1:
        raise ToolError(f"--lowest must be at least 1, got {lowest}")
    if not 0.0 < review_below <= 1.0:
        raise ToolError(f"--review-below must be within 0..1 (more than 0), got {review_below}")
    data = data or JobData()
    out_path = Path(out_html)
    if out_path.is_dir():
        raise ToolError(f"--out {out_path} is a folder; name the HTML file, e.g. {out_path / 'report.html'}")
    if out_path.parent.exists() and not out_path.parent.is_dir():
        raise ToolError(f"cannot create the folder for {out_path}: {out_path.parent} is a file")
    if not data.exists(manifest):
        raise ToolError(f"no manifest at {manifest}")
    stem = out_path.stem
    entries = [out_path.name, f"{stem}_files", f"{stem}-review.manifest", f"{stem}-review-job.json"]
    folder = out_path.parent
    summary = ReportSummary(
        html=str(out_path),
        files_dir=str(folder / entries[1]),
        review_manifest=str(folder / entries[2]),
        review_spec=str(folder / entries[3]),
    )
    with staged_output(folder, force=force, entries=entries) as staging:
        builder = _ReportBuilder(manifest, out_path, staging, data, label_attribute, job_prefix, max_side)
        total = data.count_lines(manifest)
        lines = 0
        for done, item in enumerate(parse_manifest(data.iter_lines(manifest)), start=1):
            lines += 1
            if isinstance(item, ManifestError):
                summary.errors.append(manifest_error_problem(item))
            else:
                builder.add_line(item, summary)
            if progress:
                progress(done, total)
        if lines == 0:
            raise ToolError(f"{manifest} has no lines: nothing to report")
        objects = [r.figures for r in builder.records]
        selected = review_selection(objects, review_below, lowest)
        by_id = {r.figures.object_id: r for r in builder.records}
        with open(staging / entries[2], "w", encoding="utf-8") as handle:
            for o in selected:
                handle.write(dump_manifest_line(by_id[o.object_id].review_line))
        page = report_page(builder, summary, manifest, selected, review_below)
        (staging / entries[3]).write_text(json.dumps(page.review.spec, indent=2) + "\n", encoding="utf-8")
        summary.objects = len(objects)
        summary.workers = sorted(builder.workers)
        summary.lowest = [o.object_id for o in selected]
        summary.job_prefix = builder.job_prefix
        summary.notes = list(builder.problems)
        (staging / out_path.name).write_text(render_html(page), encoding="utf-8")
        builder.files_dir.mkdir(parents=True, exist_ok=True)
    return summary


# --------------------------------------------------------------------------- the page
# ``tools/templates/report.html.liquid`` lays out a ReportPage: every figure arrives formatted
# (n/a with its reason), the rows of every table are static HTML (readable without scripts), and
# one JSON block carries what the page's script needs (layers, per-object workers, review lines).


@dataclass(frozen=True)
class Figure:
    """A formatted figure and the number it sorts by (None sorts last)."""

    text: str
    value: float | None
    note: str = ""  # why it is n/a, shown as a tooltip


@dataclass(frozen=True)
class SummaryView:
    objects: int
    failed: int
    not_readable: int
    workers: int
    excluded_workers: int
    mean_confidence: Figure
    mean_agreement: Figure
    to_review: int


@dataclass(frozen=True)
class ClassRow:
    name: str
    color: str
    area: str
    objects: int
    confidence: Figure


@dataclass(frozen=True)
class WorkerRow:
    worker_id: str
    key: str  # a safe id for the page (worker ids may hold any character)
    objects: int
    agreement: Figure
    quality: Figure
    gold_iou: Figure
    mean_time: Figure
    total_time: Figure
    unusable: int
    excluded: str  # "all 8", "3 of 8", "" (never)
    untrusted: bool


@dataclass(frozen=True)
class ObjectRow:
    object_id: str
    name: str
    line: int
    thumbnail: str
    confidence: Figure
    agreement: Figure
    trusted: str
    failures: int
    gold_iou: Figure
    classes: str
    selected: bool  # in the command's review selection
    problems: bool
    workers: str  # the worker keys that answered it, space-separated (the worker filter)


@dataclass(frozen=True)
class ReviewView:
    manifest_name: str
    manifest_href: str
    spec_name: str
    spec_href: str
    below: float
    limit: int
    spec: dict[str, Any]
    manifest_folder: str  # where the spec expects the manifest in S3 (the page lets one change it)


@dataclass(frozen=True)
class ReportPage:
    manifest: str
    job_prefix: str | None
    job_name: str
    generated: str
    summary: SummaryView
    classes: list[ClassRow]
    workers: list[WorkerRow]
    review: ReviewView
    problems: list[str]
    objects: list[ObjectRow]
    has_gold: bool
    heat_scale: str  # the CSS gradient of the heatmap's colour scale
    data_json: str  # the page script's data, safe inside <script type="application/json">


def _pct(value: float | None, note: str = "") -> Figure:
    return Figure("n/a" if value is None else f"{100 * value:.1f}%", value, note)


def _num(value: float | None, digits: int = 3, note: str = "", unit: str = "") -> Figure:
    return Figure("n/a" if value is None else f"{value:.{digits}f}{unit}", value, note)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _script_json(value: Any) -> str:
    """JSON that cannot end its <script> element or open a comment inside it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _review_spec(builder: _ReportBuilder, manifest_uri: str) -> dict[str, Any]:
    """An adjustment job of the selected objects (docs/launcher.md, Adjustment jobs): the prior is the
    review manifest, its masks the workers' starting point; labels come from its colour maps."""
    job = builder.job_name or "labeling-job"
    name = f"{job[:52]}-review-1"
    prior: dict[str, Any] = {"manifestUri": manifest_uri}
    if builder.label_attribute:
        prior["labelAttributeName"] = builder.label_attribute
    return {
        "jobName": name,
        "prior": prior,
        "labelAttributeName": f"{name}-ref",
        "title": "Correct the masks",
        "description": "Fix the mask of each picture: repaint what is wrong, keep what is right.",
        "workersPerObject": 1,
    }


def report_page(builder: _ReportBuilder, summary: ReportSummary, manifest: str,
                selected: list[ObjectFigures], review_below: float) -> ReportPage:  # fmt: skip
    objects = [r.figures for r in builder.records]
    total_pixels = sum(c.pixels for c in builder.classes.values()) or 1
    selected_ids = {o.object_id for o in selected}
    keys = {w: f"w{i}" for i, w in enumerate(sorted(builder.workers))}
    review_name = Path(summary.review_manifest).name
    spec_name = Path(summary.review_spec).name
    manifest_folder = f"{(builder.remote_job_prefix or 's3://YOUR-BUCKET').rstrip('/')}/review"
    manifest_uri = f"{manifest_folder}/{review_name}"
    confidences = [o.confidence for o in objects if o.confidence is not None]
    not_estimated = sum(1 for o in objects if o.confidence is None and o.confidence_note)
    has_gold = any(o.gold for o in objects)
    worker_rows = []
    for w in sorted(builder.workers.values(), key=lambda w: (w.agreement is None, w.agreement or 0.0)):
        why = w.why_no_figure()
        excluded = (
            ""
            if not w.excluded_on
            else ("all " + str(w.objects) if w.untrusted else f"{w.excluded_on} of {w.objects}")
        )
        worker_rows.append(
            WorkerRow(
                worker_id=w.worker_id,
                key=keys[w.worker_id],
                objects=w.objects,
                agreement=_pct(w.agreement, why),
                quality=_num(w.quality, note=why),
                gold_iou=_num(w.gold_iou, note="labelled no gold object"),
                mean_time=_num(w.mean_time, 1, note="no time recorded", unit=" s"),
                total_time=_num(w.time_sum if w.time_n else None, 0, note="no time recorded", unit=" s"),
                unusable=w.rejected,
                excluded=excluded,
                untrusted=w.untrusted,
            )
        )
    rows = [
        ObjectRow(
            object_id=o.object_id,
            name=o.name,
            line=o.line,
            thumbnail=o.thumbnail,
            confidence=_num(o.confidence, note=o.confidence_note),
            agreement=_pct(
                o.agreement, o.trust.why_not or ("no worker answers" if o.agreement is None else "")
            ),
            trusted="?" if o.trust.trusted is None else f"{o.trust.trusted} of {len(o.workers)}",
            failures=o.failures,
            gold_iou=_num(o.gold_iou, note="not a gold object"),
            classes=", ".join(o.classes) or "background only",
            selected=o.object_id in selected_ids,
            problems=bool(o.failures or o.notes),
            workers=" ".join(keys[w.worker_id] for w in o.workers),
        )
        for o in objects
    ]
    review = ReviewView(
        manifest_name=review_name,
        manifest_href=quote(review_name),
        spec_name=spec_name,
        spec_href=quote(spec_name),
        below=review_below,
        limit=len(selected),
        spec=_review_spec(builder, manifest_uri),
        manifest_folder=manifest_folder,
    )
    data = {
        "reviewBelow": review_below,
        "spec": review.spec,
        "manifestFolder": manifest_folder,
        "reviewName": review_name,
        "specName": spec_name,
        "workers": {
            keys[w]: {"id": w, "untrusted": f.untrusted, "excludedOn": f.excluded_on, "answers": f.objects}
            for w, f in builder.workers.items()
        },
        "objects": [
            {
                "id": o.object_id,
                "name": o.name,
                "line": o.line,
                "width": o.width,
                "height": o.height,
                "photo": o.photo,
                "mask": o.mask_layer,
                "heatmap": o.heatmap,
                "heatmapWorkers": o.heatmap_workers,
                "excludedCount": len(o.trust.excluded),
                "confidence": _num(o.confidence, note=o.confidence_note).text,
                "confidenceValue": o.confidence,
                "confidenceNote": o.confidence_note,
                "crossChecked": o.trust.cross_checked,
                "agreement": _pct(o.agreement).text,
                "method": o.method,
                "classes": [
                    {"name": n, "color": c}
                    for n, c in zip(builder.reconciler.names, builder.reconciler.colors, strict=True)
                    if n in o.classes
                ],
                "links": o.links,
                "notes": o.notes,
                "sourceRef": o.source_ref,
                "workers": [
                    {
                        "key": keys[w.worker_id],
                        "id": w.worker_id,
                        "agreement": _pct(w.agreement).text,
                        "quality": _num(w.quality).text,
                        "time": _num(w.time_spent, 1, unit=" s").text,
                        "goldIou": _num(w.gold_iou).text if w.gold_iou is not None else None,
                        "excluded": w.excluded,
                        "weight": None if w.weight is None else round(w.weight, 3),
                        "note": w.note,
                        "mask": w.mask_file,
                    }
                    for w in o.workers
                ],
                "review": json.dumps(r.review_line, ensure_ascii=False, separators=(",", ":")),
            }
            for r in builder.records
            for o in [r.figures]
        ],
    }
    heat_scale = ", ".join(f"{color} {100 * stop:.0f}%" for stop, color in HEAT_STOPS)
    return ReportPage(
        manifest=manifest,
        job_prefix=builder.job_prefix,
        job_name=builder.job_name or "",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        summary=SummaryView(
            objects=len(objects),
            failed=len(summary.failed),
            not_readable=len(summary.errors),
            workers=len(builder.workers),
            excluded_workers=sum(1 for w in builder.workers.values() if w.untrusted),
            mean_confidence=_num(
                _mean(confidences),
                note=f"{not_estimated} of {len(objects)} objects have none: not cross-checked (fewer than two "
                "trusted workers, or no consensus)"
                if not_estimated
                else "",
            ),
            mean_agreement=_pct(
                _mean([o.agreement for o in objects if o.agreement is not None]),
                note="no object was cross-checked"
                if objects and all(o.agreement is None for o in objects)
                else "",
            ),
            to_review=len(selected),
        ),
        classes=[
            ClassRow(
                name=c.name,
                color=c.color,
                area=f"{100 * c.pixels / total_pixels:.1f}%",
                objects=c.objects,
                confidence=_num(
                    c.confidence_sum / c.confidence_n if c.confidence_n else None,
                    note=f"not estimated on {c.not_estimated} of {c.objects} objects (not cross-checked)"
                    if c.not_estimated
                    else "",
                ),
            )
            for c in sorted(builder.classes.values(), key=lambda c: builder.reconciler.names.index(c.name))
        ],
        workers=worker_rows,
        review=review,
        problems=[
            *(f"failed in the job: {p}" for p in summary.failed),
            *(f"not readable: {p}" for p in summary.errors),
            *builder.problems,
            *(
                f"class {n!r} has several colours across objects ({', '.join(c)}); shown in the first"
                for n, c in builder.reconciler.color_conflicts().items()
            ),
        ],
        objects=rows,
        has_gold=has_gold,
        heat_scale=heat_scale,
        data_json=_script_json(data),
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


def render_html(page: ReportPage) -> str:
    # Liquid reads values by key, not by attribute: the page goes in as plain dicts and lists.
    values = asdict(page)
    values["data_json"] = liquid.Markup(page.data_json)  # already safe inside its script element
    return _template().render(**values)


def summary_json(summary: ReportSummary) -> str:
    return json.dumps(
        {
            "html": summary.html,
            "objects": summary.objects,
            "failed": len(summary.failed),
            "errors": len(summary.errors),
            "workers": len(summary.workers),
            "review-manifest": summary.review_manifest,
            "review-job-spec": summary.review_spec,
            "review": summary.lowest,
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
