"""Labeling-job state changes from EventBridge, for the finishing step to hook into.

Ground Truth emits "SageMaker Ground Truth Labeling Job State Change" (source ``aws.sagemaker``)
with the job ARN in ``resources``. The event does not say which role or stack started the job, so
the rule matches this account's and region's labeling jobs; a consumer that must tell stacks apart
checks the job's RoleArn (DescribeLabelingJob) against this stack's Ground Truth role, as the
finalize state machine does (its own rule, on Completed and Stopped: infra/finalize.py). This
rule's target is a log group: the event history of every state change.
"""

from __future__ import annotations

import aws_cdk as cdk
import jsii
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.settings import GtsegSettings

LABELING_JOB_STATE_CHANGE = "SageMaker Ground Truth Labeling Job State Change"


class LabelingJobEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: GtsegSettings) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        # /aws/events/... is EventBridge's naming convention for event log groups. The suffix is the
        # first block of the stack's GUID: a retained group from a deleted stack never blocks a
        # redeploy of the same stage with a name conflict.
        stack_guid = cdk.Fn.select(2, cdk.Fn.split("/", stack.stack_id))
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=cdk.Fn.join(
                "",
                [
                    f"/aws/events/gtseg-{settings.stage}/labeling-jobs-",
                    cdk.Fn.select(0, cdk.Fn.split("-", stack_guid)),
                ],
            ),
            retention=settings.log_retention,
            removal_policy=settings.removal_policy,
        )
        self.rule = events.Rule(
            self,
            "StateChange",
            description=f"gtseg {settings.stage}: labeling job state changes",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[LABELING_JOB_STATE_CHANGE],
                resources=events.Match.prefix(
                    stack.format_arn(service="sagemaker", resource="labeling-job", resource_name="")
                ),
            ),
        )
        # Not targets.CloudWatchLogGroup: that installs a custom-resource Lambda (with a '*' policy)
        # just to write the log group's resource policy, which CloudFormation can do directly.
        # jsii checks the interface at run time; mypy cannot see @jsii.implements
        self.rule.add_target(LogGroupTarget(self.log_group))  # type: ignore[arg-type]
        # The same grant aws-cdk-lib's CloudWatchLogGroup target writes (EventBridge only delivers
        # to log groups in the rule's own account), scoped to this one log group and, by
        # aws:SourceArn (the rule that sends the event), to this one rule: no other rule in the
        # account can write into the job history.
        self.log_group.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.rule.rule_arn}},
            )
        )


@jsii.implements(events.IRuleTarget)
class LogGroupTarget:
    """EventBridge -> CloudWatch Logs target; the caller grants events.amazonaws.com write access."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self.log_group = log_group

    def bind(self, _rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        stack = cdk.Stack.of(self.log_group)
        # The target ARN is the group's ARN without the ':*' suffix log_group_arn carries.
        arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=self.log_group.log_group_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        return events.RuleTargetConfig(arn=arn)
