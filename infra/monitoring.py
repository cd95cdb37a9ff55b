"""Alarms on the three Lambdas and on gtseg's own metrics, the SNS topic they notify, one dashboard.

gtseg's metrics are CloudWatch embedded-metric-format lines written by Powertools Metrics: namespace
``gtseg`` (``POWERTOOLS_METRICS_NAMESPACE``), one dimension ``service`` = the function's
``POWERTOOLS_SERVICE_NAME`` (``infra/functions.py``), unit Count unless noted. Each function emits
its metrics once per invocation, so a Sum over a period counts objects (consolidation) or data
objects (pre-annotation) in that period.

Every alarm treats missing data as not breaching (no labeling job running is not a problem), fires
on one breaching period, notifies the topic, and says in its description what it means and what to
do; docs/deploy.md ("Monitoring") lists them.

The topic key. CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key
``alias/aws/sns``: its key policy does not let ``cloudwatch.amazonaws.com`` use it and cannot be
changed, so every notification would fail ("CloudWatch Alarms does not have authorization to access
the SNS topic encryption key"). The topic is therefore encrypted with a customer-managed key whose
policy lets CloudWatch use it for this stack's alarms only: the stack's own key when it creates one
(``encryption=kms``), otherwise a small key of its own (an imported ``kmsKeyArn`` is not used: its
key policy is not ours to extend). Likewise the topic policy that enforces TLS replaces SNS's
default policy, so it must allow CloudWatch to publish, again for this stack's alarms only.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from gtseg.pre_annotation.task import Outcome
from infra.functions import (
    CONSOLIDATION_SERVICE,
    METRICS_NAMESPACE,
    PRE_ANNOTATION_SERVICE,
    PRE_ANNOTATION_TIMEOUT,
    Functions,
)
from infra.settings import GtsegSettings
from infra.storage import Storage

SERVICE_DIMENSION = "service"  # Powertools Metrics' dimension: the function's POWERTOOLS_SERVICE_NAME

# The consolidation handler's metric names (lambdas/gtseg/handlers/consolidation.py).
OBJECTS_CONSOLIDATED = "ObjectsConsolidated"
OBJECTS_FAILED = "ObjectsFailed"  # includes the transient failures
TRANSIENT_FAILURES = "TransientFailures"  # objects failed on a fault that outlasted its retries
ANNOTATIONS_REJECTED = "AnnotationsRejected"  # worker answers that did not vote
MEAN_CONFIDENCE = "MeanConfidence"  # NoUnit, 0..1, one value per invocation
MEAN_WORKER_AGREEMENT = "MeanWorkerAgreement"  # NoUnit, 0..1, one value per invocation
# The pre-annotation outcomes (lambdas/gtseg/pre_annotation/task.py), one Count per data object.
PRE_ANNOTATION_OUTCOMES = tuple(outcome.value for outcome in Outcome)
SKIPPED_INTERNAL_ERROR = Outcome.INTERNAL_ERROR.value

# Counts are summed over 5 minutes: an object lost is worth an e-mail within minutes.
ALARM_PERIOD = Duration.minutes(5)
# The rejection rate needs volume to mean anything (one rejected answer in a 2-object batch is
# noise), so it is taken over an hour of batches.
REJECTION_PERIOD = Duration.hours(1)
# Rejected annotations per consolidated object. With 3 workers per object 0.2 is ~7 % of the
# answers, with 5 workers 4 %; a healthy job rejects almost none (empty or unreadable answers).
MAX_REJECTIONS_PER_OBJECT = 0.2
# "Near the timeout": the longest run of a period took more than this share of the timeout.
DURATION_ALARM_FRACTION = 0.8

REPAIR = (
    "After the job, repair its output with `gtseg reconsolidate s3://<output bucket>/jobs/<job>` "
    "(docs/tools.md): it consolidates the failed objects again from the workers' answers, which are kept."
)


@dataclass(frozen=True)
class _Function:
    """What the alarms of one function need to know."""

    short_name: str  # in alarm names and titles: pre-annotation, consolidation, launcher
    function: lambda_.Function
    on_error: str  # what an error means for the labeling job, and where to look
    on_throttle: str
    on_slow: str


class Monitoring(Construct):
    """One SNS topic (encrypted, TLS-only, optional e-mail subscription), the alarms, one dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: GtsegSettings,
        storage: Storage,
        functions: Functions,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        # Alarm names start with "<stack name>." (a dot never occurs in a stage), so one ARN pattern
        # names this stack's alarms exactly: the topic and key policies allow only them.
        self.alarm_name_prefix = f"{settings.stack_name}."
        self.alarm_arn_pattern = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{self.alarm_name_prefix}*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        self.topic_key = self._topic_key(settings, storage)
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"gtseg {settings.stage} alarms",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisStack",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=self._from_our_alarms(),
            )
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))

        self.alarms: dict[str, cw.Alarm] = {}
        self.dashboard: cw.Dashboard | None = None  # add_dashboard(), once every alarm is in
        self._functions = list(self._describe(functions))
        self._consolidation_alarms()
        self._pre_annotation_alarms()
        for fn in self._functions:
            self._lambda_alarms(fn)

    def add_dashboard(self, settings: GtsegSettings) -> cw.Dashboard:
        """The dashboard, added by the stack once every construct has added its alarms (its status
        row shows them all, its graphs every watched function)."""
        self.dashboard = self._dashboard(settings)
        return self.dashboard

    # ----------------------------------------------------------------------------- topic

    def _from_our_alarms(self) -> dict[str, dict[str, str]]:
        """Condition: the request comes from one of this stack's alarms (confused-deputy guard)."""
        return {
            "StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account},
            "ArnLike": {"aws:SourceArn": self.alarm_arn_pattern},
        }

    def _topic_key(self, settings: GtsegSettings, storage: Storage) -> kms.Key:
        key = storage.encryption_key
        if not isinstance(key, kms.Key):  # no key (encryption=s3), or an imported kmsKeyArn
            key = kms.Key(
                self,
                "AlarmTopicKey",
                description=f"gtseg {settings.stage}: the alarm topic (CloudWatch cannot publish to a "
                "topic under the AWS-managed aws/sns key)",
                enable_key_rotation=True,
                # Alarm notifications are not kept: once the topic is gone nothing needs this key,
                # whatever the stack's retention.
                removal_policy=cdk.RemovalPolicy.DESTROY,
                pending_window=Duration.days(7),
            )
        # What SNS does with the publisher's rights on an encrypted topic: a data key to encrypt
        # the message (GenerateDataKey) and Decrypt. Spelled out, no GenerateDataKey* wildcard.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTheAlarmTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions=self._from_our_alarms(),
            )
        )
        return key

    # ----------------------------------------------------------------------------- alarms

    def _alarm(self, name: str, *, metric: cw.IMetric, threshold: float, description: str) -> cw.Alarm:
        if self.dashboard is not None:
            raise RuntimeError(
                f"alarm {name} added after the dashboard was built: its status row would miss it"
            )
        alarm = cw.Alarm(
            self,
            name.replace(".", "").replace("-", ""),
            alarm_name=f"{self.alarm_name_prefix}{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms[name] = alarm
        return alarm

    def _consolidation_alarms(self) -> None:
        self._alarm(
            f"consolidation.{OBJECTS_FAILED}",
            metric=gtseg_metric(CONSOLIDATION_SERVICE, OBJECTS_FAILED),
            threshold=0,
            description=(
                "gtseg consolidation: objects failed (ObjectsFailed > 0 in 5 minutes). Their output line "
                "carries a failure instead of a mask. See the consolidation function's log lines "
                "'object failed' (dataset_object_id, error) and each object's .json sidecar under "
                "<job>/annotations/consolidated-annotation/output/. Fix the cause (permissions, a "
                f"label-category file, a bug), then repair. {REPAIR}"
            ),
        )
        self._alarm(
            f"consolidation.{TRANSIENT_FAILURES}",
            metric=gtseg_metric(CONSOLIDATION_SERVICE, TRANSIENT_FAILURES),
            threshold=0,
            description=(
                "gtseg consolidation: objects failed on S3 faults that outlasted their retries "
                "(TransientFailures > 0 in 5 minutes: throttling, 5xx, timeouts, dropped connections). "
                "Log lines 'object failed on a transient fault'. Such faults clear on their own; if they "
                "repeat, look for S3 SlowDown on the output bucket or a function short of time "
                f"(DurationNearTimeout). {REPAIR}"
            ),
        )
        objects = "(consolidated + failed)"
        rejection_rate = cw.MathExpression(
            expression=f"IF({objects} > 0, rejected / {objects}, 0)",
            using_metrics={
                "rejected": gtseg_metric(CONSOLIDATION_SERVICE, ANNOTATIONS_REJECTED, REJECTION_PERIOD),
                "consolidated": gtseg_metric(CONSOLIDATION_SERVICE, OBJECTS_CONSOLIDATED, REJECTION_PERIOD),
                "failed": gtseg_metric(CONSOLIDATION_SERVICE, OBJECTS_FAILED, REJECTION_PERIOD),
            },
            label="rejected annotations per object",
            period=REJECTION_PERIOD,
        )
        self._alarm(
            "consolidation.AnnotationsRejectedRate",
            metric=rejection_rate,
            threshold=MAX_REJECTIONS_PER_OBJECT,
            description=(
                f"gtseg consolidation: more than {MAX_REJECTIONS_PER_OBJECT} worker annotations rejected "
                "per object over an hour (AnnotationsRejected / (ObjectsConsolidated + ObjectsFailed)). "
                "Rejected answers do not vote. The reasons are in each object's sidecar ('rejected') and "
                "the log lines 'object consolidated'. One worker's answers: check that worker "
                "(`gtseg report`); every worker's: check the worker template, the label-category file "
                "and the images' sizes."
            ),
        )

    def _pre_annotation_alarms(self) -> None:
        self._alarm(
            f"pre-annotation.{SKIPPED_INTERNAL_ERROR}",
            metric=gtseg_metric(PRE_ANNOTATION_SERVICE, SKIPPED_INTERNAL_ERROR),
            threshold=0,
            description=(
                "gtseg pre-annotation: an unexpected error skipped data objects (SkippedInternalError > 0 "
                "in 5 minutes): no task was made for them, so workers never see them and they get no "
                "label in this job. See the pre-annotation function's log lines 'pre-annotation failed "
                "unexpectedly; the object is skipped' (with the traceback). Fix the cause, then label "
                "those objects (their manifest lines) in a new job."
            ),
        )

    def watch_function(
        self, short_name: str, function: lambda_.Function, *, on_error: str, on_throttle: str, on_slow: str
    ) -> None:
        """The Errors, Throttles and DurationNearTimeout alarms for a function another construct
        owns (the streaming-output and finalize functions), saying what each means for it; the
        dashboard graphs it with the others."""
        fn = _Function(short_name, function, on_error, on_throttle, on_slow)
        self._functions.append(fn)
        self._lambda_alarms(fn)

    def watch_metric(self, name: str, *, metric: cw.IMetric, description: str) -> None:
        """An alarm when ``metric`` is above 0 (``name``: "<component>.<what>")."""
        self._alarm(name, metric=metric, threshold=0, description=description)

    def watch_state_machine(
        self, short_name: str, state_machine: sfn.StateMachine, *, on_failure: str
    ) -> None:
        """An execution that failed or ran out of time: the work it was to do is not done."""
        for kind, metric in (
            ("ExecutionsFailed", state_machine.metric_failed(period=ALARM_PERIOD, statistic=cw.Stats.SUM)),
            (
                "ExecutionsTimedOut",
                state_machine.metric_timed_out(period=ALARM_PERIOD, statistic=cw.Stats.SUM),
            ),
        ):
            self._alarm(
                f"{short_name}.{kind}",
                metric=metric,
                threshold=0,
                description=f"gtseg {short_name} state machine: an execution ended without finishing "
                f"({kind} > 0 in 5 minutes). {on_failure}",
            )

    def _lambda_alarms(self, fn: _Function) -> None:
        function = fn.function
        self._alarm(
            f"{fn.short_name}.Errors",
            metric=function.metric_errors(period=ALARM_PERIOD, statistic=cw.Stats.SUM),
            threshold=0,
            description=f"gtseg {fn.short_name} Lambda: errors (Lambda Errors > 0 in 5 minutes). {fn.on_error}",
        )
        self._alarm(
            f"{fn.short_name}.Throttles",
            metric=function.metric_throttles(period=ALARM_PERIOD, statistic=cw.Stats.SUM),
            threshold=0,
            description=(
                f"gtseg {fn.short_name} Lambda: throttled (Throttles > 0 in 5 minutes): the account's "
                f"Lambda concurrency ran out and calls were refused. {fn.on_throttle} Compare the "
                "account's ConcurrentExecutions with its quota (Service Quotas: Lambda concurrent "
                "executions) and ask for more; the stack reserves none on purpose (docs/deploy.md)."
            ),
        )
        timeout = function.timeout or Duration.seconds(3)  # Lambda's default when none is set
        threshold_ms = duration_threshold_ms(timeout)
        self._alarm(
            f"{fn.short_name}.DurationNearTimeout",
            metric=function.metric_duration(period=ALARM_PERIOD, statistic=cw.Stats.MAXIMUM),
            threshold=threshold_ms,
            description=(
                f"gtseg {fn.short_name} Lambda: a run took more than {DURATION_ALARM_FRACTION:.0%} of "
                f"its {timeout.to_seconds():.0f} s timeout (maximum Duration > {threshold_ms:.0f} ms in "
                f"5 minutes); at the timeout Lambda stops it and the call fails. {fn.on_slow}"
            ),
        )

    @staticmethod
    def _describe(functions: Functions) -> tuple[_Function, ...]:
        return (
            _Function(
                "pre-annotation",
                functions.pre_annotation,
                on_error=(
                    "It is built never to raise: an error or a timeout here fails the whole labeling job. "
                    "Find it in the function's log group (a traceback, 'Task timed out', out of memory) "
                    "and check the job's FailureReason (`gtseg status`, DescribeLabelingJob)."
                ),
                on_throttle="Ground Truth's call for a data object failed; the labeling job can fail.",
                on_slow=(
                    "Slow S3 reads or a slow pre-label endpoint (prelabelEndpointName) are the usual "
                    f"causes; the timeout ({PRE_ANNOTATION_TIMEOUT.to_seconds():.0f} s) is PRE_ANNOTATION_TIMEOUT in "
                    "infra/functions.py."
                ),
            ),
            _Function(
                "consolidation",
                functions.consolidation,
                on_error=(
                    "A batch got no answer: an invalid event ('invalid consolidation event'), a timeout or "
                    "running out of memory (the REPORT line's Max Memory Used). Find it in the function's "
                    "log group; raise consolidationMemoryMb / consolidationTimeoutSeconds for large "
                    f"batches. If the job ends with objects missing: {REPAIR}"
                ),
                on_throttle="Ground Truth's consolidation call for a batch was refused.",
                on_slow=(
                    "Large batches or large images: raise consolidationTimeoutSeconds (at most 900) and "
                    "consolidationMemoryMb (CPU grows with memory); the REPORT lines show Duration and "
                    "Max Memory Used. Near the deadline, faults are no longer retried (TransientFailures)."
                ),
            ),
            _Function(
                "launcher",
                functions.launcher,
                on_error=(
                    "A job was not launched. A rejected job spec ('job not launched') or a misconfigured "
                    "stack ('launcher misconfigured') raises on purpose and the caller saw why; anything "
                    "else is in the function's log group."
                ),
                on_throttle="A launch was refused; the caller got the error and can retry.",
                on_slow=(
                    "Listing a very large image prefix is the usual cause: split the job, or raise "
                    "LAUNCHER_TIMEOUT in infra/functions.py."
                ),
            ),
        )

    # ----------------------------------------------------------------------------- dashboard

    def _dashboard(self, settings: GtsegSettings) -> cw.Dashboard:
        functions = self._functions

        def per_function(metric: str, statistic: str) -> list[cw.IMetric]:
            return [
                fn.function.metric(metric, period=ALARM_PERIOD, statistic=statistic, label=fn.short_name)
                for fn in functions
            ]

        duration_widgets: list[cw.IWidget] = [
            cw.GraphWidget(
                title=f"{fn.short_name} duration (ms)",
                left=[
                    fn.function.metric_duration(period=ALARM_PERIOD, statistic=cw.Stats.MAXIMUM, label="max"),
                    fn.function.metric_duration(period=ALARM_PERIOD, statistic=cw.Stats.AVERAGE, label="avg"),
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(
                        value=duration_threshold_ms(fn.function.timeout or Duration.seconds(3)),
                        label=f"alarm: {DURATION_ALARM_FRACTION:.0%} of the timeout",
                    )
                ],
                width=8,
            )
            for fn in functions
        ]
        consolidation = CONSOLIDATION_SERVICE
        pre_annotation = PRE_ANNOTATION_SERVICE
        # Dashboards are global per account (their ARN has no region): the region keeps one
        # stage deployed in two regions from colliding.
        return cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=cdk.Fn.join("-", [settings.stack_name, cdk.Aws.REGION]),
            default_interval=Duration.days(1),
            widgets=[
                [
                    cw.AlarmStatusWidget(
                        title="gtseg alarms", alarms=list(self.alarms.values()), width=24, height=4
                    )
                ],
                [
                    cw.GraphWidget(
                        title="Lambda invocations", left=per_function("Invocations", cw.Stats.SUM), width=8
                    ),
                    cw.GraphWidget(title="Lambda errors", left=per_function("Errors", cw.Stats.SUM), width=8),
                    cw.GraphWidget(
                        title="Lambda throttles", left=per_function("Throttles", cw.Stats.SUM), width=8
                    ),
                ],
                duration_widgets,
                [
                    cw.GraphWidget(
                        title="consolidation: objects",
                        left=[
                            gtseg_metric(consolidation, metric)
                            for metric in (OBJECTS_CONSOLIDATED, OBJECTS_FAILED, TRANSIENT_FAILURES)
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="consolidation: rejected annotations",
                        left=[gtseg_metric(consolidation, ANNOTATIONS_REJECTED)],
                        right=[self.alarms["consolidation.AnnotationsRejectedRate"].metric],
                        right_annotations=[
                            cw.HorizontalAnnotation(value=MAX_REJECTIONS_PER_OBJECT, label="alarm")
                        ],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title="consolidation: confidence and agreement (0..1)",
                        left=[
                            gtseg_metric(consolidation, metric, statistic=cw.Stats.AVERAGE)
                            for metric in (MEAN_CONFIDENCE, MEAN_WORKER_AGREEMENT)
                        ],
                        left_y_axis=cw.YAxisProps(min=0, max=1),
                        width=8,
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="pre-annotation: data objects by outcome",
                        left=[gtseg_metric(pre_annotation, metric) for metric in PRE_ANNOTATION_OUTCOMES],
                        stacked=True,
                        width=24,
                    )
                ],
            ],
        )


def gtseg_metric(
    service: str, name: str, period: Duration = ALARM_PERIOD, *, statistic: str = cw.Stats.SUM
) -> cw.Metric:
    """One of gtseg's own metrics, as Powertools Metrics emits it for the function ``service``."""
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={SERVICE_DIMENSION: service},
        statistic=statistic,
        period=period,
    )


def duration_threshold_ms(timeout: Duration) -> float:
    return timeout.to_milliseconds() * DURATION_ALARM_FRACTION
