"""The SageMaker stand-in answers a real boto3 client the way the service would."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from local_job_helpers import labeling_job_request

from gtseg.local.sagemaker_standin import SageMakerStandin


@pytest.fixture
def client_and_standin(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with SageMakerStandin() as standin:
        # The endpoint comes from the environment variable, as it does in the Lambda sandboxes.
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", standin.endpoint_url)
        client = boto3.client(
            "sagemaker", region_name="us-east-1", config=Config(retries={"max_attempts": 1})
        )
        yield client, standin


def _request(name: str = "seg-job-1", **overrides) -> dict:
    request = labeling_job_request(
        name,
        manifest_uri="s3://in-bucket/manifests/input.manifest",
        template_uri="s3://in-bucket/templates/task.liquid.html",
        output_path="s3://out-bucket/jobs",
        labels_uri="s3://in-bucket/labels.json",
        pre_arn="arn:aws:lambda:us-east-1:123456789012:function:pre",
        acs_arn="arn:aws:lambda:us-east-1:123456789012:function:acs",
    )
    request.update(overrides)
    return request


def test_create_records_the_request_and_describe_echoes_it(client_and_standin):
    client, standin = client_and_standin
    arn = client.create_labeling_job(**_request())["LabelingJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/seg-job-1"
    assert standin.job("seg-job-1").request == _request()
    described = client.describe_labeling_job(LabelingJobName="seg-job-1")
    assert described["LabelingJobStatus"] == "InProgress"
    assert described["LabelCategoryConfigS3Uri"] == "s3://in-bucket/labels.json"
    assert described["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] == 3
    assert described["LabelCounters"]["TotalLabeled"] == 0


def test_driver_updates_show_in_describe_and_list(client_and_standin):
    client, standin = client_and_standin
    client.create_labeling_job(**_request())
    standin.update_job(
        "seg-job-1", status="Completed", counters={"TotalLabeled": 2, "HumanLabeled": 2},
        output_manifest_uri="s3://out-bucket/jobs/seg-job-1/manifests/output/output.manifest",
    )  # fmt: skip
    described = client.describe_labeling_job(LabelingJobName="SEG-JOB-1")  # names are case-insensitive
    assert described["LabelingJobStatus"] == "Completed"
    assert described["LabelCounters"]["HumanLabeled"] == 2
    assert described["LabelingJobOutput"]["OutputDatasetS3Uri"].endswith("/output.manifest")
    listed = client.list_labeling_jobs(StatusEquals="Completed")["LabelingJobSummaryList"]
    assert [j["LabelingJobName"] for j in listed] == ["seg-job-1"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"LabelingJobName": "bad_name"}, "LabelingJobName"),
        ({"LabelAttributeName": "x" * 128}, "LabelAttributeName"),
        ({"LabelAttributeName": "seg-metadata"}, "-metadata"),
        ({"RoleArn": "arn:aws:iam::12:role/short"}, "RoleArn"),
    ],
)
def test_invalid_requests_are_rejected_with_the_field_named(client_and_standin, overrides, message):
    client, standin = client_and_standin
    with pytest.raises(ClientError) as info:
        client.create_labeling_job(**_request(**overrides))
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert message in info.value.response["Error"]["Message"]
    assert standin.jobs() == []


def test_number_of_workers_above_the_model_maximum_is_rejected(client_and_standin):
    client, _ = client_and_standin
    request = _request()
    request["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] = 10
    with pytest.raises(ClientError, match="NumberOfHumanWorkersPerDataObject"):
        client.create_labeling_job(**request)


def test_duplicate_name_is_resource_in_use_and_unknown_job_is_not_found(client_and_standin):
    client, _ = client_and_standin
    client.create_labeling_job(**_request())
    with pytest.raises(client.exceptions.ResourceInUse):
        client.create_labeling_job(**_request("Seg-Job-1"))
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.describe_labeling_job(LabelingJobName="never-created")


def test_operations_it_does_not_implement_say_so(client_and_standin):
    client, _ = client_and_standin
    with pytest.raises(ClientError, match="does not implement ListWorkteams"):
        client.list_workteams()
