"""The pre-annotation Lambda, in-process against moto S3.

SageMaker's DescribeLabelingJob is not in moto, so it is a botocore Stubber (which still checks
our request against the real API model); the model endpoint is a small fake client that returns
or raises what each test needs (a timeout is botocore's own ReadTimeoutError).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st
from moto import mock_aws
from PIL import Image

from gtseg.aws.observability import logger as gtseg_logger
from gtseg.aws.s3 import S3Store
from gtseg.core.gold import GOLD_KEY, GoldReference, gold_line
from gtseg.core.labels import ClassMap, LabelCategoryConfig
from gtseg.core.masks import read_class_mask
from gtseg.handlers import pre_annotation as pre
from gtseg.pre_annotation.prelabel import PRELABEL_MIN_REMAINING_MS

REGION = "us-east-1"
DATA = "gtseg-data"
OUTPUT = "gtseg-output"
JOB_NAME = "street-seg-1"
JOB_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:labeling-job/{JOB_NAME}"
# One session for the module: botocore loads each service model once per session, which is most of
# the cost of creating a client.
SESSION = boto3.session.Session(region_name=REGION)
ENV_VARS = ("LABEL_CATEGORY_CONFIG_URI", "PRIOR_LABEL_ATTRIBUTE", "PRELABEL_ENDPOINT_NAME", "OUTPUT_BUCKET")


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    pre.reset_state()
    with mock_aws():
        client = SESSION.client("s3")
        client.create_bucket(Bucket=DATA)
        client.create_bucket(Bucket=OUTPUT)
        yield client
    pre.reset_state()


class RecordingStore(S3Store):
    """The real S3Store, noting every ranged and whole-object read."""

    def __init__(self) -> None:
        super().__init__(client=SESSION.client("s3"))
        self.ranges: list[tuple[str, int, int]] = []
        self.whole_reads: list[str] = []

    def get_range(self, uri: str, first: int, last: int) -> tuple[bytes, int | None]:
        self.ranges.append((uri, first, last))
        return super().get_range(uri, first, last)

    def get_bytes(self, uri: str) -> bytes:
        self.whole_reads.append(uri)
        return super().get_bytes(uri)


@pytest.fixture
def store(s3: Any) -> RecordingStore:
    recording = RecordingStore()
    pre.CLIENTS.store = recording
    return recording


class LogLines(list):
    """Every JSON log line the handler has written so far, parsed (read live by iterating)."""

    def __init__(self, buffer: io.StringIO) -> None:
        super().__init__()
        self.buffer = buffer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([json.loads(line) for line in self.buffer.getvalue().splitlines() if line.strip()])

    def __getitem__(self, index: Any) -> Any:
        return list(iter(self))[index]


@pytest.fixture
def logs() -> Iterator[LogLines]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(gtseg_logger.registered_formatter)
    gtseg_logger.addHandler(handler)
    yield LogLines(buffer)
    gtseg_logger.removeHandler(handler)


def encoded(width: int, height: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 95)).save(buf, format=fmt)
    return buf.getvalue()


def put(s3: Any, key: str, body: bytes, bucket: str = DATA) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def put_labels(s3: Any, key: str, labels: list[str]) -> str:
    return put(s3, key, LabelCategoryConfig.from_labels(labels).to_json().encode())


def event(data_object: Any, job_arn: Any = JOB_ARN) -> dict[str, Any]:
    return {"version": "2018-10-16", "labelingJobArn": job_arn, "dataObject": data_object}


def invoke(evt: Any) -> dict[str, Any]:
    response = pre.handler(evt, None)
    assert json.loads(json.dumps(response)) == response  # Lambda must be able to serialise it
    assert type(response["isHumanAnnotationRequired"]) is bool  # a JSON boolean, not "true"
    return response


def skipped_reason(response: dict[str, Any]) -> str:
    assert response["isHumanAnnotationRequired"] is False
    return response["taskInput"]["skipReason"]


def emitted_metrics(captured: str) -> list[str]:
    names = []
    for line in captured.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names.extend(metric["Name"] for metric in directive["Metrics"])
    return names


def describe_response(label_uri: str | None) -> dict[str, Any]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    response: dict[str, Any] = {
        "LabelingJobStatus": "InProgress",
        "LabelCounters": {},
        "CreationTime": now,
        "LastModifiedTime": now,
        "JobReferenceCode": "ref",
        "LabelingJobName": JOB_NAME,
        "LabelingJobArn": JOB_ARN,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": f"s3://{DATA}/in.manifest"}}},
        "OutputConfig": {"S3OutputPath": f"s3://{OUTPUT}/out/"},
        "RoleArn": "arn:aws:iam::123456789012:role/GroundTruthRole",
        "HumanTaskConfig": {
            "WorkteamArn": f"arn:aws:sagemaker:{REGION}:123456789012:workteam/private-crowd/team",
            "UiConfig": {"UiTemplateS3Uri": f"s3://{DATA}/template.liquid.html"},
            "TaskTitle": "Segment",
            "TaskDescription": "Segment streets",
            "NumberOfHumanWorkersPerDataObject": 3,
            "TaskTimeLimitInSeconds": 600,
        },
    }
    if label_uri:
        response["LabelCategoryConfigS3Uri"] = label_uri
    return response


@pytest.fixture
def sagemaker(s3: Any) -> Iterator[Stubber]:
    client = SESSION.client("sagemaker")
    stubber = Stubber(client)
    pre.CLIENTS.sagemaker = client
    with stubber:
        yield stubber


class FakeEndpoint:
    """Stands in for the sagemaker-runtime client: one canned answer or error."""

    def __init__(
        self, body: bytes = b"", content_type: str = "image/png", error: Exception | None = None
    ) -> None:
        self.body, self.content_type, self.error = body, content_type, error
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return {"Body": io.BytesIO(self.body), "ContentType": self.content_type}


def index_png(indices: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(indices.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- images


def test_a_valid_jpeg_becomes_a_task(store: RecordingStore, capsys: pytest.CaptureFixture[str]) -> None:
    uri = put(store.client, "img/a.jpg", encoded(64, 48))
    line = {"source-ref": uri, "labels": ["road", "car"], "site": "plant-7"}
    response = invoke(event(line))
    assert response == {
        "taskInput": {"taskObject": uri, "labels": ["road", "car"], "manifestLine": line},
        "isHumanAnnotationRequired": True,
    }
    assert emitted_metrics(capsys.readouterr().out) == ["TaskCreated"]
    # only the header was fetched, never the whole image
    assert store.ranges == [(uri, 0, 64 * 1024 - 1)]
    assert store.whole_reads == []


def test_a_valid_png_with_a_header(store: RecordingStore) -> None:
    uri = put(store.client, "img/b.png", encoded(30, 20, "PNG"))
    response = invoke(event({"source-ref": uri, "labels": ["road"], "header": "Roads only"}))
    assert response["isHumanAnnotationRequired"] is True
    assert response["taskInput"]["header"] == "Roads only"


@pytest.mark.parametrize(
    ("uri", "message", "metric"),
    [
        (f"s3://{DATA}/img/missing.jpg", "does not exist (NoSuchKey)", "SkippedMissingObject"),
        ("s3://no-such-bucket-gtseg/a.jpg", "does not exist (NoSuchBucket)", "SkippedMissingObject"),
    ],
)
def test_missing_objects_are_skipped(
    store: RecordingStore, capsys: pytest.CaptureFixture[str], uri: str, message: str, metric: str
) -> None:
    response = invoke(event({"source-ref": uri, "labels": ["road"]}))
    assert message in skipped_reason(response)
    assert emitted_metrics(capsys.readouterr().out) == [metric]


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("img/a.gif", encoded(8, 8, "GIF"), "is not a jpg/jpeg/png file"),
        ("img/gif-in-disguise.jpg", encoded(8, 8, "GIF"), "GIF image; Ground Truth needs JPEG or PNG"),
        ("img/notes.png", b"these are notes, not pixels", "not a JPEG or PNG file"),
        ("img/empty.jpg", b"", "is an empty file"),
        # SOI, then an APP1 segment that claims 16 KB the file does not have
        ("img/cut.jpg", b"\xff\xd8\xff\xe1\x40\x00", "ends before its size is known"),
    ],
)
def test_files_that_are_not_usable_images_are_skipped(
    store: RecordingStore, capsys: pytest.CaptureFixture[str], key: str, body: bytes, message: str
) -> None:
    uri = put(store.client, key, body)
    response = invoke(event({"source-ref": uri, "labels": ["road"]}))
    assert message in skipped_reason(response)
    assert emitted_metrics(capsys.readouterr().out) == ["SkippedUnsupportedImage"]


def test_an_image_over_100_megapixels_is_skipped_from_its_header(
    store: RecordingStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real PNG header claiming 12000x9000 followed by junk: only the header is ever read.
    header = bytearray(encoded(1, 1, "PNG")[:33])
    header[16:24] = (12000).to_bytes(4, "big") + (9000).to_bytes(4, "big")
    uri = put(store.client, "img/huge.png", bytes(header) + b"\x00" * 200_000)
    response = invoke(event({"source-ref": uri, "labels": ["road"]}))
    assert "12000x9000 (108.0 MP); the limit is 100 MP" in skipped_reason(response)
    assert emitted_metrics(capsys.readouterr().out) == ["SkippedImageTooLarge"]
    assert [r[1:] for r in store.ranges] == [(0, 64 * 1024 - 1)]


@pytest.mark.slow  # moto takes a few seconds to store 40 MB
def test_an_image_over_40_mb_is_skipped_without_downloading_it(store: RecordingStore) -> None:
    uri = put(store.client, "img/heavy.png", encoded(10, 10, "PNG") + b"\x00" * 40_000_000)
    response = invoke(event({"source-ref": uri, "labels": ["road"]}))
    assert "bytes; Ground Truth's limit is 40000000" in skipped_reason(response)
    assert store.whole_reads == [] and len(store.ranges) == 1


@pytest.mark.parametrize(
    ("data_object", "message"),
    [
        ({"source-ref": "s3:/gtseg-data/a.jpg", "labels": ["road"]}, "not an s3://bucket/key URI"),
        ({"source-ref": "gtseg-data/a.jpg", "labels": ["road"]}, "not an s3://bucket/key URI"),
        ({"source-ref": ["s3://gtseg-data/a.jpg"], "labels": ["road"]}, "must be a string, got list"),
        ({"source": "The quick brown fox", "labels": ["road"]}, "inline 'source' text"),
        ({"labels": ["road"]}, "no 'source-ref'"),
    ],
)
def test_bad_sources_are_skipped_with_a_reason(
    store: RecordingStore, capsys: pytest.CaptureFixture[str], data_object: dict, message: str
) -> None:
    response = invoke(event(data_object))
    assert message in skipped_reason(response)
    assert emitted_metrics(capsys.readouterr().out) == ["SkippedInvalidSource"]
    assert store.ranges == []  # nothing was read for a line that names no image


@pytest.mark.parametrize("evt", [None, [], "text", {}, {"dataObject": "x"}, {"labelingJobArn": JOB_ARN}])
def test_events_that_are_not_requests_are_skipped(store: RecordingStore, evt: Any) -> None:
    assert "not a pre-annotation request" in skipped_reason(invoke(evt))


# --------------------------------------------------------------------------- labels


def test_labels_from_the_jobs_label_category_file_are_cached_per_job(
    store: RecordingStore, sagemaker: Stubber
) -> None:
    labels_uri = put_labels(store.client, "config/labels.json", ["road", "car", "person"])
    sagemaker.add_response(
        "describe_labeling_job", describe_response(labels_uri), expected_params={"LabelingJobName": JOB_NAME}
    )
    first = put(store.client, "img/1.jpg", encoded(16, 16))
    second = put(store.client, "img/2.jpg", encoded(16, 16))
    assert invoke(event({"source-ref": first}))["taskInput"]["labels"] == ["road", "car", "person"]
    # The stubber has no second answer: a second describe would fail and leave no labels.
    assert invoke(event({"source-ref": second}))["taskInput"]["labels"] == ["road", "car", "person"]
    sagemaker.assert_no_pending_responses()
    assert store.whole_reads == [labels_uri]  # the file was read once too


def test_manifest_labels_come_before_the_jobs_file(store: RecordingStore, sagemaker: Stubber) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    response = invoke(event({"source-ref": uri, "labels": [{"label": "lane"}]}))
    assert response["taskInput"]["labels"] == ["lane"]
    sagemaker.assert_no_pending_responses()  # and the job was not even described


def test_environment_labels_when_the_job_cannot_be_described(
    store: RecordingStore, sagemaker: Stubber, monkeypatch: pytest.MonkeyPatch, logs: LogLines
) -> None:
    monkeypatch.setenv(
        "LABEL_CATEGORY_CONFIG_URI", put_labels(store.client, "config/env.json", ["sky", "tree"])
    )
    sagemaker.add_client_error("describe_labeling_job", service_error_code="AccessDeniedException")
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    response = invoke(event({"source-ref": uri}))
    assert response["taskInput"]["labels"] == ["sky", "tree"]
    assert any(line["message"] == "cannot describe the labeling job" for line in logs)


@pytest.mark.parametrize(
    ("code", "status"), [("ThrottlingException", 400), ("InternalFailure", 500), ("ServiceUnavailable", 503)]
)
def test_a_throttled_describe_skips_the_object_instead_of_using_the_default_labels(
    store: RecordingStore,
    sagemaker: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
    status: int,
) -> None:
    # The stack always sets LABEL_CATEGORY_CONFIG_URI (the default street-scene file); a job whose
    # own file was merely unreachable must not be shown that list.
    monkeypatch.setenv("LABEL_CATEGORY_CONFIG_URI", put_labels(store.client, "config/env.json", ["sky"]))
    sagemaker.add_client_error("describe_labeling_job", service_error_code=code, http_status_code=status)
    labels_uri = put_labels(store.client, "config/labels.json", ["road", "car"])
    sagemaker.add_response("describe_labeling_job", describe_response(labels_uri))
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    reason = skipped_reason(invoke(event({"source-ref": uri})))
    assert "cannot describe the labeling job" in reason and code in reason
    assert emitted_metrics(capsys.readouterr().out) == ["SkippedNoLabels"]
    # not remembered: the next object describes the job again and gets the job's labels
    assert invoke(event({"source-ref": uri}))["taskInput"]["labels"] == ["road", "car"]
    sagemaker.assert_no_pending_responses()


def test_a_job_that_cannot_be_found_is_not_remembered(
    store: RecordingStore, sagemaker: Stubber, monkeypatch: pytest.MonkeyPatch, logs: LogLines
) -> None:
    monkeypatch.setenv("LABEL_CATEGORY_CONFIG_URI", put_labels(store.client, "config/env.json", ["sky"]))
    sagemaker.add_client_error("describe_labeling_job", service_error_code="ResourceNotFound")
    labels_uri = put_labels(store.client, "config/labels.json", ["road", "car"])
    sagemaker.add_response("describe_labeling_job", describe_response(labels_uri))
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    assert invoke(event({"source-ref": uri}))["taskInput"]["labels"] == ["sky"]
    warning = next(line for line in logs if line["message"] == "cannot describe the labeling job")
    assert JOB_NAME in warning["reason"]
    # the next object describes the job again, and this time finds its file
    assert invoke(event({"source-ref": uri}))["taskInput"]["labels"] == ["road", "car"]
    sagemaker.assert_no_pending_responses()


def test_environment_labels_when_the_job_has_no_label_file(
    store: RecordingStore, sagemaker: Stubber, monkeypatch: pytest.MonkeyPatch, logs: LogLines
) -> None:
    monkeypatch.setenv("LABEL_CATEGORY_CONFIG_URI", put_labels(store.client, "config/env.json", ["sky"]))
    sagemaker.add_response("describe_labeling_job", describe_response(None))
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    assert invoke(event({"source-ref": uri}))["taskInput"]["labels"] == ["sky"]
    # "this job has no label file" is remembered too: a second describe would find the stubber
    # empty and log that the job could not be described
    assert invoke(event({"source-ref": uri}))["taskInput"]["labels"] == ["sky"]
    assert not any(line["message"] == "cannot describe the labeling job" for line in logs)


def test_environment_labels_without_a_job_arn(store: RecordingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_CATEGORY_CONFIG_URI", put_labels(store.client, "config/env.json", ["sky"]))
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    assert invoke(event({"source-ref": uri}, job_arn=None))["taskInput"]["labels"] == ["sky"]


def test_a_broken_job_label_file_skips_the_object_instead_of_using_other_labels(
    store: RecordingStore,
    sagemaker: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABEL_CATEGORY_CONFIG_URI", put_labels(store.client, "config/env.json", ["sky"]))
    bad = put(store.client, "config/bad.json", b'{"labels": [{"label": "road"}]}')
    sagemaker.add_response("describe_labeling_job", describe_response(bad))
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    reason = skipped_reason(invoke(event({"source-ref": uri})))
    assert "label-category file of the job" in reason and "no 'document-version'" in reason and bad in reason
    assert emitted_metrics(capsys.readouterr().out) == ["SkippedNoLabels"]


def test_a_missing_environment_label_file_is_named(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABEL_CATEGORY_CONFIG_URI", f"s3://{DATA}/config/nope.json")
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    reason = skipped_reason(invoke(event({"source-ref": uri}, job_arn=None)))
    assert "cannot read the label-category file" in reason and "nope.json" in reason


def test_no_labels_anywhere_skips_the_object(store: RecordingStore, sagemaker: Stubber) -> None:
    sagemaker.add_response("describe_labeling_job", describe_response(None))
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    assert "no label list found" in skipped_reason(invoke(event({"source-ref": uri})))


def test_invalid_manifest_labels_skip_the_object(store: RecordingStore) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    reason = skipped_reason(invoke(event({"source-ref": uri, "labels": ["road", "road"]})))
    assert "duplicate label 'road'" in reason


# --------------------------------------------------------------------------- prior masks


def with_prior(uri: str, labels: list[str], attribute: str = "first-pass-ref", **metadata: Any) -> dict:
    return {
        "source-ref": uri,
        "labels": labels,
        attribute: f"s3://{OUTPUT}/job/annotations/consolidated-annotation/output/0.png",
        f"{attribute}-metadata": {
            "internal-color-map": ClassMap.from_labels(labels).internal_color_map(),
            "type": "groundtruth/semantic-segmentation",
            **metadata,
        },
    }


def test_a_prior_mask_becomes_the_initial_value(
    store: RecordingStore, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    line = with_prior(uri, ["road", "car"])
    response = invoke(event(line))
    assert response["taskInput"]["initialValue"] == {
        "labelMappings": {"road": {"color": "#2ca02c"}, "car": {"color": "#1f77b4"}},
        "src": line["first-pass-ref"],
    }
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PriorMaskUsed", "TaskCreated"]


def test_a_prior_whose_metadata_ground_truth_replaced_gets_its_colour_map_from_the_sidecar(
    store: RecordingStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A custom job's output line (docs/protocol.md §2.4): no internal-color-map in the metadata;
    the mask's gtseg sidecar says which colour is which class."""
    from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass

    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    line = with_prior(uri, ["road", "car"])
    line["first-pass-ref-metadata"] = {"type": "groundtruth/custom", "job-name": "first-pass",
                                       "human-annotated": "yes", "creation-date": "2024-05-01T12:00:05.000000"}  # fmt: skip
    class_map = ClassMap.from_labels(["road", "car"])
    sidecar = ConsolidationSidecar(
        dataset_object_id="0", job_name="first-pass", mask=line["first-pass-ref"], image_confidence=0.5,
        classes=[SidecarClass(index=i, class_name=n, hex_color=c)
                 for i, (n, c) in enumerate(zip(class_map.names, class_map.colors, strict=True))],
    )  # fmt: skip
    mask_key = line["first-pass-ref"].removeprefix(f"s3://{OUTPUT}/")
    put(store.client, mask_key[:-4] + ".json", sidecar.to_json_bytes(), bucket=OUTPUT)
    response = invoke(event(line))
    assert response["taskInput"]["initialValue"] == {
        "labelMappings": {"road": {"color": "#2ca02c"}, "car": {"color": "#1f77b4"}},
        "src": line["first-pass-ref"],
    }
    # templates that read manifestLine.<prior>-metadata.internal-color-map find it too
    meta = response["taskInput"]["manifestLine"]["first-pass-ref-metadata"]
    assert meta["internal-color-map"]["2"]["class-name"] == "car"
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PriorMaskUsed", "TaskCreated"]


def test_a_replaced_prior_without_a_sidecar_is_a_task_without_initial_value(
    store: RecordingStore, logs: LogLines
) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    line = with_prior(uri, ["road"])
    line["first-pass-ref-metadata"] = {"type": "groundtruth/custom", "job-name": "first-pass"}
    response = invoke(event(line))
    assert response["isHumanAnnotationRequired"] is True and "initialValue" not in response["taskInput"]
    assert any(entry.get("message") == "prior mask has no colour map" for entry in logs)


def test_the_configured_prior_attribute_wins(store: RecordingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIOR_LABEL_ATTRIBUTE", "second-ref")
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    line = with_prior(uri, ["road"]) | with_prior(uri, ["road"], attribute="second-ref")
    line["second-ref"] = f"s3://{OUTPUT}/second.png"
    assert invoke(event(line))["taskInput"]["initialValue"]["src"] == f"s3://{OUTPUT}/second.png"


def test_no_prior_means_no_initial_value(store: RecordingStore) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    assert "initialValue" not in invoke(event({"source-ref": uri, "labels": ["road"]}))["taskInput"]


def test_a_gold_object_becomes_an_ordinary_task_without_its_known_mask(
    store: RecordingStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # The launcher's gold line: the image and the gtseg-gold key. Workers must see a task like any
    # other: no trace of the known mask in taskInput, and the mask is not offered as a prior.
    uri = put(store.client, "img/gold-free-name.jpg", encoded(16, 16))
    known = f"s3://{OUTPUT}/jobs/gold-set/masks/known.png"
    reference = GoldReference.model_validate(
        {"mask": known, "internal-color-map": ClassMap.from_labels(["road", "car"]).internal_color_map()}
    )
    line = {**gold_line(uri, reference), "labels": ["road", "car"]}
    response = invoke(event(line))
    assert response == {
        "taskInput": {
            "taskObject": uri,
            "labels": ["road", "car"],
            "manifestLine": {"source-ref": uri, "labels": ["road", "car"]},
        },
        "isHumanAnnotationRequired": True,
    }
    assert known not in json.dumps(response) and GOLD_KEY not in json.dumps(response)
    assert emitted_metrics(capsys.readouterr().out) == ["TaskCreated"]


def test_a_gold_object_is_not_given_a_prior_even_when_the_setting_names_the_gold_key(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIOR_LABEL_ATTRIBUTE", GOLD_KEY)
    uri = put(store.client, "img/g.jpg", encoded(16, 16))
    known = f"s3://{OUTPUT}/jobs/gold-set/masks/known.png"
    reference = GoldReference.model_validate(
        {"mask": known, "internal-color-map": ClassMap.from_labels(["road"]).internal_color_map()}
    )
    response = invoke(event({**gold_line(uri, reference), "labels": ["road"]}))
    assert response["isHumanAnnotationRequired"] is True
    assert "initialValue" not in response["taskInput"]
    assert known not in json.dumps(response)


def test_a_malformed_prior_still_gives_a_task_without_it(
    store: RecordingStore, capsys: pytest.CaptureFixture[str], logs: LogLines
) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    line = with_prior(uri, ["road"])
    line["first-pass-ref"] = "not a uri"
    response = invoke(event(line))
    assert response["isHumanAnnotationRequired"] is True
    assert "initialValue" not in response["taskInput"]
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PriorMaskRejected", "TaskCreated"]
    warning = next(line for line in logs if line["message"] == "prior mask not offered")
    assert "prior mask 'first-pass-ref' is unusable" in warning["reason"]


# --------------------------------------------------------------------------- model pre-labels


@pytest.fixture
def endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRELABEL_ENDPOINT_NAME", "street-segmenter")
    monkeypatch.setenv("OUTPUT_BUCKET", OUTPUT)


PRELABEL = np.array([[0, 1, 1, 2]] * 3, dtype=np.uint8)  # 4 wide, 3 high


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (index_png(PRELABEL), "image/png"),
        (json.dumps({"mask": PRELABEL.tolist()}).encode(), "application/json"),
    ],
)
def test_a_model_prelabel_is_written_and_offered(
    store: RecordingStore,
    endpoint_env: None,
    capsys: pytest.CaptureFixture[str],
    body: bytes,
    content_type: str,
) -> None:
    image = encoded(4, 3)
    uri = put(store.client, "img/1.jpg", image)
    fake = FakeEndpoint(body, content_type)
    pre.CLIENTS.sagemaker_runtime = fake
    response = invoke(event({"source-ref": uri, "labels": ["road", "car"]}))

    expected_key = f"prelabels/{JOB_NAME}/{hashlib.sha1(uri.encode()).hexdigest()}.png"
    assert response["taskInput"]["initialValue"] == {
        "labelMappings": {"road": {"color": "#2ca02c"}, "car": {"color": "#1f77b4"}},
        "src": f"s3://{OUTPUT}/{expected_key}",
    }
    written = store.client.get_object(Bucket=OUTPUT, Key=expected_key)["Body"].read()
    with Image.open(io.BytesIO(written)) as png:
        assert png.mode == "P"
    np.testing.assert_array_equal(read_class_mask(written, ClassMap.from_labels(["road", "car"])), PRELABEL)
    assert fake.calls == [
        {
            "EndpointName": "street-segmenter",
            "ContentType": "image/jpeg",
            "Accept": "image/png, application/json",
            "Body": image,
        }
    ]
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PrelabelUsed", "TaskCreated"]


@pytest.mark.parametrize(
    "fake",
    [
        FakeEndpoint(
            error=ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")
        ),
        FakeEndpoint(
            error=ClientError({"Error": {"Code": "ModelError", "Message": "boom"}}, "InvokeEndpoint")
        ),
        FakeEndpoint(index_png(np.zeros((5, 5), dtype=np.uint8))),  # wrong size
        FakeEndpoint(index_png(np.full((3, 4), 9, dtype=np.uint8))),  # class 9 of 3
        FakeEndpoint(b"<html>502 Bad Gateway</html>", "text/html"),
    ],
    ids=["timeout", "model-error", "wrong-size", "bad-class", "garbage"],
)
def test_a_failing_endpoint_means_no_prelabel_not_an_error(
    store: RecordingStore,
    endpoint_env: None,
    capsys: pytest.CaptureFixture[str],
    logs: LogLines,
    fake: FakeEndpoint,
) -> None:
    uri = put(store.client, "img/1.jpg", encoded(4, 3))
    pre.CLIENTS.sagemaker_runtime = fake
    response = invoke(event({"source-ref": uri, "labels": ["road", "car"]}))
    assert response["isHumanAnnotationRequired"] is True
    assert "initialValue" not in response["taskInput"]
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PrelabelFailed", "TaskCreated"]
    assert len(fake.calls) == 1
    assert store.client.list_objects_v2(Bucket=OUTPUT).get("KeyCount") == 0
    assert any(line["message"] == "model pre-label failed; the task starts empty" for line in logs)


def test_no_prelabel_for_a_rotated_jpeg(
    store: RecordingStore, endpoint_env: None, capsys: pytest.CaptureFixture[str], logs: LogLines
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees: the worker's canvas would be 3x4, not 4x3
    buf = io.BytesIO()
    Image.new("RGB", (4, 3)).save(buf, format="JPEG", exif=exif.tobytes())
    uri = put(store.client, "img/rotated.jpg", buf.getvalue())
    fake = FakeEndpoint(index_png(PRELABEL))
    pre.CLIENTS.sagemaker_runtime = fake
    response = invoke(event({"source-ref": uri, "labels": ["road", "car"]}))
    assert response["isHumanAnnotationRequired"] is True
    assert "initialValue" not in response["taskInput"]
    assert fake.calls == []
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PrelabelSkipped", "TaskCreated"]
    assert any("EXIF orientation 6" in line.get("reason", "") for line in logs)


class LambdaContext:
    """What Lambda passes: Powertools reads the first four, the handler the time left."""

    function_name = "gtseg-pre-annotation"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:gtseg-pre-annotation"
    aws_request_id = "test-request"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_no_prelabel_when_too_little_of_the_lambda_timeout_is_left(
    store: RecordingStore, endpoint_env: None, capsys: pytest.CaptureFixture[str], logs: LogLines
) -> None:
    # A Lambda that times out is an unhandled error, and that fails the whole labeling job.
    uri = put(store.client, "img/1.jpg", encoded(4, 3))
    fake = FakeEndpoint(index_png(PRELABEL))
    pre.CLIENTS.sagemaker_runtime = fake
    line = {"source-ref": uri, "labels": ["road", "car"]}
    response = pre.handler(event(line), LambdaContext(PRELABEL_MIN_REMAINING_MS - 5_000))
    assert response["isHumanAnnotationRequired"] is True
    assert "initialValue" not in response["taskInput"]
    assert fake.calls == []
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["PrelabelSkipped", "TaskCreated"]
    assert any("timeout left" in entry.get("reason", "") for entry in logs)
    # with time to spare the endpoint is asked as usual
    response = pre.handler(event(line), LambdaContext(60_000))
    assert len(fake.calls) == 1 and "initialValue" in response["taskInput"]


def test_no_prelabel_without_an_output_bucket(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRELABEL_ENDPOINT_NAME", "street-segmenter")
    fake = FakeEndpoint(index_png(PRELABEL))
    pre.CLIENTS.sagemaker_runtime = fake
    uri = put(store.client, "img/1.jpg", encoded(4, 3))
    response = invoke(event({"source-ref": uri, "labels": ["road", "car"]}))
    assert "initialValue" not in response["taskInput"]
    assert fake.calls == []
    assert "PrelabelFailed" in emitted_metrics(capsys.readouterr().out)


def test_a_prior_mask_is_preferred_and_the_model_not_asked(store: RecordingStore, endpoint_env: None) -> None:
    fake = FakeEndpoint(index_png(PRELABEL))
    pre.CLIENTS.sagemaker_runtime = fake
    uri = put(store.client, "img/1.jpg", encoded(4, 3))
    line = with_prior(uri, ["road", "car"])
    assert invoke(event(line))["taskInput"]["initialValue"]["src"] == line["first-pass-ref"]
    assert fake.calls == []


def test_the_endpoint_client_fails_fast(s3: Any) -> None:
    config = pre.CLIENTS.get_sagemaker_runtime().meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 10)
    assert config.retries["total_max_attempts"] == 1  # one attempt: no retries


# --------------------------------------------------------------------------- never raise, observability


class ExplodingStore:
    def get_range(self, *_args: Any) -> Any:
        raise RuntimeError("disk on fire")


def test_an_unexpected_error_skips_the_object_instead_of_raising(
    s3: Any, capsys: pytest.CaptureFixture[str], logs: LogLines
) -> None:
    pre.CLIENTS.store = ExplodingStore()  # type: ignore[assignment]
    response = invoke(event({"source-ref": f"s3://{DATA}/a.jpg", "labels": ["road"]}))
    assert skipped_reason(response) == "internal error: RuntimeError: disk on fire"
    assert emitted_metrics(capsys.readouterr().out) == ["SkippedInternalError"]
    assert any("exception" in line for line in logs)


def test_every_log_line_names_the_job_and_the_image_and_nothing_leaks_to_the_next_call(
    store: RecordingStore, logs: LogLines
) -> None:
    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    invoke(event({"source-ref": uri, "labels": ["road"]}))
    invoke(event({"source": "text"}, job_arn=None))
    pre.handler(None, None)
    first, second, third = logs[0], logs[1], logs[2]
    assert (first["labeling_job_arn"], first["source_ref"]) == (JOB_ARN, uri)
    assert "source_ref" not in second or second["source_ref"] is None
    assert "labeling_job_arn" not in third and "source_ref" not in third


# Events arrive as JSON: no NaN or infinity.
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_any = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=15,
)
source_refs = (
    st.just(f"s3://{DATA}/img/ok.jpg")
    | st.sampled_from(
        [
            f"s3://{DATA}/img/ok.jpg",
            f"s3://{DATA}/img/garbage.png",
            f"s3://{DATA}/img/missing.jpg",
            "s3://x/y.jpg",
            "",
            "s3://gtseg-data/",
        ]
    )
    | st.text(max_size=30)
)
prior_meta = st.fixed_dictionaries(
    {
        "internal-color-map": st.one_of(
            json_any, st.dictionaries(st.sampled_from(["0", "1", "2", "x"]), json_any)
        )
    }
)
labels_values = st.one_of(
    st.lists(st.sampled_from(["road", "car", "person"]), min_size=1, max_size=3, unique=True),
    st.lists(st.text(max_size=10), max_size=4),
    json_any,
)
manifest_lines = st.fixed_dictionaries(
    {"source-ref": source_refs},
    optional={
        "source": json_any,
        "header": json_any,
        "p-ref": st.one_of(json_any, st.just(f"s3://{OUTPUT}/p.png")),
        "p-ref-metadata": st.one_of(json_any, prior_meta),
        "q-ref-metadata": prior_meta,
    },
)
# Mostly well-formed lines with labels (so the deeper paths run), and some of anything at all.
data_objects = st.one_of(
    st.tuples(manifest_lines, labels_values).map(lambda pair: {**pair[0], "labels": pair[1]}),
    st.tuples(manifest_lines, labels_values).map(lambda pair: {**pair[0], "labels": pair[1]}),
    manifest_lines,
    json_any,
)
requests = st.fixed_dictionaries(
    {"dataObject": data_objects},
    optional={
        "labelingJobArn": st.one_of(st.just(JOB_ARN), st.just(JOB_ARN), st.none(), json_any),
        "version": st.one_of(st.just("2018-10-16"), st.just("2018-10-16"), json_any),
    },
)
events = st.one_of(requests, requests, requests, json_any)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evt=events, with_endpoint=st.booleans())
def test_no_input_makes_the_handler_raise(
    s3: Any, monkeypatch: pytest.MonkeyPatch, evt: Any, with_endpoint: bool
) -> None:
    put(s3, "img/ok.jpg", encoded(8, 6))
    put(s3, "img/garbage.png", b"\x89PNG\r\n\x1a\n garbage")
    pre.CLIENTS.sagemaker_runtime = FakeEndpoint(index_png(np.zeros((6, 8), dtype=np.uint8)))
    if with_endpoint:
        monkeypatch.setenv("PRELABEL_ENDPOINT_NAME", "street-segmenter")
        monkeypatch.setenv("OUTPUT_BUCKET", OUTPUT)
    else:
        monkeypatch.delenv("PRELABEL_ENDPOINT_NAME", raising=False)
    response = invoke(evt)
    event_label(" ".join(str(response["taskInput"].get("skipReason", "TASK")).split()[:4]))
    assert set(response) == {"taskInput", "isHumanAnnotationRequired"}
    if response["isHumanAnnotationRequired"]:
        assert response["taskInput"]["taskObject"] == f"s3://{DATA}/img/ok.jpg"
        assert response["taskInput"]["labels"]
    else:
        assert response["taskInput"]["skipReason"]


def test_the_prior_attribute_named_on_the_line_by_the_launcher_wins(store: RecordingStore) -> None:
    from gtseg.core.manifest import PRIOR_LABEL_ATTRIBUTE_KEY

    uri = put(store.client, "img/1.jpg", encoded(16, 16))
    line = with_prior(uri, ["road"]) | with_prior(uri, ["road"], attribute="second-ref")
    line["second-ref"] = f"s3://{OUTPUT}/second.png"
    # two candidate priors: ambiguous on their own, resolved by the launcher's marker
    line[PRIOR_LABEL_ATTRIBUTE_KEY] = "second-ref"
    assert invoke(event(line))["taskInput"]["initialValue"]["src"] == f"s3://{OUTPUT}/second.png"
    line[PRIOR_LABEL_ATTRIBUTE_KEY] = "first-pass-ref"
    assert invoke(event(line))["taskInput"]["initialValue"]["src"] == line["first-pass-ref"]


def test_s3_reads_are_bounded_well_inside_the_lambda_timeout() -> None:
    """A timed-out pre-annotation Lambda fails the whole job: S3 retries must not add up to it."""
    pre.CLIENTS.reset()
    config = pre.CLIENTS.get_store().client.meta.config
    attempts = config.retries["total_max_attempts"]
    assert attempts * (config.connect_timeout + config.read_timeout) <= 30
    pre.CLIENTS.reset()
