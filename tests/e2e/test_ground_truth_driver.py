"""The job driver against moto S3, the SageMaker stand-in and tiny Lambdas in real sandboxes.

The tiny Lambdas (fixtures/tiny_handlers.py) stand in for gtseg's handlers so that these tests
pin down the emulator's own behaviour: Ground Truth's S3 layout, events, contract checks and
failure modes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import numpy as np
import pytest
from local_job_helpers import create_bucket, labeling_job_request, put_json_lines

from gtseg.core.labels import ClassMap, LabelCategoryConfig
from gtseg.core.manifest import parse_manifest
from gtseg.local.ground_truth import GroundTruthBehaviour, GroundTruthEmulator, WorkerSubmission, WorkerTask
from gtseg.local.lambda_runtime import LocalLambda, function_arn
from gtseg.local.simulation import worker_answer

FIXTURES = Path(__file__).parent / "fixtures"
PRE_ARN = function_arn("tiny-pre")
ACS_ARN = function_arn("tiny-acs")
LABELS = ["road", "car"]


def _workforce(seen: list[WorkerTask]):
    def annotate(task: WorkerTask) -> list[WorkerSubmission]:
        seen.append(task)
        class_map = ClassMap.from_labels(task.rendered.labels)
        indices = np.zeros((4, 6), dtype=np.uint8)
        indices[1:3, 1:4] = 1
        return [
            WorkerSubmission(f"private.us-east-1.worker{k}", worker_answer(indices, class_map), 30.0 + k)
            for k in range(task.workers_needed)
        ]

    return annotate


def _put(uri: str, body: bytes) -> None:
    bucket, _, key = uri[5:].partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def _run_job(
    sagemaker, tmp_path, *, lines=None, pre_mode="ok", acs_mode="ok", cors=True,
    template=None, batch_size=2, use_pre=True, manifest_text=None, behaviour=None,
):  # fmt: skip
    if template is None:
        template = (FIXTURES / "tiny-template.liquid.html").read_text()
    create_bucket("gtseg-local-in", cors=cors)
    create_bucket("gtseg-local-out", cors=False)
    if lines is None:
        lines = [{"source-ref": f"s3://gtseg-local-in/images/img-{i}.png", "site": f"s{i}"} for i in range(3)]
    for i, line in enumerate(lines):
        if "source-ref" in line:
            _put(line["source-ref"], f"image bytes {i}".encode())
    if manifest_text is None:
        put_json_lines("s3://gtseg-local-in/input.manifest", lines)
    else:
        _put("s3://gtseg-local-in/input.manifest", manifest_text.encode())
    _put("s3://gtseg-local-in/labels.json", LabelCategoryConfig.from_labels(LABELS).to_json().encode())
    _put("s3://gtseg-local-in/task.liquid.html", template.encode())
    request = labeling_job_request(
        "tiny-job",
        manifest_uri="s3://gtseg-local-in/input.manifest",
        template_uri="s3://gtseg-local-in/task.liquid.html",
        output_path="s3://gtseg-local-out/jobs",
        labels_uri="s3://gtseg-local-in/labels.json",
        pre_arn=PRE_ARN if use_pre else None,
        acs_arn=ACS_ARN,
        workers=3,
    )
    boto3.client("sagemaker").create_labeling_job(**request)
    seen: list[WorkerTask] = []
    progress: list[tuple[str, int, int]] = []
    with (
        LocalLambda("tiny_handlers.pre_annotation", function_name="tiny-pre", task_root=FIXTURES,
                    environment={"TINY_MODE": pre_mode}) as pre,
        LocalLambda("tiny_handlers.consolidation", function_name="tiny-acs", task_root=FIXTURES,
                    environment={"TINY_MODE": acs_mode}) as acs,
    ):  # fmt: skip
        emulator = GroundTruthEmulator(
            sagemaker=sagemaker,
            functions={PRE_ARN: pre, ACS_ARN: acs},
            workforce=_workforce(seen),
            batch_size=batch_size,
            progress=lambda *p: progress.append(p),
            behaviour=behaviour,
        )
        report = emulator.run("tiny-job")
        local = emulator.download(report, tmp_path / "out")
    return report, local, seen, progress


def _get_json(uri: str):
    bucket, _, key = uri[5:].partition("/")
    return json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _keys(prefix: str) -> list[str]:
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket="gtseg-local-out", Prefix=prefix)
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_job_writes_ground_truths_layout_and_a_complete_output_manifest(local_aws, tmp_path):
    _, sagemaker = local_aws
    report, local, seen, progress = _run_job(sagemaker, tmp_path)
    assert report.status == "Completed", report.failure_reason
    assert [o.status for o in report.objects] == ["labeled"] * 3

    # Workers got the rendered page: a presigned http URL and the job's labels.
    assert [t.dataset_object_id for t in seen] == ["0", "1", "2"]
    assert seen[0].rendered.src.startswith("http://127.0.0.1:") and "Signature=" in seen[0].rendered.src
    assert seen[0].rendered.labels == ("road", "car")
    assert seen[0].rendered.element_name == "crowd-semantic-segmentation"

    # Worker responses: one file per object, Ground Truth's shape.
    responses = _keys("jobs/tiny-job/annotations/worker-response/iteration-1/")
    assert sorted(k.split("/")[-2] for k in responses) == ["0", "1", "2"]
    answers = _get_json(f"s3://gtseg-local-out/{responses[0]}")["answers"]
    assert [a["workerId"] for a in answers] == [f"private.us-east-1.worker{k}" for k in range(3)]
    assert set(answers[0]) >= {"answerContent", "acceptanceTime", "submissionTime", "timeSpentInSeconds",
                               "workerMetadata"}  # fmt: skip
    assert "crowd-semantic-segmentation" in answers[0]["answerContent"]

    # Consolidation in batches of 2: 2 request files, each with a response of the same name.
    requests = _keys("jobs/tiny-job/annotations/consolidated-annotation/consolidation-request/iteration-1/")
    replies = _keys("jobs/tiny-job/annotations/consolidated-annotation/consolidation-response/iteration-1/")
    assert len(requests) == 2
    assert [k.rsplit("/", 1)[1] for k in requests] == [k.rsplit("/", 1)[1] for k in replies]
    first_batch = _get_json(f"s3://gtseg-local-out/{requests[0]}")
    assert [item["datasetObjectId"] for item in first_batch] == ["0", "1"]
    assert first_batch[0]["dataObject"] == {"s3Uri": "s3://gtseg-local-in/images/img-0.png"}
    content = json.loads(first_batch[0]["annotations"][0]["annotationData"]["content"])  # a JSON string
    assert "labeledImage" in content["crowd-semantic-segmentation"]

    # The event as real ones are: outputConfig = <S3OutputPath>/<job>/annotations (the tiny Lambda
    # builds its URIs from it), the job's name lower-cased in the ARN.
    assert report.job_arn.endswith(":labeling-job/tiny-job")
    # The output manifest: every input line, its keys kept, plus the returned label; the Lambda's
    # own metadata replaced by Ground Truth's custom-job metadata.
    manifest = _get_json_lines(report.output_manifest_uri)
    assert [line["site"] for line in manifest] == ["s0", "s1", "s2"]
    assert manifest[2]["tiny-job-ref"] == "s3://gtseg-local-out/jobs/tiny-job/annotations/iteration-1/2.png"
    meta = manifest[0]["tiny-job-ref-metadata"]
    assert set(meta) == {"type", "job-name", "human-annotated", "creation-date"}
    assert meta["type"] == "groundtruth/custom" and meta["job-name"] == "tiny-job"
    assert meta["human-annotated"] == "yes" and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", meta["creation-date"]
    )
    # What the Lambda returned is still in consolidation-response/, as Ground Truth keeps it.
    returned = _get_json(f"s3://gtseg-local-out/{replies[0]}")[0]["consolidatedAnnotation"]["content"]
    assert returned["tiny-job-ref-metadata"]["labelCategories"] == LABELS

    # DescribeLabelingJob (a real boto3 client) reports the outcome.
    described = boto3.client("sagemaker").describe_labeling_job(LabelingJobName="tiny-job")
    assert described["LabelingJobStatus"] == "Completed"
    assert described["LabelCounters"]["HumanLabeled"] == 3
    assert described["LabelingJobOutput"]["OutputDatasetS3Uri"] == report.output_manifest_uri

    # Downloaded locally with file-safe names (Ground Truth's keys contain ':').
    assert (local / "manifests" / "output" / "output.manifest").read_text().count("\n") == 3
    assert not [p for p in local.rglob("*") if ":" in p.name]
    assert (local / "local-emulator" / "rendered-tasks" / "0.html").exists()
    assert {p[0] for p in progress} == {"pre-annotation", "workers", "consolidation"}
    assert ("consolidation", 3, 3) in progress


def _get_json_lines(uri: str) -> list[dict]:
    bucket, _, key = uri[5:].partition("/")
    text = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [line.data for line in parse_manifest(text.splitlines())]


def test_pre_annotation_error_fails_the_job_like_ground_truth(local_aws, tmp_path):
    _, sagemaker = local_aws
    report, _, seen, _ = _run_job(sagemaker, tmp_path, pre_mode="raise")
    assert report.status == "Failed"
    assert report.failure_reason.startswith(f"ClientError: Exception invoking the Lambda function {PRE_ARN}")
    assert "pre-annotation exploded" in report.failure_reason
    assert seen == []
    assert (
        boto3.client("sagemaker").describe_labeling_job(LabelingJobName="tiny-job")["LabelingJobStatus"]
        == "Failed"
    )


def test_objects_left_out_of_the_response_fail_alone_and_are_reported(local_aws, tmp_path):
    _, sagemaker = local_aws
    report, _, _, _ = _run_job(sagemaker, tmp_path, acs_mode="drop-first", batch_size=10)
    assert report.status == "Completed"
    assert [o.status for o in report.objects] == ["failed", "labeled", "labeled"]
    assert any("'0' is missing from the consolidation response" in p for p in report.contract_problems)
    manifest = _get_json_lines(report.output_manifest_uri)
    assert manifest[0]["tiny-job-ref-metadata"]["failure-reason"] == "left out of the consolidation response"
    assert manifest[0]["tiny-job-ref-metadata"]["type"] == "groundtruth/custom"
    assert "tiny-job-ref" not in manifest[0]


def test_content_without_the_label_attribute_is_a_contract_problem(local_aws, tmp_path):
    _, sagemaker = local_aws
    report, _, _, _ = _run_job(sagemaker, tmp_path, acs_mode="wrong-key")
    assert [o.status for o in report.objects] == ["failed"] * 3
    assert len(report.contract_problems) == 3
    assert "has no 'tiny-job-ref' key" in report.contract_problems[0]


def test_template_without_grant_read_access_breaks_the_task_not_the_job(local_aws, tmp_path):
    _, sagemaker = local_aws
    template = (FIXTURES / "tiny-template.liquid.html").read_text().replace(" | grant_read_access", "")
    report, _, seen, _ = _run_job(sagemaker, tmp_path, template=template)
    assert report.status == "Completed"
    assert seen == []
    assert all(o.status == "failed" for o in report.objects)
    assert "not a URL a browser can load" in report.objects[0].failure_reason


def test_image_bucket_without_cors_is_caught(local_aws, tmp_path):
    _, sagemaker = local_aws
    report, _, _, _ = _run_job(sagemaker, tmp_path, cors=False)
    assert all(o.status == "failed" for o in report.objects)
    assert "CORS" in report.objects[0].failure_reason


def test_labels_on_the_page_must_match_the_label_categories(local_aws, tmp_path):
    _, sagemaker = local_aws
    lines = [{"source-ref": "s3://gtseg-local-in/images/a.png", "labels": ["car", "road"]}]
    report, _, _, _ = _run_job(sagemaker, tmp_path, lines=lines)
    assert report.objects[0].status == "failed"
    assert "label categories are ['road', 'car']" in report.objects[0].failure_reason


def test_objects_not_needing_humans_are_skipped_and_say_why(local_aws, tmp_path):
    _, sagemaker = local_aws
    lines = [
        {"source-ref": "s3://gtseg-local-in/images/a.png"},
        {"source-ref": "s3://gtseg-local-in/images/b.png", "skip": True},
    ]
    report, _, seen, _ = _run_job(sagemaker, tmp_path, lines=lines, pre_mode="skip-marked")
    assert [o.status for o in report.objects] == ["labeled", "skipped"]
    assert [t.dataset_object_id for t in seen] == ["0"]
    manifest = _get_json_lines(report.output_manifest_uri)
    reason = manifest[1]["tiny-job-ref-metadata"]["failure-reason"]
    assert "isHumanAnnotationRequired=false" in reason
    assert "marked 'skip' in the manifest" in reason  # the Lambda's own reason, not only the flag


def test_without_a_pre_annotation_lambda_the_manifest_line_is_the_task_input(local_aws, tmp_path):
    _, sagemaker = local_aws
    lines = [{"source-ref": "s3://gtseg-local-in/images/a.png", "taskObject": "s3://gtseg-local-in/images/a.png",
              "labels": LABELS}]  # fmt: skip
    report, _, seen, _ = _run_job(sagemaker, tmp_path, lines=lines, use_pre=False)
    assert report.status == "Completed"
    assert seen[0].task_input == lines[0]


@pytest.mark.parametrize("bad_line", ["{not json", "[1, 2]"])
def test_a_malformed_manifest_line_is_reported_and_the_rest_labelled(local_aws, tmp_path, bad_line):
    _, sagemaker = local_aws
    good = {"source-ref": "s3://gtseg-local-in/images/a.png"}
    report, _, _, _ = _run_job(
        sagemaker, tmp_path, lines=[good], manifest_text=f"{json.dumps(good)}\n{bad_line}\n"
    )
    assert [o.status for o in report.objects] == ["labeled"]
    assert len(report.manifest_errors) == 1 and report.manifest_errors[0].startswith("line 2")


@pytest.mark.parametrize(
    ("behaviour", "output_config", "metadata_keys"),
    [
        (GroundTruthBehaviour(), "s3://gtseg-local-out/jobs/tiny-job/annotations",
         {"type", "job-name", "human-annotated", "creation-date"}),
        (GroundTruthBehaviour(output_config="consolidated-output", lambda_metadata="kept"),
         "s3://gtseg-local-out/jobs/tiny-job/annotations/consolidated-annotation/output", {"workers", "labelCategories"}),
        (GroundTruthBehaviour(output_config="absent", lambda_metadata="merged"), None,
         {"workers", "labelCategories", "type", "job-name", "human-annotated", "creation-date"}),
    ],
)  # fmt: skip
def test_each_unconfirmed_behaviour_can_be_chosen(
    local_aws, tmp_path, behaviour, output_config, metadata_keys
):
    _, sagemaker = local_aws
    report, _, _, _ = _run_job(sagemaker, tmp_path, acs_mode="echo-output-config", behaviour=behaviour)
    assert report.status == "Completed", report.failure_reason
    requests = _keys("jobs/tiny-job/annotations/consolidated-annotation/consolidation-request/iteration-1/")
    replies = _keys("jobs/tiny-job/annotations/consolidated-annotation/consolidation-response/iteration-1/")
    assert requests and replies
    # the tiny Lambda echoes the outputConfig it received in its metadata
    returned = _get_json(f"s3://gtseg-local-out/{replies[0]}")[0]["consolidatedAnnotation"]["content"]
    assert returned["tiny-job-ref-metadata"]["outputConfig"] == output_config
    manifest = _get_json_lines(report.output_manifest_uri)
    assert set(manifest[0]["tiny-job-ref-metadata"]) - {"outputConfig"} == metadata_keys


def test_the_stand_in_can_keep_the_arn_case_and_describe_only_the_created_name(tmp_path):
    from gtseg.local.moto_server import LocalMotoServer
    from gtseg.local.sagemaker_standin import SageMakerStandin

    request = labeling_job_request(
        "Mixed-Case-Job", manifest_uri="s3://b/m", template_uri="s3://b/t", output_path="s3://b/o"
    )
    for arn_names, describe_names, found, missing in [
        ("lower", "any-case", ["Mixed-Case-Job", "mixed-case-job", "MIXED-case-job"], []),
        ("lower", "as-created", ["Mixed-Case-Job"], ["mixed-case-job"]),
        ("as-created", "lower", ["mixed-case-job"], ["Mixed-Case-Job"]),
    ]:
        with (
            LocalMotoServer() as moto,
            SageMakerStandin(arn_names=arn_names, describe_names=describe_names) as sm,
        ):
            moto.set_service_endpoint("SAGEMAKER", sm.endpoint_url)
            client = boto3.client("sagemaker")
            arn = client.create_labeling_job(**request)["LabelingJobArn"]
            expected = "Mixed-Case-Job" if arn_names == "as-created" else "mixed-case-job"
            assert arn.endswith(f":labeling-job/{expected}")
            for name in found:
                assert (
                    client.describe_labeling_job(LabelingJobName=name)["LabelingJobName"] == "Mixed-Case-Job"
                )
            for name in missing:
                with pytest.raises(client.exceptions.ClientError, match="ResourceNotFound"):
                    client.describe_labeling_job(LabelingJobName=name)
