"""A small simulated labeling job through the same path as `make demo`: gtseg's real launcher,
pre-annotation and consolidation handlers in awslambdaric sandboxes, moto S3, the SageMaker
stand-in, the real worker template, simulated workers."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gtseg.cli import main
from gtseg.cli.simulate import format_summary
from gtseg.core.labels import BACKGROUND, BACKGROUND_COLOR, ClassMap
from gtseg.core.manifest import ManifestError, parse_manifest
from gtseg.local.simulated_job import SimulationError, SimulationOptions, run_simulation
from gtseg.local.simulation import DEFAULT_LABELS

PROFILES = ("careful", "average", "average", "sloppy", "spammer")  # the make demo crowd


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulate")
    options = SimulationOptions(
        objects=3, profiles=PROFILES, seed=11, size=(320, 240), out_dir=out, batch_size=2
    )
    return run_simulation(options)


def test_the_job_completes_with_every_object_labeled(job):
    report = job.report
    assert report.status == "Completed", report.failure_reason
    assert [o.status for o in report.objects] == ["labeled"] * 3
    assert report.contract_problems == []
    assert len(report.batches) == 2  # batch size 2 over 3 objects
    assert all(o.rendered and not o.rendered.problems for o in report.objects)
    assert job.launch["objectCount"] == 3
    # boto3 in the sandboxes reached the stand-in: the launcher created the job, and the
    # pre-annotation handler described it to find the label-category file.
    assert job.sagemaker_calls.count("CreateLabelingJob") == 1
    assert "DescribeLabelingJob" in job.sagemaker_calls[job.sagemaker_calls.index("CreateLabelingJob") :]


def test_the_output_manifest_is_complete_and_valid(job):
    """As in a real custom job: the label is the mask URI the Lambda returned, and Ground Truth has
    replaced the Lambda's metadata with its own custom-job metadata (docs/protocol.md §2.4), so the
    colour map lives only in gtseg's sidecar next to the mask."""
    manifest = job.job_dir / "manifests" / "output" / "output.manifest"
    lines = list(parse_manifest(manifest.read_text().splitlines()))
    assert not [item for item in lines if isinstance(item, ManifestError)]
    lan = job.report.label_attribute_name
    assert lan == "gtseg-demo-ref"
    sources = [line.data["source-ref"] for line in lines]
    assert sources == [f"s3://gtseg-demo-data/images/scene-{i:03d}.png" for i in range(3)]
    expected_map = ClassMap.from_labels(DEFAULT_LABELS)
    for number, line in enumerate(lines):
        mask_uri = line.data[lan]
        assert mask_uri.startswith(
            "s3://gtseg-demo-output/jobs/gtseg-demo/annotations/consolidated-annotation/output/"
        )
        metadata = line.data[f"{lan}-metadata"]
        assert metadata["type"] == "groundtruth/custom"
        assert metadata["job-name"] == "gtseg-demo"
        assert metadata["human-annotated"] == "yes"
        assert "internal-color-map" not in metadata
        # The mask it points to was downloaded: an 8-bit palette PNG of the image's size.
        local_png = job.job_dir / mask_uri.removeprefix("s3://gtseg-demo-output/jobs/gtseg-demo/")
        with Image.open(local_png) as png:
            assert png.mode == "P" and png.size == (320, 240)
            assert int(np.asarray(png).max()) < len(expected_map)
        sidecar = json.loads(local_png.with_suffix(".json").read_text())
        assert sidecar["datasetObjectId"] == str(number)
        assert sidecar["job-name"] == "gtseg-demo"
        assert len(sidecar["workers"]) == len(PROFILES)
        color_map = {str(c["index"]): {"class-name": c["class-name"], "hex-color": c["hex-color"]}
                     for c in sidecar["classes"]}  # fmt: skip
        assert color_map["0"] == {"class-name": BACKGROUND, "hex-color": BACKGROUND_COLOR}
        assert ClassMap.from_internal_color_map(color_map) == expected_map
    # What the Lambda returned (the built-in-style metadata) is kept in consolidation-response/.
    responses = sorted(
        (job.job_dir / "annotations" / "consolidated-annotation" / "consolidation-response").rglob("*.json")
    )
    returned = json.loads(responses[0].read_text())[0]["consolidatedAnnotation"]["content"][f"{lan}-metadata"]
    assert returned["type"] == "groundtruth/semantic-segmentation"
    assert returned["job-name"] == "labeling-job/gtseg-demo"
    assert all(0.0 <= entry["confidence"] <= 1.0 for entry in returned["internal-color-map"].values())


def test_worker_responses_are_stored_as_ground_truth_does(job):
    base = job.job_dir / "annotations" / "worker-response" / "iteration-1"
    assert sorted(p.name for p in base.iterdir()) == ["0", "1", "2"]
    (response,) = list((base / "1").iterdir())
    answers = json.loads(response.read_text())["answers"]
    assert [a["workerId"].rsplit("-", 1)[1] for a in answers] == list(PROFILES)
    seg = answers[0]["answerContent"]["crowd-semantic-segmentation"]
    assert seg["inputImageProperties"] == {"height": 240, "width": 320}
    assert list(seg["labelMappings"]) == list(DEFAULT_LABELS)


def test_consolidation_beats_the_sloppiest_worker(job):
    by_profile = {row["profile"]: row["mean_iou"] for row in job.profile_summary()}
    consolidated = job.to_dict()["meanIoU"]["consolidated"]
    assert consolidated > by_profile["sloppy"]
    for score in job.scores:
        sloppy = [iou for _, profile, iou in score.worker_iou if profile == "sloppy"]
        assert score.consolidated_iou > max(sloppy)


def test_a_spammer_does_not_drag_consolidation_below_majority_vote(job):
    # Majority vote of the very same worker masks is the floor (design.md: "the floor, not the goal").
    means = job.to_dict()["meanIoU"]
    assert means["consolidated"] >= means["majorityVote"]
    assert all(score.majority_iou is not None for score in job.scores)
    spammer_quality = [
        row["estimated_quality"] for row in job.profile_summary() if row["profile"] == "spammer"
    ]
    careful_quality = [
        row["estimated_quality"] for row in job.profile_summary() if row["profile"] == "careful"
    ]
    assert spammer_quality[0] < careful_quality[0]


def test_summary_tells_the_user_where_results_are_and_what_next(job):
    text = format_summary(job)
    assert "Completed" in text and "3 labeled, 0 failed" in text
    assert str(job.job_dir / "manifests" / "output" / "output.manifest") in text
    assert "gtseg report" in text and "gtseg export" in text
    assert "Time: samples " in text and "consolidation " in text
    saved = json.loads((job.job_dir / "local-emulator" / "summary.json").read_text())
    assert (
        saved["labeled"] == 3 and saved["meanIoU"]["consolidated"] == job.to_dict()["meanIoU"]["consolidated"]
    )
    assert {"pre-annotation", "workers", "consolidation", "total"} <= set(saved["seconds"])


def test_under_make_demo_the_next_commands_name_the_venv_script(job, monkeypatch):
    """make puts .venv/bin on its own PATH; the user's shell, where they paste the command, has not."""
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "gtseg").is_file():
        pytest.skip("gtseg is not installed next to this Python")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("MAKELEVEL", "1")
    (export_line,) = [line for line in format_summary(job).splitlines() if " export " in line]
    command = Path(shlex.split(export_line)[0])
    assert command.name == "gtseg" and command.is_file(), export_line


def test_lambda_logs_are_kept_per_function(job):
    logs = job.job_dir / "local-emulator" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "consolidation.log",
        "launcher.log",
        "pre-annotation.log",
    ]
    assert "gtseg-demo" in (logs / "consolidation.log").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"profiles": ("careful", "genius")}, "unknown worker profile(s) genius"),
        ({"workers": 10}, "--workers must be 1..9"),
        ({"objects": 0}, "--objects must be at least 1"),
        ({"seed": -1}, "--seed must be 0 or more"),
        ({"job_name": "../elsewhere"}, "--job-name '../elsewhere'"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(tmp_path, options, message):
    with pytest.raises(SimulationError, match=re.escape(message)):
        run_simulation(SimulationOptions(out_dir=tmp_path, **options))
    assert not any(tmp_path.iterdir())


def test_a_negative_object_count_with_images_is_refused_not_cut_silently(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(images / name)
    with pytest.raises(SimulationError, match=re.escape("--objects must be at least 1")):
        run_simulation(SimulationOptions(images_dir=images, objects=-1, out_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_an_out_path_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "results"
    a_file.write_text("mine")
    with pytest.raises(SimulationError, match="is a file, not a folder"):
        run_simulation(SimulationOptions(objects=1, out_dir=a_file))
    assert a_file.read_text() == "mine"


def test_an_earlier_folder_not_written_by_simulate_is_left_alone(tmp_path):
    precious = tmp_path / "gtseg-demo"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(SimulationError, match="not written by gtseg simulate"):
        run_simulation(SimulationOptions(objects=1, out_dir=tmp_path))
    assert (precious / "keep.txt").read_text() == "mine"


def test_your_own_images_go_through_the_same_job(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    picture = np.zeros((48, 64, 3), dtype=np.uint8)
    picture[:24] = (200, 40, 40)
    picture[24:, :32] = (40, 200, 40)
    Image.fromarray(picture).save(images / "street.jpg")
    (images / "notes.txt").write_text("not an image: ignored")
    result = run_simulation(
        SimulationOptions(
            images_dir=images, profiles=("careful", "average", "spammer"), out_dir=tmp_path / "out"
        )
    )
    assert result.truth_kind == "quantised"
    assert result.report.status == "Completed" and result.report.count("labeled") == 1
    (line,) = [
        item.data
        for item in parse_manifest(
            (result.job_dir / "manifests/output/output.manifest").read_text().splitlines()
        )
    ]
    assert line["source-ref"] == "s3://gtseg-demo-data/images/street.jpg"
    assert (result.input_dir / "images" / "street.jpg").read_bytes() == (images / "street.jpg").read_bytes()
    assert "colour-quantised stand-in" in format_summary(result)


def test_odd_file_names_and_an_out_folder_with_spaces_work_and_the_next_commands_run(tmp_path, capsys):
    """S3 keys may hold '%' and spaces; the printed commands must survive copy and paste."""
    images = tmp_path / "my pictures"
    images.mkdir()
    picture = np.zeros((32, 48, 3), dtype=np.uint8)
    picture[:16] = (200, 40, 40)
    for name in ("a%20b.png", "it's #1.png"):
        Image.fromarray(picture).save(images / name)
    out = tmp_path / "my results"
    assert main(["simulate", "--images", str(images), "--workers", "3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "2 labeled, 0 failed" in text
    (export_line,) = [line for line in text.splitlines() if " export " in line]
    argv = shlex.split(export_line)
    assert argv[1] == "export" and argv[argv.index("--out") + 1] == f"{out}/dataset"
    assert main([*argv[1:], "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == 2
    assert sorted(p.name for p in (out / "dataset" / "images").iterdir()) == ["a%20b.png", "it's #1.png"]


def test_a_job_that_fails_before_its_output_points_at_the_logs_not_at_missing_files(tmp_path):
    template = tmp_path / "broken.liquid.html"
    template.write_text("{% iff task.input.taskObject %}<p>typo in a tag</p>{% endif %}")
    result = run_simulation(
        SimulationOptions(objects=1, workers=1, template=template, out_dir=tmp_path / "out")
    )
    assert result.report.status == "Failed"
    text = format_summary(result)
    assert "does not parse" in text and "No output manifest" in text
    assert "job-report.json" in text and (result.job_dir / "local-emulator" / "job-report.json").is_file()
    assert "gtseg export" not in text and "gtseg report" not in text


def test_an_images_folder_without_images_is_refused(tmp_path):
    with pytest.raises(SimulationError, match=re.escape("no .jpg, .jpeg or .png files")):
        run_simulation(SimulationOptions(images_dir=tmp_path, out_dir=tmp_path / "out"))


def test_a_single_worker_quality_is_not_estimated_rather_than_zero(tmp_path):
    result = run_simulation(SimulationOptions(objects=1, workers=1, size=(96, 64), out_dir=tmp_path))
    (row,) = result.profile_summary()
    assert row["profile"] == "careful" and row["mean_iou"] > 0.5
    assert row["estimated_quality"] is None  # not 0.0: nobody to compare a lone worker with
    assert re.search(r"worker: careful\s+1\s+\d\.\d{3}\s+n/a", format_summary(result))


def test_the_cli_runs_a_job_and_exits_0(tmp_path, capsys):
    code = main(
        ["simulate", "--objects", "1", "--size", "96x64", "--workers", "3", "--out", str(tmp_path), "--quiet"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Job gtseg-demo: Completed - 1 objects, 3 workers each (careful, average, average)" in out
    assert (tmp_path / "gtseg-demo" / "manifests" / "output" / "output.manifest").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "640"], "--size wants WIDTHxHEIGHT"),
        (["--profiles", "lazy"], "unknown worker profile(s) lazy"),
    ],
)
def test_the_cli_explains_bad_options_and_exits_2(tmp_path, capsys, argv, message):
    assert main(["simulate", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_an_earlier_job_is_kept_unless_force_and_then_replaced_whole(tmp_path, capsys):
    argv = [
        "simulate",
        "--objects",
        "1",
        "--size",
        "64x48",
        "--workers",
        "2",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(argv) == 0
    manifest = tmp_path / "gtseg-demo" / "manifests" / "output" / "output.manifest"
    (tmp_path / "gtseg-demo" / "mine.txt").write_text("notes on the first run")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("gtseg simulate: ") and "holds an earlier job" in err[-1] and "--force" in err[-1]
    )
    assert (tmp_path / "gtseg-demo" / "mine.txt").is_file() and manifest.is_file()
    assert main([*argv, "--force", "--seed", "3"]) == 0
    assert manifest.is_file() and not (tmp_path / "gtseg-demo" / "mine.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gtseg-demo"]  # no staging folder left


def test_an_interrupted_run_leaves_no_partial_job_folder(tmp_path):
    def interrupt(phase: str, done: int, total: int) -> None:
        if phase == "consolidation":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_simulation(
            SimulationOptions(objects=2, workers=2, size=(64, 48), out_dir=tmp_path), progress=interrupt
        )
    assert list(tmp_path.iterdir()) == []


def test_unreadable_images_are_skipped_with_a_note_subfolders_included_exif_applied(tmp_path, capsys):
    images = tmp_path / "images"
    (images / "day2").mkdir(parents=True)
    picture = np.zeros((40, 60, 3), dtype=np.uint8)
    picture[:20] = (200, 40, 40)
    Image.fromarray(picture).save(images / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees: 40x60 on screen
    Image.fromarray(picture).save(images / "day2" / "rotated.jpg", exif=exif.tobytes())
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    assert main(["simulate", "--images", str(images), "--workers", "2", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "note: --images: skipped broken.jpg: not a readable image" in captured.err
    assert "note: --images: day2/rotated.jpg: EXIF orientation 6 applied" in captured.err
    assert "2 labeled, 0 failed" in captured.out
    uploaded = out / "gtseg-demo" / "local-emulator" / "data-bucket" / "images" / "day2" / "rotated.jpg"
    with Image.open(uploaded) as upright:
        assert upright.size == (40, 60) and upright.getexif().get(0x0112, 1) == 1
