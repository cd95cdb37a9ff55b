"""gtseg export: built-in and gtseg output manifests -> datasets, through the public interface.

Fixtures are built here from synthetic masks in Ground Truth's built-in output format
(P-mode or RGB colour PNGs + internal-color-map), never copied from anywhere.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import boto3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from PIL import Image

from gtseg.cli import main
from gtseg.cli.common import StderrProgress
from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.masks import encode_index_png, indices_to_rgb
from gtseg.tools.class_maps import ClassReconciler, load_class_map_file, parse_color_map
from gtseg.tools.errors import ToolError
from gtseg.tools.export import export_dataset, rle_decode, rle_encode, split_for

LAN = "seg-job-ref"
META = {"type": "groundtruth/semantic-segmentation", "human-annotated": "yes",
        "creation-date": "2024-05-01T12:00:05.562419", "job-name": "labeling-job/seg-job"}  # fmt: skip


def color_map(*classes: tuple[str, str]) -> dict[str, dict]:
    """internal-color-map with BACKGROUND at 0 and ``classes`` (name, colour) at 1..N."""
    entries = [("BACKGROUND", "#ffffff"), *classes]
    return {str(i): {"class-name": n, "hex-color": c, "confidence": 0.5} for i, (n, c) in enumerate(entries)}


def scene_mask(seed: int, classes: int, height: int = 24, width: int = 32) -> np.ndarray:
    """A blocky (H, W) uint8 mask using every class 0..classes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes + 1, size=(height // 8, width // 8), dtype=np.uint8)
    mask = np.kron(coarse, np.ones((8, 8), dtype=np.uint8))
    mask.ravel()[: classes + 1] = np.arange(classes + 1, dtype=np.uint8)  # every class present
    return mask


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


class BuiltInJob:
    """Writes a built-in-style job to a folder: images, consolidated masks, output.manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "images").mkdir(parents=True, exist_ok=True)
        self.mask_dir = root / "seg-job" / "annotations" / "consolidated-annotation" / "output"
        self.mask_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = root / "seg-job" / "manifests" / "output" / "output.manifest"
        self.manifest.parent.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []
        self.truth: dict[str, np.ndarray] = {}  # image name -> mask as class *names* index of cmap

    def add(self, image_name: str, mask: np.ndarray, cmap: dict, *, rgb_png: bool = False,
            write_mask: bool = True, object_id: int | None = None) -> str:  # fmt: skip
        object_id = len(self.lines) if object_id is None else object_id
        image = np.dstack([mask * 20, mask * 10, 255 - mask * 5]).astype(np.uint8)
        (self.root / "images" / image_name).write_bytes(
            png_bytes(image, "JPEG" if image_name.endswith(".jpg") else "PNG")
        )
        # Ground Truth's key has a colon-laden timestamp
        mask_path = self.mask_dir / f"{object_id}_2024-05-01T12:00:0{object_id % 10}.123456.png"
        class_map = (
            ClassMap.from_internal_color_map(cmap)
            if len(set(e["hex-color"] for e in cmap.values())) == len(cmap)
            else None
        )
        if write_mask:
            if rgb_png or class_map is None:
                colors = np.array(
                    [list(bytes.fromhex(cmap[str(i)]["hex-color"][1:])) for i in range(len(cmap))], np.uint8
                )
                mask_path.write_bytes(png_bytes(colors[mask]))
            else:
                mask_path.write_bytes(encode_index_png(mask, class_map))
        line = {"source-ref": str(self.root / "images" / image_name), LAN: str(mask_path),
                f"{LAN}-metadata": {**META, "internal-color-map": cmap}}  # fmt: skip
        self.lines.append(json.dumps(line))
        return str(mask_path)

    def add_raw(self, text: str) -> None:
        self.lines.append(text)

    def write(self) -> Path:
        self.manifest.write_text("".join(line + "\n" for line in self.lines))
        return self.manifest


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


def read_labels(out: Path) -> list[str]:
    return [c["name"] for c in json.loads((out / "labels.json").read_text())["classes"]]


# --------------------------------------------------------------------------- the index format


def test_built_in_manifest_exports_index_masks_previews_images_and_splits(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"), ("dog", "#1f77b4"))
    masks = {f"img{i}.jpg": scene_mask(i, 2) for i in range(6)}
    for name, mask in masks.items():
        job.add(name, mask, cmap)
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out)

    assert summary.exported == 6 and not summary.errors
    assert read_labels(out) == ["BACKGROUND", "cat", "dog"]
    for name, mask in masks.items():
        stem = name[:-4]
        index_mask = read_png(out / "masks" / f"{stem}.png")
        assert index_mask.ndim == 2 and index_mask.dtype == np.uint8
        np.testing.assert_array_equal(index_mask, mask)
        with Image.open(out / "previews" / f"{stem}.png") as image:
            preview = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(preview, indices_to_rgb(mask, ClassMap.from_internal_color_map(cmap)))
        assert (out / "images" / name).read_bytes() == (tmp_path / "in" / "images" / name).read_bytes()
    train = (out / "splits" / "train.txt").read_text().split()
    val = (out / "splits" / "val.txt").read_text().split()
    assert sorted(train + val) == sorted(n[:-4] for n in masks)
    rows = [json.loads(r) for r in (out / "index.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} <= {"train", "val"} and len(rows) == 6
    assert all((out / r["mask"]).exists() and (out / r["image"]).exists() for r in rows)
    pixels = json.loads((out / "labels.json").read_text())["classes"]
    assert sum(c["pixels"] for c in pixels) == sum(m.size for m in masks.values())


def test_rgb_colour_pngs_are_read_by_colour(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("road", "#2ca02c"), ("car", "#1f77b4"), ("person", "#ff7f0e"))
    mask = scene_mask(3, 3)
    job.add("street.png", mask, cmap, rgb_png=True)
    out = tmp_path / "out"
    export_dataset(str(job.write()), out)
    np.testing.assert_array_equal(read_png(out / "masks" / "street.png"), mask)


def test_mixed_colour_maps_are_reconciled_by_name_into_one_stable_map(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    first = scene_mask(1, 2)
    job.add("a.png", first, color_map(("cat", "#2ca02c"), ("dog", "#1f77b4")))
    # indices drift and colours change: dog is now 1 and has cat's old colour; bird is new
    second = scene_mask(2, 2)
    job.add("b.png", second, color_map(("dog", "#2ca02c"), ("bird", "#ff7f0e")))
    # only a subset of the classes, with bird listed first
    third = scene_mask(3, 1)
    job.add("c.png", third, color_map(("bird", "#ff7f0e")))
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out)

    assert read_labels(out) == ["BACKGROUND", "cat", "dog", "bird"]
    np.testing.assert_array_equal(read_png(out / "masks" / "a.png"), first)
    np.testing.assert_array_equal(read_png(out / "masks" / "b.png"), np.array([0, 2, 3], np.uint8)[second])
    np.testing.assert_array_equal(read_png(out / "masks" / "c.png"), np.array([0, 3], np.uint8)[third])
    assert summary.color_conflicts == {"dog": ["#1f77b4", "#2ca02c"]}
    labels = json.loads((out / "labels.json").read_text())
    colors = [c["color"] for c in labels["classes"]]
    assert len(set(colors)) == len(colors)  # previews stay unambiguous


def test_conflicting_colour_map_fails_only_that_object(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    job.add("good1.png", scene_mask(1, 2), color_map(("cat", "#2ca02c"), ("dog", "#1f77b4")))
    job.add("bad.png", scene_mask(2, 2), color_map(("cat", "#2ca02c"), ("dog", "#2ca02c")))
    job.add("good2.png", scene_mask(3, 2), color_map(("cat", "#2ca02c"), ("dog", "#1f77b4")))
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out)

    assert summary.exported == 2
    [error] = summary.errors
    assert error.line == 2 and "bad.png" in str(error)
    assert "#2ca02c" in error.reason and "'cat'" in error.reason and "'dog'" in error.reason
    assert not (out / "masks" / "bad.png").exists()
    assert (out / "masks" / "good2.png").exists()


def test_missing_png_is_an_error_naming_the_line_and_the_rest_is_exported(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"))
    job.add("one.png", scene_mask(1, 1), cmap)
    missing = job.add("two.png", scene_mask(2, 1), cmap, write_mask=False)
    job.add("three.png", scene_mask(3, 1), cmap)
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out)

    assert summary.exported == 2
    [error] = summary.errors
    assert error.line == 2
    assert Path(missing).name in error.reason and "no such file" in error.reason
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["one.png", "three.png"]
    report = json.loads((out / "export-summary.json").read_text())
    assert report["errors"][0]["line"] == 2


def test_keys_with_colons_become_safe_file_names(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"))
    job.add("shot 12:30:01.png", scene_mask(1, 1), cmap)
    job.add("shot 12:30:01.png", scene_mask(2, 1), cmap)  # same name twice: still two files
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out)

    assert summary.exported == 2
    names = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert not [n for n in names if any(ch in n for ch in ':<>"\\|?*')]
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert len(masks) == 2 and masks[0].startswith("shot 12_30_01")


def test_mask_only_lines_without_source_ref_use_the_sanitised_mask_key(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    mask_path = job.add("x.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    line = json.loads(job.lines[0])
    del line["source-ref"]
    job.lines[0] = json.dumps(line)
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out, copy_images=False)
    assert summary.exported == 1
    [mask] = (out / "masks").iterdir()
    assert ":" in Path(mask_path).name and mask.name == Path(mask_path).name.replace(":", "_")


def test_an_empty_manifest_is_an_error_and_writes_nothing(tmp_path, capsys):
    manifest = tmp_path / "output.manifest"
    manifest.write_text("\n")
    out = tmp_path / "out"
    with pytest.raises(ToolError, match="has no lines"):
        export_dataset(str(manifest), out)
    assert not out.exists()
    assert main(["export", str(manifest), "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # one line, no progress line after it
    assert line.startswith("gtseg export: ") and "has no lines" in line


def test_failed_objects_are_skipped_and_bad_lines_reported(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    job.add_raw(
        json.dumps({"source-ref": "s3://b/f.png", f"{LAN}-metadata": {**META, "failure-reason": "expired"}})
    )
    job.add("ok.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    job.add_raw("{not json")
    job.add_raw(json.dumps({"source-ref": "s3://b/unlabelled.png"}))
    summary = export_dataset(str(job.write()), tmp_path / "out")
    assert summary.exported == 1
    assert [(p.line, "expired" in p.reason) for p in summary.skipped] == [(1, True)]
    assert [p.line for p in summary.errors] == [3, 4]
    assert "not valid JSON" in summary.errors[0].reason
    assert f"'{LAN}'" in summary.errors[1].reason


def test_several_label_attributes_need_a_choice(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    mask = scene_mask(1, 1)
    job.add("a.png", mask, color_map(("cat", "#2ca02c")))
    line = json.loads(job.lines[0])
    line["other-ref"] = line[LAN]
    line["other-ref-metadata"] = line[f"{LAN}-metadata"]
    job.lines[0] = json.dumps(line)
    manifest = job.write()
    with pytest.raises(ToolError, match="--label-attribute"):
        export_dataset(str(manifest), tmp_path / "out")
    summary = export_dataset(str(manifest), tmp_path / "out2", label_attribute="other-ref")
    assert summary.exported == 1 and summary.label_attribute == "other-ref"


def test_no_copy_images_references_the_original(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    job.add("a.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    out = tmp_path / "out"
    export_dataset(str(job.write()), out, copy_images=False)
    [row] = [json.loads(r) for r in (out / "index.jsonl").read_text().splitlines()]
    assert row["image"] == str(tmp_path / "in" / "images" / "a.png")
    assert not (out / "images").exists()


def test_gtseg_output_whose_metadata_was_replaced_uses_the_sidecar(tmp_path):
    """Custom jobs: Ground Truth may replace <lan>-metadata (groundtruth/custom, no colour map)."""
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("road", "#2ca02c"), ("car", "#1f77b4"))
    mask = scene_mask(5, 2)
    mask_path = Path(job.add("a.png", mask, cmap))
    line = json.loads(job.lines[0])
    line[f"{LAN}-metadata"] = {"type": "groundtruth/custom", "job-name": "seg-job", "human-annotated": "yes"}
    job.lines[0] = json.dumps(line)
    sidecar = {"schema": "gtseg/consolidation-sidecar@1", "datasetObjectId": "0",
               "classes": [{"index": int(k), "class-name": v["class-name"], "hex-color": v["hex-color"],
                            "confidence": 0.9, "pixel-fraction": 0.3} for k, v in cmap.items()]}  # fmt: skip
    mask_path.with_suffix(".json").write_text(json.dumps(sidecar))
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out)
    assert summary.exported == 1, summary.errors
    np.testing.assert_array_equal(read_png(out / "masks" / "a.png"), mask)


def test_class_map_seed_keeps_indices_across_exports(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    mask = scene_mask(1, 1)
    job.add("a.png", mask, color_map(("dog", "#1f77b4")))
    seed = load_class_map_file(
        json.dumps({"document-version": "2018-11-28", "labels": [{"label": "cat"}, {"label": "dog"}]})
    )
    out = tmp_path / "out"
    export_dataset(str(job.write()), out, class_map=seed)
    assert read_labels(out) == ["BACKGROUND", "cat", "dog"]
    np.testing.assert_array_equal(read_png(out / "masks" / "a.png"), mask * 2)
    again = load_class_map_file((out / "labels.json").read_text())
    assert again.names == ("BACKGROUND", "cat", "dog")


@pytest.mark.parametrize(
    "text",
    [
        '{"classes": [{"name": "BACKGROUND"}]}',
        '{"classes": [{"index": "first", "name": "BACKGROUND", "color": "#ffffff"}]}',
        '{"classes": [{"index": 0, "name": "BACKGROUND", "color": "#ffffff"}, {"index": 2, "name": "cat", "color": "#2ca02c"}]}',
        '{"classes": [7]}',
        '{"labels": [{"name": "cat"}]}',
        '{"labels": [3]}',
    ],
)
def test_a_malformed_class_map_file_is_a_label_error(text, tmp_path, capsys):
    with pytest.raises(LabelError):
        load_class_map_file(text)
    (tmp_path / "labels.json").write_text(text)
    code = main(["export", str(tmp_path / "x.manifest"), "--out", str(tmp_path / "out"), "--class-map",
                 str(tmp_path / "labels.json"), "--quiet"])  # fmt: skip
    assert code == 2 and capsys.readouterr().err.startswith("gtseg export: --class-map:")


# --------------------------------------------------------------------------- other formats


def test_voc_layout(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"), ("dog", "#1f77b4"))
    mask = scene_mask(1, 2)
    job.add("a.jpg", mask, cmap)
    out = tmp_path / "out"
    export_dataset(str(job.write()), out, fmt="voc", val_fraction=0.0)
    voc = out / "VOCdevkit" / "VOC2012"
    assert (voc / "JPEGImages" / "a.jpg").exists()
    with Image.open(voc / "SegmentationClass" / "a.png") as seg:
        assert seg.mode == "P"
        np.testing.assert_array_equal(np.asarray(seg), mask)
        # VOC's own palette: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..., 255 (224, 224, 192)
        palette = seg.getpalette()
        assert palette[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0] and palette[765:768] == [224, 224, 192]
    assert (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == ["a"]
    assert (voc / "ImageSets" / "Segmentation" / "val.txt").read_text() == ""
    assert (voc / "labels.txt").read_text().splitlines() == ["0 BACKGROUND", "1 cat", "2 dog"]


def test_voc_export_reads_as_torchvision_voc_segmentation_reads_it(tmp_path):
    """The rules of torchvision.datasets.VOCSegmentation (year 2012): <root>/VOCdevkit/VOC2012,
    ids from ImageSets/Segmentation/<image_set>.txt, JPEGImages/<id>.jpg (opened as RGB) and
    SegmentationClass/<id>.png (opened as is: a palette image whose pixel values are the classes)."""
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"), ("dog", "#1f77b4"))
    masks = {f"p{i}.png": scene_mask(i, 2) for i in range(4)}
    for name, mask in masks.items():
        job.add(name, mask, cmap)
    root = tmp_path / "out"
    export_dataset(str(job.write()), root, fmt="voc", val_fraction=0.5)
    base = root / "VOCdevkit" / "VOC2012"
    seen = 0
    for image_set in ("train", "val", "trainval"):
        ids = (base / "ImageSets" / "Segmentation" / f"{image_set}.txt").read_text().split()
        for file_id in ids:
            with (
                Image.open(base / "JPEGImages" / f"{file_id}.jpg") as image,
                Image.open(base / "SegmentationClass" / f"{file_id}.png") as target,
            ):
                assert image.convert("RGB").size == target.size
                assert target.mode == "P"
                np.testing.assert_array_equal(np.asarray(target), masks[f"{file_id}.png"])
            seen += image_set != "trainval"
    assert seen == 4


def test_voc_images_are_always_jpeg_images_named_jpg(tmp_path):
    """VOC loaders (torchvision, mmseg) open JPEGImages/<id>.jpg whatever the source format."""
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"))
    job.add("a.png", scene_mask(1, 1), cmap)
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out, fmt="voc")
    assert summary.exported == 1, summary.errors
    images = out / "VOCdevkit" / "VOC2012" / "JPEGImages"
    assert [p.name for p in images.iterdir()] == ["a.jpg"]
    with Image.open(images / "a.jpg") as image:
        assert image.format == "JPEG" and image.size == (32, 24)


def test_cityscapes_layout_reencodes_images_as_png(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    mask = scene_mask(1, 2)
    job.add("a.jpg", mask, color_map(("cat", "#2ca02c"), ("dog", "#1f77b4")))
    out = tmp_path / "out"
    export_dataset(str(job.write()), out, fmt="cityscapes", val_fraction=1.0)
    image = out / "leftImg8bit" / "val" / "gtseg" / "a_leftImg8bit.png"
    with Image.open(image) as img:
        assert img.format == "PNG" and img.size == (mask.shape[1], mask.shape[0])
    np.testing.assert_array_equal(read_png(out / "gtFine" / "val" / "gtseg" / "a_gtFine_labelIds.png"), mask)
    assert read_png(out / "gtFine" / "val" / "gtseg" / "a_gtFine_color.png").shape == (*mask.shape, 3)


def test_coco_rle_annotations_decode_back_to_the_masks(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"), ("dog", "#1f77b4"), ("bird", "#ff7f0e"))
    masks = {f"i{i}.png": scene_mask(i, 3) for i in range(5)}
    for name, mask in masks.items():
        job.add(name, mask, cmap)
    out = tmp_path / "out"
    export_dataset(str(job.write()), out, fmt="coco")
    seen = 0
    for split in ("train", "val"):
        doc = json.loads((out / "annotations" / f"{split}.json").read_text())
        assert [c["name"] for c in doc["categories"]] == ["cat", "dog", "bird"]
        assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
        for image in doc["images"]:
            seen += 1
            assert "/" not in image["file_name"]  # relative to the image folder, as COCO has it
            mask = masks[image["file_name"]]
            assert (out / "images" / image["file_name"]).exists()
            rebuilt = np.zeros_like(mask)
            for ann in (a for a in doc["annotations"] if a["image_id"] == image["id"]):
                binary = rle_decode(ann["segmentation"])
                assert ann["area"] == int(binary.sum()) and ann["iscrowd"] == 0
                x, y, w, h = ann["bbox"]
                assert binary[int(y) : int(y + h), int(x) : int(x + w)].sum() == ann["area"]
                rebuilt[binary] = ann["category_id"]
            np.testing.assert_array_equal(rebuilt, mask)
    assert seen == 5


# --------------------------------------------------------------------------- S3


@mock_aws
def test_export_reads_manifest_masks_and_images_from_s3(tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="gt-output")
    cmap = color_map(("cat", "#2ca02c"))
    mask = scene_mask(1, 1)
    key = "jobs/seg-job/annotations/consolidated-annotation/output/0_2024-05-01T12:00:05.123456.png"
    s3.put_object(
        Bucket="gt-output", Key=key, Body=encode_index_png(mask, ClassMap.from_internal_color_map(cmap))
    )
    s3.put_object(Bucket="gt-output", Key="images/cat.png", Body=png_bytes(np.zeros((24, 32, 3), np.uint8)))
    line = {"source-ref": "s3://gt-output/images/cat.png", LAN: f"s3://gt-output/{key}",
            f"{LAN}-metadata": {**META, "internal-color-map": cmap}}  # fmt: skip
    s3.put_object(
        Bucket="gt-output", Key="jobs/seg-job/manifests/output/output.manifest", Body=json.dumps(line) + "\n"
    )
    out = tmp_path / "out"
    summary = export_dataset("s3://gt-output/jobs/seg-job/manifests/output/output.manifest", out)
    assert summary.exported == 1, summary.errors
    np.testing.assert_array_equal(read_png(out / "masks" / "cat.png"), mask)
    assert (out / "images" / "cat.png").exists()


@mock_aws
def test_s3_keys_holding_percent_signs_are_read_as_written(tmp_path):
    """S3 keys may contain '%'; a source-ref names the key as written, not URL-encoded."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="gt-output")
    cmap = color_map(("cat", "#2ca02c"))
    mask = scene_mask(2, 1)
    s3.put_object(
        Bucket="gt-output",
        Key="masks/0%2B1.png",
        Body=encode_index_png(mask, ClassMap.from_internal_color_map(cmap)),
    )
    s3.put_object(
        Bucket="gt-output", Key="images/cat%201.png", Body=png_bytes(np.zeros((24, 32, 3), np.uint8))
    )
    line = {"source-ref": "s3://gt-output/images/cat%201.png", LAN: "s3://gt-output/masks/0%2B1.png",
            f"{LAN}-metadata": {**META, "internal-color-map": cmap}}  # fmt: skip
    manifest = tmp_path / "output.manifest"
    manifest.write_text(json.dumps(line) + "\n")
    summary = export_dataset(str(manifest), tmp_path / "out")
    assert summary.exported == 1, summary.errors
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "masks" / "cat%201.png"), mask)


def test_synced_job_folder_maps_s3_mask_uris_to_local_files(tmp_path):
    """``aws s3 sync s3://b/p/seg-job ./seg-job``: manifest URIs still say s3://, files are local."""
    job = BuiltInJob(tmp_path / "in")
    mask = scene_mask(1, 1)
    local_mask = Path(job.add("a.png", mask, color_map(("cat", "#2ca02c"))))
    line = json.loads(job.lines[0])
    rel = local_mask.relative_to(tmp_path / "in" / "seg-job").as_posix()
    line[LAN] = f"s3://gt-output/prefix/seg-job/{rel}"
    job.lines[0] = json.dumps(line)
    summary = export_dataset(str(job.write()), tmp_path / "out")
    assert summary.exported == 1, summary.errors
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "masks" / "a.png"), mask)


def test_relative_paths_are_taken_from_the_manifest_folder(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    mask = scene_mask(4, 1)
    mask_path = Path(job.add("rel.png", mask, color_map(("cat", "#2ca02c"))))
    line = json.loads(job.lines[0])
    line[LAN] = "../../" + mask_path.relative_to(tmp_path / "in" / "seg-job").as_posix()
    line["source-ref"] = "../../../images/rel.png"
    job.lines[0] = json.dumps(line)
    summary = export_dataset(str(job.write()), tmp_path / "out")
    assert summary.exported == 1, summary.errors
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "masks" / "rel.png"), mask)


def test_mapped_copy_with_file_safe_names_is_found(tmp_path):
    """A copy whose ':' became '_' (Windows tools, gtseg simulate's download) still resolves."""
    job = BuiltInJob(tmp_path / "in")
    mask = scene_mask(1, 1)
    local_mask = Path(job.add("a.png", mask, color_map(("cat", "#2ca02c"))))
    assert ":" in local_mask.name
    local_mask.rename(local_mask.with_name(local_mask.name.replace(":", "_")))
    line = json.loads(job.lines[0])
    line[LAN] = (
        f"s3://gt-output/prefix/seg-job/{local_mask.relative_to(tmp_path / 'in' / 'seg-job').as_posix()}"
    )
    job.lines[0] = json.dumps(line)
    summary = export_dataset(str(job.write()), tmp_path / "out")
    assert summary.exported == 1, summary.errors
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "masks" / "a.png"), mask)


# --------------------------------------------------------------------------- CLI


@mock_aws
def test_a_manifest_saved_with_a_byte_order_mark_reads_from_line_1(tmp_path):
    """Windows editors save UTF-8 with a BOM; the first object must not become a JSON error."""
    job = BuiltInJob(tmp_path / "in")
    job.add("a.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    manifest = job.write()
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())
    summary = export_dataset(str(manifest), tmp_path / "local")
    assert (summary.exported, summary.errors) == (1, [])
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="gt-output")
    s3.put_object(Bucket="gt-output", Key="output.manifest", Body=manifest.read_bytes())
    summary = export_dataset("s3://gt-output/output.manifest", tmp_path / "from-s3")
    assert (summary.exported, summary.errors) == (1, [])


def test_cli_export_exit_codes_and_summary(tmp_path, capsys):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"))
    job.add("a.png", scene_mask(1, 1), cmap)
    manifest = job.write()
    assert main(["export", str(manifest), "--out", str(tmp_path / "out"), "--format", "coco"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exported"] == 1
    assert captured.err == ""  # not a terminal: no progress display at all
    job.add("b.png", scene_mask(2, 1), cmap, write_mask=False)
    job.write()
    assert main(["export", str(manifest), "--out", str(tmp_path / "out2"), "--quiet"]) == 1
    assert "line 2" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "typo.manifest"), "--out", str(tmp_path / "out3"), "--quiet"]) == 2
    assert "typo.manifest" in capsys.readouterr().err and not (tmp_path / "out3").exists()


def test_cli_usage_problems_are_one_line_and_exit_2(tmp_path, capsys):
    job = BuiltInJob(tmp_path / "in")
    job.add("a.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    manifest = str(job.write())
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["export", manifest, "--out", str(a_file), "--quiet"]) == 2
    assert "a-file" in capsys.readouterr().err
    for bad_map in ("no-equals-sign", "s3://a=x"):  # 'a' is no valid bucket name
        with pytest.raises(SystemExit) as stopped:
            main(["export", manifest, "--out", str(tmp_path / "out"), "--map", bad_map, "--quiet"])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("gtseg export: --map") and bad_map in err and "Traceback" not in err
    assert main(["export", "s3://a/output.manifest", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "s3://a/output.manifest" in capsys.readouterr().err


def test_a_file_system_refusal_is_one_line_not_a_traceback(tmp_path, capsys):
    job = BuiltInJob(tmp_path / "in")
    job.add("a.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)  # the folder to replace cannot be written
    try:
        code = main(["export", str(job.write()), "--out", str(out), "--quiet"])
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anyway
        assert code == 1
        assert err.startswith("gtseg export: ") and str(out) in err and "Traceback" not in err
    (tmp_path / "taken").write_text("a file where the folder should go")
    assert main(["export", str(job.manifest), "--out", str(tmp_path / "taken"), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gtseg export: ") and "is a file" in line


@pytest.fixture
def no_aws_credentials(monkeypatch):
    """boto3 finds no credentials at all (a user who has not configured the AWS CLI)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_unreachable_s3_is_a_clear_error_not_a_traceback(tmp_path, capsys, no_aws_credentials):
    """Without credentials: the manifest in S3 is a one-line usage error; images in S3 fail their line."""
    assert (
        main(["export", "s3://gt-output/job/output.manifest", "--out", str(tmp_path / "o1"), "--quiet"]) == 2
    )
    assert "credentials" in capsys.readouterr().err
    job = BuiltInJob(tmp_path / "in")
    job.add("a.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    line = json.loads(job.lines[0])
    line["source-ref"] = "s3://gt-input/images/a.png"
    job.lines[0] = json.dumps(line)
    summary = export_dataset(str(job.write()), tmp_path / "o2")
    assert summary.exported == 0
    assert [p.line for p in summary.errors] == [1]
    assert "s3://gt-input/images/a.png" in summary.errors[0].reason
    assert "credentials" in summary.errors[0].reason


# --------------------------------------------------------------------------- pieces


def test_rle_known_example_is_column_major_and_starts_with_zeros():
    mask = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    # column-major: 0 0 | 1 1 | 1 0 -> zeros 2, ones 3, zeros 1
    assert rle_encode(mask) == {"size": [2, 3], "counts": [2, 3, 1]}
    assert rle_encode(np.ones((2, 2), bool))["counts"] == [0, 4]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_rle_round_trips(height, width, data):
    bits = data.draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
    mask = np.array(bits, dtype=bool).reshape(height, width)
    rle = rle_encode(mask)
    assert sum(rle["counts"]) == height * width
    assert all(c > 0 for c in rle["counts"][1:])
    np.testing.assert_array_equal(rle_decode(rle), mask)


def test_split_is_deterministic_and_roughly_follows_the_fraction():
    keys = [f"s3://bucket/images/{i}.jpg" for i in range(2000)]
    first = [split_for(k, 0.2) for k in keys]
    assert first == [split_for(k, 0.2) for k in keys]
    assert 0.15 < first.count("val") / len(keys) < 0.25
    assert {split_for(k, 0.0) for k in keys} == {"train"} and {split_for(k, 1.0) for k in keys} == {"val"}


color_entry = st.fixed_dictionaries(
    {
        "class-name": st.one_of(st.text(max_size=5), st.integers()),
        "hex-color": st.one_of(st.sampled_from(["#2ca02c", "#ffffff", "#1F77B4", "xyz"]), st.none()),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(["0", "1", "2", "3"]), st.text(max_size=3)),
                       st.one_of(color_entry, st.integers(), st.none()), max_size=5))  # fmt: skip
def test_parse_color_map_accepts_or_rejects_clearly(raw):
    try:
        class_map = parse_color_map(raw)
    except LabelError as exc:
        assert str(exc)
        return
    assert class_map.names[0] == "BACKGROUND"
    reconciler = ClassReconciler()
    planned = reconciler.add(class_map)
    assert [reconciler.names[planned.to_global[i]] for i in range(len(class_map))] == list(class_map.names)


def test_the_progress_display_draws_on_a_terminal_and_leaves_no_line_behind():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    live, log = Terminal(), io.StringIO()
    for stream in (live, log):
        with StderrProgress("export", stream=stream) as bar:
            bar(10, 10)
    assert "10/10" in live.getvalue()  # drawn while running (rich, erased at the end)
    assert log.getvalue() == ""  # not a terminal: nothing at all
    with StderrProgress("export", stream=Terminal(), quiet=True) as quiet:
        assert not quiet.enabled


# --------------------------------------------------------------------------- loaders, orientation, safety


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")
def test_coco_export_loads_with_pycocotools_and_its_masks_are_the_exported_ones(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco", reason="pip install -r requirements.txt (pycocotools)")
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"), ("dog", "#1f77b4"))
    masks = {f"c{i}.png": scene_mask(i, 2) for i in range(4)}
    for name, mask in masks.items():
        job.add(name, mask, cmap)
    out = tmp_path / "out"
    export_dataset(str(job.write()), out, fmt="coco", val_fraction=0.0)
    coco = coco_api.COCO(str(out / "annotations" / "train.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cat", "dog"}
    for image in coco.loadImgs(coco.getImgIds()):
        assert (out / "images" / image["file_name"]).is_file()
        rebuilt = np.zeros((image["height"], image["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            binary = coco.annToMask(ann).astype(bool)
            assert int(binary.sum()) == ann["area"]
            rebuilt[binary] = ann["category_id"]
        np.testing.assert_array_equal(rebuilt, masks[image["file_name"]])


def _rotated_jpeg(stored: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("mask_painted_on", ["stored pixels", "upright picture"])
@pytest.mark.parametrize("fmt", ["index", "voc", "coco", "cityscapes"])
def test_an_exif_rotated_image_is_written_upright_and_its_mask_agrees(tmp_path, fmt, mask_painted_on):
    """Orientation 6: 32x24 as stored, 24x32 as shown. Whichever way the mask was painted, the
    exported image is upright (no tag) and the mask has its size, its top-left class marking the
    same picture corner."""
    stored = np.zeros((24, 32, 3), np.uint8)
    stored[:12, :16] = (250, 10, 10)  # top-left of the stored pixels: red
    upright = np.rot90(stored, k=-1)  # orientation 6 shows it turned 90 degrees clockwise
    stored_mask = np.zeros((24, 32), np.uint8)
    stored_mask[:12, :16] = 1  # the red block is "cat"
    mask = stored_mask if mask_painted_on == "stored pixels" else np.rot90(stored_mask, k=-1).copy()
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"))
    job.add("r.jpg", scene_mask(1, 1), cmap)
    (job.root / "images" / "r.jpg").write_bytes(_rotated_jpeg(stored, 6))
    [mask_file] = job.mask_dir.iterdir()
    mask_file.write_bytes(encode_index_png(mask, ClassMap.from_internal_color_map(cmap)))
    out = tmp_path / "out"
    summary = export_dataset(str(job.write()), out, fmt=fmt, val_fraction=0.0)
    assert summary.exported == 1, summary.errors
    image_path, mask_array = {
        "index": (out / "images" / "r.jpg", lambda: read_png(out / "masks" / "r.png")),
        "voc": (out / "VOCdevkit/VOC2012/JPEGImages/r.jpg", lambda: read_png(out / "VOCdevkit/VOC2012/SegmentationClass/r.png")),
        "coco": (out / "images" / "r.jpg", lambda: rle_decode(json.loads((out / "annotations/train.json").read_text())["annotations"][0]["segmentation"]).astype(np.uint8)),
        "cityscapes": (out / "leftImg8bit/train/gtseg/r_leftImg8bit.png", lambda: read_png(out / "gtFine/train/gtseg/r_gtFine_labelIds.png")),
    }[fmt]  # fmt: skip
    with Image.open(image_path) as written:
        assert written.getexif().get(0x0112, 1) == 1  # no tag left for a loader to apply again
        pixels = np.asarray(written.convert("RGB")).astype(int)
    exported_mask = mask_array()
    assert pixels.shape[:2] == exported_mask.shape == (32, 24)
    cat = exported_mask == 1
    np.testing.assert_array_equal(cat, np.rot90(stored_mask, k=-1) == 1)
    assert pixels[cat][:, 0].mean() > 200 and pixels[~cat][:, 0].mean() < 60  # the red block is where cat is
    assert np.abs(pixels - upright.astype(int)).mean() < 8


def test_a_mask_that_fits_neither_orientation_is_refused_for_that_object(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    cmap = color_map(("cat", "#2ca02c"))
    job.add("r.jpg", scene_mask(1, 1), cmap)  # a 32x24 mask
    (job.root / "images" / "r.jpg").write_bytes(png_bytes(np.zeros((40, 40, 3), np.uint8), "JPEG"))
    job.add("ok.png", scene_mask(2, 1), cmap)
    summary = export_dataset(str(job.write()), tmp_path / "out")
    assert summary.exported == 1
    (problem,) = summary.errors
    assert problem.line == 1 and "the mask is 32x24 but the image is 40x40" in problem.reason


def test_a_non_empty_out_is_refused_unless_force_and_then_replaced_whole(tmp_path, capsys):
    job = BuiltInJob(tmp_path / "in")
    job.add("a.png", scene_mask(1, 1), color_map(("cat", "#2ca02c")))
    manifest = str(job.write())
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier dataset")
    assert main(["export", manifest, "--out", str(out), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        line == f"gtseg export: --out {out} is not empty; choose another --out, or pass --force to replace it"
    )
    assert sorted(p.name for p in out.iterdir()) == ["earlier.txt"]
    assert main(["export", manifest, "--out", str(out), "--quiet", "--force"]) == 0
    assert not (out / "earlier.txt").exists() and (out / "masks" / "a.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "in"]  # nothing staged left behind
    with pytest.raises(ToolError, match="--force will not replace it"):
        export_dataset(manifest, tmp_path / "in", force=True)  # the folder holding the manifest


def test_an_interrupted_export_leaves_no_partial_dataset(tmp_path):
    job = BuiltInJob(tmp_path / "in")
    for i in range(3):
        job.add(f"a{i}.png", scene_mask(i, 1), color_map(("cat", "#2ca02c")))
    out = tmp_path / "dataset"

    def interrupt(done: int, total: int | None) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_dataset(str(job.write()), out, progress=interrupt)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]
