"""``gtseg export``: an output manifest -> a training-ready segmentation dataset.

Works for gtseg jobs and Ground Truth's built-in semantic-segmentation jobs alike: each line
carries ``<lan>`` (the consolidated PNG) and ``<lan>-metadata.internal-color-map`` (that object's
index -> class-name/hex-color). Colour maps may differ between objects (indices drift, colours
change), so they are reconciled **by class name** into one stable class map for the whole export:
the first map seen fixes the order, a class that appears later is appended, a name seen with a
different colour keeps its first colour (names win, the difference is reported), and one colour
used by two names within one object is an error for that object only.

The manifest is streamed line by line; a line that cannot be exported (missing PNG, conflicting
map, no label) is reported with its line number while the rest is still exported.

Formats (every format also writes ``labels.json``, ``previews/`` and ``splits/{train,val}.txt``):
  index       images/, masks/ (8-bit single channel, pixel = class index), index.jsonl
  voc         VOCdevkit/VOC2012/: JPEGImages/ (.jpg), SegmentationClass/ (palette PNG in the VOC
              palette, pixel = class index), ImageSets/Segmentation/{train,val}.txt (the layout
              torchvision's VOCSegmentation reads)
  cityscapes  leftImg8bit/<split>/gtseg/<stem>_leftImg8bit.png,
              gtFine/<split>/gtseg/<stem>_gtFine_labelIds.png and _gtFine_color.png
  coco        images/, annotations/{train,val}.json with one uncompressed-RLE annotation per
              class per image (category id = class index; background is not annotated;
              file_name relative to images/)

The dataset is written into a staging folder and moved to ``out_dir`` at the end (tools/output.py):
an existing non-empty ``out_dir`` is refused unless ``force``, and an interrupted export leaves
nothing. Every image is written upright with its mask turned to match (tools/images.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from gtseg.core.labels import (
    ClassMap,
    LabelError,
    labels_json,
)
from gtseg.core.layout import ref_basename
from gtseg.core.manifest import (
    ManifestError,
    ManifestLine,
    parse_manifest,
    safe_filename,
)
from gtseg.core.masks import MaskError, encode_index_png, indices_to_rgb, mask_to_png, read_class_mask
from gtseg.tools.class_maps import MAX_CLASSES, ClassReconciler, parse_color_map
from gtseg.tools.errors import ToolError
from gtseg.tools.images import ImagePairError, orientation_for, upright_image_bytes
from gtseg.tools.jobdata import (
    JobData,
    JobDataError,
    ProgressCallback,
    is_s3,
    parent_ref,
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

FORMATS = ("index", "voc", "cityscapes", "coco")
DEFAULT_VAL_FRACTION = 0.2
VOC_ROOT = "VOCdevkit/VOC2012"  # where VOC loaders (torchvision's VOCSegmentation) look under their root
VOC_VOID = 255  # VOC's "void" index (object borders, unlabelled): never written, its colour kept


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (the devkit's ``labelcolormap``): 256 RGB triples, entry i built
    from the bits of i (0 = black, 1 = (128, 0, 0), 2 = (0, 128, 0), ..., 255 = (224, 224, 192))."""
    palette: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return palette


# --------------------------------------------------------------------------- COCO RLE


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Binary (H, W) mask -> COCO uncompressed RLE ``{"size": [H, W], "counts": [...]}``.

    Counts are run lengths over the mask in column-major (Fortran) order, starting with a run
    of zeros (which may be 0), exactly as pycocotools' ``frPyObjects`` expects.
    """
    if mask.ndim != 2:
        raise ValueError("rle_encode needs a 2-D mask")
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return {"size": [int(height), int(width)], "counts": [0]}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return {"size": [int(height), int(width)], "counts": [int(r) for r in runs]}


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO uncompressed RLE -> binary (H, W) mask (the inverse of ``rle_encode``)."""
    height, width = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, not {height}x{width}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO bbox ``[x, y, width, height]`` of a binary mask ([0, 0, 0, 0] when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


# --------------------------------------------------------------------------- splits and names


def split_for(key: str, val_fraction: float) -> str:
    """Deterministic train/val assignment from a hash of ``key`` (normally the source-ref):
    the same image lands in the same split in every export, whatever the manifest order."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


class StemAllocator:
    """Unique, filesystem-safe file stems from source-refs (or mask names)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def allocate(self, key: str, wanted: str) -> str:
        stem = safe_filename(wanted)
        if stem.lower() in self._used:  # case-insensitive filesystems too
            stem = f"{stem}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}"
            n = 1
            base = stem
            while stem.lower() in self._used:
                n += 1
                stem = f"{base}-{n}"
        self._used.add(stem.lower())
        return stem


def _stem_and_ext(ref: str) -> tuple[str, str]:
    name = PurePosixPath(ref_basename(ref).replace("\\", "/")).name
    path = PurePosixPath(name)
    suffix = path.suffix.lower()
    if not suffix or len(suffix) > 6:
        return name, ""
    return path.stem, "." + safe_filename(suffix[1:])


# --------------------------------------------------------------------------- writers


@dataclass
class ExportedObject:
    line: int
    stem: str
    split: str
    source_ref: str | None
    mask_ref: str
    indices: np.ndarray  # (H, W) uint8 export class indices
    image_bytes: bytes | None  # None with --no-copy-images
    image_ext: str


class DatasetWriter:
    """Writes one format's layout. Subclasses add their files; this one writes what all share."""

    def __init__(self, out: Path, copy_images: bool) -> None:
        self.out = out
        self.copy_images = copy_images
        self._split_files: dict[str, Any] = {}

    def _write(self, rel: str, data: bytes) -> str:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return rel

    def _split_line(self, split: str, text: str) -> None:
        handle = self._split_files.get(split)
        if handle is None:
            (self.out / "splits").mkdir(parents=True, exist_ok=True)
            handle = self._split_files[split] = open(  # noqa: SIM115 - kept open across objects, closed in finish()
                self.out / "splits" / f"{split}.txt", "w", encoding="utf-8"
            )
        handle.write(text + "\n")

    def write(self, obj: ExportedObject, class_map: ClassMap) -> dict[str, Any]:
        # a palette PNG shows the class colours in any viewer and encodes ~3x faster than RGB
        preview = self._write(
            f"previews/{obj.stem}.png", encode_index_png(obj.indices, class_map, compress_level=1)
        )
        self._split_line(obj.split, obj.stem)
        return {"preview": preview}

    def finish(self, class_map: ClassMap) -> None:
        for handle in self._split_files.values():
            handle.close()
        for split in ("train", "val"):  # both files exist even when a split is empty
            path = self.out / "splits" / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def image_entry(self, obj: ExportedObject, rel: str) -> str:
        """Copy the image to ``rel`` or, with --no-copy-images, reference the original."""
        if obj.image_bytes is None:
            return obj.source_ref or ""
        return self._write(rel, obj.image_bytes)


class IndexWriter(DatasetWriter):
    def __init__(self, out: Path, copy_images: bool) -> None:
        super().__init__(out, copy_images)
        self._index = open(out / "index.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()

    def write(self, obj: ExportedObject, class_map: ClassMap) -> dict[str, Any]:
        files = super().write(obj, class_map)
        files["image"] = self.image_entry(obj, f"images/{obj.stem}{obj.image_ext}")
        files["mask"] = self._write(f"masks/{obj.stem}.png", mask_to_png(obj.indices))
        row = {"stem": obj.stem, "split": obj.split, "line": obj.line, "source-ref": obj.source_ref, **files}
        self._index.write(json.dumps(row, ensure_ascii=False) + "\n")
        return files

    def finish(self, class_map: ClassMap) -> None:
        self._index.close()
        super().finish(class_map)


class VocWriter(DatasetWriter):
    """PASCAL VOC 2012's layout under ``VOCdevkit/VOC2012/``: masks are palette PNGs in VOC's own
    palette (pixel = class index), as the devkit and torchvision's VOCSegmentation read them."""

    def write(self, obj: ExportedObject, class_map: ClassMap) -> dict[str, Any]:
        files = super().write(obj, class_map)
        image = obj
        if obj.image_bytes is not None and obj.image_ext != ".jpg":
            # VOC loaders open JPEGImages/<id>.jpg: re-encode other formats (and name .jpeg files .jpg)
            data = obj.image_bytes if obj.image_ext == ".jpeg" else _to_jpeg(obj.image_bytes)
            image = dataclasses.replace(obj, image_bytes=data, image_ext=".jpg")
        files["image"] = self.image_entry(image, f"{VOC_ROOT}/JPEGImages/{obj.stem}.jpg")
        files["mask"] = self._write(f"{VOC_ROOT}/SegmentationClass/{obj.stem}.png", _voc_png(obj.indices))
        return files

    def finish(self, class_map: ClassMap) -> None:
        super().finish(class_map)
        sets = self.out / VOC_ROOT / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            shutil.copyfile(self.out / "splits" / f"{split}.txt", sets / f"{split}.txt")
        # VOC's trainval.txt: both splits
        with open(sets / "trainval.txt", "w", encoding="utf-8") as both:
            for split in ("train", "val"):
                both.write((self.out / "splits" / f"{split}.txt").read_text(encoding="utf-8"))
        (self.out / VOC_ROOT / "labels.txt").write_text(
            "".join(f"{i} {name}\n" for i, name in enumerate(class_map.names)), encoding="utf-8"
        )


class CityscapesWriter(DatasetWriter):
    CITY = "gtseg"  # Cityscapes groups images by city; one folder holds them all

    def write(self, obj: ExportedObject, class_map: ClassMap) -> dict[str, Any]:
        files = super().write(obj, class_map)
        base = f"{obj.split}/{self.CITY}/{obj.stem}"
        image = obj
        if obj.image_bytes is not None and obj.image_ext != ".png":
            # Cityscapes tooling expects *_leftImg8bit.png: re-encode (lossless from here on)
            image = dataclasses.replace(obj, image_bytes=_to_png(obj.image_bytes), image_ext=".png")
        files["image"] = self.image_entry(image, f"leftImg8bit/{base}_leftImg8bit.png")
        files["mask"] = self._write(f"gtFine/{base}_gtFine_labelIds.png", mask_to_png(obj.indices))
        files["color"] = self._write(
            f"gtFine/{base}_gtFine_color.png", mask_to_png(indices_to_rgb(obj.indices, class_map))
        )
        return files


class CocoWriter(DatasetWriter):
    """COCO JSON per split, assembled at the end from line-per-record temporary files, so
    thousands of objects never sit in memory together."""

    def __init__(self, out: Path, copy_images: bool) -> None:
        super().__init__(out, copy_images)
        self._tmp = Path(tempfile.mkdtemp(prefix=".coco-", dir=out))
        self._parts: dict[tuple[str, str], Any] = {}
        self._image_id = 0
        self._annotation_id = 0

    def _part(self, split: str, kind: str) -> Any:
        key = (split, kind)
        if key not in self._parts:
            self._parts[key] = open(self._tmp / f"{split}.{kind}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        return self._parts[key]

    def write(self, obj: ExportedObject, class_map: ClassMap) -> dict[str, Any]:
        files = super().write(obj, class_map)
        files["image"] = self.image_entry(obj, f"images/{obj.stem}{obj.image_ext}")
        self._image_id += 1
        height, width = obj.indices.shape
        image = {
            "id": self._image_id,
            # COCO's file_name is relative to the image folder (images/); with --no-copy-images the URI
            "file_name": files["image"].removeprefix("images/"),
            "height": int(height),
            "width": int(width),
        }
        self._part(obj.split, "images").write(json.dumps(image, ensure_ascii=False) + "\n")
        present = np.flatnonzero(np.bincount(obj.indices.ravel(), minlength=len(class_map)))
        annotations = self._part(obj.split, "annotations")
        for class_index in present:
            if class_index == 0:
                continue
            binary = obj.indices == class_index
            self._annotation_id += 1
            annotation = {
                "id": self._annotation_id,
                "image_id": self._image_id,
                "category_id": int(class_index),
                "segmentation": rle_encode(binary),
                "area": int(binary.sum()),
                "bbox": mask_bbox(binary),
                # semantic (stuff-style) masks: iscrowd 0, so trainers do not ignore them
                "iscrowd": 0,
            }
            annotations.write(json.dumps(annotation) + "\n")
        return files

    def finish(self, class_map: ClassMap) -> None:
        super().finish(class_map)
        for handle in self._parts.values():
            handle.close()
        categories = [
            {"id": i, "name": name, "supercategory": "class", "color": color}
            for i, (name, color) in enumerate(zip(class_map.names, class_map.colors, strict=True))
            if i > 0
        ]
        (self.out / "annotations").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            with open(self.out / "annotations" / f"{split}.json", "w", encoding="utf-8") as out:
                out.write('{"info": {"description": "gtseg export", "version": "1.0"}, "licenses": [],\n')
                out.write(f'"categories": {json.dumps(categories, ensure_ascii=False)},\n')
                for kind in ("images", "annotations"):
                    out.write(f'"{kind}": [')
                    part = self._tmp / f"{split}.{kind}.jsonl"
                    if part.exists():
                        with open(part, encoding="utf-8") as records:
                            for n, record in enumerate(records):
                                out.write(("," if n else "") + "\n" + record.rstrip("\n"))
                    out.write("]" + (",\n" if kind == "images" else "\n"))
                out.write("}\n")
        shutil.rmtree(self._tmp, ignore_errors=True)


WRITERS: dict[str, type[DatasetWriter]] = {
    "index": IndexWriter,
    "voc": VocWriter,
    "cityscapes": CityscapesWriter,
    "coco": CocoWriter,
}


def _voc_png(indices: np.ndarray) -> bytes:
    image = Image.fromarray(indices)
    image.putpalette(voc_palette())
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _to_jpeg(image_bytes: bytes) -> bytes:
    with Image.open(io.BytesIO(image_bytes)) as image:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=95)
        return buf.getvalue()


def _to_png(image_bytes: bytes) -> bytes:
    with Image.open(io.BytesIO(image_bytes)) as image:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()


# --------------------------------------------------------------------------- the export


@dataclass
class ExportSummary:
    manifest: str
    out_dir: str
    format: str
    label_attribute: str | None = None
    lines: int = 0
    exported: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    errors: list[LineProblem] = field(default_factory=list)
    skipped: list[LineProblem] = field(default_factory=list)  # objects the job itself failed
    class_names: list[str] = field(default_factory=list)
    class_pixels: list[int] = field(default_factory=list)
    color_conflicts: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "out-dir": self.out_dir,
            "format": self.format,
            "label-attribute": self.label_attribute,
            "lines": self.lines,
            "exported": self.exported,
            "splits": self.splits,
            "classes": self.class_names,
            "class-pixels": self.class_pixels,
            "color-conflicts": self.color_conflicts,
            "errors": [{"line": p.line, "source-ref": p.source_ref, "reason": p.reason} for p in self.errors],
            "skipped": [
                {"line": p.line, "source-ref": p.source_ref, "reason": p.reason} for p in self.skipped
            ],
        }


def export_dataset(
    manifest: str,
    out_dir: str | Path,
    *,
    fmt: str = "index",
    label_attribute: str | None = None,
    copy_images: bool = True,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    class_map: ClassMap | None = None,
    data: JobData | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> ExportSummary:
    """Export ``manifest`` (local path or s3:// URI) into ``out_dir`` in format ``fmt``.

    ``out_dir`` must be missing or empty unless ``force`` (then it is replaced, once the new
    dataset is complete). A manifest without a single object line is a ToolError."""
    if fmt not in WRITERS:
        raise ToolError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ToolError(f"--val-fraction must be within 0..1, got {val_fraction}")
    data = data or JobData()
    if not data.exists(manifest):  # before anything is written for a mistyped path
        raise ToolError(f"no manifest at {manifest}")
    out = Path(out_dir)
    local_manifest = data.resolve(manifest)
    keep = [] if is_s3(local_manifest) else [Path(local_manifest)]
    with staged_output(out, force=force, keep=keep) as staging:
        summary = _export_into(staging, out, manifest, fmt, label_attribute, copy_images, val_fraction, class_map,
                               data, progress)  # fmt: skip
        if summary.lines == 0:
            raise ToolError(f"{manifest} has no lines: nothing to export")
    return summary


def _export_into(
    out: Path,
    final: Path,
    manifest: str,
    fmt: str,
    label_attribute: str | None,
    copy_images: bool,
    val_fraction: float,
    class_map: ClassMap | None,
    data: JobData,
    progress: ProgressCallback | None,
) -> ExportSummary:
    writer = WRITERS[fmt](out, copy_images)
    reconciler = ClassReconciler(seed=class_map)
    chooser = AttributeChooser(label_attribute)
    stems = StemAllocator()
    base = parent_ref(manifest)
    summary = ExportSummary(
        manifest=manifest, out_dir=str(final), format=fmt, label_attribute=label_attribute
    )
    pixels = np.zeros(MAX_CLASSES, dtype=np.int64)
    total = data.count_lines(manifest)
    for item in parse_manifest(data.iter_lines(manifest)):
        summary.lines += 1
        if isinstance(item, ManifestError):
            summary.errors.append(manifest_error_problem(item))
        else:
            _export_line(item, data, base, manifest, chooser, reconciler, stems, writer, summary, pixels,
                         val_fraction, copy_images)  # fmt: skip
        if progress:
            progress(summary.lines, total)
    final_map = reconciler.class_map()
    writer.finish(final_map)
    summary.label_attribute = chooser.chosen
    summary.class_names = list(final_map.names)
    summary.class_pixels = [int(p) for p in pixels[: len(final_map)]]
    summary.color_conflicts = reconciler.color_conflicts()
    _write_labels_json(out / "labels.json", final_map, summary)
    (out / "export-summary.json").write_text(
        json.dumps(summary.to_dict(), indent=1, ensure_ascii=False) + "\n"
    )
    return summary


def _export_line(
    line: ManifestLine,
    data: JobData,
    base: str,
    manifest: str,
    chooser: AttributeChooser,
    reconciler: ClassReconciler,
    stems: StemAllocator,
    writer: DatasetWriter,
    summary: ExportSummary,
    pixels: np.ndarray,
    val_fraction: float,
    copy_images: bool,
) -> None:
    source_ref = line.source_ref
    attribute = chooser.choose(line)
    if attribute is None:
        reason = failure_reason(line.data, chooser.chosen)
        if reason is not None:
            summary.skipped.append(
                LineProblem(line.number, source_ref, f"the job failed this object: {reason}")
            )
        else:
            wanted = f"'{chooser.chosen}'" if chooser.chosen else "a segmentation label"
            summary.errors.append(
                LineProblem(line.number, source_ref, f"no {wanted} (mask URI + -metadata) on this line")
            )
        return
    mask_ref = line.data[attribute]
    try:
        auto_map_local_job(data, manifest, mask_ref)
        mask_where = data.resolve(mask_ref, base)
        planned = reconciler.plan(parse_color_map(object_color_map(data, line.data, attribute, mask_where)))
        object_indices = read_class_mask(data.read_bytes(mask_where), planned.class_map)
        image_bytes = None
        if copy_images:
            if source_ref is None:
                raise JobDataError("no source-ref to copy the image from (use --no-copy-images)")
            image_bytes = data.read_bytes(data.resolve(source_ref, base))
            # the image upright, the mask turned to match (a loader may or may not honour EXIF)
            orientation = orientation_for(image_bytes, object_indices.shape)
            image_bytes = upright_image_bytes(image_bytes, orientation)
            object_indices = orientation.upright_mask(object_indices)
    except (JobDataError, LabelError, MaskError, ImagePairError, ValueError) as exc:
        summary.errors.append(LineProblem(line.number, source_ref, str(exc)))
        return
    reconciler.commit(planned)
    indices = planned.to_global[object_indices]
    key = source_ref or mask_ref
    stem, ext = _stem_and_ext(source_ref or mask_ref)
    obj = ExportedObject(
        line=line.number,
        stem=stems.allocate(key, stem),
        split=split_for(key, val_fraction),
        source_ref=source_ref,
        mask_ref=mask_ref,
        indices=indices,
        image_bytes=image_bytes,
        image_ext=ext if source_ref else ".png",
    )
    writer.write(obj, reconciler.class_map())
    counts = np.bincount(indices.ravel(), minlength=MAX_CLASSES)
    pixels += counts[:MAX_CLASSES]
    summary.exported += 1
    summary.splits[obj.split] += 1


def _write_labels_json(path: Path, class_map: ClassMap, summary: ExportSummary) -> None:
    text = labels_json(
        class_map,
        summary.label_attribute,
        pixels=[summary.class_pixels[i] for i in range(len(class_map))],
        source_manifest=summary.manifest,
        color_conflicts=summary.color_conflicts,
    )
    path.write_text(text, encoding="utf-8")
