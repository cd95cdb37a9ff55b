"""The alarm topic, every alarm (metric, statistic, period, threshold, action) and the dashboard.

The expected alarms are written out here, independently of infra/monitoring.py: a changed metric,
threshold or period has to change this file too, and docs/deploy.md with it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from infra_testkit import ALARM_EMAIL, REPO_ROOT, SETTINGS_CASES, Synthesized

from gtseg.pre_annotation.task import Outcome

FIVE_MINUTES = 300
ONE_HOUR = 3600
SERVICES = {
    "pre-annotation": "gtseg-pre-annotation",
    "consolidation": "gtseg-consolidation",
    "launcher": "gtseg-launcher",
    "streaming-output": "gtseg-streaming-output",
    "finalize": "gtseg-finalize",
}
# alarm prefix -> the function's readable name in infra_testkit (its resolved logical ID)
FUNCTIONS = {
    "pre-annotation": "PreAnnotation",
    "consolidation": "Consolidation",
    "launcher": "Launcher",
    "streaming-output": "StreamingOutput",
    "finalize": "Finalize",
}
ATTRIBUTES = {
    "pre-annotation": lambda stack: stack.functions.pre_annotation,
    "consolidation": lambda stack: stack.functions.consolidation,
    "launcher": lambda stack: stack.functions.launcher,
    "streaming-output": lambda stack: stack.streaming.output_function,
    "finalize": lambda stack: stack.finalize.function,
}
# What a consolidation invocation emits (lambdas/gtseg/handlers/consolidation.py) and what the
# dashboard must show of it.
CONSOLIDATION_METRICS = (
    "ObjectsConsolidated",
    "ObjectsFailed",
    "AnnotationsRejected",
    "TransientFailures",
    "MeanConfidence",
)


def gtseg_metric(function: str, name: str) -> dict[str, Any]:
    return {
        "Namespace": "gtseg",
        "MetricName": name,
        "Dimensions": [{"Name": "service", "Value": SERVICES[function]}],
    }


def lambda_metric(function: str, name: str) -> dict[str, Any]:
    return {
        "Namespace": "AWS/Lambda",
        "MetricName": name,
        "Dimensions": [{"Name": "FunctionName", "Value": FUNCTIONS[function]}],
    }


def state_machine_metric(name: str) -> dict[str, Any]:
    return {
        "Namespace": "AWS/States",
        "MetricName": name,
        "Dimensions": [{"Name": "StateMachineArn", "Value": "FinalizeStateMachine"}],
    }


def timeout_seconds(synth: Synthesized, function: str) -> int:
    construct = ATTRIBUTES[function](synth.stack)
    return int(synth.json["Resources"][synth.logical_id(construct)]["Properties"]["Timeout"])


def expected_single_metric_alarms(synth: Synthesized) -> dict[str, tuple[dict[str, Any], str, int, float]]:
    """Alarm name (without the stack prefix) -> (metric, statistic, period in s, threshold)."""
    expected: dict[str, tuple[dict[str, Any], str, int, float]] = {
        "consolidation.ObjectsFailed": (
            gtseg_metric("consolidation", "ObjectsFailed"),
            "Sum",
            FIVE_MINUTES,
            0,
        ),
        "consolidation.TransientFailures": (
            gtseg_metric("consolidation", "TransientFailures"),
            "Sum",
            FIVE_MINUTES,
            0,
        ),
        "pre-annotation.SkippedInternalError": (
            gtseg_metric("pre-annotation", "SkippedInternalError"),
            "Sum",
            FIVE_MINUTES,
            0,
        ),
        "streaming-output.StreamingAnnouncementsRejected": (
            gtseg_metric("streaming-output", "StreamingAnnouncementsRejected"),
            "Sum",
            FIVE_MINUTES,
            0,
        ),
    }
    for kind in ("ExecutionsFailed", "ExecutionsTimedOut"):
        expected[f"finalize.{kind}"] = (state_machine_metric(kind), "Sum", FIVE_MINUTES, 0)
    for function in FUNCTIONS:
        expected[f"{function}.Errors"] = (lambda_metric(function, "Errors"), "Sum", FIVE_MINUTES, 0)
        expected[f"{function}.Throttles"] = (lambda_metric(function, "Throttles"), "Sum", FIVE_MINUTES, 0)
        # maximum duration above 80 % of the function's own (synthesized) timeout, in ms
        expected[f"{function}.DurationNearTimeout"] = (
            lambda_metric(function, "Duration"),
            "Maximum",
            FIVE_MINUTES,
            0.8 * timeout_seconds(synth, function) * 1000,
        )
    return expected


RATE_ALARM = "consolidation.AnnotationsRejectedRate"


def alarms(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Alarm name without the ``<stack>.`` prefix -> resolved properties."""
    prefix = f"{synth.stack.stack_name}."
    out = {}
    for alarm in synth.resources("AWS::CloudWatch::Alarm").values():
        p = synth.resolve(alarm["Properties"])
        assert p["AlarmName"].startswith(prefix), p["AlarmName"]
        out[p["AlarmName"].removeprefix(prefix)] = p
    return out


# ----------------------------------------------------------------------------------- topic


def test_the_topic_is_encrypted_with_a_key_cloudwatch_may_use(synthesized: Synthesized) -> None:
    topic = synthesized.json["Resources"][synthesized.logical_id(synthesized.stack.monitoring.topic)]
    key_arn = synthesized.resolve(topic["Properties"]["KmsMasterKeyId"])
    # Never alias/aws/sns: CloudWatch alarms cannot publish to a topic under the AWS-managed key.
    if synthesized.name == "kms":
        assert key_arn == "Key.Arn"  # the stack's own key
    else:
        assert key_arn == "AlarmTopicKey.Arn"  # no key, or an imported one we cannot extend
    key_id = next(lid for lid, n in synthesized.names().items() if f"{n}.Arn" == key_arn)
    key = synthesized.json["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = synthesized.resolve(key["Properties"]["KeyPolicy"]["Statement"])
    cloudwatch = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch == [
        {
            "Sid": "CloudWatchAlarmsPublishToTheAlarmTopic",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": our_alarms_only(synthesized),
        }
    ]


def our_alarms_only(synth: Synthesized) -> dict[str, Any]:
    return {
        "StringEquals": {"aws:SourceAccount": "${Account}"},
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:cloudwatch:${{Region}}:${{Account}}:alarm:{synth.stack.stack_name}.*"
        },
    }


def test_the_topic_takes_tls_only_and_alarms_of_this_stack_only(synthesized: Synthesized) -> None:
    policies = [
        synthesized.resolve(p["Properties"]) for p in synthesized.resources("AWS::SNS::TopicPolicy").values()
    ]
    (p,) = [policy for policy in policies if policy["Topics"] == ["AlarmTopic"]]
    assert p["Topics"] == ["AlarmTopic"]
    statements = p["PolicyDocument"]["Statement"]
    assert {
        "Sid": "AllowPublishThroughSSLOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sns:Publish",
        "Resource": "AlarmTopic",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    } in statements
    # The TLS policy replaces SNS's default policy, so CloudWatch needs its own grant.
    assert {
        "Sid": "CloudWatchAlarmsOfThisStack",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": "AlarmTopic",
        "Condition": our_alarms_only(synthesized),
    } in statements
    assert len(statements) == 2


def test_the_policies_admit_every_alarm_of_the_stack(synthesized: Synthesized) -> None:
    pattern = our_alarms_only(synthesized)["ArnLike"]["aws:SourceArn"].split(":alarm:")[1]
    names = [a["AlarmName"] for a in map(synthesized.resolve, _alarm_props(synthesized))]
    assert names
    assert all(re.fullmatch(re.escape(pattern[:-1]) + ".*", name) for name in names)
    # ...and no other stage's: a stage cannot contain the dot that ends the prefix.
    other = "Gtseg-main-x.consolidation.ObjectsFailed"
    if synthesized.stack.stack_name == "Gtseg-main":
        assert not re.fullmatch(re.escape(pattern[:-1]) + ".*", other)


def _alarm_props(synth: Synthesized) -> list[dict[str, Any]]:
    return [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()]


def test_the_email_subscription_exists_only_with_alarm_email(synthesized: Synthesized) -> None:
    subscriptions = [
        synthesized.resolve(s["Properties"]) for s in synthesized.resources("AWS::SNS::Subscription").values()
    ]
    subscriptions = [
        s for s in subscriptions if s["TopicArn"] == "AlarmTopic"
    ]  # infra/streaming.py has its own
    if "alarmEmail" in SETTINGS_CASES[synthesized.name]:
        assert subscriptions == [{"Protocol": "email", "Endpoint": ALARM_EMAIL, "TopicArn": "AlarmTopic"}]
    else:
        assert subscriptions == []


# ----------------------------------------------------------------------------------- alarms


def test_every_alarm_and_only_those(synthesized: Synthesized) -> None:
    expected = set(expected_single_metric_alarms(synthesized)) | {RATE_ALARM}
    assert set(alarms(synthesized)) == expected


def test_every_single_metric_alarm(synthesized: Synthesized) -> None:
    for name in expected_single_metric_alarms(synthesized):
        assert_single_metric_alarm(synthesized, name)


def assert_single_metric_alarm(synth: Synthesized, name: str) -> None:
    metric, statistic, period, threshold = expected_single_metric_alarms(synth)[name]
    p = alarms(synth)[name]
    actual_metric = {k: p[k] for k in ("Namespace", "MetricName", "Dimensions")}
    assert actual_metric == metric, name
    assert (p["Statistic"], p["Period"], p["Threshold"]) == (statistic, period, threshold), name
    assert p["ComparisonOperator"] == "GreaterThanThreshold", name
    assert_common(p, name)


# What each alarm's description must tell the operator to look at or do (besides the metric).
WHAT_TO_DO = {
    "ObjectsFailed": ["'object failed'", "gtseg reconsolidate"],
    "TransientFailures": ["'object failed on a transient fault'", "gtseg reconsolidate"],
    "AnnotationsRejectedRate": ["'rejected'", "gtseg report"],
    "SkippedInternalError": ["'pre-annotation failed unexpectedly", "new job"],
    "Errors": ["log group"],
    "Throttles": ["quota"],
    "DurationNearTimeout": ["timeout"],
    "StreamingAnnouncementsRejected": ["'announced object not finalized'", "gtseg finalize"],
    "ExecutionsFailed": ["execution's history", "gtseg finalize"],
    "ExecutionsTimedOut": ["execution's history", "gtseg finalize"],
}


def assert_common(p: dict[str, Any], name: str) -> None:
    assert p["AlarmActions"] == ["AlarmTopic"], name
    assert p["TreatMissingData"] == "notBreaching", name
    assert (p["EvaluationPeriods"], p["DatapointsToAlarm"]) == (1, 1), name
    description = p["AlarmDescription"]
    assert len(description) <= 1024, name  # CloudWatch's limit
    function, kind = name.split(".")
    assert description.startswith(f"gtseg {function}"), description
    metric = {"AnnotationsRejectedRate": "AnnotationsRejected", "DurationNearTimeout": "Duration"}.get(
        kind, kind
    )
    assert metric in description, description
    for phrase in WHAT_TO_DO[kind]:
        assert phrase in description, (name, phrase)


def test_the_duration_alarms_follow_each_functions_timeout(synthesized: Synthesized) -> None:
    thresholds = {name: p["Threshold"] for name, p in alarms(synthesized).items() if "Duration" in name}
    assert thresholds == {
        "pre-annotation.DurationNearTimeout": 48_000,
        "consolidation.DurationNearTimeout": 0.8
        * synthesized.stack.settings.consolidation_timeout_seconds
        * 1000,
        "launcher.DurationNearTimeout": 240_000,
        "streaming-output.DurationNearTimeout": 48_000,
        "finalize.DurationNearTimeout": 720_000,
    }


def test_a_longer_consolidation_timeout_moves_its_duration_alarm() -> None:
    from infra_testkit import new_app

    from app import build_app

    _, stack = build_app(new_app({"consolidationTimeoutSeconds": "900"}))
    alarm = stack.monitoring.alarms["consolidation.DurationNearTimeout"]
    assert stack.resolve(alarm.node.default_child.threshold) == 720_000  # type: ignore[union-attr]


def test_the_rejection_rate_alarm(synthesized: Synthesized) -> None:
    p = alarms(synthesized)[RATE_ALARM]
    assert p["ComparisonOperator"] == "GreaterThanThreshold"
    assert p["Threshold"] == 0.2
    assert_common(p, RATE_ALARM)
    queries = {q["Id"]: q for q in p["Metrics"]}
    (expression,) = [q for q in p["Metrics"] if "Expression" in q]
    assert expression["ReturnData"] is True
    # rejected annotations per object; no objects in the hour -> 0, not a division by zero
    assert (
        expression["Expression"] == "IF((consolidated + failed) > 0, rejected / (consolidated + failed), 0)"
    )
    inputs = {
        "rejected": "AnnotationsRejected",
        "consolidated": "ObjectsConsolidated",
        "failed": "ObjectsFailed",
    }
    for query_id, metric in inputs.items():
        query = queries[query_id]
        assert query["ReturnData"] is False
        assert query["MetricStat"] == {
            "Metric": gtseg_metric("consolidation", metric),
            "Stat": "Sum",
            "Period": ONE_HOUR,
        }
    assert len(queries) == 4


def test_alarms_select_the_service_the_functions_really_emit(synthesized: Synthesized) -> None:
    """The "service" dimension is each function's POWERTOOLS_SERVICE_NAME, as Powertools sets it."""
    resources = synthesized.json["Resources"]
    for function, construct_of in ATTRIBUTES.items():
        construct = construct_of(synthesized.stack)
        env = resources[synthesized.logical_id(construct)]["Properties"]["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == SERVICES[function]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "gtseg"


def test_the_metrics_alarmed_on_are_emitted_by_the_handlers() -> None:
    """The names are string literals in the handlers (`add_metric(name="...")`) and the
    pre-annotation Outcome enum; a rename there would leave an alarm watching nothing."""
    handler = (REPO_ROOT / "lambdas" / "gtseg" / "handlers" / "consolidation.py").read_text()
    emitted = set(re.findall(r'name="([A-Za-z]+)"', handler))
    assert set(CONSOLIDATION_METRICS) <= emitted
    streaming = (REPO_ROOT / "lambdas" / "gtseg" / "handlers" / "streaming_output.py").read_text()
    assert "StreamingAnnouncementsRejected" in set(re.findall(r'name="([A-Za-z]+)"', streaming))
    assert "SkippedInternalError" in {o.value for o in Outcome}


# ----------------------------------------------------------------------------------- dashboard


def dashboard_body(synth: Synthesized) -> dict[str, Any]:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    return json.loads(synth.resolve(dashboard["Properties"]["DashboardBody"]))


def graphed(body: dict[str, Any]) -> list[list[Any]]:
    """Every metric line of every graph: [namespace, name, dimension, value, ..., {options}]."""
    lines = []
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            lines.append(line)
    return lines


def test_one_dashboard_named_after_the_stack(synthesized: Synthesized) -> None:
    (dashboard,) = synthesized.resources("AWS::CloudWatch::Dashboard").values()
    name = synthesized.resolve(dashboard["Properties"]["DashboardName"])
    assert name == f"{synthesized.stack.stack_name}-${{Region}}"


def test_the_dashboard_shows_the_functions_and_gtsegs_metrics(synthesized: Synthesized) -> None:
    body = dashboard_body(synthesized)
    lines = graphed(body)
    lambda_lines = {(line[1], line[3]) for line in lines if line[0] == "AWS/Lambda"}
    for function in FUNCTIONS.values():
        for metric in ("Invocations", "Errors", "Duration", "Throttles"):
            assert (metric, function) in lambda_lines
    gtseg_lines = {(line[3], line[1]) for line in lines if line[0] == "gtseg"}
    for metric in CONSOLIDATION_METRICS:
        assert ("gtseg-consolidation", metric) in gtseg_lines
    outcomes = {o.value for o in Outcome}
    assert "TaskCreated" in outcomes and {o for o in outcomes if o.startswith("Skipped")}
    for outcome in outcomes:
        assert ("gtseg-pre-annotation", outcome) in gtseg_lines
    # the rejection rate is graphed as the alarm computes it, and every alarm has its status shown
    assert any("IF((consolidated + failed) > 0" in json.dumps(line) for line in lines)
    (status,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(status["properties"]["alarms"]) == sorted(
        f"Alarm[{name}].Arn" for name in alarms(synthesized)
    )
