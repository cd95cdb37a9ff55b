"""gtseg reconsolidate: a finished built-in job's worker responses consolidated again.

The job is built here in Ground Truth's built-in output layout from simulated workers: the old
masks are a plain majority vote, named ``<id>_<timestamp with colons>.png``, with per-object
internal-color-maps whose indices drift; the manifest holds s3:// URIs (a job copied with
``aws s3 sync``), or the whole job lives in (moto) S3.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from gtseg.cli import main
from gtseg.core.consolidation import consolidate_masks, consolidate_worker_answers, majority_vote
from gtseg.core.labels import ClassMap
from gtseg.core.layout import dataset_object_id_from_mask
from gtseg.core.masks import encode_index_png, read_class_mask
from gtseg.core.metrics import mean_iou
from gtseg.local.simulation import SimulatedCrowd, make_scene, worker_answer
from gtseg.tools.errors import ToolError
from gtseg.tools.export import export_dataset
from gtseg.tools.jobdata import JobData, WorkerResponse, read_worker_responses, worker_response_files
from gtseg.tools.reconsolidate import answers_from_responses, reconsolidate_job

LAN = "seg-job-ref"
REMOTE_JOB = "s3://gt-out/jobs/seg-job"
META = {"type": "groundtruth/semantic-segmentation", "human-annotated": "yes",
        "creation-date": "2024-05-01T12:00:05.562419", "job-name": "labeling-job/seg-job"}  # fmt: skip


def shuffled_map(cmap: ClassMap, seed: int) -> ClassMap:
    """The same classes with drifted indices (background stays 0), as built-in maps may have."""
    order = [0, *np.random.default_rng(seed).permutation(np.arange(1, len(cmap))).tolist()]
    return ClassMap(names=tuple(cmap.names[i] for i in order), colors=tuple(cmap.colors[i] for i in order))


def write_built_in_job(root: Path, crowds: list[tuple[str, ...]], *, failed: tuple[int, ...] = (),
                       no_responses: tuple[int, ...] = (), drift: bool = True) -> dict:  # fmt: skip
    job = root / "seg-job"
    facts: dict = {"job": job, "masks": {}, "old": {}, "cmap": None}
    lines = []
    for object_id, profiles in enumerate(crowds):
        scene = make_scene(100 + object_id, 48, 32)
        cmap = facts["cmap"] = scene.class_map
        masks = SimulatedCrowd(profiles, seed=object_id).paint(scene)
        facts["masks"][str(object_id)] = masks
        ids = [f"private.us-east-1.w{k}" for k in range(len(masks))]
        if object_id not in no_responses:
            answers = [{"answerContent": worker_answer(m, cmap), "workerId": wid, "timeSpentInSeconds": 20}
                       for m, wid in zip(masks, ids, strict=True)]  # fmt: skip
            path = (
                job
                / "annotations"
                / "worker-response"
                / "iteration-1"
                / str(object_id)
                / "2024-05-01_12:00:00.json"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"answers": answers}))
        source = f"s3://gt-in/images/{object_id}.jpg"
        if object_id in failed:
            lines.append(
                {
                    "source-ref": source,
                    f"{LAN}-metadata": {**META, "failure-reason": "ClientError: consolidation failed"},
                }
            )
            continue
        old = majority_vote(masks, len(cmap))
        facts["old"][str(object_id)] = old
        object_map = shuffled_map(cmap, object_id) if drift else cmap
        lut = np.array([object_map.names.index(n) for n in cmap.names], dtype=np.uint8)
        rel = (
            f"annotations/consolidated-annotation/output/{object_id}_2024-05-01T12:00:0{object_id}.123456.png"
        )
        (job / rel).parent.mkdir(parents=True, exist_ok=True)
        (job / rel).write_bytes(encode_index_png(lut[old], object_map))
        meta = {**META, "internal-color-map": object_map.internal_color_map([0.5] * len(object_map))}
        lines.append({"source-ref": source, LAN: f"{REMOTE_JOB}/{rel}", f"{LAN}-metadata": meta})
    manifest = job / "manifests" / "output" / "output.manifest"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return facts


def read_lines(path: Path) -> list[dict]:
    return [json.loads(t) for t in path.read_text().splitlines()]


def expected_new(facts: dict, object_id: str, order: ClassMap, workers: slice = slice(None)) -> np.ndarray:
    """gtseg's consolidation of the object's worker masks, computed directly, in ``order``'s class
    indices (the run's class order: tie-breaking depends on it), returned in the job's indices."""
    cmap = facts["cmap"]
    to_order = np.array([order.names.index(n) for n in cmap.names], dtype=np.uint8)
    back = np.array([cmap.names.index(n) for n in order.names], dtype=np.uint8)
    masks = [to_order[m] for m in facts["masks"][object_id][workers]]
    return back[consolidate_masks(masks, len(order), method="gtseg").labels]


def run_map(line: dict) -> ClassMap:
    return ClassMap.from_internal_color_map(line[f"{LAN}-metadata"]["internal-color-map"])


CROWDS = [
    ("careful", "average", "sloppy"),
    ("careful", "spammer", "spammer"),
    ("average", "blobs", "careful"),
]


def test_built_in_job_is_reconsolidated_beside_the_old_manifest(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS)
    job = facts["job"]
    summary = reconsolidate_job(str(job))

    assert summary.reconsolidated == 3 and not summary.errors and not summary.kept
    new_manifest = job / "manifests" / "output" / "reconsolidated-gtseg.manifest"
    assert summary.new_manifest == f"{REMOTE_JOB}/manifests/output/reconsolidated-gtseg.manifest"
    old_lines = read_lines(job / "manifests" / "output" / "output.manifest")
    new_lines = read_lines(new_manifest)
    assert len(new_lines) == len(old_lines)
    for object_id, (old, new) in enumerate(zip(old_lines, new_lines, strict=True)):
        assert new["source-ref"] == old["source-ref"]
        assert (
            new[LAN]
            == f"{REMOTE_JOB}/annotations/consolidated-annotation/reconsolidated-gtseg/{object_id}.png"
        )
        meta = new[f"{LAN}-metadata"]
        assert (
            meta["type"] == "groundtruth/semantic-segmentation" and meta["job-name"] == "labeling-job/seg-job"
        )
        new_map = ClassMap.from_internal_color_map(meta["internal-color-map"])
        assert sorted(new_map.names) == sorted(facts["cmap"].names)
        # one class order for the whole run (the first object's), compared here by class name
        to_truth = np.array([facts["cmap"].names.index(n) for n in new_map.names], dtype=np.uint8)
        local = job / new[LAN][len(REMOTE_JOB) + 1 :]
        new_mask = to_truth[read_class_mask(local.read_bytes(), new_map)]
        np.testing.assert_array_equal(new_mask, expected_new(facts, str(object_id), new_map))
        sidecar = json.loads(local.with_suffix(".json").read_text())
        assert sidecar["schema"] == "gtseg/consolidation-sidecar@1" and sidecar["datasetObjectId"] == str(
            object_id
        )
        assert len(sidecar["workers"]) == 3


def test_a_custom_job_whose_metadata_ground_truth_replaced_is_reconsolidated_from_its_sidecars(tmp_path):
    """A gtseg job as Ground Truth writes it (docs/protocol.md §2.4): custom-job metadata, the colour
    map and the job's own-case name only in the sidecar next to each mask."""
    from gtseg.core.layout import sidecar_ref
    from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass

    facts = write_built_in_job(tmp_path, CROWDS)
    manifest = facts["job"] / "manifests" / "output" / "output.manifest"
    lines = read_lines(manifest)
    for line in lines:
        object_map = ClassMap.from_internal_color_map(line[f"{LAN}-metadata"]["internal-color-map"])
        line[f"{LAN}-metadata"] = {"type": "groundtruth/custom", "job-name": "seg-job", "human-annotated": "yes",
                                   "creation-date": "2024-05-01T12:00:05.562419"}  # fmt: skip
        local = facts["job"] / line[LAN][len(REMOTE_JOB) + 1 :]
        sidecar = ConsolidationSidecar(
            dataset_object_id=dataset_object_id_from_mask(line[LAN]) or "?", job_name="Seg-Job",
            classes=[SidecarClass(index=i, class_name=n, hex_color=c)
                     for i, (n, c) in enumerate(zip(object_map.names, object_map.colors, strict=True))],
        )  # fmt: skip
        Path(sidecar_ref(str(local))).write_bytes(sidecar.to_json_bytes())
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = reconsolidate_job(str(facts["job"]))
    assert summary.reconsolidated == 3 and not summary.errors and not summary.kept
    new_lines = read_lines(facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest")
    for object_id, new in enumerate(new_lines):
        assert new[f"{LAN}-metadata"]["job-name"] == "labeling-job/Seg-Job"
        new_map = run_map(new)
        to_truth = np.array([facts["cmap"].names.index(n) for n in new_map.names], dtype=np.uint8)
        local = facts["job"] / new[LAN][len(REMOTE_JOB) + 1 :]
        np.testing.assert_array_equal(
            to_truth[read_class_mask(local.read_bytes(), new_map)],
            expected_new(facts, str(object_id), new_map),
        )
    doc = json.loads(
        (facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.comparison.json").read_text()
    )
    assert all(
        row["agreement"] is not None for row in doc["objects-compared"]
    )  # old masks read by their sidecar


def test_comparison_reports_old_vs_new_agreement_per_object_and_mean(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS)
    summary = reconsolidate_job(str(facts["job"]))
    doc = json.loads(
        (facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.comparison.json").read_text()
    )
    order = run_map(read_lines(facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest")[0])
    expected = {
        object_id: float(np.mean(facts["old"][object_id] == expected_new(facts, object_id, order)))
        for object_id in facts["old"]
    }
    got = {row["datasetObjectId"]: row["agreement"] for row in doc["objects-compared"]}
    assert got == pytest.approx(expected, abs=1e-6)  # old maps had drifted indices: compared by name
    assert doc["mean-agreement-old-vs-new"] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
    assert summary.mean_agreement == pytest.approx(doc["mean-agreement-old-vs-new"])
    # two spammers outvote the careful worker in the old majority vote; gtseg does not follow them
    assert got["1"] < got["0"]


def test_failed_and_unanswered_objects(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS, failed=(1,), no_responses=(2,))
    summary = reconsolidate_job(str(facts["job"]))
    new_lines = read_lines(facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest")
    old_lines = read_lines(facts["job"] / "manifests" / "output" / "output.manifest")
    assert LAN in new_lines[1] and "failure-reason" not in new_lines[1][f"{LAN}-metadata"]  # recovered
    assert new_lines[2] == old_lines[2]  # kept as it was
    assert [(p.line, "datasetObjectId 2" in p.reason) for p in summary.kept] == [(3, True)]
    assert summary.reconsolidated == 2


def test_a_broken_worker_answer_is_rejected_and_the_object_still_consolidated(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS[:1])
    response = next((facts["job"] / "annotations" / "worker-response").rglob("*.json"))
    doc = json.loads(response.read_text())
    doc["answers"][2]["answerContent"]["crowd-semantic-segmentation"]["labeledImage"]["pngImageData"] = (
        base64.b64encode(b"not a png").decode()
    )
    response.write_text(json.dumps(doc))
    summary = reconsolidate_job(str(facts["job"]))
    assert summary.reconsolidated == 1
    comparison = json.loads(
        (facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.comparison.json").read_text()
    )
    [row] = comparison["objects-compared"]
    assert [r["workerId"] for r in row["rejected"]] == ["private.us-east-1.w2"]
    new = read_lines(facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest")[0]
    expected = expected_new(facts, "0", run_map(new), workers=slice(0, 2))
    local = facts["job"] / new[LAN][len(REMOTE_JOB) + 1 :]
    np.testing.assert_array_equal(read_class_mask(local.read_bytes(), facts["cmap"]), expected)


def test_majority_method_reproduces_the_built_in_vote_and_the_new_manifest_exports(tmp_path):
    # same class order as the old masks, so even 3-way ties (lowest index wins) resolve alike
    facts = write_built_in_job(tmp_path, CROWDS, drift=False)
    summary = reconsolidate_job(str(facts["job"]), method="majority")
    assert summary.mean_agreement == pytest.approx(1.0)
    new_manifest = facts["job"] / "manifests" / "output" / "reconsolidated-majority.manifest"
    exported = export_dataset(str(new_manifest), tmp_path / "dataset", copy_images=False)
    assert exported.exported == 3 and not exported.errors


@mock_aws
def test_job_in_s3(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS[:2])
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="gt-out")
    for path in facts["job"].rglob("*"):
        if path.is_file():
            s3.put_object(
                Bucket="gt-out",
                Key=f"jobs/seg-job/{path.relative_to(facts['job']).as_posix()}",
                Body=path.read_bytes(),
            )
    summary = reconsolidate_job(REMOTE_JOB + "/")
    assert summary.reconsolidated == 2
    body = s3.get_object(Bucket="gt-out", Key="jobs/seg-job/manifests/output/reconsolidated-gtseg.manifest")[
        "Body"
    ].read()
    lines = [json.loads(t) for t in body.decode().splitlines()]
    assert len(lines) == 2
    png = s3.get_object(Bucket="gt-out", Key=lines[0][LAN][len("s3://gt-out/") :])["Body"].read()
    np.testing.assert_array_equal(
        read_class_mask(png, facts["cmap"]), expected_new(facts, "0", run_map(lines[0]))
    )
    s3.head_object(Bucket="gt-out", Key="jobs/seg-job/manifests/output/reconsolidated-gtseg.comparison.json")


def test_cli(tmp_path, capsys):
    facts = write_built_in_job(tmp_path, CROWDS[:1])
    assert main(["reconsolidate", str(facts["job"]), "--method", "simple", "--smoothing", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reconsolidated"] == 1 and out["method"] == "simple"
    assert (facts["job"] / "manifests" / "output" / "reconsolidated-simple-smooth1.manifest").exists()
    assert main(["reconsolidate", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_an_earlier_run_of_the_same_name_is_kept_unless_forced(tmp_path, capsys):
    facts = write_built_in_job(tmp_path, CROWDS[:1])
    manifest = facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest"
    assert main(["reconsolidate", str(facts["job"]), "--quiet"]) == 0
    manifest.write_text(manifest.read_text() + "\n")  # a mark: has it been replaced?
    before = manifest.read_bytes()
    capsys.readouterr()
    assert main(["reconsolidate", str(facts["job"]), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0] and "reconsolidated-gtseg" in err[0]
    assert manifest.read_bytes() == before
    assert main(["reconsolidate", str(facts["job"]), "--quiet", "--force"]) == 0
    assert manifest.read_bytes() != before


def test_cli_prints_where_the_new_files_were_written_for_a_local_copy(tmp_path, capsys):
    """The local copy's manifest references s3:// URIs; the summary must name the local files."""
    facts = write_built_in_job(tmp_path, CROWDS[:1])
    assert main(["reconsolidate", str(facts["job"]), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    written = facts["job"] / "manifests" / "output"
    assert Path(out["new-manifest"]) == written / "reconsolidated-gtseg.manifest"
    assert Path(out["comparison"]) == written / "reconsolidated-gtseg.comparison.json"
    assert read_lines(Path(out["new-manifest"]))[0][LAN].startswith(REMOTE_JOB + "/")


def test_a_label_attribute_no_line_carries_is_refused_and_nothing_written(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS[:2])
    with pytest.raises(ToolError, match="'seg-job-reff'"):
        reconsolidate_job(str(facts["job"]), label_attribute="seg-job-reff")
    assert sorted(p.name for p in (facts["job"] / "manifests" / "output").iterdir()) == ["output.manifest"]
    assert reconsolidate_job(str(facts["job"]), label_attribute=LAN).reconsolidated == 2


@pytest.mark.parametrize("run_name", ["../../elsewhere", "a/b", ".."])
def test_a_run_name_that_is_a_path_is_refused(tmp_path, run_name):
    facts = write_built_in_job(tmp_path / "jobs", CROWDS[:1])
    with pytest.raises(ToolError, match="--run-name"):
        reconsolidate_job(str(facts["job"]), run_name=run_name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs"]
    assert sorted(p.name for p in (facts["job"] / "manifests" / "output").iterdir()) == ["output.manifest"]


def test_no_worker_responses_is_a_clear_error(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS[:1], no_responses=(0,))
    with pytest.raises(ToolError, match="no worker responses"):
        reconsolidate_job(str(facts["job"]))


# --------------------------------------------------------------------------- outside input

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
answer_like = st.fixed_dictionaries(
    {
        "crowd-semantic-segmentation": st.fixed_dictionaries(
            {
                "inputImageProperties": json_values
                | st.fixed_dictionaries({"width": json_values, "height": json_values}),
                "labelMappings": json_values
                | st.dictionaries(st.sampled_from(["road", "car", "x"]), json_values),
                "labeledImage": json_values | st.fixed_dictionaries({"pngImageData": st.text(max_size=12)}),
            }
        )
    }
)


@settings(max_examples=150, deadline=None)
@example([{"crowd-semantic-segmentation": {"inputImageProperties": {"width": float("inf"), "height": 1},
                                           "labeledImage": {"pngImageData": "iVBORw0KGgo="}}}])  # fmt: skip
@given(st.lists(json_values | answer_like | st.text(max_size=20), min_size=1, max_size=3))
def test_any_worker_answer_content_is_used_or_rejected_with_a_reason(contents):
    responses = [WorkerResponse(f"w{i}", content, None, None, "test") for i, content in enumerate(contents)]
    answers, rejected = answers_from_responses(responses, None)
    assert len(answers) + len(rejected) == len(contents)
    assert all(reason for _, reason in rejected)
    outcome = consolidate_worker_answers(answers, ClassMap.from_labels(["road", "car"]))
    assert outcome.result is not None or outcome.failure_reason


@settings(max_examples=80, deadline=None)
@given(json_values)
def test_any_worker_response_file_is_read_or_reported(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("wr") / "2024-05-01_12:00:00.json"
    path.write_text(json.dumps(doc))
    responses, problems = read_worker_responses(JobData(), [str(path)])
    assert responses or problems or (isinstance(doc, dict) and doc.get("answers") == [])


def test_worker_responses_of_the_latest_iteration_are_used(tmp_path):
    root = tmp_path / "job" / "annotations" / "worker-response"
    for rel in ("iteration-1/0/a.json", "iteration-2/0/b.json", "iteration-2/0/c.json", "iteration-1/1/d.json",
                "iteration-1/1/notes.txt", "stray.json"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}")
    files = worker_response_files(JobData(), str(tmp_path / "job"))
    assert {k: [Path(f).name for f in v] for k, v in files.items()} == {
        "0": ["b.json", "c.json"],
        "1": ["d.json"],
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("s3://b/p/job/annotations/consolidated-annotation/output/12_2024-05-01T12:00:05.123456.png", "12"),
        ("s3://b/p/job/annotations/consolidated-annotation/output/iteration-1/7.png", "7"),
        ("/local/job/annotations/consolidated-annotation/output/3_2024-05-01T12_00_05.png", "3"),
        ("s3://b/masks/cat.png", None),
    ],
)
def test_dataset_object_id_from_mask_names(name, expected):
    assert dataset_object_id_from_mask(name) == expected


def test_job_level_uses_the_whole_jobs_evidence_about_each_worker(tmp_path):
    # The same three people label every object (worker ids follow their position); on the first
    # objects a fourth, careful worker shows who is who, on the last nobody agrees with anybody.
    pool = ("average", "blobs", "spammer")
    facts = write_built_in_job(tmp_path, [(*pool, "careful")] * 4 + [pool], drift=False)
    outputs = facts["job"] / "manifests" / "output"
    masks = facts["job"] / "annotations" / "consolidated-annotation"
    reconsolidate_job(str(facts["job"]), run_name="alone")
    job_level = reconsolidate_job(str(facts["job"]), job_level=True)
    assert job_level.job_level and job_level.workers_measured == 4
    assert job_level.new_manifest.endswith("reconsolidated-gtseg-job-level.manifest")
    comparison = json.loads((outputs / "reconsolidated-gtseg-job-level.comparison.json").read_text())
    last = comparison["objects-compared"][-1]
    assert last["job-level-change"] > 0.05  # the job's evidence changed that object
    truth, cmap = make_scene(104, 48, 32).truth, facts["cmap"]

    def iou_of(run: str) -> float:
        return mean_iou(read_class_mask((masks / run / "4.png").read_bytes(), cmap), truth, len(cmap))

    real_worker = facts["masks"]["4"][0]
    assert iou_of("reconsolidated-gtseg-job-level") >= mean_iou(real_worker, truth, len(cmap)) - 0.02
    assert iou_of("reconsolidated-gtseg-job-level") > iou_of("alone") + 0.1
    # deterministic: a second run writes the same bytes
    again = reconsolidate_job(str(facts["job"]), job_level=True, run_name="again")
    assert (masks / "again" / "4.png").read_bytes() == (
        masks / "reconsolidated-gtseg-job-level" / "4.png"
    ).read_bytes()
    assert again.mean_job_level_change == job_level.mean_job_level_change


def test_objects_the_lambda_failed_on_a_transient_fault_are_repaired(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS)
    manifest = facts["job"] / "manifests" / "output" / "output.manifest"
    lines = read_lines(manifest)
    lines[1] = {
        "source-ref": lines[1]["source-ref"],
        f"{LAN}-metadata": {
            **META,
            "failure-reason": "transient: reading the answer s3://x: transient fault (SlowDown)",
        },
    }
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = reconsolidate_job(str(facts["job"]))
    repaired = read_lines(facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest")[1]
    assert LAN in repaired and "failure-reason" not in repaired[f"{LAN}-metadata"]
    assert summary.reconsolidated == 3 and not summary.kept


def test_an_adjustment_jobs_status_is_kept_from_the_workers_answers(tmp_path):
    facts = write_built_in_job(tmp_path, CROWDS[:2])
    for number, flags in (("0", (False, True, False)), ("1", (False, False, False))):
        (path,) = (facts["job"] / "annotations" / "worker-response" / "iteration-1" / number).iterdir()
        doc = json.loads(path.read_text())
        for answer, flag in zip(doc["answers"], flags, strict=True):
            next(iter(answer["answerContent"].values()))["initialValueModified"] = flag
        path.write_text(json.dumps(doc))
    reconsolidate_job(str(facts["job"]))
    new_lines = read_lines(facts["job"] / "manifests" / "output" / "reconsolidated-gtseg.manifest")
    assert [line[f"{LAN}-metadata"]["adjustment-status"] for line in new_lines] == ["adjusted", "unadjusted"]
    local = facts["job"] / new_lines[0][LAN][len(REMOTE_JOB) + 1 :]
    assert json.loads(local.with_suffix(".json").read_text())["adjustment-status"] == "adjusted"
