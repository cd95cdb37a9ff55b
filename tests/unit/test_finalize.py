"""gtseg finalize: a custom job's output (metadata replaced by Ground Truth, colour maps in the
sidecars) -> the built-in form, gtseg export's dataset layout plus COCO, a report and a summary;
the map and reduce functions in-process on local folders and against moto S3."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from gtseg.cli import main
from gtseg.core.labels import ClassMap
from gtseg.core.masks import encode_index_png
from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass, SidecarWorker
from gtseg.finalize.batch import map_batch
from gtseg.finalize.models import MapItem
from gtseg.finalize.plan import plan_job
from gtseg.finalize.reduce import reduce_job
from gtseg.finalize.runner import finalize_manifest, map_items
from gtseg.tools.errors import ToolError
from gtseg.tools.export import export_dataset, rle_decode
from gtseg.tools.jobdata import JobData

JOB = "Street-Job"
LAN = f"{JOB}-ref"
OUT_BUCKET, DATA_BUCKET = "gt-out", "gt-data"
REMOTE_JOB = f"s3://{OUT_BUCKET}/jobs/{JOB}"
LABELS = ["road", "car", "person"]
CMAP = ClassMap.from_labels(LABELS)
CUSTOM = {"type": "groundtruth/custom", "job-name": JOB.lower(), "human-annotated": "yes",
          "creation-date": "2024-05-01T12:00:05.000000"}  # fmt: skip


def mask_for(i: int, size: tuple[int, int] = (16, 12)) -> np.ndarray:
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[: height // 2, :] = 1
    mask[height // 3 :, (i % width) :] = 1 + (i % 3)
    return mask


def sidecar_for(i: int, mask_uri: str | None, **extra) -> ConsolidationSidecar:
    return ConsolidationSidecar(
        dataset_object_id=str(i), job_name=JOB, label_attribute_name=LAN, mask=mask_uri,
        image_confidence=None if mask_uri is None else round(0.5 + (i % 7) / 20, 4),
        classes=[SidecarClass(index=k, class_name=n, hex_color=c)
                 for k, (n, c) in enumerate(zip(CMAP.names, CMAP.colors, strict=True))],
        workers=[SidecarWorker(worker_id=f"w{k}", agreement=0.9 - k / 10, quality=0.8) for k in range(2)],
        **extra,
    )  # fmt: skip


def png_bytes(size: tuple[int, int], color: tuple[int, int, int] = (90, 90, 95)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


class LocalJob:
    """A finished custom job copied to local folders (``aws s3 sync``), Ground Truth's layout."""

    def __init__(self, root: Path, n: int, *, failed=(), broken=(), size=(16, 12), duplicates=()) -> None:
        self.root = root
        self.job = root / JOB
        self.data_dir = root / "data-bucket"
        self.manifest = self.job / "manifests" / "output" / "output.manifest"
        self.manifest.parent.mkdir(parents=True, exist_ok=True)
        out_dir = self.job / "annotations" / "consolidated-annotation" / "output" / "iteration-1"
        out_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "images").mkdir(parents=True, exist_ok=True)
        with open(self.manifest, "w") as handle:
            for i in range(n):
                if i in broken:
                    handle.write("{this is not json\n")
                    continue
                name = "dup" if i in duplicates else f"img-{i:05d}"
                folder = f"cam{i}" if i in duplicates else "images"
                (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
                (self.data_dir / folder / f"{name}.png").write_bytes(png_bytes(size))
                line: dict = {"source-ref": f"s3://{DATA_BUCKET}/{folder}/{name}.png", "site": i}
                if i in failed:
                    line[f"{LAN}-metadata"] = dict(CUSTOM)
                    (out_dir / f"{i}.json").write_bytes(
                        sidecar_for(i, None, failure_reason="no usable annotation").to_json_bytes()
                    )
                else:
                    uri = f"{REMOTE_JOB}/annotations/consolidated-annotation/output/iteration-1/{i}.png"
                    (out_dir / f"{i}.png").write_bytes(encode_index_png(mask_for(i, size), CMAP))
                    (out_dir / f"{i}.json").write_bytes(
                        sidecar_for(i, uri, adjustment_status="adjusted" if i == 1 else None).to_json_bytes()
                    )
                    line.update({LAN: uri, f"{LAN}-metadata": dict(CUSTOM)})
                handle.write(json.dumps(line) + "\n")

    def data(self) -> JobData:
        data = JobData()
        data.map_prefix(f"s3://{DATA_BUCKET}", self.data_dir)
        return data

    def maps(self) -> list[str]:
        return ["--map", f"{REMOTE_JOB}={self.job}", "--map", f"s3://{DATA_BUCKET}={self.data_dir}"]


def lines_of(path: Path) -> list[dict]:
    return [json.loads(t) for t in path.read_text().splitlines() if t.strip()]


def test_a_custom_job_is_finalized_into_the_built_in_form_a_dataset_a_report_and_a_summary(tmp_path):
    job = LocalJob(tmp_path, 6, failed=(3,))
    out = tmp_path / "final"
    result = finalize_manifest(str(job.manifest), str(out), data=job.data(), batch_size=4)

    original = lines_of(job.manifest)
    final = lines_of(out / "output.manifest")
    assert [line["site"] for line in final] == [line["site"] for line in original]  # every line, in order
    for i, line in enumerate(final):
        meta = line[f"{LAN}-metadata"]
        assert meta["type"] == "groundtruth/semantic-segmentation"
        assert meta["job-name"] == f"labeling-job/{JOB}"  # the sidecar's own-case name
        assert meta["creation-date"] == CUSTOM["creation-date"] and meta["human-annotated"] == "yes"
        if i == 3:
            assert meta["failure-reason"] == "no usable annotation" and LAN not in line
            continue
        assert line[LAN] == original[i][LAN]
        cmap = meta["internal-color-map"]
        assert [cmap[str(k)]["class-name"] for k in range(4)] == ["BACKGROUND", *LABELS]
        assert {e["confidence"] for e in cmap.values()} == {round(0.5 + (i % 7) / 20, 4)}
        assert ("adjustment-status" in meta) == (i == 1)
    assert final[1][f"{LAN}-metadata"]["adjustment-status"] == "adjusted"

    dataset = out / "dataset"
    rows = [json.loads(t) for t in (dataset / "index.jsonl").read_text().splitlines()]
    assert [r["stem"] for r in rows] == [f"img-{i:05d}" for i in range(6) if i != 3]
    for row in rows:
        i = int(row["stem"][4:])
        with Image.open(dataset / row["mask"]) as png:
            np.testing.assert_array_equal(np.asarray(png), mask_for(i))
        assert (dataset / row["image"]).read_bytes() == (
            job.data_dir / "images" / f"{row['stem']}.png"
        ).read_bytes()
    labels = json.loads((dataset / "labels.json").read_text())
    assert [c["name"] for c in labels["classes"]] == ["BACKGROUND", *LABELS]
    assert sum(c["pixels"] for c in labels["classes"]) == 5 * 16 * 12
    images = {}
    for split in ("train", "val"):
        coco = json.loads((dataset / "annotations" / f"{split}.json").read_text())
        assert [c["name"] for c in coco["categories"]] == LABELS
        stems = (dataset / "splits" / f"{split}.txt").read_text().split()
        assert [Path(im["file_name"]).stem for im in coco["images"]] == stems
        images.update({im["id"]: im for im in coco["images"]})
        for annotation in coco["annotations"]:
            i = int(Path(images[annotation["image_id"]]["file_name"]).stem[4:])
            np.testing.assert_array_equal(
                rle_decode(annotation["segmentation"]), mask_for(i) == annotation["category_id"]
            )
    assert len(images) == 5 and len({*images}) == 5

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["objects"], summary["labeled"], summary["failed"], summary["errors"]) == (6, 5, 1, 0)
    assert summary["outputs"]["output-manifest"] == str(out / "output.manifest")
    assert summary["adjustment"] == {"adjusted": 1}
    assert {w["id"] for w in summary["workers"]} == {"w0", "w1"}
    assert summary["report"]["objects"] == 5 and summary["report"]["error"] is None
    assert (out / "report.html").is_file()
    assert not (out / "work").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert result.notification.subject.startswith(f"gtseg: {JOB} finalized (5 of 6")


def test_the_dataset_is_what_gtseg_export_writes_from_the_finalized_manifest(tmp_path):
    job = LocalJob(tmp_path, 5)
    out = tmp_path / "final"
    finalize_manifest(str(job.manifest), str(out), data=job.data(), batch_size=2)
    data = job.data()
    data.map_prefix(REMOTE_JOB, job.job)
    export_dataset(str(out / "output.manifest"), tmp_path / "export", data=data)
    export, dataset = tmp_path / "export", out / "dataset"
    for rel in ("index.jsonl", "splits/train.txt", "splits/val.txt"):
        assert (dataset / rel).read_text() == (export / rel).read_text(), rel
    for folder in ("images", "masks", "previews"):
        names = sorted(p.name for p in (export / folder).iterdir())
        assert names == sorted(p.name for p in (dataset / folder).iterdir()), folder
        for name in names:
            assert (dataset / folder / name).read_bytes() == (export / folder / name).read_bytes(), name
    assert (
        json.loads((dataset / "labels.json").read_text())["classes"]
        == json.loads((export / "labels.json").read_text())["classes"]
    )
    # COCO: the same images, categories and run-length encodings (ids are numbered differently:
    # finalize's come from the line, so no batch needs another's)
    export_dataset(str(out / "output.manifest"), tmp_path / "coco", fmt="coco", data=data)
    for split in ("train", "val"):
        ours = json.loads((dataset / "annotations" / f"{split}.json").read_text())
        theirs = json.loads((tmp_path / "coco" / "annotations" / f"{split}.json").read_text())
        assert ours["categories"] == theirs["categories"]

        def by_file(doc: dict) -> dict:
            files = {im["id"]: im["file_name"] for im in doc["images"]}
            return {(files[a["image_id"]], a["category_id"]): (a["segmentation"], a["area"], a["bbox"])
                    for a in doc["annotations"]}  # fmt: skip

        assert sorted(im["file_name"] for im in ours["images"]) == sorted(
            im["file_name"] for im in theirs["images"]
        )
        assert by_file(ours) == by_file(theirs)


def test_a_line_that_cannot_be_finalized_is_kept_as_it_was_and_reported(tmp_path, capsys):
    job = LocalJob(tmp_path, 4, broken=(1,))
    lines = job.manifest.read_text().splitlines()
    no_sidecar = json.loads(lines[2])
    (job.job / no_sidecar[LAN][len(REMOTE_JOB) + 1 :]).with_suffix(".json").unlink()
    out = tmp_path / "final"
    code = main(["finalize", str(job.manifest), "--out", str(out), "--quiet", *job.maps()])
    assert code == 1
    final = (out / "output.manifest").read_text().splitlines()
    assert final[1] == "{this is not json"  # verbatim: nothing lost
    assert json.loads(final[2]) == no_sidecar  # no colour map anywhere: kept as it was
    err = capsys.readouterr().err
    assert "error: line 2: not valid JSON" in err
    assert "error: line 3: the metadata has no internal-color-map" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"] == 2 and summary["labeled"] == 2


def test_an_earlier_result_is_never_destroyed(tmp_path, monkeypatch, capsys):
    job = LocalJob(tmp_path, 2)
    out = tmp_path / "final"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["finalize", str(job.manifest), "--out", str(out), "--quiet", *job.maps()]) == 2
    assert "is not empty" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep me"

    import gtseg.finalize.runner as runner

    def explode(*args, **kwargs):
        raise ToolError("the reduce broke")

    monkeypatch.setattr(runner, "reduce_job", explode)
    assert main(["finalize", str(job.manifest), "--out", str(out), "--force", "--quiet", *job.maps()]) == 2
    assert capsys.readouterr().err.strip() == "gtseg finalize: the reduce broke"  # one line, no traceback
    assert (out / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["final", JOB, "data-bucket"]
    )  # no staging left
    monkeypatch.undo()
    assert main(["finalize", str(job.manifest), "--out", str(out), "--force", "--quiet", *job.maps()]) == 0
    assert not (out / "mine.txt").exists() and (out / "summary.json").is_file()


def test_a_retried_batch_writes_the_same_bytes_and_lines_whose_batch_failed_are_kept_and_reported(tmp_path):
    job = LocalJob(tmp_path, 7, duplicates=(2, 5))
    data = job.data()
    work = tmp_path / "work-out"
    plan = plan_job(str(job.manifest), str(work), data=data)
    assert len(plan.colliding_stems) == 1  # two images named dup.png in different folders
    batches = list(map_items(data, str(job.manifest), 3))
    first = map_batch(plan, batches[0], data)
    before = Path(first.part).read_bytes()
    assert map_batch(plan, batches[0], data) == first and Path(first.part).read_bytes() == before
    map_batch(plan, batches[2], data)  # the middle batch (lines 4-6) never ran
    figures = reduce_job(plan, data, batch_failures=["lines 4-6: States.TaskFailed (Lambda timed out)"])
    assert figures.not_finalized == 3 and figures.labeled == 4
    assert figures.batch_failures[0] == "lines 4-6: not finalized (its batch left no result)"
    final = (work / "output.manifest").read_text().splitlines()
    assert final[3:6] == job.manifest.read_text().splitlines()[3:6]  # copied as they were
    stems = [json.loads(t)["stem"] for t in (work / "dataset" / "index.jsonl").read_text().splitlines()]
    assert len(set(stems)) == len(stems) and any(s.startswith("dup-") for s in stems)


def test_the_map_step_refuses_items_that_are_not_consecutive_lines(tmp_path):
    job = LocalJob(tmp_path, 3)
    data = job.data()
    plan = plan_job(str(job.manifest), str(tmp_path / "o"), data=data)
    items = next(map_items(data, str(job.manifest), 3))
    with pytest.raises(ToolError, match="not consecutive"):
        map_batch(plan, [items[0], items[2]], data)


def _peak_bytes(tmp_path: Path, n: int) -> tuple[int, float]:
    import time

    job = LocalJob(tmp_path / f"job{n}", n, size=(8, 6))
    tracemalloc.start()
    started = time.perf_counter()
    finalize_manifest(str(job.manifest), str(tmp_path / f"out{n}"), data=job.data(), report_objects=20)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, seconds


@pytest.mark.slow
def test_memory_stays_flat_from_2000_to_20000_lines(tmp_path):
    """Peak traced memory of the local runner at 2,000 and at 20,000 lines: what grows with the job
    is 8 bytes per line (stem hashes) and 4 per labelled object (the report's even spread), not the
    lines, the masks or the records."""
    small, _ = _peak_bytes(tmp_path, 2_000)
    large, large_seconds = _peak_bytes(tmp_path, 20_000)
    print(f"peak {small / 2**20:.1f} MB at 2k lines, {large / 2**20:.1f} MB at 20k lines; "
          f"{1000 * large_seconds / 20_000:.2f} s per 1,000 lines at 20k")  # fmt: skip
    assert large < small * 1.5, (small, large)


def test_finalize_reads_and_writes_s3(tmp_path, monkeypatch):
    """Both ends in (moto) S3: the job's output where Ground Truth writes it, results under <job>/gtseg/."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    job = LocalJob(tmp_path, 3, failed=(2,))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (OUT_BUCKET, DATA_BUCKET):
            s3.create_bucket(Bucket=bucket)
        for root, bucket, prefix in ((job.job, OUT_BUCKET, f"jobs/{JOB}/"), (job.data_dir, DATA_BUCKET, "")):
            for path in root.rglob("*"):
                if path.is_file():
                    s3.put_object(
                        Bucket=bucket, Key=prefix + path.relative_to(root).as_posix(), Body=path.read_bytes()
                    )
        manifest = f"{REMOTE_JOB}/manifests/output/output.manifest"
        out = f"{REMOTE_JOB}/gtseg"
        result = finalize_manifest(manifest, out)
        assert result.figures.labeled == 2 and result.figures.failed == 1
        body = (
            s3.get_object(Bucket=OUT_BUCKET, Key=f"jobs/{JOB}/gtseg/output.manifest")["Body"].read().decode()
        )
        assert len(body.splitlines()) == 3
        keys = {
            o["Key"] for o in s3.list_objects_v2(Bucket=OUT_BUCKET, Prefix=f"jobs/{JOB}/gtseg/")["Contents"]
        }
        for rel in (
            "summary.json",
            "report.html",
            "dataset/index.jsonl",
            "dataset/labels.json",
            "dataset/annotations/train.json",
            "dataset/masks/img-00000.png",
            "dataset/images/img-00001.png",
        ):
            assert f"jobs/{JOB}/gtseg/{rel}" in keys, rel  # fmt: skip
        with pytest.raises(ToolError, match="is not empty"):
            finalize_manifest(manifest, out)
        assert MapItem(index=0).line_number == 1


def test_a_chained_jobs_lines_are_finalized_on_the_jobs_own_label():
    from gtseg.finalize.plan import own_attribute

    prior = {"a-ref": "s3://o/jobs/a/0.png", "a-ref-metadata": {"internal-color-map": {}}}
    own = {"b-ref": "s3://o/jobs/b/0.png", "b-ref-metadata": dict(CUSTOM, **{"job-name": "b"})}
    # the launcher names the prior on every adjustment line
    assert own_attribute({**prior, **own, "gtseg-prior-label-attribute": "a-ref"}, None, 1) == "b-ref"
    # a hand-chained manifest: the job's folder names its label
    assert own_attribute({**prior, **own}, "B", 1) == "b-ref"
    with pytest.raises(ToolError, match="several segmentation labels"):
        own_attribute({**prior, **own}, None, 1)
    # the job failed this object: only its metadata is there; a later line is read for it alone
    failed = {**prior, "b-ref-metadata": dict(CUSTOM)}
    assert own_attribute(failed, "b", 1) == "b-ref"
    assert own_attribute(prior, None, 2, known="b-ref") is None
