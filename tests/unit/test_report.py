"""gtseg report: the HTML report's structure, figures and the lowest-agreement manifest.

The job is built here from simulated workers (gtseg.simulation) in Ground Truth's layout:
worker-response files, consolidated masks (+ gtseg sidecars or not) and an output manifest.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import boto3
import numpy as np
from moto import mock_aws

from gtseg.cli import main
from gtseg.core.consolidation import DecodedAnswers, ObjectConsolidation, consolidate_masks, gold_outcome
from gtseg.core.labels import ClassMap
from gtseg.core.manifest import segmentation_metadata
from gtseg.core.masks import encode_index_png
from gtseg.core.metrics import cohen_kappa, disagreement_map, mean_iou, pixel_agreement
from gtseg.core.sidecar import ConsolidationSidecar
from gtseg.local.simulation import SimulatedCrowd, make_scene, worker_answer
from gtseg.tools.jobdata import JobData
from gtseg.tools.report import build_report

LAN = "seg-job-ref"
REMOTE_JOB = "s3://gt-out/jobs/seg-job"


def write_job(
    root: Path, crowds: list[tuple[str, ...]], *, sidecars: bool = True, s3_uris: bool = False
) -> dict:
    """A finished job under ``root/seg-job``; returns facts the tests check the report against."""
    job = root / "seg-job"
    facts: dict = {
        "manifest": job / "manifests" / "output" / "output.manifest",
        "agreement": {},
        "workers": set(),
    }
    lines = []
    for object_id, profiles in enumerate(crowds):
        scene = make_scene(object_id, 64, 48)
        cmap = scene.class_map
        masks = SimulatedCrowd(profiles, seed=object_id).paint(scene)
        ids = [f"private.us-east-1.{p}{object_id % 2}" for p in profiles]
        facts["workers"].update(ids)
        result = consolidate_masks(masks, len(cmap), worker_ids=ids)
        facts["agreement"][str(object_id)] = float(
            np.mean([pixel_agreement(m, result.labels) for m in masks])
        )
        image = root / "images" / f"scene-{object_id}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(scene.image_png())
        answers = [
            {"answerContent": worker_answer(mask, cmap), "workerId": wid, "timeSpentInSeconds": 30.0 + k,
             "acceptanceTime": "2024-05-01T11:59:00.000Z", "submissionTime": "2024-05-01T12:00:00.000Z"}
            for k, (mask, wid) in enumerate(zip(masks, ids, strict=True))
        ]  # fmt: skip
        response = (
            job
            / "annotations"
            / "worker-response"
            / "iteration-1"
            / str(object_id)
            / "2024-05-01_12:00:00.json"
        )
        response.parent.mkdir(parents=True, exist_ok=True)
        response.write_text(json.dumps({"answers": answers}))
        rel_mask = f"annotations/consolidated-annotation/output/iteration-1/{object_id}.png"
        (job / rel_mask).parent.mkdir(parents=True, exist_ok=True)
        (job / rel_mask).write_bytes(encode_index_png(result.labels, cmap))
        mask_uri = f"{REMOTE_JOB}/{rel_mask}" if s3_uris else str(job / rel_mask)
        if sidecars:
            sidecar = ConsolidationSidecar.describe(
                dataset_object_id=str(object_id), job_name="seg-job", label_attribute_name=LAN,
                source_ref=str(image), class_map=cmap, outcome=ObjectConsolidation(result), mask=mask_uri,
            )  # fmt: skip
            (job / rel_mask).with_suffix(".json").write_bytes(sidecar.to_json_bytes())
        meta = segmentation_metadata(cmap, job_name="seg-job", creation_date="2024-05-01T12:00:05.000000",
                                     confidences=result.class_confidence)  # fmt: skip
        lines.append({"source-ref": str(image), LAN: mask_uri, f"{LAN}-metadata": meta})
    facts["manifest"].parent.mkdir(parents=True, exist_ok=True)
    facts["manifest"].write_text("".join(json.dumps(line) + "\n" for line in lines))
    facts["lines"] = lines
    return facts


class ReportParser(HTMLParser):
    """Collects what the structure tests check: object ids, worker ids, image and link targets."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: list[str] = []
        self.worker_rows: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self._row: list[str] | None = None
        self._row_worker: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-object-id" in attrs:
            self.objects.append(attrs["data-object-id"])
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "img" and "src" in attrs:  # the viewer's images get theirs from the script
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "tr" and "data-worker-id" in attrs:
            self._row, self._row_worker = [], attrs["data-worker-id"]
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.worker_rows.setdefault(self._row_worker, []).append(self._row)
            self._row = None


def parse_report(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def report_data(path: Path) -> dict:
    """The JSON block the page's script reads (layers, per-object workers, review lines)."""
    page = path.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert match, "no report-data block"
    return json.loads(match.group(1))


def object_workers(path: Path) -> dict[str, dict[str, dict]]:
    """object id -> worker id -> that worker's figures on the object, as the viewer shows them."""
    return {o["id"]: {w["id"]: w for w in o["workers"]} for o in report_data(path)["objects"]}


def page_files(path: Path) -> list[str]:
    """Every file the page's script may load (photos, mask layers, heatmaps, worker masks)."""
    out = []
    for o in report_data(path)["objects"]:
        out += [f for f in (o["photo"], o["mask"], o["heatmap"]) if f]
        out += [w["mask"] for w in o["workers"] if w["mask"]]
    return out


CROWDS = [("careful", "average", "spammer"), ("careful", "sloppy", "average"), ("sloppy", "blobs", "average"),
          ("average", "careful", "sloppy")]  # fmt: skip


def test_report_shows_every_object_and_worker_and_its_images_exist(tmp_path):
    facts = write_job(tmp_path, CROWDS)
    out = tmp_path / "report" / "report.html"
    summary = build_report(str(facts["manifest"]), out)

    assert summary.objects == 4 and not summary.errors
    parsed = parse_report(out)
    assert {"summary", "classes", "workers", "review", "objects"} <= set(parsed.sections)
    assert sorted(parsed.objects) == ["0", "1", "2", "3"]
    assert set(parsed.worker_rows) == facts["workers"]
    assert len(parsed.images) == 4  # a thumbnail per object; the viewer loads the rest
    files = page_files(out)
    assert len(files) == 4 * (1 + 1 + 1 + 3)  # photo, mask layer, heatmap, three worker masks
    for src in parsed.images + files:
        assert not src.startswith("data:") and (out.parent / unquote(src)).is_file(), src
    for href in parsed.links:
        if not href.startswith("#"):
            assert (out.parent / href).is_file(), href
        else:
            assert href[1:] in parsed.sections or href[len("#object-") :] in parsed.objects
    assert out.stat().st_size < 200_000  # images are files, not inline data


def test_image_links_work_for_file_names_with_url_characters(tmp_path):
    """'#' would start a fragment and '%20' would be decoded: the page must still find its images."""
    facts = write_job(tmp_path, CROWDS[:2])
    lines = facts["lines"]
    for line, name in zip(lines, ("photo #1.png", "a%20b.png"), strict=True):
        renamed = Path(line["source-ref"]).with_name(name)
        Path(line["source-ref"]).rename(renamed)
        line["source-ref"] = str(renamed)
    facts["manifest"].write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out #2" / "report 100%.html"
    summary = build_report(str(facts["manifest"]), out)
    assert summary.objects == 2 and not summary.errors
    parsed = parse_report(out)
    assert len(parsed.images) == 2
    for src in parsed.images + page_files(out) + [h for h in parsed.links if not h.startswith("#")]:
        assert "#" not in src and (out.parent / unquote(src)).is_file(), src


def test_values_from_the_job_are_escaped_not_read_as_markup(tmp_path):
    """Worker ids, file names and paths come from the job: they must show as text, never as HTML."""
    facts = write_job(tmp_path, CROWDS[:1])
    evil_worker = "<script>alert(1)</script>"
    line = facts["lines"][0]
    for path in [*Path(tmp_path).rglob("worker-response/**/*.json"), Path(line[LAN]).with_suffix(".json")]:
        path.write_text(path.read_text().replace("private.us-east-1.careful0", evil_worker))
    image = Path(line["source-ref"])
    source_ref = str(image.rename(image.with_name('say "cheese" & <smile>.png')))
    line["source-ref"] = source_ref
    facts["manifest"].write_text(json.dumps(line) + "\n")
    out = tmp_path / "r.html"
    summary = build_report(str(facts["manifest"]), out)
    assert summary.objects == 1 and not summary.errors

    page = out.read_text(encoding="utf-8")
    assert evil_worker not in page and "<smile>" not in page and source_ref not in page
    assert page.count("<script") == 2  # the page's own: its data block and its script
    markup = re.sub(r"<script\b.*?</script>", "", page, flags=re.DOTALL)  # the page's own script has &&
    assert not re.findall(r"&(?!(?:[a-z]+|#[0-9]+|#x[0-9a-f]+);)", markup), "a bare '&' in the page"
    names = [html.unescape(text) for text in re.findall(r'data-name="([^"]*)"', page)]
    assert names == [Path(source_ref).stem]  # the same text once the browser unescapes it
    parsed = parse_report(out)
    assert [row[0] for row in parsed.worker_rows[evil_worker]] == [evil_worker]
    assert evil_worker in object_workers(out)["0"]  # the viewer's data holds it exactly, as text
    assert report_data(out)["objects"][0]["sourceRef"] == source_ref
    for src in parsed.images:
        assert (out.parent / unquote(src)).is_file(), src


def test_the_sidecar_quality_is_shown_and_its_workers_listed_without_responses(tmp_path):
    facts = write_job(tmp_path, CROWDS[:1])
    sidecar = json.loads(Path(facts["lines"][0][LAN]).with_suffix(".json").read_text())
    quality = {w["workerId"]: f"{w['quality']:.3f}" for w in sidecar["workers"]}
    agreement = {w["workerId"]: f"{100 * w['agreement']:.1f}%" for w in sidecar["workers"]}
    out = tmp_path / "r.html"
    build_report(str(facts["manifest"]), out)
    on_object = object_workers(out)["0"]
    assert {worker: w["quality"] for worker, w in on_object.items()} == quality

    shutil.rmtree(tmp_path / "seg-job" / "annotations" / "worker-response")
    build_report(str(facts["manifest"]), out, force=True)
    on_object = object_workers(out)["0"]
    assert {worker: w["agreement"] for worker, w in on_object.items()} == agreement
    assert {worker: w["quality"] for worker, w in on_object.items()} == quality
    assert all(w["mask"] is None for w in on_object.values())  # no answers: no worker masks


def test_a_job_folder_without_worker_responses_is_pointed_out(tmp_path, capsys):
    facts = write_job(tmp_path, CROWDS[:1])
    out = tmp_path / "r.html"
    code = main(
        ["report", str(facts["manifest"]), "--out", str(out), "--job", str(tmp_path / "typo"), "--quiet"]
    )
    assert code == 0  # the report is still written, with masks and confidences
    err = capsys.readouterr().err
    assert "note: no worker responses under" in err and "typo" in err
    assert "no worker responses under" in out.read_text()
    (only,) = report_data(out)["objects"]
    assert only["mask"] and only["heatmap"] is None  # no disagreement heatmap without answers


def test_a_class_only_one_worker_painted_counts_as_disagreement(tmp_path):
    """Built-in colour maps list only the classes in the consolidated mask: a worker's extra class
    (a 'dog' nobody else saw) must not be read as background, where it would agree."""
    job = tmp_path / "seg-job"
    workers_map = ClassMap.from_labels(["cat", "dog"])
    consensus = np.zeros((10, 20), dtype=np.uint8)
    consensus[:, :10] = 1  # cat on the left, background on the right
    hallucinated = consensus.copy()
    hallucinated[:5, 10:] = 2  # a dog in the top right quarter: 50 of 200 pixels
    answers = [{"answerContent": worker_answer(mask, workers_map), "workerId": wid, "timeSpentInSeconds": 9}
               for wid, mask in (("w-a", consensus), ("w-b", consensus), ("w-dog", hallucinated))]  # fmt: skip
    response = job / "annotations" / "worker-response" / "iteration-1" / "0" / "2024-05-01_12:00:00.json"
    response.parent.mkdir(parents=True)
    response.write_text(json.dumps({"answers": answers}))
    object_map = ClassMap(names=("BACKGROUND", "cat"), colors=("#ffffff", workers_map.colors[1]))
    mask = job / "annotations" / "consolidated-annotation" / "output" / "0_2024-05-01T12:00:05.000000.png"
    mask.parent.mkdir(parents=True)
    mask.write_bytes(encode_index_png(consensus, object_map))
    meta = segmentation_metadata(object_map, job_name="seg-job", creation_date="2024-05-01T12:00:05.000000")
    manifest = job / "manifests" / "output" / "output.manifest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({LAN: str(mask), f"{LAN}-metadata": meta}) + "\n")
    out = tmp_path / "r.html"
    summary = build_report(str(manifest), out)
    assert summary.objects == 1 and not summary.errors
    on_object = object_workers(out)["0"]
    assert on_object["w-dog"]["agreement"] == "75.0%"  # agreement with the consensus
    assert on_object["w-a"]["agreement"] == "100.0%"


def test_a_lone_worker_has_no_quality_rather_than_zero(tmp_path):
    facts = write_job(tmp_path, [("careful",)])  # one worker: gtseg's sidecar says quality 0.0
    out = tmp_path / "r.html"
    build_report(str(facts["manifest"]), out)
    (rows,) = parse_report(out).worker_rows.values()
    assert rows[0][2:4] == ["n/a", "n/a"]  # the Workers table: agreement, quality (scored against itself)
    (worker,) = object_workers(out)["0"].values()
    assert (worker["agreement"], worker["quality"]) == ("n/a", "n/a") and "its own mask" in worker["note"]
    (shown,) = report_data(out)["objects"]
    assert shown["confidence"] == "n/a" and shown["confidenceNote"] == "one trusted worker"


def test_per_worker_figures_separate_the_spammer_from_careful_workers(tmp_path):
    facts = write_job(tmp_path, CROWDS)
    out = tmp_path / "report.html"
    build_report(str(facts["manifest"]), out)
    rows = parse_report(out).worker_rows
    # the summary table row comes first: worker, objects, agreement, quality, gold IoU, mean time, total, unusable
    spammer = rows["private.us-east-1.spammer0"][0]
    careful = rows["private.us-east-1.careful0"][0]
    assert float(spammer[3]) < 0.2 < float(careful[3])
    assert float(spammer[2].rstrip("%")) < float(careful[2].rstrip("%"))
    assert careful[4] == "n/a"  # no gold objects in this job
    assert careful[5] == "30.0 s"  # careful is the first worker on each object: 30 s


def test_the_review_selection_is_by_confidence_and_written_as_a_manifest_and_spec(tmp_path):
    facts = write_job(tmp_path, CROWDS)
    confidences = {
        str(i): json.loads(Path(line[LAN]).with_suffix(".json").read_text())["image-confidence"]
        for i, line in enumerate(facts["lines"])
    }
    out = tmp_path / "report.html"
    summary = build_report(str(facts["manifest"]), out, lowest=2, review_below=1.0)
    expected = sorted(confidences, key=confidences.get)[:2]
    assert summary.lowest == expected
    lines = [json.loads(t) for t in Path(summary.review_manifest).read_text().splitlines()]
    assert lines == [facts["lines"][int(i)] for i in expected]
    assert Path(summary.review_manifest).name in parse_report(out).links
    spec = json.loads(Path(summary.review_spec).read_text())
    assert spec["prior"] == {"manifestUri": spec["prior"]["manifestUri"], "labelAttributeName": LAN}
    assert spec["prior"]["manifestUri"].endswith("/review/report-review.manifest")
    assert spec["labelAttributeName"] != LAN and spec["labelAttributeName"].endswith("-ref")
    # a threshold below every confidence selects nothing: a small job is not re-labelled whole
    summary = build_report(str(facts["manifest"]), out, review_below=min(confidences.values()), force=True)
    assert summary.lowest == [] and Path(summary.review_manifest).read_text() == ""


def test_lowest_and_review_below_out_of_range_are_one_line_usage_errors(tmp_path, capsys):
    facts = write_job(tmp_path, CROWDS[:1])
    for option in (["--lowest", "-1"], ["--lowest", "0"], ["--review-below", "1.5"], ["--review-below", "0"]):
        out = tmp_path / "r.html"
        assert main(["report", str(facts["manifest"]), "--out", str(out), *option]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"gtseg report: {option[0]} must be") and not out.exists()


def test_built_in_job_without_sidecars_uses_worker_responses(tmp_path):
    facts = write_job(tmp_path, CROWDS[:2], sidecars=False, s3_uris=True)  # synced job folder, s3:// URIs
    out = tmp_path / "report.html"
    summary = build_report(str(facts["manifest"]), out)
    assert summary.objects == 2 and not summary.errors
    parsed = parse_report(out)
    assert set(parsed.worker_rows) == facts["workers"]
    assert all(src.endswith((".jpg", ".png")) for src in parsed.images) and len(parsed.images) == 2
    spammer = parsed.worker_rows["private.us-east-1.spammer0"][0]
    assert float(spammer[3]) < 0.2  # kappa computed from its mask, no sidecar needed


def test_broken_objects_are_reported_and_the_rest_still_shown(tmp_path, capsys):
    facts = write_job(tmp_path, CROWDS[:3])
    lines = facts["manifest"].read_text().splitlines()
    Path(json.loads(lines[1])[LAN]).unlink()  # a missing PNG
    Path(json.loads(lines[2])["source-ref"]).unlink()  # a missing image: still reported, grey background
    facts["manifest"].write_text("\n".join([*lines, "{broken"]) + "\n")
    out = tmp_path / "report.html"
    code = main(["report", str(facts["manifest"]), "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "line 4" in err
    parsed = parse_report(out)
    assert sorted(parsed.objects) == ["0", "2"]
    assert "problems" in parsed.sections
    assert "image not shown" in out.read_text()


@mock_aws
def test_report_from_s3(tmp_path):
    facts = write_job(tmp_path / "local", CROWDS[:2], s3_uris=True)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="gt-out")
    job = tmp_path / "local" / "seg-job"
    for path in job.rglob("*"):
        if path.is_file():
            s3.put_object(
                Bucket="gt-out",
                Key=f"jobs/seg-job/{path.relative_to(job).as_posix()}",
                Body=path.read_bytes(),
            )
    out = tmp_path / "report.html"
    summary = build_report(f"{REMOTE_JOB}/manifests/output/output.manifest", out)
    assert summary.objects == 2 and not summary.errors
    assert summary.job_prefix == REMOTE_JOB
    assert set(parse_report(out).worker_rows) == facts["workers"]


def test_an_empty_manifest_is_an_error_and_writes_nothing(tmp_path, capsys):
    manifest = tmp_path / "output.manifest"
    manifest.write_text("")
    assert main(["report", str(manifest), "--out", str(tmp_path / "r.html")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gtseg report: ") and "has no lines" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.manifest"]  # nothing staged left behind


def test_unusable_out_and_image_size_are_usage_errors_not_tracebacks(tmp_path, capsys):
    facts = write_job(tmp_path, CROWDS[:1])
    manifest = str(facts["manifest"])
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["report", manifest, "--out", str(folder), "--quiet"]) == 2  # a folder, not an HTML file
    assert "a-folder" in capsys.readouterr().err
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["report", manifest, "--out", str(a_file / "report.html"), "--quiet"]) == 2
    assert "a-file is a file" in capsys.readouterr().err
    assert main(["report", manifest, "--out", str(tmp_path / "r.html"), "--max-side", "0", "--quiet"]) == 2
    assert "--max-side" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_images_in_s3_without_credentials_are_noted_and_the_report_still_written(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in (("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"), ("AWS_CONFIG_FILE", "/dev/null"),
                        ("AWS_EC2_METADATA_DISABLED", "true"), ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    facts = write_job(tmp_path, CROWDS[:1])
    line = facts["lines"][0] | {"source-ref": "s3://gt-input/images/scene-0.png"}
    facts["manifest"].write_text(json.dumps(line) + "\n")
    out = tmp_path / "r.html"
    summary = build_report(str(facts["manifest"]), out)
    assert summary.objects == 1 and not summary.errors
    assert "image not shown" in out.read_text() and "credentials" in out.read_text()


# --------------------------------------------------------------------------- metrics


def test_kappa_is_zero_for_a_one_class_painter_and_one_for_a_perfect_copy():
    rng = np.random.default_rng(0)
    consensus = rng.integers(0, 4, size=(20, 30), dtype=np.uint8)
    assert cohen_kappa(consensus, consensus, 4) == 1.0
    assert cohen_kappa(np.full_like(consensus, 2), consensus, 4) == 0.0
    assert 0.0 < cohen_kappa(np.where(rng.random(consensus.shape) < 0.8, consensus, 0), consensus, 4) < 1.0


def test_disagreement_map_is_the_fraction_of_workers_off_consensus():
    consensus = np.zeros((2, 2), np.uint8)
    a = np.array([[0, 1], [0, 1]], np.uint8)
    b = np.array([[0, 0], [2, 1]], np.uint8)
    np.testing.assert_allclose(disagreement_map([a, b], consensus), [[0.0, 0.5], [0.5, 1.0]])
    assert pixel_agreement(a, consensus) == 0.5


def test_gold_objects_give_each_worker_a_gold_iou(tmp_path):
    """On a gold object the consensus is the known mask: each worker's mean IoU with it is shown."""
    facts = write_job(tmp_path, [("careful", "sloppy", "blobs"), ("careful", "sloppy", "blobs")])
    scene = make_scene(0, 64, 48)
    cmap = scene.class_map
    masks = SimulatedCrowd(("careful", "sloppy", "blobs"), seed=0).paint(scene)
    ids = [f"private.us-east-1.{p}0" for p in ("careful", "sloppy", "blobs")]
    gold = gold_outcome(DecodedAnswers(tuple(masks), tuple(ids), (), (), None), scene.truth, len(cmap))
    mask_path = Path(facts["lines"][0][LAN])
    mask_path.write_bytes(encode_index_png(scene.truth, cmap))
    sidecar = ConsolidationSidecar.describe(
        dataset_object_id="0", job_name="seg-job", label_attribute_name=LAN, source_ref=None,
        class_map=cmap, outcome=gold, mask=str(mask_path),
    )  # fmt: skip
    mask_path.with_suffix(".json").write_bytes(sidecar.to_json_bytes())
    out = tmp_path / "r.html"
    build_report(str(facts["manifest"]), out)
    rows = parse_report(out).worker_rows
    gold_iou = {wid: rows[wid][0][4] for wid in ids}
    expected = {wid: f"{mean_iou(m, scene.truth, len(cmap)):.3f}" for wid, m in zip(ids, masks, strict=True)}
    assert gold_iou == expected
    assert float(gold_iou[ids[0]]) > float(gold_iou[ids[1]]) > float(gold_iou[ids[2]])
    # workers of the other object labelled no gold object
    assert rows["private.us-east-1.careful1"][0][4] == "n/a"


# --------------------------------------------------------------------------- trust, custom jobs, safety


def _exclude(sidecar_path: Path, keep: str) -> None:
    """Make the sidecar say what the consolidation says with one trusted worker: the others have
    weight 0 (excluded), the confidence is 0.0 (it could not be estimated), quality 1.0 (itself)."""
    doc = json.loads(sidecar_path.read_text())
    for worker in doc["workers"]:
        trusted = worker["workerId"] == keep
        worker.update(excluded=not trusted, weight=1.0 if trusted else 0.0)
        if trusted:
            worker.update(agreement=1.0, quality=1.0)
    doc["image-confidence"], doc["method"] = 0.0, "gtseg"
    for entry in doc["classes"]:
        entry["confidence"] = 0.0
    sidecar_path.write_text(json.dumps(doc))


def test_one_trusted_worker_gives_n_a_with_the_reason_and_marks_the_excluded(tmp_path):
    facts = write_job(tmp_path, [("careful", "spammer", "blobs")])
    careful = "private.us-east-1.careful0"
    _exclude(Path(facts["lines"][0][LAN]).with_suffix(".json"), keep=careful)
    out = tmp_path / "r.html"
    summary = build_report(str(facts["manifest"]), out)
    (shown,) = report_data(out)["objects"]
    assert shown["confidence"] == "n/a" and shown["confidenceNote"] == "one trusted worker"
    assert shown["heatmap"] is None  # nobody to disagree with
    on_object = {w["id"]: w for w in shown["workers"]}
    assert (on_object[careful]["agreement"], on_object[careful]["quality"]) == ("n/a", "n/a")
    assert on_object["private.us-east-1.spammer0"]["excluded"] is True
    assert on_object["private.us-east-1.spammer0"]["quality"] != "n/a"  # measured against the careful mask
    assert all(w["mask"] for w in shown["workers"])  # every worker's own mask can be looked at
    rows = parse_report(out).worker_rows
    assert rows[careful][0][2:4] == ["n/a", "n/a"] and rows[careful][0][8] == "never"
    assert "excluded: untrusted" in rows["private.us-east-1.spammer0"][0][0]
    assert rows["private.us-east-1.spammer0"][0][8] == "all 1"
    page = out.read_text()
    assert "0.000" not in re.sub(r"<script\b.*?</script>", "", page, flags=re.DOTALL).split('id="workers"')[0]
    assert summary.lowest == ["0"]  # nothing cross-checked it: it is selected for review


def test_a_custom_job_whose_metadata_was_replaced_is_read_from_the_sidecars_and_relaunchable(
    tmp_path, capsys, monkeypatch
):
    """Ground Truth may replace <lan>-metadata with its custom-job metadata (no colour map): the
    report reads the sidecars, and the review manifest gets a colour map back, so the adjustment
    job it describes passes `gtseg launch --dry-run` (offline, the manifest mapped from disk)."""
    facts = write_job(tmp_path, CROWDS[:2], s3_uris=True)
    custom = {"type": "groundtruth/custom", "job-name": "seg-job", "human-annotated": "yes",
              "creation-date": "2024-05-01T12:00:05.000000"}  # fmt: skip
    lines = [
        {
            **line,
            "source-ref": f"s3://gt-in/images/{Path(line['source-ref']).name}",
            f"{LAN}-metadata": custom,
        }
        for line in facts["lines"]
    ]
    facts["manifest"].write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "report" / "r.html"
    data = JobData()
    data.map_prefix("s3://gt-in/images", tmp_path / "images")
    summary = build_report(str(facts["manifest"]), out, review_below=1.0, data=data)
    assert summary.objects == 2 and not summary.errors
    assert {o["confidence"] for o in report_data(out)["objects"]} != {"n/a"}  # from the sidecars
    review = [json.loads(t) for t in Path(summary.review_manifest).read_text().splitlines()]
    assert len(review) == 2
    for line in review:
        assert line[f"{LAN}-metadata"]["internal-color-map"]["0"]["class-name"] == "BACKGROUND"
    spec = json.loads(Path(summary.review_spec).read_text())
    assert spec["prior"]["manifestUri"] == f"{REMOTE_JOB}/review/r-review.manifest"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # offline: no credentials at all
    code = main(["launch", summary.review_spec, "--dry-run", "--map", f"{REMOTE_JOB}/review={out.parent}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "dry run: 2 objects" in captured.err and "0 input lines skipped" in captured.err
    assert json.loads(captured.out)["LabelingJobName"] == spec["jobName"]


def test_an_existing_report_is_kept_unless_force(tmp_path, capsys):
    facts = write_job(tmp_path, CROWDS[:1])
    out = tmp_path / "r.html"
    assert main(["report", str(facts["manifest"]), "--out", str(out), "--quiet"]) == 0
    first = out.read_text()
    capsys.readouterr()
    assert main(["report", str(facts["manifest"]), "--out", str(out), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gtseg report: ") and "r.html" in line and "--force" in line
    assert out.read_text() == first
    assert main(["report", str(facts["manifest"]), "--out", str(out), "--quiet", "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("r", "."))) == [
        "r-review-job.json", "r-review.manifest", "r.html", "r_files"]  # fmt: skip
