"""``gtseg send``, ``gtseg stop`` and the streaming lines of ``gtseg status``, against moto (S3, SNS
and an SQS queue subscribed to the input topic the way Ground Truth subscribes its own) and the
local SageMaker stand-in over HTTP (moto has no labeling jobs)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gtseg import cli
from gtseg.cli import send as send_command
from gtseg.cli import status as status_command
from gtseg.cli import stop as stop_command
from gtseg.core.streaming import DEDUPE_KEY, STREAMING_DATASET_DIR, queue_name
from gtseg.launcher.launch import build_request
from gtseg.launcher.settings import LauncherSettings
from gtseg.launcher.spec import parse_job_spec
from gtseg.local.sagemaker_standin import SageMakerStandin

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
JOB = "Live-Cams"
ENV = {
    "GROUND_TRUTH_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/GroundTruthExecution",
    "PRE_ANNOTATION_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gtseg-pre",
    "CONSOLIDATION_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gtseg-acs",
    "WORKER_TEMPLATE_URI": "s3://gtseg-data/ui/semantic-segmentation.liquid.html",
    "DATA_BUCKET": "gtseg-data",
    "OUTPUT_BUCKET": "gtseg-output",
}


@pytest.fixture
def aws(monkeypatch):
    with mock_aws(), SageMakerStandin(region=REGION) as standin:
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("gtseg-data", "gtseg-output"):
            s3.create_bucket(Bucket=bucket)
        for key in ("cams/1/a.jpg", "cams/1/b.PNG", "cams/1/notes.txt", "cams/2/c.jpeg"):
            s3.put_object(Bucket="gtseg-data", Key=key, Body=b"image")
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="Gtseg-main-StreamingInput")["TopicArn"]
        # what Ground Truth does when the job starts: its queue, subscribed to the input topic
        queue_url = sqs.create_queue(QueueName=queue_name(JOB))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        sagemaker = boto3.client(
            "sagemaker", region_name=REGION, endpoint_url=standin.endpoint_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        settings = LauncherSettings.from_mapping({**ENV, "STREAMING_INPUT_TOPIC_ARN": topic})
        for name, streaming in ((JOB, True), ("one-time", False)):
            spec = {"jobName": name, "labels": ["road"], "streaming": streaming}
            if not streaming:
                spec["images"] = {"prefix": "s3://gtseg-data/cams/"}
            request = build_request(
                parse_job_spec(
                    {
                        **spec,
                        "workforce": {
                            "workteamArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/t"
                        },
                    }
                ),
                settings,
            )
            sagemaker.create_labeling_job(**request)
        routed = {"s3": s3, "sns": sns, "sqs": sqs, "sagemaker": sagemaker}

        def make_client(service: str, *_args: Any) -> Any:
            return routed[service]

        for module in (send_command, stop_command, status_command):
            monkeypatch.setattr(module, "make_client", make_client)
        yield {**routed, "standin": standin, "queue_url": queue_url, "topic": topic}


def received(aws: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages in Ground Truth's queue, unwrapped from SNS's envelope."""
    out = []
    while True:
        batch = (
            aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
        )
        if not batch:
            return out
        out += [json.loads(json.loads(m["Body"])["Message"]) for m in batch]
        for m in batch:
            aws["sqs"].delete_message(QueueUrl=aws["queue_url"], ReceiptHandle=m["ReceiptHandle"])


def test_send_publishes_each_image_once_with_the_dedupe_key(aws, capsys):
    code = cli.main(
        [
            "send",
            JOB,
            "s3://gtseg-data/cams/1/",
            "s3://gtseg-data/cams/2/c.jpeg",
            "s3://gtseg-data/cams/1/a.jpg",
        ]
    )
    assert code == 0
    assert "sent 3 images" in capsys.readouterr().out
    messages = received(aws)
    assert sorted(m["source-ref"] for m in messages) == [
        "s3://gtseg-data/cams/1/a.jpg",
        "s3://gtseg-data/cams/1/b.PNG",
        "s3://gtseg-data/cams/2/c.jpeg",
    ]
    assert all(m[DEDUPE_KEY] == "source-ref" for m in messages)


def test_send_dry_run_sends_nothing(aws, capsys):
    assert cli.main(["send", JOB, "s3://gtseg-data/cams/", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 3 and "would send 3 images" in out.err
    assert received(aws) == []


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["send", "missing-job", "s3://gtseg-data/cams/"], 1, "no labeling job named 'missing-job'"),
        (["send", "one-time", "s3://gtseg-data/cams/"], 1, "one-time is not a streaming job"),
        (["send", JOB, "cams/1/a.jpg"], 2, "is not an s3:// image or prefix"),
        (["send", JOB, "s3://gtseg-data/cams/9.jpg"], 1, "s3://gtseg-data/cams/9.jpg does not exist"),
        (["send", JOB, "s3://gtseg-data/empty/"], 1, "no .jpg, .jpeg or .png images under"),
    ],
)
def test_send_refusals_are_one_line(aws, capsys, argv, code, message):
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert received(aws) == []


def test_send_waits_for_the_job_to_be_in_progress(aws, capsys):
    aws["standin"].update_job(JOB, status="Initializing")
    assert cli.main(["send", JOB, "s3://gtseg-data/cams/"]) == 1
    assert "is Initializing: Ground Truth takes objects" in capsys.readouterr().err


def test_status_of_a_streaming_job_shows_its_counters_and_queue(aws, capsys):
    cli.main(["send", JOB, "s3://gtseg-data/cams/"])
    aws["standin"].update_job(JOB, counters={"TotalLabeled": 2, "Unlabeled": 1})
    assert cli.main(["status", JOB]) == 0
    out = capsys.readouterr().out
    assert f"streaming: input topic {aws['topic']}" in out
    assert "objects so far: 3 received, 2 labeled, 0 failed, 1 not labeled yet" in out
    assert f"queue {queue_name(JOB)}: 3 waiting for a worker, 0 in flight" in out
    assert f"dataset: s3://gtseg-output/jobs/{JOB}/{STREAMING_DATASET_DIR}/" in out


def test_stop_then_wait_gathers_the_streaming_dataset(aws, capsys, monkeypatch):
    line = {"source-ref": "s3://gtseg-data/cams/1/a.jpg", f"{JOB}-ref": "s3://x/y.png"}
    aws["s3"].put_object(
        Bucket="gtseg-output", Key=f"jobs/{JOB}/{STREAMING_DATASET_DIR}/lines/a-1.json", Body=json.dumps(line)
    )
    assert cli.main(["stop", JOB]) == 0
    out = capsys.readouterr().out
    assert f"{JOB}: stopping" in out and "stop Live-Cams --wait" in out and queue_name(JOB) in out
    assert aws["standin"].job(JOB).stop_requested

    assert cli.main(["stop", JOB]) == 0
    assert "already stopping" in capsys.readouterr().out

    # the job ends while we wait: the stand-in is told so on the first poll
    monkeypatch.setattr(
        stop_command.time, "sleep", lambda s: aws["standin"].update_job(JOB, status="Stopped")
    )
    assert cli.main(["stop", JOB, "--wait", "--interval", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{JOB}: Stopped" in out and "streaming dataset: 1 objects" in out
    manifest = aws["s3"].get_object(
        Bucket="gtseg-output", Key=f"jobs/{JOB}/{STREAMING_DATASET_DIR}/output.manifest"
    )
    assert json.loads(manifest["Body"].read()) == line


def test_stop_of_an_ended_job_leaves_it_alone(aws, capsys):
    aws["standin"].update_job("one-time", status="Completed")
    assert cli.main(["stop", "one-time"]) == 0
    out = capsys.readouterr().out
    assert "already Completed; nothing to stop" in out and "GroundTruth-" not in out
    assert cli.main(["stop", "nobody"]) == 1
    assert "no labeling job named 'nobody'" in capsys.readouterr().err
