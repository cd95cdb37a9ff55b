"""Finalizing ended jobs (infra/finalize.py): the rule, the state machine's definition (checked by
cfn-lint against the States Language schema), the finalize function, both roles exactly, the topic."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from infra_testkit import REPO_ROOT, SETTINGS_CASES, Synthesized, synthesize
from test_iam import LABELING_JOBS, allow, kms, role_statements, triples

from infra.finalize import FINALIZE_HANDLER
from infra.settings import FINALIZE_BATCH_SIZE, FINALIZE_MAX_BATCH_BYTES, FINALIZE_MAX_CONCURRENCY

CFN_LINT = REPO_ROOT / ".venv" / "bin" / "cfn-lint"
FINALIZED = "OutputBucket.Arn/jobs/*/gtseg/*"


def resource(synth: Synthesized, name: str) -> dict[str, Any]:
    logical_id = next(lid for lid, n in synth.names().items() if n == name)
    return synth.json["Resources"][logical_id]


def definition(synth: Synthesized) -> dict[str, Any]:
    return resource(synth, "FinalizeStateMachine")["Properties"]["Definition"]


def substituted(synth: Synthesized, placeholder: str) -> Any:
    """What a ``${RefN}`` of the definition stands for (DefinitionSubstitutions), readable."""
    subs = resource(synth, "FinalizeStateMachine")["Properties"]["DefinitionSubstitutions"]
    return synth.resolve(subs[placeholder.removeprefix("${").removesuffix("}")])


def test_the_rule_starts_the_state_machine_when_a_labeling_job_completes_or_stops(
    synthesized: Synthesized,
) -> None:
    rule = synthesized.resolve(resource(synthesized, "JobEndedRule")["Properties"])
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Ground Truth Labeling Job State Change"],
        "resources": [{"prefix": "arn:aws:sagemaker:${Region}:${Account}:labeling-job/"}],
        "detail": {"LabelingJobStatus": ["Completed", "Stopped"]},
    }
    assert rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == "FinalizeStateMachine"
    # the state machine's first step tells this stack's jobs from others by their RoleArn
    env = resource(synthesized, "Finalize")["Properties"]["Environment"]["Variables"]
    assert synthesized.resolve(env["GROUND_TRUTH_ROLE_ARN"]) == "GroundTruthRole.Arn"


def test_the_distributed_map_reads_the_manifest_in_batches_and_writes_its_results_to_s3(
    default: Synthesized,
) -> None:
    states = definition(default)["States"]
    assert definition(default)["StartAt"] == "Prepare"
    lines = states["FinalizeLines"]
    reader = lines["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "JSONL"}
    assert substituted(default, reader["Parameters"]["Bucket"]) == "OutputBucket"
    assert reader["Parameters"]["Key.$"] == "$.prepared.manifest_key"
    assert lines["ItemSelector"] == {"index.$": "$$.Map.Item.Index", "line.$": "$$.Map.Item.Value"}
    assert lines["ItemBatcher"] == {
        "MaxItemsPerBatch": FINALIZE_BATCH_SIZE,
        "MaxInputBytesPerBatch": FINALIZE_MAX_BATCH_BYTES,
        "BatchInput": {"plan.$": "$.prepared.plan"},
    }
    assert FINALIZE_MAX_BATCH_BYTES < 256 * 1024  # Step Functions' limit for a batch
    assert lines["MaxConcurrency"] == FINALIZE_MAX_CONCURRENCY
    assert lines["ToleratedFailurePercentage"] == 100  # the reduce lists what failed, line by line
    assert lines["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert lines["ResultWriter"]["Parameters"]["Prefix.$"] == "$.prepared.results_prefix"
    assert substituted(default, lines["ResultWriter"]["Parameters"]["Bucket"]) == "OutputBucket"
    assert lines["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    batch = lines["ItemProcessor"]["States"]["FinalizeBatch"]
    assert batch["Parameters"] == {"step": "map", "plan.$": "$.BatchInput.plan", "items.$": "$.Items"}
    assert substituted(default, batch["Resource"]) == "Finalize.Arn"
    assert [r["ErrorEquals"] for r in batch["Retry"]][-1] == ["States.ALL"]
    assert any("Lambda.TooManyRequestsException" in r["ErrorEquals"] for r in batch["Retry"])
    # the map failing, the report failing: the run goes on and says so; the rest fail loudly
    assert lines["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.map", "Next": "Reduce"}]
    assert states["Report"]["Catch"][0]["Next"] == "Summarize"
    for step in ("Prepare", "Reduce", "Summarize"):
        assert states[step]["Catch"][0]["Next"] == "TellFinalizeFailed", step
    assert states["TellFinalizeFailed"]["Next"] == "FinalizeFailed"
    assert states["TellJobFinalized"]["Parameters"]["Subject.$"] == "$.summary.subject"
    assert states["TellJobFinalized"]["Resource"] == "arn:aws:states:::sns:publish"
    for name, state in states.items():
        if state["Type"] == "Task" and state["Resource"].startswith("${"):
            assert state["TimeoutSeconds"] > 900, name  # the Lambda's own timeout comes first


def test_cfn_lint_validates_the_state_machine_definition(tmp_path: Path) -> None:
    """The definition is a Definition object (not CDK's joined string), so cfn-lint checks it
    against the States Language schema: the real one passes, a broken copy does not."""
    template = synthesize("default").json
    (logical_id,) = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    assert "DefinitionString" not in template["Resources"][logical_id]["Properties"]
    broken = json.loads(json.dumps(template))
    broken["Resources"][logical_id]["Properties"]["Definition"]["States"]["Prepare"]["Type"] = "Taks"
    results = {}
    for name, body in (("good", template), ("broken", broken)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        results[name] = subprocess.run(
            [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert results["good"].returncode == 0, results["good"].stdout
    assert results["broken"].returncode != 0 and "E3601" in results["broken"].stdout
    assert "'Taks' is not one of" in results["broken"].stdout


def test_the_finalize_function(synthesized: Synthesized) -> None:
    props = synthesized.resolve(resource(synthesized, "Finalize")["Properties"])
    assert props["Handler"] == FINALIZE_HANDLER
    assert props["Timeout"] == 900 and props["EphemeralStorage"] == {"Size": 10240}
    assert props["Layers"] == ["Layer", "ReportLayer"]  # the report's templating, for this function only
    env = props["Environment"]["Variables"]
    assert env["OUTPUT_BUCKET"] == "OutputBucket" and env["FINALIZE_COPY_IMAGES"] == "true"
    for fn in ("PreAnnotation", "Consolidation", "Launcher"):
        assert synthesized.resolve(resource(synthesized, fn)["Properties"])["Layers"] == ["Layer"]


def expected_finalize(synth: Synthesized) -> set[tuple[str, str, str | None]]:
    return (
        allow(["logs:CreateLogStream", "logs:PutLogEvents"], "FinalizeLogs.Arn")
        | allow("s3:GetObject", ["OutputBucket.Arn/jobs/*", "DataBucket.Arn/*"])
        | allow(["s3:PutObject", "s3:AbortMultipartUpload"], FINALIZED)
        | allow("s3:ListBucket", ["OutputBucket.Arn", "DataBucket.Arn"])
        | allow("sagemaker:DescribeLabelingJob", LABELING_JOBS)
        | allow("sagemaker:ListLabelingJobs", "*")
        | kms(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], synth)
    )


def expected_state_machine(synth: Synthesized) -> set[tuple[str, str, str | None]]:
    topic_key = "Key.Arn" if "AlarmTopicKey" not in synth.names().values() else "AlarmTopicKey.Arn"
    executions = "arn:aws:states:${Region}:${Account}:execution:FinalizeStateMachine.Name"
    return (
        allow("lambda:InvokeFunction", "Finalize.Arn")
        | allow("s3:GetObject", "OutputBucket.Arn/jobs/*/manifests/output/output.manifest")
        | allow(["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], FINALIZED)
        | allow("sns:Publish", "JobFinishedTopic")
        | allow(["kms:Decrypt", "kms:GenerateDataKey"], topic_key)
        | kms(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], synth)
        | allow(["logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                 "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                 "logs:PutResourcePolicy", "logs:UpdateLogDelivery"], "*")
        | allow(["xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords",
                 "xray:PutTraceSegments"], "*")
        | allow("states:StartExecution", "FinalizeStateMachine")
        | allow(["states:DescribeExecution", "states:StopExecution"], f"{executions}:*")
        | allow("states:RedriveExecution", f"{executions}/*:*")
    )  # fmt: skip


def test_both_roles_have_exactly_their_rights(synthesized: Synthesized) -> None:
    for role, expected in (
        ("FinalizeRole", expected_finalize),
        ("FinalizeStateMachineRole", expected_state_machine),
    ):
        actual = triples(role_statements(synthesized, role))
        assert actual == expected(synthesized), role
    # never the whole output bucket: what CDK's Distributed Map would grant is not there
    resources = {r for _, r, _ in triples(role_statements(synthesized, "FinalizeStateMachineRole"))}
    assert "OutputBucket.Arn/*" not in resources and "arn:aws:s3:::OutputBucket/*" not in resources


def test_the_job_finished_topic_is_encrypted_tls_only_and_subscribable() -> None:
    for case in SETTINGS_CASES:
        synth = synthesize(case)
        props = synth.resolve(resource(synth, "JobFinishedTopic")["Properties"])
        assert props["KmsMasterKeyId"] in ("AlarmTopicKey.Arn", "Key.Arn")  # customer-managed
        policies = [synth.resolve(p["Properties"]) for p in synth.resources("AWS::SNS::TopicPolicy").values()]
        (policy,) = [p for p in policies if p["Topics"] == ["JobFinishedTopic"]]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in policy["PolicyDocument"]["Statement"])  # fmt: skip
    assert synthesize("default").resources("AWS::SNS::Subscription") == {} or all(
        synthesize("default").resolve(s["Properties"])["TopicArn"] != "JobFinishedTopic"
        for s in synthesize("default").resources("AWS::SNS::Subscription").values()
    )


def test_settings_turn_the_rule_off_and_subscribe_an_address(tmp_path: Path) -> None:
    from infra_testkit import new_app

    from app import build_app

    app, stack = build_app(
        new_app({"finalizeJobs": "false", "notificationEmail": "labels@example.com", "finalizeBatchSize": "20"},
                outdir=str(tmp_path))
    )  # fmt: skip
    from aws_cdk.assertions import Template

    template = Template.from_stack(stack).to_json()
    synth = Synthesized("custom", app, stack, Template.from_stack(stack), template)
    assert resource(synth, "JobEndedRule")["Properties"]["State"] == "DISABLED"
    subscriptions = [
        synth.resolve(s["Properties"]) for s in synth.resources("AWS::SNS::Subscription").values()
    ]
    assert {
        "Protocol": "email",
        "Endpoint": "labels@example.com",
        "TopicArn": "JobFinishedTopic",
    } in subscriptions
    assert definition(synth)["States"]["FinalizeLines"]["ItemBatcher"]["MaxItemsPerBatch"] == 20
