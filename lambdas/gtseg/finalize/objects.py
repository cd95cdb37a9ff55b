"""One manifest line finalized: its built-in form, its dataset files and its records.

For a labelled object (``<lan>`` = its mask): the sidecar next to the mask gives the colour map
Ground Truth dropped and the figures (confidence, method, each worker's agreement and quality,
adjustment status); the mask is read in the plan's classes and written as ``gtseg export``'s
index layout does (``masks/<stem>.png`` index image, ``previews/<stem>.png`` palette image,
``images/<stem><ext>`` the image), plus its COCO records (one run-length-encoded annotation per
class present; image id = line index + 1, annotation id = image id x 256 + class index, so no
batch needs another's numbering).

For an object the job gave no label: the built-in failure form, with the reason from the
metadata or the object's sidecar. A line that cannot be finalized (no colour map anywhere, a
mask that does not read, a class outside the plan's) is kept as it was and reported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gtseg.core.builtin_output import COLOR_MAP_KEY, builtin_line
from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.layout import dataset_object_id_from_mask, object_key
from gtseg.core.manifest import dump_manifest_line, metadata_key
from gtseg.core.masks import MaskError, encode_index_png, mask_to_png, read_class_mask
from gtseg.core.sidecar import ConsolidationSidecar
from gtseg.finalize import parts
from gtseg.finalize.models import FinalizePlan, MapItem, ObjectFigures, WorkerFigures
from gtseg.finalize.plan import failed_attribute, stem_and_ext, stem_hash
from gtseg.tools.class_maps import parse_color_map
from gtseg.tools.export import mask_bbox, rle_encode, split_for
from gtseg.tools.images import ImagePairError, orientation_for, upright_image_bytes
from gtseg.tools.jobdata import JobData, JobDataError, join_ref, parent_ref, read_sidecar

DATASET_DIR = "dataset"


def dataset_ref(plan: FinalizePlan, *parts_: str) -> str:
    return join_ref(plan.out, DATASET_DIR, *parts_)


@dataclass
class ObjectRecords:
    """Everything one line contributes to the part file, in record order."""

    records: list[str] = field(default_factory=list)
    figures: ObjectFigures | None = None

    def add(self, kind: str, payload: Any) -> None:
        # gtseg export's JSON style (default separators), so both write the same rows
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self.records.append(parts.record(kind, text))


class _ObjectProblem(ValueError):
    """This line cannot be finalized; the line is kept as it was."""


@dataclass(frozen=True)
class ObjectContext:
    """What every object of a batch shares: the plan, its class map, the job data."""

    plan: FinalizePlan
    data: JobData
    class_map: ClassMap
    colliding: frozenset[int]

    @classmethod
    def of(cls, plan: FinalizePlan, data: JobData) -> ObjectContext:
        return cls(plan, data, plan.class_map(), frozenset(int(h, 16) for h in plan.colliding_stems))

    @property
    def base(self) -> str:
        return parent_ref(self.plan.manifest)


def finalize_object(context: ObjectContext, item: MapItem) -> ObjectRecords:
    """The records of one line; never raises for a problem of this line (it is reported)."""
    out = ObjectRecords()
    if item.line is None:
        text = (item.text or "").replace("\r", " ").replace("\n", " ").strip()
        out.add(parts.MANIFEST, text)
        out.figures = ObjectFigures(
            index=item.index, line=item.line_number, status="error", reason=item.error or "not a JSON object"
        )
        out.add(parts.FIGURES, out.figures.model_dump(mode="json"))
        return out
    line = item.line
    lan = context.plan.label_attribute
    try:
        if isinstance(line.get(lan), str):
            _labelled(context, item, line, out)
        elif metadata_key(lan) in line or failed_attribute(line) == lan:
            _failed(context, item, line, out)
        else:
            raise _ObjectProblem(f"no {lan!r} label and no {metadata_key(lan)!r} on this line")
    except (_ObjectProblem, JobDataError, LabelError, MaskError, ImagePairError, ValueError) as exc:
        out = ObjectRecords()
        out.add(parts.MANIFEST, dump_manifest_line(line).rstrip("\n"))
        out.figures = ObjectFigures(
            index=item.index, line=item.line_number, status="error", source_ref=_source(line), reason=str(exc)
        )
    out.add(parts.FIGURES, out.figures.model_dump(mode="json") if out.figures else {})
    return out


def _source(line: dict[str, Any]) -> str | None:
    value = line.get("source-ref")
    return value if isinstance(value, str) else None


def _stem(context: ObjectContext, item: MapItem, key: str) -> tuple[str, str]:
    stem, ext = stem_and_ext(key)
    stem = stem or f"line-{item.line_number}"
    if stem_hash(stem) in context.colliding:
        # two lines would share this name: each gets a hash of its own line (stable across runs)
        stem = f"{stem}-{hashlib.sha1(f'{key}#{item.index}'.encode()).hexdigest()[:8]}"
    return stem, ext


def _workers(sidecar: ConsolidationSidecar | None) -> list[WorkerFigures]:
    if sidecar is None:
        return []
    return [
        WorkerFigures(id=w.worker_id, agreement=w.agreement, quality=w.quality, excluded=w.excluded)
        for w in sidecar.workers
    ]


def _labelled(context: ObjectContext, item: MapItem, line: dict[str, Any], out: ObjectRecords) -> None:
    plan, data = context.plan, context.data
    lan = plan.label_attribute
    mask_ref = line[lan]
    mask_where = data.resolve(mask_ref, context.base)
    sidecar = read_sidecar(data, mask_where)
    built = builtin_line(line, lan, sidecar=sidecar, job_name=plan.job_name)
    meta = built[metadata_key(lan)]
    object_map = parse_color_map(meta[COLOR_MAP_KEY])
    unknown = [n for n in object_map.names if n not in context.class_map.names]
    if unknown:
        raise _ObjectProblem(
            f"classes {unknown} are not among the job's classes {list(context.class_map.labels)}"
        )
    lut = np.array([context.class_map.names.index(n) for n in object_map.names], dtype=np.uint8)
    indices = lut[read_class_mask(data.read_bytes(mask_where), object_map)]
    source = _source(line)
    image_bytes = None
    if plan.copy_images:
        if source is None:
            raise _ObjectProblem("no source-ref to copy the image from")
        # as gtseg export does: the image upright, the mask turned to match (tools.images)
        image_bytes = data.read_bytes(data.resolve(source, context.base))
        orientation = orientation_for(image_bytes, indices.shape)
        image_bytes = upright_image_bytes(image_bytes, orientation)
        indices = orientation.upright_mask(indices)
    key = source or mask_ref
    stem, ext = _stem(context, item, key)
    ext = ext if source else ".png"
    split = split_for(key, plan.val_fraction)
    image_rel = f"images/{stem}{ext}"
    if image_bytes is not None:
        data.write_bytes(dataset_ref(plan, image_rel), image_bytes, _image_type(ext))
    image_entry = image_rel if plan.copy_images else (source or "")
    mask_rel, preview_rel = f"masks/{stem}.png", f"previews/{stem}.png"
    data.write_bytes(dataset_ref(plan, mask_rel), mask_to_png(indices), "image/png")
    data.write_bytes(
        dataset_ref(plan, preview_rel),
        encode_index_png(indices, context.class_map, compress_level=1),
        "image/png",
    )

    out.add(parts.MANIFEST, dump_manifest_line(built).rstrip("\n"))
    out.add(parts.INDEX_ROW, {"stem": stem, "split": split, "line": item.line_number, "source-ref": source,
                              "preview": preview_rel, "image": image_entry, "mask": mask_rel})  # fmt: skip
    out.add(parts.SPLIT[split], stem)
    image_id = item.index + 1
    height, width = indices.shape
    out.add(
        parts.COCO_IMAGE[split],
        # as gtseg export writes it: relative to images/ (the original URI when images are not copied)
        {
            "id": image_id,
            "file_name": image_entry.removeprefix("images/"),
            "height": int(height),
            "width": int(width),
        },
    )
    counts = np.bincount(indices.ravel(), minlength=len(context.class_map))
    for class_index in np.flatnonzero(counts):
        if class_index == 0:
            continue
        binary = indices == class_index
        out.add(parts.COCO_ANNOTATION[split], {
            "id": image_id * 256 + int(class_index), "image_id": image_id, "category_id": int(class_index),
            "segmentation": rle_encode(binary), "area": int(counts[class_index]), "bbox": mask_bbox(binary),
            # semantic (stuff-style) masks: iscrowd 0, so trainers do not ignore them
            "iscrowd": 0,
        })  # fmt: skip
    first: dict[str, Any] = next(iter(meta[COLOR_MAP_KEY].values()), {})
    confidence = sidecar.image_confidence if sidecar is not None else first.get("confidence")
    out.figures = ObjectFigures(
        index=item.index,
        line=item.line_number,
        status="labeled",
        id=dataset_object_id_from_mask(mask_ref)
        or (sidecar.dataset_object_id if sidecar else None)
        or str(item.index),
        source_ref=source,
        stem=stem,
        split=split,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        method=str(sidecar.method) if sidecar is not None and sidecar.method else None,
        classes={context.class_map.names[i]: int(counts[i]) for i in np.flatnonzero(counts)},
        workers=_workers(sidecar),
        adjustment=meta.get("adjustment-status"),
    )


def _failed(context: ObjectContext, item: MapItem, line: dict[str, Any], out: ObjectRecords) -> None:
    """An object the job gave no label: the built-in failure form, its reason from the metadata
    or from its sidecar (``<iteration>/<datasetObjectId>.json``; Ground Truth numbers objects by
    input line, from 0)."""
    plan, data = context.plan, context.data
    object_id = str(item.index)
    sidecar = None
    for folder in plan.sidecar_folders:
        sidecar = read_sidecar(data, join_ref(folder, f"{object_key(object_id)}.png"))
        if sidecar is not None:
            break
    built = builtin_line(line, plan.label_attribute, sidecar=sidecar, job_name=plan.job_name)
    meta = built[metadata_key(plan.label_attribute)]
    out.add(parts.MANIFEST, dump_manifest_line(built).rstrip("\n"))
    out.figures = ObjectFigures(
        index=item.index,
        line=item.line_number,
        status="failed",
        id=object_id,
        source_ref=_source(line),
        workers=_workers(sidecar),
        adjustment=meta.get("adjustment-status"),
        reason=meta.get("failure-reason"),
    )


def _image_type(ext: str) -> str:
    return {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        ext, "application/octet-stream"
    )
