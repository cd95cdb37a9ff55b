"""The finalize Lambda's steps in-process against moto S3, as the state machine calls them: prepare
(from a real-shaped EventBridge event; this stack's job by RoleArn, found under its own-case name),
map batches, reduce (with a batch the Distributed Map reported failed), report, summarize."""

from __future__ import annotations

import json
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from gtseg.core.labels import ClassMap
from gtseg.core.masks import encode_index_png
from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass
from gtseg.handlers import finalize as handler_module

REGION, ACCOUNT = "us-east-1", "111122223333"
OUT, DATA = "gtseg-output", "gtseg-data"
JOB = "Road-Survey-20240501T120000"  # mixed case: the event's ARN has it lower-cased
ROLE = f"arn:aws:iam::{ACCOUNT}:role/GroundTruthExecution"
ROOT = f"s3://{OUT}/jobs/{JOB}"
LAN = f"{JOB}-ref"
CMAP = ClassMap.from_labels(["road", "car"])


class FakeSageMaker:
    """DescribeLabelingJob finds a job only under the name it was created with (one of the
    unconfirmed behaviours); ListLabelingJobs lists it with its ARN, name lower-cased."""

    def __init__(self, role: str = ROLE) -> None:
        self.described: list[str] = []
        self.job = {
            "LabelingJobName": JOB,
            "LabelingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/{JOB.lower()}",
            "LabelingJobStatus": "Completed",
            "LabelAttributeName": LAN,
            "RoleArn": role,
            "LabelCategoryConfigS3Uri": f"s3://{DATA}/jobs/{JOB}/label-categories.json",
            "OutputConfig": {"S3OutputPath": f"s3://{OUT}/jobs/"},
            "LabelingJobOutput": {"OutputDatasetS3Uri": f"{ROOT}/manifests/output/output.manifest"},
        }

    def describe_labeling_job(self, *, LabelingJobName: str) -> dict[str, Any]:
        self.described.append(LabelingJobName)
        if LabelingJobName != JOB:
            raise ClientError({"Error": {"Code": "ResourceNotFound", "Message": "no"}}, "DescribeLabelingJob")
        return dict(self.job)

    def list_labeling_jobs(self, **kwargs: Any) -> dict[str, Any]:
        return {"LabelingJobSummaryList": [{k: self.job[k] for k in ("LabelingJobName", "LabelingJobArn")}]}


def put(s3: Any, uri: str, body: bytes | str) -> None:
    bucket, _, key = uri[5:].partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def get(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri[5:].partition("/")
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GROUND_TRUTH_ROLE_ARN", ROLE)
    monkeypatch.setenv("OUTPUT_BUCKET", OUT)
    monkeypatch.setenv("FINALIZE_THREADS", "2")
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (OUT, DATA):
            s3.create_bucket(Bucket=bucket)
        put(s3, f"s3://{DATA}/jobs/{JOB}/label-categories.json",
            json.dumps({"document-version": "2018-11-28", "labels": [{"label": "road"}, {"label": "car"}]}))  # fmt: skip
        lines = []
        for i in range(5):
            image = f"s3://{DATA}/images/{i}.png"
            put(s3, image, encode_index_png(np.zeros((6, 8), dtype=np.uint8), CMAP))
            mask = f"{ROOT}/annotations/consolidated-annotation/output/iteration-1/{i}.png"
            indices = np.zeros((6, 8), dtype=np.uint8)
            indices[:, : i + 1] = 1
            put(s3, mask, encode_index_png(indices, CMAP))
            sidecar = ConsolidationSidecar(
                dataset_object_id=str(i), job_name=JOB, mask=mask, image_confidence=0.9,
                classes=[SidecarClass(index=k, class_name=n, hex_color=c)
                         for k, (n, c) in enumerate(zip(CMAP.names, CMAP.colors, strict=True))],
            )  # fmt: skip
            put(s3, mask[:-4] + ".json", sidecar.to_json_bytes())
            custom = {"type": "groundtruth/custom", "job-name": JOB.lower(), "human-annotated": "yes",
                      "creation-date": "2024-05-01T12:30:00.000000"}  # fmt: skip
            lines.append({"source-ref": image, LAN: mask, f"{LAN}-metadata": custom})
        put(s3, f"{ROOT}/manifests/output/output.manifest", "".join(json.dumps(x) + "\n" for x in lines))
        sagemaker = FakeSageMaker()
        handler_module.CLIENTS.store = None
        handler_module.CLIENTS.sagemaker = sagemaker
        yield s3, sagemaker, lines
        handler_module.CLIENTS.reset()


def event_for(arn: str) -> dict[str, Any]:
    # the shape EventBridge delivers (the job only by its ARN; no RoleArn)
    return {"version": "0", "id": "7377f6d4", "detail-type": "SageMaker Ground Truth Labeling Job State Change",
            "source": "aws.sagemaker", "account": ACCOUNT, "time": "2024-05-01T13:00:00Z", "region": REGION,
            "resources": [arn], "detail": {"LabelingJobStatus": "Completed"}}  # fmt: skip


def test_the_state_machine_steps_finalize_a_job_and_report_a_failed_batch(job) -> None:
    s3, sagemaker, lines = job
    prepared = handler_module.handler(
        {"step": "prepare", "event": event_for(sagemaker.job["LabelingJobArn"])}, None
    )
    assert prepared["finalize"] is True and prepared["job"] == JOB and prepared["lines"] == 5
    assert sagemaker.described == [JOB.lower(), JOB]  # the ARN's spelling first, then its own
    assert (prepared["manifest_bucket"], prepared["manifest_key"]) == (
        OUT,
        f"jobs/{JOB}/manifests/output/output.manifest",
    )
    assert (
        prepared["results_bucket"] == OUT
        and prepared["results_prefix"] == f"jobs/{JOB}/gtseg/work/map-results"
    )
    plan = json.loads(get(s3, prepared["plan"]))
    assert [c["name"] for c in plan["classes"]] == ["BACKGROUND", "road", "car"]  # the job's label file

    items = [{"index": i, "line": line} for i, line in enumerate(lines)]
    outcome = handler_module.handler({"step": "map", "plan": prepared["plan"], "items": items[:2]}, None)
    assert (outcome["first"], outcome["count"], outcome["labeled"]) == (0, 2, 2)
    handler_module.handler({"step": "map", "plan": prepared["plan"], "items": items[4:]}, None)
    # lines 3-4 (items 2 and 3): their batch failed after its retries, as the map's ResultWriter says
    failed_batch = [{"Error": "States.Timeout", "Cause": "the task timed out",
                     "Input": json.dumps({"BatchInput": {"plan": prepared["plan"]}, "Items": items[2:4]})}]  # fmt: skip
    put(s3, f"{ROOT}/gtseg/work/map-results/run/FAILED_0.json", json.dumps(failed_batch))
    put(s3, f"{ROOT}/gtseg/work/map-results/run/manifest.json",
        json.dumps({"ResultFiles": {"FAILED": [{"Key": f"jobs/{JOB}/gtseg/work/map-results/run/FAILED_0.json"}],
                                    "SUCCEEDED": []}}))  # fmt: skip
    map_result = {
        "MapRunArn": "arn:...",
        "ResultWriterDetails": {"Bucket": OUT, "Key": f"jobs/{JOB}/gtseg/work/map-results/run/manifest.json"},
    }
    reduced = handler_module.handler({"step": "reduce", "plan": prepared["plan"], "map": map_result}, None)
    assert reduced == {"lines": 5, "labeled": 3, "failed": 0, "errors": 0, "not_finalized": 2}
    final = get(s3, f"{ROOT}/gtseg/output.manifest").decode().splitlines()
    assert len(final) == 5
    assert json.loads(final[2]) == lines[2] and json.loads(final[3]) == lines[3]  # kept as they were
    assert json.loads(final[4])[f"{LAN}-metadata"]["job-name"] == f"labeling-job/{JOB}"

    report = handler_module.handler({"step": "report", "plan": prepared["plan"]}, None)
    assert report["error"] is None and report["objects"] == 5
    summary = handler_module.handler({"step": "summarize", "plan": prepared["plan"], "status": "Completed",
                                      "report": report}, None)  # fmt: skip
    assert summary["subject"] == f"gtseg: {JOB} finalized (3 of 5 objects labelled)"
    assert f"output-manifest: {ROOT}/gtseg/output.manifest" in summary["message"]
    document = json.loads(get(s3, summary["summary"]))
    assert document["not-finalized"] == 2 and document["job-status"] == "Completed"
    failures = document["batch-failures"]
    assert failures[0] == "lines 3-4: not finalized (its batch left no result)"
    assert "lines 3-4: States.Timeout (the task timed out)" in failures
    # a report step that failed (its Catch result) is noted, the summary still written
    caught = {"Error": "States.Timeout", "Cause": "too many large images"}
    again = handler_module.handler({"step": "summarize", "plan": prepared["plan"], "report": caught}, None)
    assert json.loads(get(s3, again["summary"]))["report"]["error"].startswith(
        "the report step failed: States.Timeout"
    )


def test_jobs_of_other_stacks_are_left_alone(job) -> None:
    _, sagemaker, _ = job
    sagemaker.job["RoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/SomeoneElse"
    prepared = handler_module.handler(
        {"step": "prepare", "event": event_for(sagemaker.job["LabelingJobArn"])}, None
    )
    assert prepared["finalize"] is False and "not this stack's job" in prepared["reason"]
    assert prepared["notification"] is None  # nobody is told about another stack's job


def test_a_job_without_output_is_announced_not_finalized(job) -> None:
    s3, sagemaker, _ = job
    s3.delete_object(Bucket=OUT, Key=f"jobs/{JOB}/manifests/output/output.manifest")
    prepared = handler_module.handler(
        {"step": "prepare", "event": event_for(sagemaker.job["LabelingJobArn"])}, None
    )
    assert prepared["finalize"] is False
    assert prepared["notification"]["subject"] == f"gtseg: {JOB} ended without output"


def test_a_bad_step_is_an_error_that_says_which_steps_exist(job) -> None:
    with pytest.raises(ValueError, match="'step' must be one of prepare, map, reduce, report, summarize"):
        handler_module.handler({"step": "shuffle"}, None)
