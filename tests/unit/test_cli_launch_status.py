"""``gtseg launch`` and ``gtseg status`` through ``gtseg.cli.main``: AWS clients are moto S3, a
fake SageMaker client, or boto3 clients under botocore's Stubber (CloudFormation, Lambda)."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from gtseg import cli
from gtseg.cli import launch as launch_command
from gtseg.cli import status as status_command
from gtseg.cli.status import render_status, watch

REGION = "us-east-1"
ACCOUNT = "111122223333"
ENV = {
    "GROUND_TRUTH_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/GroundTruthExecution",
    "PRE_ANNOTATION_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gtseg-pre",
    "CONSOLIDATION_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gtseg-acs",
    "WORKER_TEMPLATE_URI": "s3://gtseg-data/ui/template.liquid.html",
    "DATA_BUCKET": "gtseg-data",
    "OUTPUT_BUCKET": "gtseg-output",
}
SPEC = {
    "jobName": "cli-job-1",
    "labels": ["road", "car"],
    "images": {"prefix": "s3://my-images/set/"},
    "workforce": {"workteamArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/t"},
}
JOB_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/cli-job-1"


class FakeSageMaker:
    def __init__(self, descriptions: list[dict[str, Any]] | None = None) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.descriptions = list(descriptions or [])  # served in order by describe, when given

    def describe_labeling_job(self, *, LabelingJobName: str) -> dict[str, Any]:
        if self.descriptions:
            return self.descriptions.pop(0)
        if LabelingJobName not in self.jobs:
            raise ClientError(
                {"Error": {"Code": "ResourceNotFound", "Message": "nope"}}, "DescribeLabelingJob"
            )
        return self.jobs[LabelingJobName]

    def create_labeling_job(self, **request: Any) -> dict[str, Any]:
        self.created.append(request)
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/{request['LabelingJobName']}"
        self.jobs[request["LabelingJobName"]] = {
            **request,
            "LabelingJobArn": arn,
            "LabelingJobStatus": "InProgress",
        }
        return {"LabelingJobArn": arn}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    return path


@pytest.fixture
def clients(monkeypatch):
    """Route every client the commands create: S3 to moto, the rest to objects a test sets."""
    for name in [*ENV, "DEFAULT_WORKTEAM_ARN", "OUTPUT_KMS_KEY_ID", "GTSEG_STACK_NAME"]:
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("gtseg-data", "gtseg-output", "my-images"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="my-images", Key="set/a.jpg", Body=b"")
        s3.put_object(Bucket="my-images", Key="set/b.png", Body=b"")
        routed: dict[str, Any] = {"s3": s3, "sagemaker": FakeSageMaker()}

        def make_client(service: str, *_args: Any) -> Any:
            if service not in routed:
                raise AssertionError(f"unexpected {service} client")
            return routed[service]

        monkeypatch.setattr(launch_command, "make_client", make_client)
        monkeypatch.setattr(status_command, "make_client", make_client)
        yield routed


def run(*argv: str) -> int:
    return cli.main(list(argv))


def flags() -> list[str]:
    """The settings as command-line flags (for --direct without environment variables)."""
    out = []
    for flag, attr in launch_command.SETTING_FLAGS.items():
        var = launch_command.ENVIRONMENT[attr]
        if var in ENV:
            out += [flag, ENV[var]]
    return out


# --------------------------------------------------------------------------- launch


def test_direct_dry_run_prints_the_request_and_writes_nothing(clients, spec_file, capsys):
    assert run("launch", str(spec_file), "--direct", "--dry-run", *flags()) == 0
    out, err = capsys.readouterr()
    request = json.loads(out)
    assert request["LabelingJobName"] == "cli-job-1"
    assert request["RoleArn"] == ENV["GROUND_TRUTH_ROLE_ARN"]
    assert request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] == (
        "s3://gtseg-data/jobs/cli-job-1/manifest.jsonl"
    )
    assert "dry run: 2 objects (0 gold)" in err
    assert "Contents" not in clients["s3"].list_objects_v2(Bucket="gtseg-data")
    assert clients["sagemaker"].created == []


def test_direct_launch_prints_the_arn_and_relaunch_is_idempotent(clients, spec_file, capsys, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert run("launch", str(spec_file), "--direct") == 0
    out, err = capsys.readouterr()
    assert out.strip() == JOB_ARN
    assert "started; 2 objects" in err
    assert run("launch", str(spec_file), "--direct", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["jobArn"] == JOB_ARN and result["created"] is False
    assert len(clients["sagemaker"].created) == 1


def write_gold_set(s3: Any, tmp_path: Any) -> Any:
    """A gold manifest with one known mask (in the output bucket's jobs/) and a spec naming it."""
    mask = "s3://gtseg-output/jobs/gold-set/masks/g.png"
    s3.put_object(Bucket="gtseg-output", Key="jobs/gold-set/masks/g.png", Body=b"\x89PNG")
    line = {
        "source-ref": "s3://my-images/checked/g.jpg",
        "truth-ref": mask,
        "truth-ref-metadata": {
            "internal-color-map": {
                "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff"},
                "1": {"class-name": "car", "hex-color": "#1f77b4"},
            }
        },
    }
    s3.put_object(Bucket="gtseg-data", Key="gold/gold.manifest", Body=json.dumps(line).encode())
    path = tmp_path / "gold-spec.json"
    path.write_text(json.dumps({**SPEC, "gold": {"manifestUri": "s3://gtseg-data/gold/gold.manifest"}}))
    return path


def test_direct_dry_run_shows_the_gold_count(clients, tmp_path, capsys):
    path = write_gold_set(clients["s3"], tmp_path)
    assert run("launch", str(path), "--direct", "--dry-run", *flags()) == 0
    out, err = capsys.readouterr()
    tags = {t["Key"]: t["Value"] for t in json.loads(out)["Tags"]}
    assert (tags["gtseg:object-count"], tags["gtseg:gold-count"]) == ("3", "1")
    assert "dry run: 3 objects (1 gold)" in err
    assert "jobs/cli-job-1/manifest.jsonl" not in str(clients["s3"].list_objects_v2(Bucket="gtseg-data"))
    assert clients["sagemaker"].created == []


def test_direct_launch_with_gold_prints_the_gold_count(clients, tmp_path, capsys, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = write_gold_set(clients["s3"], tmp_path)
    assert run("launch", str(path), "--direct") == 0
    assert "started; 3 objects (1 gold)" in capsys.readouterr().err
    assert run("launch", str(path), "--direct", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["objectCount"], result["goldCount"], result["created"]) == (3, 1, False)


def test_direct_launch_without_settings_names_the_missing_ones(clients, spec_file, capsys):
    assert run("launch", str(spec_file), "--direct") == 1
    err = capsys.readouterr().err
    assert "GROUND_TRUTH_ROLE_ARN" in err and "DATA_BUCKET" in err
    assert clients["sagemaker"].created == []


def test_a_spec_typo_fails_before_any_client_is_made(tmp_path, capsys, monkeypatch):
    def no_clients(*_: Any) -> Any:
        raise AssertionError("no AWS client may be created for an invalid spec")

    monkeypatch.setattr(launch_command, "make_client", no_clients)
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({**SPEC, "workersPerObjet": 5}))
    assert run("launch", str(path), "--stack", "gtseg") == 1
    assert "workersPerObjet: unknown field" in capsys.readouterr().err
    path.write_text("{not json")
    assert run("launch", str(path)) == 1
    assert "is not valid JSON" in capsys.readouterr().err


def stack_clients(outputs: list[dict[str, str]]) -> tuple[Any, Stubber]:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    stub = Stubber(cloudformation)
    stub.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "gtseg",
                    "CreationTime": "2026-11-25T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": outputs,
                }
            ]
        },
        {"StackName": "gtseg"},
    )
    return cloudformation, stub


def streaming(payload: Any) -> StreamingBody:
    body = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(body), len(body))


def test_stack_launch_invokes_the_launcher_from_the_stack_outputs(clients, spec_file, capsys):
    cloudformation, cfn_stub = stack_clients(
        [{"OutputKey": "LauncherFunctionName", "OutputValue": "gtseg-launcher"}]
    )
    lambda_client = boto3.client("lambda", region_name=REGION)
    result = {
        "jobName": "cli-job-1",
        "jobArn": JOB_ARN,
        "manifestUri": "s3://gtseg-data/jobs/cli-job-1/manifest.jsonl",
        "objectCount": 2,
        "labelCategoryConfigUri": "s3://gtseg-data/jobs/cli-job-1/label-categories.json",
        "created": True,
    }
    lambda_stub = Stubber(lambda_client)
    lambda_stub.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": streaming(result)},
        {
            "FunctionName": "gtseg-launcher",
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(SPEC).encode(),
        },
    )
    clients["cloudformation"], clients["lambda"] = cloudformation, lambda_client
    with cfn_stub, lambda_stub:
        assert run("launch", str(spec_file), "--stack", "gtseg") == 0
        cfn_stub.assert_no_pending_responses()
        lambda_stub.assert_no_pending_responses()
    assert capsys.readouterr().out.strip() == JOB_ARN


def test_stack_launch_reports_the_launchers_error(clients, spec_file, capsys, monkeypatch):
    monkeypatch.setenv("GTSEG_STACK_NAME", "gtseg")  # the default mode when set
    cloudformation, cfn_stub = stack_clients(
        [{"OutputKey": "LauncherFunctionName", "OutputValue": "gtseg-launcher"}]
    )
    lambda_client = boto3.client("lambda", region_name=REGION)
    error = {
        "errorType": "LaunchConflictError",
        "errorMessage": "jobName: a labeling job named 'cli-job-1' exists",
    }
    lambda_stub = Stubber(lambda_client)
    lambda_stub.add_response(
        "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": streaming(error)}
    )
    clients["cloudformation"], clients["lambda"] = cloudformation, lambda_client
    with cfn_stub, lambda_stub:
        assert run("launch", str(spec_file)) == 1
    err = capsys.readouterr().err
    assert "LaunchConflictError: jobName: a labeling job named 'cli-job-1' exists" in err


def test_stack_without_the_launcher_output_is_explained(clients, spec_file, capsys):
    cloudformation, cfn_stub = stack_clients([{"OutputKey": "DataBucketName", "OutputValue": "b"}])
    clients["cloudformation"] = cloudformation
    clients["lambda"] = boto3.client("lambda", region_name=REGION)
    with cfn_stub:
        assert run("launch", str(spec_file), "--stack", "gtseg") == 1
    assert "has no output 'LauncherFunctionName'" in capsys.readouterr().err


def test_stack_dry_run_uses_the_deployed_launchers_settings(clients, spec_file, capsys):
    cloudformation, cfn_stub = stack_clients(
        [{"OutputKey": "LauncherFunctionName", "OutputValue": "gtseg-launcher"}]
    )
    lambda_client = boto3.client("lambda", region_name=REGION)
    lambda_stub = Stubber(lambda_client)
    lambda_stub.add_response(
        "get_function_configuration",
        {"FunctionName": "gtseg-launcher", "Environment": {"Variables": dict(ENV)}},
        {"FunctionName": "gtseg-launcher"},
    )
    clients["cloudformation"], clients["lambda"] = cloudformation, lambda_client
    with cfn_stub, lambda_stub:
        assert run("launch", str(spec_file), "--stack", "gtseg", "--dry-run") == 0
    request = json.loads(capsys.readouterr().out)
    assert request["HumanTaskConfig"]["PreHumanTaskLambdaArn"] == ENV["PRE_ANNOTATION_FUNCTION_ARN"]
    assert clients["sagemaker"].created == []


# --------------------------------------------------------------------------- status


def described(status: str, **counters: int) -> dict[str, Any]:
    base = {
        "TotalLabeled": 0,
        "HumanLabeled": 0,
        "MachineLabeled": 0,
        "FailedNonRetryableError": 0,
        "Unlabeled": 0,
    }
    base.update(counters)
    return {
        "LabelingJobName": "cli-job-1",
        "LabelingJobArn": JOB_ARN,
        "LabelingJobStatus": status,
        "LabelCounters": base,
    }


def test_render_status_has_counters_failure_and_output():
    text = render_status(
        {
            **described("Failed", TotalLabeled=3, HumanLabeled=3, FailedNonRetryableError=1, Unlabeled=6),
            "FailureReason": "ClientError: Exception invoking the Lambda function",
            "LabelingJobOutput": {
                "OutputDatasetS3Uri": "s3://out/jobs/cli-job-1/manifests/output/output.manifest"
            },
        }
    )
    assert "status:   Failed" in text
    assert "3/10 labeled (30%)" in text
    assert "human 3, machine 0, failed 1, unlabeled 6" in text
    assert "failure:  ClientError: Exception invoking the Lambda function" in text
    assert "output:   s3://out/jobs/cli-job-1/manifests/output/output.manifest" in text


def test_watch_polls_until_the_job_ends_and_prints_only_changes():
    sagemaker = FakeSageMaker(
        [
            described("InProgress", Unlabeled=4),
            described("InProgress", Unlabeled=4),
            described("InProgress", TotalLabeled=2, HumanLabeled=2, Unlabeled=2),
            described("Completed", TotalLabeled=4, HumanLabeled=4),
        ]
    )
    naps: list[float] = []
    out = io.StringIO()
    final = watch(sagemaker, "cli-job-1", interval=7, out=out, sleep=naps.append)
    assert final["LabelingJobStatus"] == "Completed"
    assert naps == [7, 7, 7]
    printed = out.getvalue()
    assert printed.count("job:      cli-job-1") == 3  # the repeated answer is not printed again
    assert "4/4 labeled (100%)" in printed


def test_status_command_exit_codes(clients, capsys):
    clients["sagemaker"] = FakeSageMaker([described("InProgress", Unlabeled=1)])
    assert run("status", "cli-job-1") == 0
    assert "0/1 labeled (0%)" in capsys.readouterr().out
    clients["sagemaker"] = FakeSageMaker([described("Failed")])
    assert run("status", "cli-job-1", "--json") == 1
    assert json.loads(capsys.readouterr().out)["LabelingJobStatus"] == "Failed"
    clients["sagemaker"] = FakeSageMaker()
    assert run("status", "missing-job") == 1
    assert "no labeling job named 'missing-job'" in capsys.readouterr().err


def test_status_watch_through_the_cli(clients, capsys, monkeypatch):
    naps: list[float] = []
    monkeypatch.setattr(status_command.time, "sleep", naps.append)
    clients["sagemaker"] = FakeSageMaker(
        [described("InProgress", Unlabeled=1), described("Stopped", Unlabeled=1)]
    )
    assert run("status", "cli-job-1", "--watch", "--interval", "0.5") == 0
    assert naps == [0.5]
    assert "status:   Stopped" in capsys.readouterr().out


def test_both_commands_are_registered():
    parser = cli.build_parser(["launch"])
    assert parser.parse_args(["launch", "s.json", "--direct", "--dry-run"]).dry_run is True
    parser = cli.build_parser(["status"])
    args = parser.parse_args(["status", "job", "--watch", "--interval", "5"])
    assert (args.job, args.watch, args.interval) == ("job", True, 5.0)
    with pytest.raises(SystemExit):
        cli.build_parser(["launch"]).parse_args(["launch", "s.json", "--direct", "--stack", "x"])


# --------------------------------------------------------------------------- offline, one line


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No region, no credentials, no config file: what a new user's shell has."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_PROFILE", "GTSEG_STACK_NAME", *ENV):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_status_without_a_region_is_one_line_not_a_traceback(no_aws, capsys):
    assert cli.main(["status", "some-job"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "gtseg status: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in your AWS profile)"
    ]


def test_launch_dry_run_works_offline_with_no_credentials(no_aws, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.jpg", "notes.txt"):
        (images / name).write_bytes(b"x")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    assert cli.main(["launch", str(spec), "--dry-run", "--map", f"s3://my-images/set={images}"]) == 0
    captured = capsys.readouterr()
    request = json.loads(captured.out)
    assert request["LabelingJobName"] == "cli-job-1"
    assert request["RoleArn"] == "arn:aws:iam::000000000000:role/dry-run-GroundTruthRole"
    assert "placeholders for the settings not given: GROUND_TRUTH_ROLE_ARN" in captured.err
    assert "dry run: 2 objects (0 gold)" in captured.err
    # not mapped: one line saying what is missing and how a dry run gets around it
    assert cli.main(["launch", str(spec), "--dry-run"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gtseg launch: ") and "no AWS credentials" in line and "--map" in line
