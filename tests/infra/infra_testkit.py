"""Helpers for the CDK tests: one synthesized app per settings case, built once per session.

Bundling is skipped (``aws:cdk:bundling-stacks: []``) except in the one slow test; the app is built
with ``app.build_app`` (cdk-nag included) and the feature flags of ``cdk.json``, so what is tested
is what ``make synth`` produces.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402
from infra.stack import GtsegStack  # noqa: E402

ALARM_EMAIL = "labeling-ops@example.com"
ACCOUNT_KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WORKTEAM_ARN = "arn:aws:sagemaker:eu-west-1:111122223333:workteam/private-crowd/labelers"
UPLOAD_PREFIX = "incoming/"  # streaming: uploads under it go to the input topic

# The main settings the stack must synthesize (and pass nag/cfn-lint) with.
SETTINGS_CASES: dict[str, dict[str, str]] = {
    "default": {},
    "kms": {"encryption": "kms"},
    "dev": {"retention": "destroy", "stage": "dev", "logRetentionDays": "7"},
    "options": {
        "encryption": "kms",
        "kmsKeyArn": ACCOUNT_KEY_ARN,
        "workteamArn": WORKTEAM_ARN,
        "prelabelEndpointName": "road-segmenter",
        "consolidationMemoryMb": "4096",
        "consolidationMethod": "majority",
        "alarmEmail": ALARM_EMAIL,
        "streamingUploadPrefix": UPLOAD_PREFIX,
    },
}


def cdk_json_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def new_app(settings: dict[str, str], *, bundling: bool = False, outdir: str | None = None) -> cdk.App:
    context: dict[str, Any] = {**cdk_json_context(), **settings}
    if not bundling:
        context["aws:cdk:bundling-stacks"] = []
    return cdk.App(context=context, outdir=outdir)


@dataclass
class Synthesized:
    """One settings case: the stack object (for logical IDs) and its template."""

    name: str
    app: cdk.App
    stack: GtsegStack
    template: Template
    json: dict[str, Any] = field(repr=False)
    _names: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def logical_id(self, construct: Any) -> str:
        cfn = construct if isinstance(construct, cdk.CfnElement) else construct.node.default_child
        return self.stack.resolve(cfn.logical_id)

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == resource_type}

    def names(self) -> dict[str, str]:
        """Logical ID -> readable name, for turning intrinsic functions into strings (worked out
        once per synthesized case: each logical ID is a call into the CDK's JavaScript)."""
        if self._names is None:
            self._names = self._readable_names()
        return self._names

    def _readable_names(self) -> dict[str, str]:
        s = self.stack
        named = {
            "DataBucket": s.storage.data_bucket,
            "OutputBucket": s.storage.output_bucket,
            "AssetsBucket": s.storage.assets_bucket,
            "AccessLogBucket": s.storage.access_log_bucket,
            "PreAnnotation": s.functions.pre_annotation,
            "Consolidation": s.functions.consolidation,
            "Launcher": s.functions.launcher,
            "GroundTruthRole": s.access.ground_truth_role,
            "PreAnnotationRole": s.functions.pre_annotation.role,
            "ConsolidationRole": s.functions.consolidation.role,
            "LauncherRole": s.functions.launcher.role,
            "EventsLogGroup": s.events.log_group,
            "EventsRule": s.events.rule,
            "Layer": s.functions.layer,
            "AlarmTopic": s.monitoring.topic,
            "Dashboard": s.monitoring.dashboard,
            "StreamingInputTopic": s.streaming.input_topic,
            "StreamingOutputTopic": s.streaming.output_topic,
            "StreamingTopicKey": s.streaming.key,
            "StreamingOutput": s.streaming.output_function,
            "StreamingOutputRole": s.streaming.output_role,
            "StreamingOutputLogs": s.streaming.output_function.log_group,
            "ReportLayer": s.functions.report_layer,
            "Finalize": s.finalize.function,
            "FinalizeRole": s.finalize.function.role,
            "FinalizeLogs": s.finalize.function.log_group,
            "FinalizeStateMachine": s.finalize.state_machine,
            "FinalizeStateMachineRole": s.finalize.role,
            "FinalizeStateMachineLogs": s.finalize.log_group,
            "JobFinishedTopic": s.finalize.topic,
            "JobEndedRule": s.finalize.rule,
        }
        if s.monitoring.topic_key is not s.storage.encryption_key:
            named["AlarmTopicKey"] = s.monitoring.topic_key
        for alarm_name, alarm in s.monitoring.alarms.items():
            named[f"Alarm[{alarm_name}]"] = alarm
        if isinstance(s.storage.encryption_key, cdk.Resource) and s.storage.encryption_key.node.default_child:
            named["Key"] = s.storage.encryption_key
        for fn in s.functions.all:
            named[f"{fn.node.id}Logs"] = fn.log_group
        return {self.logical_id(c): n for n, c in named.items() if c is not None}

    def resolve(self, value: Any) -> Any:
        return resolve_intrinsics(value, self.names())


def resolve_intrinsics(value: Any, names: dict[str, str]) -> Any:
    """Render CloudFormation intrinsics as readable strings: {"Fn::GetAtt": [X, "Arn"]} -> "X.Arn"."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "${Region}", "AWS::AccountId": "${Account}"}
    if isinstance(value, list):
        return [resolve_intrinsics(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        ref = value["Ref"]
        return pseudo.get(ref) or names.get(ref, f"?{ref}")
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return f"{names.get(logical_id, '?' + logical_id)}.{attribute}"
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve_intrinsics(p, names)) for p in parts)
    return {k: resolve_intrinsics(v, names) for k, v in value.items()}


_CACHE: dict[str, Synthesized] = {}


def synthesize(case: str) -> Synthesized:
    if case not in _CACHE:
        app, stack = build_app(new_app(SETTINGS_CASES[case]))
        template = Template.from_stack(stack)
        _CACHE[case] = Synthesized(case, app, stack, template, template.to_json())
    return _CACHE[case]
