"""Streaming specs (``"streaming": true``) through the launcher: the requests are checked against
botocore's SageMaker model (its ParamValidator, and the patterns and maximums the local stand-in
applies), and every streaming rule refuses what it should before anything is written."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from test_launcher import (
    ACCOUNT,
    DATA_BUCKET,
    ENV,
    IMAGES_BUCKET,
    OUTPUT_BUCKET,
    REGION,
    keys,
    launcher_in_moto,
    put,
    read,
)

from gtseg.aws.s3 import S3Store
from gtseg.core.streaming import DEDUPE_KEY
from gtseg.handlers import launcher as handler_module
from gtseg.launcher import limits
from gtseg.launcher.errors import LaunchConfigError
from gtseg.launcher.launch import build_request, launch
from gtseg.launcher.settings import LauncherSettings
from gtseg.launcher.spec import SpecError, parse_job_spec
from gtseg.local.sagemaker_standin import StandinError, validate_request

INPUT_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:Gtseg-main-StreamingInput"
OUTPUT_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:Gtseg-main-StreamingOutput"
STREAMING_ENV = {**ENV, "STREAMING_INPUT_TOPIC_ARN": INPUT_TOPIC, "STREAMING_OUTPUT_TOPIC_ARN": OUTPUT_TOPIC}
WORKTEAM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/team-a"
MODEL = boto3.session.Session().client("sagemaker", region_name=REGION).meta.service_model


def streaming_spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jobName": "live-cameras",
        "labels": ["road", "car"],
        "workforce": {"workteamArn": WORKTEAM},
        "streaming": True,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def settings(**env: str | None) -> LauncherSettings:
    return LauncherSettings.from_mapping({**STREAMING_ENV, **env})


def assert_valid_for_the_service(request: dict[str, Any]) -> None:
    """botocore's validation (required members, types, minimums) plus what the service adds
    (patterns, maximums), as the local SageMaker stand-in applies it."""
    try:
        validate_request(MODEL.operation_model("CreateLabelingJob"), request)
    except StandinError as exc:  # pragma: no cover - the message is the assertion
        pytest.fail(f"the request breaks the service model: {exc.message}")
    assert limits.request_problems(request) == []
    assert limits.streaming_request_problems(request) == []


@pytest.fixture
def aws(monkeypatch):
    yield from launcher_in_moto(monkeypatch, STREAMING_ENV)


def test_streaming_job_without_images_has_the_topics_and_no_manifest(aws):
    s3, sagemaker = aws
    result = handler_module.handler(streaming_spec(), None)

    (request,) = sagemaker.created
    assert request["InputConfig"]["DataSource"] == {"SnsDataSource": {"SnsTopicArn": INPUT_TOPIC}}
    assert request["OutputConfig"] == {
        "S3OutputPath": f"s3://{OUTPUT_BUCKET}/jobs/",
        "SnsTopicArn": OUTPUT_TOPIC,
    }
    assert "StoppingConditions" not in request and "LabelingJobAlgorithmsConfig" not in request
    assert_valid_for_the_service(request)
    assert result["manifestUri"] is None and result["objectCount"] == 0
    assert result["inputTopicArn"] == INPUT_TOPIC
    # only the label-category file is written
    assert keys(s3, DATA_BUCKET) == ["jobs/live-cameras/label-categories.json"]


def test_images_become_the_first_objects_with_the_dedupe_key(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/first/a.jpg")
    put(s3, f"s3://{IMAGES_BUCKET}/first/b.png")
    result = handler_module.handler(streaming_spec(images={"prefix": f"s3://{IMAGES_BUCKET}/first/"}), None)

    (request,) = sagemaker.created
    source = request["InputConfig"]["DataSource"]
    assert source["SnsDataSource"] == {"SnsTopicArn": INPUT_TOPIC}
    assert source["S3DataSource"] == {"ManifestS3Uri": result["manifestUri"]}
    assert_valid_for_the_service(request)
    lines = [json.loads(line) for line in read(s3, result["manifestUri"]).splitlines()]
    assert lines == [
        {"source-ref": f"s3://{IMAGES_BUCKET}/first/{name}", DEDUPE_KEY: "source-ref"}
        for name in ("a.jpg", "b.png")
    ]


def test_a_manifest_line_with_its_own_dedupe_key_keeps_it_and_a_bad_one_is_skipped(aws):
    s3, _ = aws
    lines = [
        {
            "source-ref": f"s3://{IMAGES_BUCKET}/a.jpg",
            DEDUPE_KEY: "camera-frame",
            "camera-frame": "s3://cams/1/42",
        },
        {"source-ref": f"s3://{IMAGES_BUCKET}/b.jpg", DEDUPE_KEY: "nothing-here"},  # names a missing key
    ]
    put(s3, f"s3://{IMAGES_BUCKET}/m.manifest", "".join(json.dumps(line) + "\n" for line in lines))
    result = handler_module.handler(
        streaming_spec(images={"manifestUri": f"s3://{IMAGES_BUCKET}/m.manifest"}), None
    )
    written = [json.loads(line) for line in read(s3, result["manifestUri"]).splitlines()]
    assert written == [lines[0]]
    assert result["skippedCount"] == 1 and "nothing-here" in result["skipped"][0]


def test_relaunch_of_a_streaming_spec_returns_the_running_job(aws):
    _, sagemaker = aws
    first = handler_module.handler(streaming_spec(), None)
    again = handler_module.handler(streaming_spec(), None)
    assert again["created"] is False and again["jobArn"] == first["jobArn"]
    assert again["manifestUri"] is None and again["inputTopicArn"] == INPUT_TOPIC
    assert len(sagemaker.created) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"stoppingConditions": {"maxHumanLabeledObjectCount": 10}}, "ignores stopping conditions"),
        ({"prior": {"jobName": "first-pass"}, "labels": None}, "'prior' with 'streaming'"),
        ({"gold": {"manifestUri": f"s3://{DATA_BUCKET}/gold.manifest"}}, "'gold' with 'streaming'"),
    ],
)
def test_streaming_incompatible_fields_are_refused_before_any_call(aws, extra, message):
    s3, sagemaker = aws
    with pytest.raises(SpecError, match=message):
        handler_module.handler(streaming_spec(**extra), None)
    assert sagemaker.created == [] and keys(s3, DATA_BUCKET) == []


def test_an_empty_images_prefix_is_refused_with_the_way_out(aws):
    with pytest.raises(SpecError, match="leave 'images' out to start a streaming job with no objects"):
        handler_module.handler(streaming_spec(images={"prefix": f"s3://{IMAGES_BUCKET}/none/"}), None)


def test_a_stack_without_an_input_topic_cannot_start_streaming_jobs():
    spec = parse_job_spec(streaming_spec())
    with pytest.raises(LaunchConfigError, match="STREAMING_INPUT_TOPIC_ARN is not set"):
        build_request(spec, settings(STREAMING_INPUT_TOPIC_ARN=None))
    # ...while one-time jobs still launch there, and get no output topic
    one_time = build_request(
        parse_job_spec(streaming_spec(streaming=False, images={"prefix": "s3://my-images/p/"})), settings()
    )
    assert "SnsTopicArn" not in one_time["OutputConfig"]
    assert "SnsDataSource" not in one_time["InputConfig"]["DataSource"]


def test_without_an_output_topic_labels_go_to_s3_only():
    request = build_request(parse_job_spec(streaming_spec()), settings(STREAMING_OUTPUT_TOPIC_ARN=None))
    assert request["OutputConfig"] == {"S3OutputPath": f"s3://{OUTPUT_BUCKET}/jobs/"}
    assert_valid_for_the_service(request)


def test_topics_must_be_in_the_jobs_region_and_match_the_model():
    with pytest.raises(LaunchConfigError, match="STREAMING_INPUT_TOPIC_ARN is a topic of us-west-2"):
        settings(STREAMING_INPUT_TOPIC_ARN=f"arn:aws:sns:us-west-2:{ACCOUNT}:in")
    with pytest.raises(LaunchConfigError, match="STREAMING_OUTPUT_TOPIC_ARN must match the pattern"):
        settings(STREAMING_OUTPUT_TOPIC_ARN="not-a-topic")


def test_request_rules_for_streaming_come_from_the_developer_guide():
    request = build_request(parse_job_spec(streaming_spec()), settings())
    bad = {
        **request,
        "StoppingConditions": {"MaxHumanLabeledObjectCount": 5},
        "LabelingJobAlgorithmsConfig": {"LabelingJobAlgorithmSpecificationArn": "arn:aws:sagemaker:x"},
        "OutputConfig": {**request["OutputConfig"], "SnsTopicArn": INPUT_TOPIC},
    }
    paths = {path for path, _ in limits.streaming_request_problems(bad)}
    assert paths == {"StoppingConditions", "LabelingJobAlgorithmsConfig", "OutputConfig.SnsTopicArn"}
    one_time = {
        **request,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://my-images/m"}}},
    }
    assert [p for p, _ in limits.streaming_request_problems(one_time)] == ["OutputConfig.SnsTopicArn"]


def test_streaming_false_keeps_the_hash_of_specs_written_before_it():
    plain = streaming_spec(streaming=None, images={"prefix": "s3://my-images/p/"})
    assert parse_job_spec({**plain, "streaming": False}).sha256() == parse_job_spec(plain).sha256()
    assert parse_job_spec({**plain, "streaming": True}).sha256() != parse_job_spec(plain).sha256()


def test_direct_launch_against_the_local_sagemaker_standin(aws):
    """The same request over HTTP to the stand-in, which rejects what the service would."""
    from gtseg.local.sagemaker_standin import SageMakerStandin

    s3, _ = aws
    with SageMakerStandin(region=REGION) as standin:
        client = boto3.client(
            "sagemaker", region_name=REGION, endpoint_url=standin.endpoint_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        result = launch(streaming_spec(), settings(), S3Store(client=s3), client)
        described = client.describe_labeling_job(LabelingJobName="live-cameras")
    assert result.created and result.input_topic_arn == INPUT_TOPIC
    assert described["InputConfig"]["DataSource"]["SnsDataSource"]["SnsTopicArn"] == INPUT_TOPIC
    assert described["OutputConfig"]["SnsTopicArn"] == OUTPUT_TOPIC
