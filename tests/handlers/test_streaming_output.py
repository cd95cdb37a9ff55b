"""The streaming-output Lambda in-process against moto S3: an announced line whose metadata Ground
Truth replaced becomes a built-in-form line (colour map from gtseg's sidecar), an index mask and the
job's class list; a resend overwrites the same files; a line that cannot be finalized is counted,
not retried; the lines of a stopped job gather into one manifest."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from gtseg.aws.s3 import S3Store
from gtseg.core.labels import ClassMap
from gtseg.core.masks import encode_index_png
from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass
from gtseg.core.streaming import STREAMING_DATASET_DIR, dataset_stem
from gtseg.handlers import streaming_output
from gtseg.streaming.output import gather_lines
from gtseg.tools.class_maps import load_class_map_file

BUCKET = "gtseg-output"
JOB_ROOT = f"s3://{BUCKET}/jobs/Live-Cams"
LAN = "Live-Cams-ref"
IMAGE = "s3://gtseg-data/incoming/cam-1/frame 0001.jpg"
CLASSES = ClassMap.from_labels(["road", "car"])


def sns_event(*messages: str) -> dict:
    return {
        "Records": [
            {"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": m}} for m in messages
        ]
    }


@pytest.fixture
def store(monkeypatch):
    monkeypatch.delenv("OUTPUT_KMS_KEY_ID", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        streaming_output.CLIENTS.store = S3Store(client=s3)
        yield S3Store(client=s3)
        streaming_output.CLIENTS.reset()


def announced_object(store: S3Store, object_id: str = "0") -> dict:
    """What Ground Truth announces for a custom job: the input line, our mask URI and its own
    groundtruth/custom metadata (the colour map we returned is gone; the sidecar has it)."""
    indices = np.zeros((4, 6), dtype=np.uint8)
    indices[1:3, 2:5] = 2
    mask = f"{JOB_ROOT}/annotations/consolidated-annotation/output/iteration-1/{object_id}.png"
    store.put_bytes(mask, encode_index_png(indices, CLASSES), "image/png")
    sidecar = ConsolidationSidecar(
        datasetObjectId=object_id,
        **{"job-name": "Live-Cams", "image-confidence": 0.75},
        classes=[
            SidecarClass(index=i, **{"class-name": n, "hex-color": c})
            for i, (n, c) in enumerate(zip(CLASSES.names, CLASSES.colors, strict=True))
        ],
    )
    store.put_bytes(mask[: -len(".png")] + ".json", sidecar.to_json_bytes(), "application/json")
    return {
        "source-ref": IMAGE,
        "dataset-objectid-attribute-name": "source-ref",
        LAN: mask,
        f"{LAN}-metadata": {
            "type": "groundtruth/custom",
            "job-name": "labeling-job/live-cams",
            "human-annotated": "yes",
            "creation-date": "2026-12-01T10:00:00.000000",
        },
    }


def test_an_announced_object_lands_in_the_streaming_dataset_in_built_in_form(store):
    line = announced_object(store)
    result = streaming_output.handler(sns_event(json.dumps(line)), None)
    assert result == {"finalized": 1, "rejected": 0}

    stem = dataset_stem(IMAGE)
    root = f"{JOB_ROOT}/{STREAMING_DATASET_DIR}"
    written = json.loads(store.get_bytes(f"{root}/lines/{stem}.json"))
    meta = written[f"{LAN}-metadata"]
    assert meta["type"] == "groundtruth/semantic-segmentation"
    assert meta["job-name"] == "labeling-job/Live-Cams"  # the job's own case, from the sidecar
    assert meta["internal-color-map"]["2"] == {
        "class-name": "car",
        "hex-color": CLASSES.colors[2],
        "confidence": 0.75,
    }
    assert written["source-ref"] == IMAGE and written[LAN] == line[LAN]
    with Image.open(io.BytesIO(store.get_bytes(f"{root}/masks/{stem}.png"))) as mask:
        assert mask.mode == "L"  # single channel, pixel = class index
        assert np.asarray(mask)[1, 2] == 2 and np.asarray(mask)[0, 0] == 0
    labels_bytes = store.get_bytes(f"{root}/labels.json")
    labels = json.loads(labels_bytes)
    assert [c["name"] for c in labels["classes"]] == ["BACKGROUND", "road", "car"]
    # gtseg export's labels.json, without the pixel counts a never-finished dataset cannot have:
    # an export or finalize can start from it (--class-map, --labels)
    assert labels["schema"] == "gtseg/labels@1" and all("pixels" not in c for c in labels["classes"])
    assert load_class_map_file(labels_bytes).names == ("BACKGROUND", "road", "car")


def test_a_second_announcement_of_the_same_image_overwrites_the_same_files(store):
    line = announced_object(store)
    streaming_output.handler(sns_event(json.dumps(line)), None)
    first = sorted(store.list_keys(f"{JOB_ROOT}/{STREAMING_DATASET_DIR}/"))
    streaming_output.handler(sns_event(json.dumps(line)), None)
    assert sorted(store.list_keys(f"{JOB_ROOT}/{STREAMING_DATASET_DIR}/")) == first
    assert len(first) == 3


def test_a_line_that_cannot_be_finalized_is_counted_not_retried(store):
    good = announced_object(store)
    no_mask = {"source-ref": IMAGE, f"{LAN}-metadata": {"failure-reason": "expired"}}
    result = streaming_output.handler(sns_event("not json", json.dumps(no_mask), json.dumps(good)), None)
    assert result == {"finalized": 1, "rejected": 2}


def test_the_envelope_of_an_sqs_delivery_is_unwrapped_too(store):
    envelope = {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(announced_object(store))}
    assert streaming_output.handler(sns_event(json.dumps(envelope)), None)["finalized"] == 1


def test_the_lines_of_a_stopped_job_gather_into_one_manifest(store):
    streaming_output.handler(sns_event(json.dumps(announced_object(store))), None)
    other = announced_object(store, "1")
    other["source-ref"] = "s3://gtseg-data/incoming/cam-2/frame 0001.jpg"
    streaming_output.handler(sns_event(json.dumps(other)), None)
    manifest, count = gather_lines(store, JOB_ROOT)
    assert count == 2 and manifest == f"{JOB_ROOT}/{STREAMING_DATASET_DIR}/output.manifest"
    lines = [json.loads(x) for x in store.get_bytes(manifest).decode().splitlines()]
    assert {x["source-ref"] for x in lines} == {IMAGE, other["source-ref"]}
