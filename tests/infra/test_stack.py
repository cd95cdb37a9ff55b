"""The synthesized template: resources, bucket security, CORS, functions, wiring, events, outputs."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from aws_cdk.assertions import Match
from infra_testkit import SETTINGS_CASES, WORKTEAM_ARN, Synthesized

from gtseg.consolidation.settings import ConsolidationSettings
from gtseg.core.consolidation import METHODS
from gtseg.launcher.settings import ENVIRONMENT, OPTIONAL_SETTINGS
from infra.functions import CONSOLIDATION_HANDLER, LAUNCHER_HANDLER, PRE_ANNOTATION_HANDLER
from infra.settings import CONSOLIDATION_MEMORY_MB, CONSOLIDATION_TIMEOUT_SECONDS, read_lambda_platform

COMMON_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}


def props(synth: Synthesized, construct: Any) -> dict[str, Any]:
    return synth.resolve(synth.json["Resources"][synth.logical_id(construct)]["Properties"])


def resource(synth: Synthesized, construct: Any) -> dict[str, Any]:
    return synth.json["Resources"][synth.logical_id(construct)]


# ----------------------------------------------------------------------------------- counts


def test_resource_counts(synthesized: Synthesized) -> None:
    counts = Counter(r["Type"] for r in synthesized.json["Resources"].values())
    created_key = synthesized.name == "kms"  # "options" imports an existing key
    destroy = synthesized.name == "dev"
    uploads = "streamingUploadPrefix" in SETTINGS_CASES[synthesized.name]  # S3 -> streaming input topic
    assert counts["AWS::S3::Bucket"] == 4
    assert counts["AWS::S3::BucketPolicy"] == 4  # TLS-only (+ log delivery on the log bucket)
    # our three + streaming output + finalize + BucketDeployment's handler (+ the auto-delete
    # provider when destroying, + CDK's bucket-notifications handler with streaming uploads)
    assert counts["AWS::Lambda::Function"] == 6 + destroy + uploads
    # our dependency layer, the finalize function's report layer, BucketDeployment's awscli
    assert counts["AWS::Lambda::LayerVersion"] == 3
    # five functions, template deployment, job events, the finalize state machine
    assert counts["AWS::Logs::LogGroup"] == 8
    assert counts["AWS::Events::Rule"] == 2  # the job history, and "a job ended: finalize it"
    assert counts["AWS::StepFunctions::StateMachine"] == 1
    assert counts["AWS::Logs::ResourcePolicy"] == 1
    assert counts["Custom::CDKBucketDeployment"] == 1
    # the stack's data key (encryption=kms), or else the alarm topic's own key (infra/monitoring.py),
    # and the streaming topics' key (infra/streaming.py)
    assert counts["AWS::KMS::Key"] == 2
    assert ("Key" in synthesized.names().values()) == created_key
    assert counts["AWS::SNS::Topic"] == 4  # alarms, streaming input, streaming output, job finished
    assert counts["AWS::SNS::TopicPolicy"] == 4
    # the streaming output Lambda's, and the alarm e-mail
    assert counts["AWS::SNS::Subscription"] == 1 + int("alarmEmail" in SETTINGS_CASES[synthesized.name])
    assert counts["Custom::S3BucketNotifications"] == int(uploads)
    # 3 consolidation + 1 pre-annotation + 1 streaming-output + 2 finalize runs + 5 functions x 3
    assert counts["AWS::CloudWatch::Alarm"] == 22
    assert counts["AWS::CloudWatch::Dashboard"] == 1
    assert counts["Custom::S3AutoDeleteObjects"] == (4 if destroy else 0)
    # No custom-resource Lambda for the events log group (we write its resource policy directly).
    assert "Custom::CloudwatchLogResourcePolicy" not in counts


# ----------------------------------------------------------------------------------- buckets


def test_every_bucket_is_encrypted_private_tls_only_and_owner_enforced(synthesized: Synthesized) -> None:
    storage = synthesized.stack.storage
    for bucket in storage.buckets:
        p = props(synthesized, bucket)
        assert p["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
        )
        assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        rules = p["LifecycleConfiguration"]["Rules"]
        assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 7 for r in rules)
        default = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]
        if bucket is storage.access_log_bucket or storage.encryption_key is None:
            assert default == {"SSEAlgorithm": "AES256"}  # log delivery only supports SSE-S3
        else:
            expected_key = "Key.Arn" if synthesized.name == "kms" else synthesized.stack.settings.kms_key_arn
            assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": expected_key}
    synthesized.template.resource_properties_count_is(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
        4,
    )


def test_data_buckets_are_versioned_and_log_to_the_access_log_bucket(synthesized: Synthesized) -> None:
    storage = synthesized.stack.storage
    prefixes = set()
    for bucket in (storage.data_bucket, storage.output_bucket, storage.assets_bucket):
        p = props(synthesized, bucket)
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
        assert p["LoggingConfiguration"]["DestinationBucketName"] == "AccessLogBucket"
        prefixes.add(p["LoggingConfiguration"]["LogFilePrefix"])
    assert len(prefixes) == 3  # one prefix per bucket, so logs can be told apart
    assert "LoggingConfiguration" not in props(synthesized, storage.access_log_bucket)


def test_cors_exactly_on_the_buckets_the_worker_ui_reads(synthesized: Synthesized) -> None:
    storage = synthesized.stack.storage
    worker_ui_rule = {
        "AllowedMethods": ["GET", "HEAD"],
        "AllowedOrigins": ["*"],
        "ExposedHeaders": ["Access-Control-Allow-Origin"],
    }
    assert props(synthesized, storage.data_bucket)["CorsConfiguration"]["CorsRules"] == [worker_ui_rule]
    assert props(synthesized, storage.output_bucket)["CorsConfiguration"]["CorsRules"] == [worker_ui_rule]
    for bucket in (storage.assets_bucket, storage.access_log_bucket):
        assert "CorsConfiguration" not in props(synthesized, bucket)


def test_retention_setting(synthesized: Synthesized) -> None:
    destroy = synthesized.name == "dev"
    storage = synthesized.stack.storage
    for bucket in storage.buckets:
        assert resource(synthesized, bucket)["DeletionPolicy"] == ("Delete" if destroy else "Retain")
    for fn in synthesized.stack.functions.all:
        assert resource(synthesized, fn.log_group)["DeletionPolicy"] == ("Delete" if destroy else "Retain")
    if synthesized.name == "kms":
        key = synthesized.json["Resources"][synthesized.logical_id(storage.encryption_key)]
        assert key["DeletionPolicy"] == "Retain"
        assert key["Properties"]["EnableKeyRotation"] is True


# ----------------------------------------------------------------------------------- functions


def test_functions_run_on_arm64_with_the_makefile_python_and_the_layer(synthesized: Synthesized) -> None:
    platform = read_lambda_platform()
    functions = synthesized.stack.functions
    handlers = {
        functions.pre_annotation: PRE_ANNOTATION_HANDLER,
        functions.consolidation: CONSOLIDATION_HANDLER,
        functions.launcher: LAUNCHER_HANDLER,
    }
    for fn, handler in handlers.items():
        p = props(synthesized, fn)
        assert p["Runtime"] == f"python{platform.python_version}"
        assert p["Architectures"] == ["arm64"]
        assert p["Handler"] == handler
        assert p["Layers"] == ["Layer"]
        assert p["Role"] == f"{fn.node.id}Role.Arn"
        assert p["LoggingConfig"]["LogGroup"] == f"{fn.node.id}Logs"
        assert "ReservedConcurrentExecutions" not in p
    layer = props(synthesized, functions.layer)
    assert layer["CompatibleArchitectures"] == ["arm64"]
    assert layer["CompatibleRuntimes"] == [f"python{platform.python_version}"]


def test_handlers_named_by_the_stack_exist() -> None:
    import importlib

    for dotted in (PRE_ANNOTATION_HANDLER, CONSOLIDATION_HANDLER, LAUNCHER_HANDLER):
        module, _, name = dotted.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), dotted


def test_memory_and_timeouts(synthesized: Synthesized) -> None:
    settings = synthesized.stack.settings
    consolidation = props(synthesized, synthesized.stack.functions.consolidation)
    assert consolidation["MemorySize"] == settings.consolidation_memory_mb
    assert consolidation["Timeout"] == CONSOLIDATION_TIMEOUT_SECONDS
    if synthesized.name == "default":
        assert consolidation["MemorySize"] == CONSOLIDATION_MEMORY_MB
    if synthesized.name == "options":
        assert consolidation["MemorySize"] == 4096
    assert props(synthesized, synthesized.stack.functions.pre_annotation)["Timeout"] <= 60


def test_log_retention_follows_the_setting(synthesized: Synthesized) -> None:
    days = synthesized.stack.settings.log_retention_days
    groups = synthesized.resources("AWS::Logs::LogGroup")
    assert groups
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {days}


def env(synth: Synthesized, fn: Any) -> dict[str, str]:
    return props(synth, fn)["Environment"]["Variables"]


def test_launcher_environment_wiring(synthesized: Synthesized) -> None:
    launcher_env = env(synthesized, synthesized.stack.functions.launcher)
    expected = {
        "GROUND_TRUTH_ROLE_ARN": "GroundTruthRole.Arn",
        "PRE_ANNOTATION_FUNCTION_ARN": "PreAnnotation.Arn",
        "CONSOLIDATION_FUNCTION_ARN": "Consolidation.Arn",
        "WORKER_TEMPLATE_URI": "s3://AssetsBucket/templates/semantic-segmentation.liquid.html",
        "DATA_BUCKET": "DataBucket",
        "OUTPUT_BUCKET": "OutputBucket",
        "POWERTOOLS_SERVICE_NAME": "gtseg-launcher",
        "POWERTOOLS_METRICS_NAMESPACE": "gtseg",
        "LOG_LEVEL": "INFO",
        "STREAMING_INPUT_TOPIC_ARN": "StreamingInputTopic",
        "STREAMING_OUTPUT_TOPIC_ARN": "StreamingOutputTopic",
    }
    if synthesized.name == "kms":
        expected["OUTPUT_KMS_KEY_ID"] = "Key.Arn"
    if synthesized.name == "options":
        expected["OUTPUT_KMS_KEY_ID"] = SETTINGS_CASES["options"]["kmsKeyArn"]
        expected["DEFAULT_WORKTEAM_ARN"] = WORKTEAM_ARN
    assert launcher_env == expected


def test_launcher_environment_matches_the_launchers_own_contract(synthesized: Synthesized) -> None:
    launcher_env = set(env(synthesized, synthesized.stack.functions.launcher)) - COMMON_ENV
    required = {var for attr, var in ENVIRONMENT.items() if attr not in OPTIONAL_SETTINGS}
    assert required <= launcher_env
    assert launcher_env <= set(ENVIRONMENT.values())


def test_consolidation_environment_is_accepted_by_the_handler(synthesized: Synthesized) -> None:
    consolidation_env = env(synthesized, synthesized.stack.functions.consolidation)
    settings = synthesized.stack.settings
    assert consolidation_env["CONSOLIDATION_METHOD"] == settings.consolidation_method
    assert consolidation_env["CONSOLIDATION_METHOD"] in METHODS
    tuning = {k: v for k, v in consolidation_env.items() if k not in COMMON_ENV}
    known = {f.alias for f in ConsolidationSettings.model_fields.values()}
    assert set(tuning) <= known
    if "OUTPUT_KMS_KEY_ID" in tuning:
        tuning["OUTPUT_KMS_KEY_ID"] = "resolved-at-deploy"  # a token here
    parsed = ConsolidationSettings.model_validate(tuning)
    assert parsed.assume_job_role is False  # the Lambda's own role does the S3 work (pattern B)
    # unless a setting says otherwise, the deployed function consolidates as the handler's defaults do
    defaults = ConsolidationSettings.model_validate({})
    if "consolidationSmoothing" not in SETTINGS_CASES[synthesized.name]:
        assert parsed.smoothing == defaults.smoothing
    assert ("OUTPUT_KMS_KEY_ID" in tuning) == (synthesized.stack.storage.encryption_key is not None)


def test_pre_annotation_environment(synthesized: Synthesized) -> None:
    pre_env = env(synthesized, synthesized.stack.functions.pre_annotation)
    expected = {
        "LABEL_CATEGORY_CONFIG_URI": "s3://AssetsBucket/templates/label-categories.json",
        "OUTPUT_BUCKET": "OutputBucket",
        "POWERTOOLS_SERVICE_NAME": "gtseg-pre-annotation",
        "POWERTOOLS_METRICS_NAMESPACE": "gtseg",
        "LOG_LEVEL": "INFO",
    }
    if synthesized.name == "options":
        expected["PRELABEL_ENDPOINT_NAME"] = "road-segmenter"
    assert pre_env == expected


# ----------------------------------------------------------------------------------- worker UI


def test_templates_directory_is_deployed_under_templates_prefix(default: Synthesized) -> None:
    deployments = default.resources("Custom::CDKBucketDeployment")
    assert len(deployments) == 1
    (deployment,) = deployments.values()
    p = default.resolve(deployment["Properties"])
    assert p["DestinationBucketName"] == "AssetsBucket"
    assert p["DestinationBucketKeyPrefix"] == "templates/"
    assert p["Prune"] is True


# ----------------------------------------------------------------------------------- events


def test_labeling_job_state_changes_go_to_a_log_group(synthesized: Synthesized) -> None:
    events = synthesized.stack.events
    rule = props(synthesized, events.rule)
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Ground Truth Labeling Job State Change"],
        "resources": [{"prefix": "arn:aws:sagemaker:${Region}:${Account}:labeling-job/"}],
    }
    assert rule["Targets"] == [
        {"Arn": "arn:aws:logs:${Region}:${Account}:log-group:EventsLogGroup", "Id": "Target0"}
    ]
    log_group = props(synthesized, events.log_group)
    stage = synthesized.stack.settings.stage
    assert log_group["LogGroupName"].startswith(f"/aws/events/gtseg-{stage}/labeling-jobs-")
    assert "AWS::StackId" in str(log_group["LogGroupName"])  # unique per stack instance
    (policy,) = synthesized.resources("AWS::Logs::ResourcePolicy").values()
    document = synthesized.resolve(policy["Properties"]["PolicyDocument"])
    if isinstance(document, str):  # CloudFormation wants the policy as a JSON string
        document = json.loads(document)
    assert document["Statement"] == [
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Resource": "EventsLogGroup.Arn",
            # only this rule may write the job history (confused-deputy guard)
            "Condition": {"ArnEquals": {"aws:SourceArn": "EventsRule.Arn"}},
        }
    ]


# ----------------------------------------------------------------------------------- outputs


def test_stack_outputs(default: Synthesized) -> None:
    outputs = {name: out["Value"] for name, out in default.resolve(default.json["Outputs"]).items()}
    assert outputs == {
        "DataBucketName": "DataBucket",
        "OutputBucketName": "OutputBucket",
        "AssetsBucketName": "AssetsBucket",
        "LauncherFunctionName": "Launcher",
        "LauncherFunctionArn": "Launcher.Arn",
        "PreAnnotationFunctionArn": "PreAnnotation.Arn",
        "ConsolidationFunctionArn": "Consolidation.Arn",
        "GroundTruthRoleArn": "GroundTruthRole.Arn",
        "WorkerTemplateUri": "s3://AssetsBucket/templates/semantic-segmentation.liquid.html",
        "LabelCategoryConfigUri": "s3://AssetsBucket/templates/label-categories.json",
        "LabelingJobEventsLogGroup": "EventsLogGroup",
        "AlarmTopicArn": "AlarmTopic",
        "DashboardName": "Dashboard",
        "StreamingInputTopicArn": "StreamingInputTopic",
        "StreamingOutputTopicArn": "StreamingOutputTopic",
        "StreamingTopicKeyArn": "StreamingTopicKey.Arn",
        "JobFinishedTopicArn": "JobFinishedTopic",
        "FinalizeStateMachineArn": "FinalizeStateMachine",
    }


@pytest.mark.parametrize("case", ["default", "dev"])
def test_stack_name_follows_stage(case: str) -> None:
    from infra_testkit import synthesize

    synth = synthesize(case)
    assert synth.stack.stack_name == ("Gtseg-dev" if case == "dev" else "Gtseg-main")


def test_the_cli_finds_the_launcher_through_a_real_output(default: Synthesized) -> None:
    from gtseg.cli.launch import STACK_OUTPUT_KEY

    outputs = default.resolve(default.json["Outputs"])
    assert outputs[STACK_OUTPUT_KEY]["Value"] == "Launcher"  # the function name, what Invoke takes
