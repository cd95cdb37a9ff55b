"""Every IAM statement of our four roles, exactly: actions x resources x conditions.

Statements are expanded to (action, resource, condition) triples so the assertion does not depend
on how CDK merges statements; each expected set is the whole truth for that role.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_testkit import Synthesized

S3_NAMESPACE = {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
PASSED_TO_SAGEMAKER = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
LABELING_JOBS = "arn:aws:sagemaker:${Region}:${Account}:labeling-job/*"
# The one place the consolidation Lambda writes: each job's masks and sidecars (written out here, not
# imported from infra/, so a change of the scope has to change this test too).
CONSOLIDATED_OUTPUT = "OutputBucket.Arn/jobs/*/annotations/consolidated-annotation/output/*"
OUR_ROLES = ("GroundTruthRole", "PreAnnotationRole", "ConsolidationRole", "LauncherRole")

Triple = tuple[str, str, str | None]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def triples(statements: list[dict[str, Any]]) -> set[Triple]:
    out: set[Triple] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        condition = json.dumps(statement["Condition"], sort_keys=True) if "Condition" in statement else None
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                out.add((action, resource, condition))
    return out


def role_statements(synth: Synthesized, role_name: str) -> list[dict[str, Any]]:
    """Inline policies of the role plus every AWS::IAM::Policy attached to it, resolved."""
    names = synth.names()
    role_id = next(lid for lid, name in names.items() if name == role_name)
    role = synth.json["Resources"][role_id]
    statements: list[dict[str, Any]] = []
    for policy in role["Properties"].get("Policies", []):
        statements += synth.resolve(policy["PolicyDocument"]["Statement"])
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += synth.resolve(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def allow(actions: str | list[str], resources: str | list[str], condition: dict | None = None) -> set[Triple]:
    cond = json.dumps(condition, sort_keys=True) if condition else None
    return {(a, r, cond) for a in as_list(actions) for r in as_list(resources)}


def kms(actions: list[str], synth: Synthesized) -> set[Triple]:
    if synth.stack.storage.encryption_key is None:
        return set()
    key = "Key.Arn" if "Key" in synth.names().values() else synth.stack.settings.kms_key_arn
    return allow(actions, key)


def expected_ground_truth(synth: Synthesized) -> set[Triple]:
    return (
        allow(
            "s3:GetObject",
            ["DataBucket.Arn/*", "AssetsBucket.Arn/templates/*", "OutputBucket.Arn/prelabels/*"],
        )
        | allow(["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], "OutputBucket.Arn/jobs/*")
        | allow(
            ["s3:ListBucket", "s3:GetBucketLocation"],
            ["DataBucket.Arn", "OutputBucket.Arn", "AssetsBucket.Arn"],
        )
        | allow("lambda:InvokeFunction", ["PreAnnotation.Arn", "Consolidation.Arn"])
        | allow(
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "arn:aws:logs:${Region}:${Account}:log-group:/aws/sagemaker/LabelingJobs:*",
        )
        | allow("cloudwatch:PutMetricData", "*", S3_NAMESPACE)
        | kms(
            [
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:Encrypt",
                "kms:GenerateDataKey",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
            ],
            synth,
        )
        | expected_streaming_ground_truth()
    )


STREAMING_QUEUES = "arn:aws:sqs:${Region}:${Account}:GroundTruth-*"
STREAMING_TOPICS = ["StreamingInputTopic", "StreamingOutputTopic"]


def expected_streaming_ground_truth() -> set[Triple]:
    """The developer guide's streaming execution-role policy, scoped to this stack's topics and to
    Ground Truth's per-job queues (sqs:SendMessageBatch left out: IAM has no such action)."""
    return (
        allow(
            [
                "sqs:CreateQueue",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
                "sqs:SetQueueAttributes",
            ],
            STREAMING_QUEUES,
        )
        | allow(
            "sns:Subscribe",
            STREAMING_TOPICS,
            {"StringEquals": {"sns:Protocol": "sqs"}, "StringLike": {"sns:Endpoint": STREAMING_QUEUES}},
        )
        | allow(["sns:Publish", "sns:Unsubscribe"], STREAMING_TOPICS)
        | allow(["kms:Decrypt", "kms:GenerateDataKey"], "StreamingTopicKey.Arn")
    )


def expected_pre_annotation(synth: Synthesized) -> set[Triple]:
    endpoint = synth.stack.settings.prelabel_endpoint_name
    rights = (
        allow(["logs:CreateLogStream", "logs:PutLogEvents"], "PreAnnotationLogs.Arn")
        | allow("s3:GetObject", ["DataBucket.Arn/*", "AssetsBucket.Arn/templates/*"])
        # a prior job's colour map, when Ground Truth replaced its metadata: only the sidecars
        | allow("s3:GetObject", "OutputBucket.Arn/jobs/*/annotations/consolidated-annotation/output/*.json")
        | allow("s3:ListBucket", "DataBucket.Arn")
        | allow("sagemaker:DescribeLabelingJob", LABELING_JOBS)
    )
    if endpoint:
        rights |= allow(
            "sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:${{Region}}:${{Account}}:endpoint/{endpoint}"
        )
        rights |= allow("s3:PutObject", "OutputBucket.Arn/prelabels/*")
        return rights | kms(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], synth)
    return rights | kms(["kms:Decrypt", "kms:DescribeKey"], synth)


def expected_consolidation(synth: Synthesized) -> set[Triple]:
    return (
        allow(["logs:CreateLogStream", "logs:PutLogEvents"], "ConsolidationLogs.Arn")
        | allow("s3:PutObject", CONSOLIDATED_OUTPUT)
        | allow(
            "s3:GetObject", ["OutputBucket.Arn/jobs/*", "DataBucket.Arn/*", "AssetsBucket.Arn/templates/*"]
        )
        | allow("s3:ListBucket", ["DataBucket.Arn", "OutputBucket.Arn"])
        | allow("sagemaker:DescribeLabelingJob", LABELING_JOBS)
        | kms(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], synth)
    )


def expected_launcher(synth: Synthesized) -> set[Triple]:
    return (
        allow(["logs:CreateLogStream", "logs:PutLogEvents"], "LauncherLogs.Arn")
        | allow("s3:ListBucket", "DataBucket.Arn")
        | allow(
            "s3:GetObject", ["DataBucket.Arn/*", "AssetsBucket.Arn/templates/*", "OutputBucket.Arn/jobs/*"]
        )
        | allow("s3:PutObject", "DataBucket.Arn/jobs/*")
        | allow(
            ["sagemaker:CreateLabelingJob", "sagemaker:DescribeLabelingJob", "sagemaker:AddTags"],
            LABELING_JOBS,
        )
        | allow("iam:PassRole", "GroundTruthRole.Arn", PASSED_TO_SAGEMAKER)
        | kms(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], synth)
    )


EXPECTED = {
    "GroundTruthRole": expected_ground_truth,
    "PreAnnotationRole": expected_pre_annotation,
    "ConsolidationRole": expected_consolidation,
    "LauncherRole": expected_launcher,
}


@pytest.mark.parametrize("role", OUR_ROLES)
def test_every_statement_of_each_role_is_exactly_the_expected_one(
    synthesized: Synthesized, role: str
) -> None:
    actual = triples(role_statements(synthesized, role))
    expected = EXPECTED[role](synthesized)
    assert actual - expected == set(), f"{role} has rights nobody asked for"
    assert expected - actual == set(), f"{role} lacks rights it needs"


def test_no_wildcard_actions_and_no_managed_policies_on_our_roles(synthesized: Synthesized) -> None:
    names = synthesized.names()
    for role in OUR_ROLES:
        actions = {action for action, _, _ in triples(role_statements(synthesized, role))}
        assert actions, role
        assert not [a for a in actions if "*" in a], f"{role} has wildcard actions"
        role_id = next(lid for lid, n in names.items() if n == role)
        assert "ManagedPolicyArns" not in synthesized.json["Resources"][role_id]["Properties"], role


def test_ground_truth_role_invokes_exactly_the_two_labeling_functions(synthesized: Synthesized) -> None:
    invoked = {
        resource
        for action, resource, _ in triples(role_statements(synthesized, "GroundTruthRole"))
        if action.startswith("lambda:")
    }
    assert invoked == {"PreAnnotation.Arn", "Consolidation.Arn"}
    # The launcher is not invokable by Ground Truth.
    assert "Launcher.Arn" not in invoked


def test_only_the_launcher_may_pass_the_ground_truth_role(synthesized: Synthesized) -> None:
    for role in OUR_ROLES:
        passes = {r for a, r, _ in triples(role_statements(synthesized, role)) if a == "iam:PassRole"}
        assert passes == ({"GroundTruthRole.Arn"} if role == "LauncherRole" else set()), role


def test_trust_policies(default: Synthesized) -> None:
    names = {n: lid for lid, n in default.names().items()}
    resources = default.json["Resources"]
    gt_trust = default.resolve(resources[names["GroundTruthRole"]]["Properties"]["AssumeRolePolicyDocument"])
    assert gt_trust["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": "${Account}"}},
        }
    ]
    for role in ("PreAnnotationRole", "ConsolidationRole", "LauncherRole"):
        trust = resources[names[role]]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}], role


def test_kms_settings_grant_the_key_to_every_role(kms: Synthesized) -> None:
    for role in OUR_ROLES:
        resources = {r for a, r, _ in triples(role_statements(kms, role)) if a == "kms:Decrypt"}
        topic_key = {"StreamingTopicKey.Arn"} if role == "GroundTruthRole" else set()  # streaming topics
        assert resources == {"Key.Arn"} | topic_key, role


def test_without_kms_no_role_has_kms_rights(default: Synthesized) -> None:
    for role in OUR_ROLES:
        data_key = [
            a
            for a, r, _ in triples(role_statements(default, role))
            if a.startswith("kms:") and r != "StreamingTopicKey.Arn"  # the streaming topics' own key
        ]
        assert not data_key, role


def nag_spelling(value: Any) -> str:
    """How cdk-nag writes a template resource in a finding id (written independently of infra/)."""
    if isinstance(value, str):
        return value
    if set(value) == {"Ref"}:
        return f"<{value['Ref']}>"
    if set(value) == {"Fn::GetAtt"}:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    separator, parts = value["Fn::Join"]
    return separator.join(nag_spelling(p) for p in parts)


@pytest.mark.parametrize("role", OUR_ROLES)
def test_acknowledgements_cover_exactly_the_wildcards_each_role_has(
    synthesized: Synthesized, role: str
) -> None:
    """No blanket acknowledgements: a wildcard added to a role later must surface as a nag finding."""
    import aws_cdk as cdk

    names = synthesized.names()
    role_id = next(lid for lid, n in names.items() if n == role)
    construct = next(
        c
        for c in synthesized.stack.node.find_all()
        if isinstance(c, cdk.CfnElement) and synthesized.stack.resolve(c.logical_id) == role_id
    ).node.scope
    acknowledged = set()
    for entry in construct.node.metadata:
        if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
            for finding, reason in entry.data.items():
                rule = finding[finding.index("AwsSolutions-") :]
                assert rule.startswith("AwsSolutions-IAM5[Resource::"), rule
                assert len(reason) > 40, reason
                acknowledged.add(rule.removeprefix("AwsSolutions-IAM5[Resource::").removesuffix("]"))
    raw: list[dict[str, Any]] = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            raw += policy["Properties"]["PolicyDocument"]["Statement"]
    wildcards = {nag_spelling(r) for s in raw for r in as_list(s["Resource"]) if "*" in nag_spelling(r)}
    assert wildcards, role
    assert acknowledged == wildcards


def test_consolidation_writes_only_consolidated_output(synthesized: Synthesized) -> None:
    """Its PutObject is exactly the jobs' consolidated-annotation/output/ prefix: it can no longer
    overwrite worker responses, consolidation requests or manifests."""
    statements = triples(role_statements(synthesized, "ConsolidationRole"))
    writes = {resource for action, resource, _ in statements if action in ("s3:PutObject", "s3:*")}
    assert writes == {CONSOLIDATED_OUTPUT}
    ground_truths_own = [
        "jobs/my-job/annotations/worker-response/iteration-1/0/2024-05-01T12:00:05.json",
        "jobs/my-job/annotations/consolidated-annotation/consolidation-request/iteration-1/x.json",
        "jobs/my-job/manifests/output/output.manifest",
        "jobs/my-job/manifests/intermediate/1/output.manifest",
        "prelabels/my-job/abc.png",
    ]
    for key in ground_truths_own:
        assert not _matches(CONSOLIDATED_OUTPUT, f"OutputBucket.Arn/{key}"), key
    # ...while its own masks and sidecars (gtseg.core.layout's names) are inside the scope.
    from gtseg.core.layout import CONSOLIDATED_OUTPUT_DIR, JOBS_PREFIX

    for name in ("iteration-1/0.png", "iteration-1/0.json", "iteration-2/a_b~0123456789abcdef.png"):
        key = f"{JOBS_PREFIX}/my-job/{CONSOLIDATED_OUTPUT_DIR}/{name}"
        assert _matches(CONSOLIDATED_OUTPUT, f"OutputBucket.Arn/{key}"), key


def test_consolidation_reads_images_anywhere_and_job_output_but_writes_no_data_bucket(
    synthesized: Synthesized,
) -> None:
    statements = triples(role_statements(synthesized, "ConsolidationRole"))
    reads = {resource for action, resource, _ in statements if action == "s3:GetObject"}
    assert {"DataBucket.Arn/*", "OutputBucket.Arn/jobs/*"} <= reads
    assert not [r for a, r, _ in statements if a == "s3:PutObject" and r.startswith("DataBucket")]


def _matches(pattern: str, resource: str) -> bool:
    """IAM's resource matching: ``*`` is any run of characters (``/`` included)."""
    import re

    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), resource) is not None
