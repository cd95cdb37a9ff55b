"""``gtseg simulate --streaming`` end to end: a streaming job through gtseg's real launcher,
pre-annotation, consolidation and streaming-output Lambdas, with moto's S3, SNS and SQS. Objects
arrive in the three ways a streaming job takes them while it runs, a resend is de-duplicated, each
labeled object is announced and finalized into the job's streaming dataset, and the job is stopped."""

from __future__ import annotations

import contextlib
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from gtseg import cli
from gtseg.core.streaming import STREAMING_DATASET_DIR
from gtseg.local.streaming import StreamingGroundTruthEmulator

OBJECTS = 4  # 2 first objects, 1 sent to the topic (and resent), 1 uploaded


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, object]:
    out = tmp_path_factory.mktemp("streaming")
    argv = ["simulate", "--streaming", "--objects", str(OBJECTS), "--profiles", "careful,average,sloppy"]
    argv += ["--size", "160x120", "--out", str(out), "--quiet"]
    buffer = io.StringIO()
    subscribe = StreamingGroundTruthEmulator._subscribe

    def slow_subscribe(self, topic, job_name):
        # as on a loaded machine: the engine's thread subscribes its queue late; what the run sends
        # once the job says InProgress must still reach the job (it was lost, 1 run in 5 under load)
        time.sleep(1.5)
        return subscribe(self, topic, job_name)

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(buffer):
        patch.setattr(StreamingGroundTruthEmulator, "_subscribe", slow_subscribe)
        code = cli.main(argv)
    return code, buffer.getvalue(), out / "gtseg-demo"


def test_the_streaming_job_labels_every_object_and_is_stopped(run):
    code, printed, job_dir = run
    assert code == 0, printed
    summary = json.loads((job_dir / "local-emulator" / "summary.json").read_text())
    assert summary["status"] == "Stopped" and summary["labeled"] == OBJECTS and summary["failed"] == 0
    log = summary["streaming"]["log"]
    assert log["objects"] == {"manifest": 2, "sns": 1, "s3": 1}  # the three ways in
    assert log["duplicates"] == ["s3://gtseg-demo-data/sent/scene-002.png"]  # the resend, labeled once
    assert log["announced"] == OBJECTS and log["leftInQueue"] == 0
    assert (
        "Job gtseg-demo: Stopped" in printed and "resent and de-duplicated (not labeled twice): 1" in printed
    )


def test_each_announced_object_is_finalized_into_the_streaming_dataset(run):
    _, _, job_dir = run
    dataset = job_dir / STREAMING_DATASET_DIR
    lines = sorted((dataset / "lines").glob("*.json"))
    assert len(lines) == OBJECTS
    manifest = [json.loads(x) for x in (dataset / "output.manifest").read_text().splitlines()]
    assert len(manifest) == OBJECTS
    sources = {line["source-ref"] for line in manifest}
    assert any("/incoming/" in s for s in sources) and any("/sent/" in s for s in sources)
    for line in manifest:
        meta = line["gtseg-demo-ref-metadata"]
        assert meta["type"] == "groundtruth/semantic-segmentation"  # back in the built-in form
        assert meta["internal-color-map"]["0"]["class-name"] == "BACKGROUND"
    labels = json.loads((dataset / "labels.json").read_text())
    for mask_file in (dataset / "masks").glob("*.png"):
        with Image.open(mask_file) as mask:
            assert mask.mode == "L"
            assert int(np.asarray(mask).max()) < len(labels["classes"])


def test_the_job_output_is_ground_truths_layout_and_the_uploads_carry_the_service_key(run):
    _, _, job_dir = run
    output = [
        json.loads(x) for x in (job_dir / "manifests" / "output" / "output.manifest").read_text().splitlines()
    ]
    assert len(output) == OBJECTS
    uploaded = [line for line in output if "/incoming/" in line["source-ref"]]
    (line,) = uploaded
    # an S3-sourced object: Ground Truth's own de-duplication key and ID (developer guide)
    assert line["dataset-objectid-attribute-name"] == "$gtseg-demo-ref-object-id"
    assert line["$gtseg-demo-ref-object-id"].startswith(line["source-ref"])
    assert (job_dir / "local-emulator" / "logs" / "streaming-output.log").is_file()
