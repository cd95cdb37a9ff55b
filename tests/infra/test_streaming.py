"""The streaming topics (infra/streaming.py): encryption, topic and key policies, the S3 wiring of
uploads, the streaming-output Lambda's subscription and rights. The Ground Truth role's streaming
rights are asserted with all its others in test_iam.py."""

from __future__ import annotations

from typing import Any

import pytest
from infra_testkit import SETTINGS_CASES, UPLOAD_PREFIX, Synthesized
from test_iam import allow, kms, role_statements, triples

from infra.settings import GtsegSettings, SettingsError
from infra.streaming import STREAMING_OUTPUT_HANDLER


def resource(synth: Synthesized, name: str) -> dict[str, Any]:
    logical_id = next(lid for lid, n in synth.names().items() if n == name)
    return synth.json["Resources"][logical_id]


def topic_policy(synth: Synthesized, topic: str) -> list[dict[str, Any]]:
    policies = [synth.resolve(p["Properties"]) for p in synth.resources("AWS::SNS::TopicPolicy").values()]
    (policy,) = [p for p in policies if p["Topics"] == [topic]]
    return policy["PolicyDocument"]["Statement"]


def test_both_topics_are_encrypted_with_their_own_rotating_key_and_tls_only(synthesized: Synthesized) -> None:
    for topic in ("StreamingInputTopic", "StreamingOutputTopic"):
        props = synthesized.resolve(resource(synthesized, topic)["Properties"])
        assert props["KmsMasterKeyId"] == "StreamingTopicKey.Arn"  # never alias/aws/sns
        assert {
            "Sid": "AllowPublishThroughSSLOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        } in topic_policy(synthesized, topic)
    key = resource(synthesized, "StreamingTopicKey")["Properties"]
    assert key["EnableKeyRotation"] is True
    # not the data key: S3 and the topics' publishers get rights on this one only
    assert (
        synthesized.names().get(synthesized.logical_id(synthesized.stack.streaming.key))
        == "StreamingTopicKey"
    )


def test_uploads_publish_to_the_input_topic_only_when_a_prefix_is_set(synthesized: Synthesized) -> None:
    notifications = synthesized.resources("Custom::S3BucketNotifications")
    input_statements = topic_policy(synthesized, "StreamingInputTopic")
    key_statements = synthesized.resolve(
        resource(synthesized, "StreamingTopicKey")["Properties"]["KeyPolicy"]
    )
    s3_on_key = [
        s for s in key_statements["Statement"] if s.get("Principal") == {"Service": "s3.amazonaws.com"}
    ]
    if "streamingUploadPrefix" not in SETTINGS_CASES[synthesized.name]:
        assert notifications == {}
        assert len(input_statements) == 1 and s3_on_key == []
        return
    (config,) = (synthesized.resolve(n["Properties"]) for n in notifications.values())
    assert config["BucketName"] == "DataBucket"
    filters = {
        tuple(sorted((r["Name"], r["Value"]) for r in c["Filter"]["Key"]["FilterRules"]))
        for c in config["NotificationConfiguration"]["TopicConfigurations"]
    }
    assert filters == {
        (("prefix", UPLOAD_PREFIX), ("suffix", suffix))
        for suffix in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
    }
    assert {c["TopicArn"] for c in config["NotificationConfiguration"]["TopicConfigurations"]} == {
        "StreamingInputTopic"
    }
    assert {c["Events"][0] for c in config["NotificationConfiguration"]["TopicConfigurations"]} == {
        "s3:ObjectCreated:*"
    }
    # S3 may publish for the data bucket only, and use the topics' key to do so
    assert {
        "Sid": "1",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": "StreamingInputTopic",
        "Condition": {"ArnLike": {"aws:SourceArn": "DataBucket.Arn"}},
    } in input_statements
    assert [set(s["Action"]) for s in s3_on_key] == [{"kms:Decrypt", "kms:GenerateDataKey"}]
    # ...and nobody may publish S3 events to the output topic
    assert len(topic_policy(synthesized, "StreamingOutputTopic")) == 1


def test_the_output_lambda_is_subscribed_to_the_output_topic_only(synthesized: Synthesized) -> None:
    subscriptions = [
        synthesized.resolve(s["Properties"]) for s in synthesized.resources("AWS::SNS::Subscription").values()
    ]
    ours = [s for s in subscriptions if s["TopicArn"] != "AlarmTopic"]
    assert ours == [
        {"Protocol": "lambda", "Endpoint": "StreamingOutput.Arn", "TopicArn": "StreamingOutputTopic"}
    ]
    permissions = [
        synthesized.resolve(p["Properties"])
        for p in synthesized.resources("AWS::Lambda::Permission").values()
        if synthesized.resolve(p["Properties"])["FunctionName"] == "StreamingOutput.Arn"
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": "StreamingOutput.Arn",
            "Principal": "sns.amazonaws.com",
            "SourceArn": "StreamingOutputTopic",
        }
    ]
    props = synthesized.resolve(resource(synthesized, "StreamingOutput")["Properties"])
    assert props["Handler"] == STREAMING_OUTPUT_HANDLER
    assert props["Architectures"] == ["arm64"] and props["Layers"] == ["Layer"]


def test_the_output_lambda_reads_job_output_and_writes_only_streaming_datasets(
    synthesized: Synthesized,
) -> None:
    actual = triples(role_statements(synthesized, "StreamingOutputRole"))
    expected = (
        allow(["logs:CreateLogStream", "logs:PutLogEvents"], "StreamingOutputLogs.Arn")
        | allow("s3:GetObject", "OutputBucket.Arn/jobs/*")
        | allow("s3:PutObject", "OutputBucket.Arn/jobs/*/gtseg/streaming/*")
        | allow("s3:ListBucket", "OutputBucket.Arn")
        | kms(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], synthesized)
    )
    assert actual == expected
    environment = synthesized.resolve(resource(synthesized, "StreamingOutput")["Properties"])["Environment"]
    key = synthesized.stack.storage.encryption_key
    assert ("OUTPUT_KMS_KEY_ID" in environment["Variables"]) == (key is not None)


@pytest.mark.parametrize("prefix", ["jobs/", "jobs/uploads/", "templates/", "/incoming/", "incoming", ""])
def test_an_upload_prefix_gtseg_writes_to_or_that_is_not_a_prefix_is_refused(prefix: str) -> None:
    context = {"streamingUploadPrefix": prefix}
    if prefix == "":  # `-c key=` means unset
        assert GtsegSettings.from_context(context).streaming_upload_prefix is None
        return
    with pytest.raises(SettingsError, match="streamingUploadPrefix"):
        GtsegSettings.from_context(context)


def test_an_upload_prefix_in_the_data_bucket_is_accepted() -> None:
    assert (
        GtsegSettings.from_context({"streamingUploadPrefix": "cams/live/"}).streaming_upload_prefix
        == "cams/live/"
    )
