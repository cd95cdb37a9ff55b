"""Finalizing finished jobs: an EventBridge rule, a Step Functions state machine with a Distributed
Map over the job's ``output.manifest``, the finalize Lambda, and the job-finished SNS topic.

When a labeling job of this stack ends (Completed or Stopped), the job's ``output.manifest`` is
rewritten in the built-in semantic-segmentation form and turned into a dataset, a report and a
summary under ``<job>/gtseg/`` (docs/finalize.md)::

    Prepare ─▶ this stack's job? ─no─▶ (a note if it ended without output) ─▶ done
                 │ yes
                 ▼
    Map: S3 JSONL item reader over output.manifest, item selector {index, line}, batches of
         finalizeBatchSize lines (at most 200 KB), finalizeMaxConcurrency at once; each batch one
         Lambda call (retried), failures tolerated and reported; results to <job>/gtseg/work/
                 ▼
    Reduce ─▶ Report (its failure is reported, not fatal) ─▶ Summarize ─▶ SNS: job finished
    (any step failing for good) ─▶ SNS: finalizing failed ─▶ Fail

The event names the job by its ARN only, so "this stack's" is decided by the Prepare step: the
job's RoleArn (DescribeLabelingJob) must be the stack's Ground Truth role.

A topic of its own ("job finished"), not the alarm topic: its readers are the people waiting for
the labels, not the people on call for the Lambdas; it is encrypted with the monitoring key
(customer-managed, like the alarm topic) and accepts only TLS.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from gtseg.core.layout import FINALIZED_DIR, JOBS_PREFIX, OUTPUT_MANIFEST
from infra.access import KMS_READ_WRITE, LABELING_JOB_ARNS, OBJECT_ARNS, allow, nag_resource, objects
from infra.events import LABELING_JOB_STATE_CHANGE
from infra.functions import Functions
from infra.monitoring import Monitoring
from infra.settings import (
    FINALIZE_EPHEMERAL_STORAGE_MB,
    FINALIZE_MAX_BATCH_BYTES,
    FINALIZE_TIMEOUT_SECONDS,
    GtsegSettings,
)
from infra.storage import Storage

FINALIZE_HANDLER = "gtseg.handlers.finalize.handler"
FINALIZE_SERVICE = "gtseg-finalize"
FINISHED_STATUSES = ["Completed", "Stopped"]
JOBS = JOBS_PREFIX.strip("/") + "/"
# What a finalize run writes: <job>/gtseg/ (output bucket) and nothing else.
FINALIZED_OUTPUT = f"{JOBS}*/{FINALIZED_DIR}/"
# Lambda's own transient errors, retried with backoff (a throttled batch waits its turn).
LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


def definition_as_object(state_machine: sfn.StateMachine) -> None:
    """The state machine's definition as a ``Definition`` object with ``DefinitionSubstitutions``
    instead of CDK's ``DefinitionString`` (an ``Fn::Join`` of string pieces and ARNs): cfn-lint
    validates a ``Definition`` against the Amazon States Language schema, a joined string it cannot.
    Each ARN (always inside a JSON string of the definition) becomes ``${Ref<n>}``; the partition of
    the service-integration ARNs is written out: Ground Truth runs in the ``aws`` partition only
    (docs/protocol.md §7), and cfn-lint's schema expects it spelt so."""
    cfn = state_machine.node.default_child
    assert isinstance(cfn, sfn.CfnStateMachine)
    resolved = cdk.Stack.of(state_machine).resolve(cfn.definition_string)
    pieces = resolved["Fn::Join"][1] if isinstance(resolved, dict) else [resolved]
    text = ""
    substitutions: dict[str, Any] = {}
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
        elif piece == {"Ref": "AWS::Partition"}:
            text += "aws"
        else:
            name = f"Ref{len(substitutions)}"
            substitutions[name] = piece
            text += "${" + name + "}"
    cfn.add_property_deletion_override("DefinitionString")
    cfn.add_property_override("Definition", json.loads(text))
    if substitutions:
        cfn.add_property_override("DefinitionSubstitutions", substitutions)


class JobFinalize(Construct):
    """The rule, the state machine, the finalize function and the job-finished topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: GtsegSettings,
        storage: Storage,
        functions: Functions,
        ground_truth_role: iam.IRole,
        topic_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._storage = storage
        self.topic = sns.Topic(
            self,
            "JobFinishedTopic",
            display_name=f"gtseg {settings.stage}: labeling jobs finalized",
            master_key=topic_key,
            enforce_ssl=True,
        )
        if settings.notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.notification_email))
        self.function = self._function(settings, storage, functions, ground_truth_role)
        self.log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=settings.log_retention, removal_policy=settings.removal_policy
        )
        # The state machine's role is ours to write, statement by statement: CDK's own grants for a
        # Distributed Map would allow reading and writing the whole output bucket.
        self.role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal(
                "states.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description=f"gtseg {settings.stage}: the finalize state machine",
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            role=self.role.without_policy_updates(),
            comment=f"gtseg {settings.stage}: finalize a finished labeling job (docs/finalize.md)",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(settings)),
            # a job of 100,000 objects takes well under an hour; a day is the ceiling
            timeout=Duration.hours(24),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        self._state_machine_rights(storage, topic_key)
        # logging is checked when the state machine is created: its role's rights must exist first
        self.state_machine.node.add_dependency(self.role)
        # CDK's own Distributed Map policy, left without a role to attach to: MapRunPolicy replaces it
        self.state_machine.node.try_remove_child("DistributedMapPolicy")
        definition_as_object(self.state_machine)
        self.rule = events.Rule(
            self,
            "JobEnded",
            description=f"gtseg {settings.stage}: a labeling job ended (Completed or Stopped): finalize it",
            enabled=settings.finalize_jobs,
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[LABELING_JOB_STATE_CHANGE],
                resources=events.Match.prefix(
                    stack.format_arn(service="sagemaker", resource="labeling-job", resource_name="")
                ),
                detail={"LabelingJobStatus": FINISHED_STATUSES},
            ),
        )
        self.rule.add_target(targets.SfnStateMachine(self.state_machine))

    def add_alarms(self, monitoring: Monitoring) -> None:
        """A job whose finalize run failed, and the function's own trouble, on the alarm topic."""
        rerun = (
            "Nothing of the job is lost (its output is untouched); run it again with `gtseg finalize "
            "s3://<output bucket>/jobs/<job>/manifests/output/output.manifest --out "
            f"s3://<output bucket>/jobs/<job>/{FINALIZED_DIR} --force` (docs/finalize.md), or start an "
            "execution of the state machine with the event it got."
        )
        monitoring.watch_state_machine(
            "finalize",
            self.state_machine,
            on_failure=(
                "A finished job was not finalized. The execution's history (Step Functions console) "
                f"names the failed state, the state machine's log group the cause. {rerun}"
            ),
        )
        monitoring.watch_function(
            "finalize",
            self.function,
            on_error=(
                "A step of a finalize run failed and is retried; a batch that fails every retry is "
                "reported in summary.json and its lines copied as they were. Find it in the function's "
                f"log group. {rerun}"
            ),
            on_throttle="A finalize step was refused; Step Functions retries it.",
            on_slow=(
                f"A batch near the {FINALIZE_TIMEOUT_SECONDS} s timeout: large images make batches slow; "
                "finalizeBatchSize in the settings makes them smaller."
            ),
        )

    # ----------------------------------------------------------------------------- the Lambda

    def _function(
        self, settings: GtsegSettings, storage: Storage, functions: Functions, ground_truth_role: iam.IRole
    ) -> lambda_.Function:
        key = storage.encryption_key
        function = functions.add_function(
            "Finalize",
            handler=FINALIZE_HANDLER,
            service_name=FINALIZE_SERVICE,
            description="Finalizes a finished labeling job: built-in manifest, dataset, report, summary",
            memory_mb=settings.finalize_memory_mb,
            timeout=Duration.seconds(FINALIZE_TIMEOUT_SECONDS),
            environment={
                # only jobs run with this role are this stack's (the event does not say whose a job is)
                "GROUND_TRUTH_ROLE_ARN": ground_truth_role.role_arn,
                "OUTPUT_BUCKET": storage.output_bucket.bucket_name,
                "FINALIZE_COPY_IMAGES": str(settings.finalize_copy_images).lower(),
                "FINALIZE_REPORT_OBJECTS": str(settings.finalize_report_objects),
                **({"OUTPUT_KMS_KEY_ID": key.key_arn} if key is not None else {}),
            },
            layers=[functions.report_layer],
            ephemeral_storage_mb=FINALIZE_EPHEMERAL_STORAGE_MB,
        )
        role = function.role
        assert role is not None
        output, data = storage.output_bucket.bucket_arn, storage.data_bucket.bucket_arn
        allow(
            role,
            sid="ReadJobOutput",
            # the manifest, each object's mask and sidecar, the workers' answers (report), the run's
            # own plan, parts and figures under <job>/gtseg/work/
            actions=["s3:GetObject"],
            resources=[objects(output, JOBS)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/ (every job's output: manifests, masks, sidecars, answers)",
        )
        allow(
            role,
            sid="ReadImagesAndLabelFiles",
            # the images copied into the dataset, the job's label-category file (jobs/<job>/)
            actions=["s3:GetObject"],
            resources=[objects(data)],
            wildcard_reason=f"{OBJECT_ARNS} the data bucket (the jobs' images and label files)",
        )
        allow(
            role,
            sid="WriteFinalizedOutput",
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[objects(output, FINALIZED_OUTPUT)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/<job>/{FINALIZED_DIR}/ (the job name is chosen per job at launch)",
        )
        allow(
            role,
            sid="ListJobOutput",
            # the run's parts, the consolidation's iteration folders, the workers' answers; a missing
            # sidecar reads as missing (404), not as an access problem (403)
            actions=["s3:ListBucket"],
            resources=[output, data],
        )
        allow(
            role,
            sid="DescribeLabelingJobs",
            actions=["sagemaker:DescribeLabelingJob"],
            resources=[
                cdk.Stack.of(self).format_arn(service="sagemaker", resource="labeling-job", resource_name="*")
            ],
            wildcard_reason=LABELING_JOB_ARNS,
        )
        allow(
            role,
            sid="FindLabelingJobsByArn",
            # the event's ARN carries the job name lower-cased; ListLabelingJobs gives its own case
            actions=["sagemaker:ListLabelingJobs"],
            resources=["*"],
            wildcard_reason="ListLabelingJobs has no resource-level permissions",
        )
        if key is not None:
            allow(role, sid="UseDataKey", actions=list(KMS_READ_WRITE), resources=[key.key_arn])
        return function

    # ----------------------------------------------------------------------------- the state machine

    def _step(self, name: str, step: str, payload: dict[str, object], result_path: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            name,
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object({"step": step, **payload}),
            payload_response_only=True,
            retry_on_service_exceptions=False,  # the retry below says how
            result_path=result_path,
            task_timeout=sfn.Timeout.duration(Duration.seconds(FINALIZE_TIMEOUT_SECONDS + 60)),
        )
        task.add_retry(errors=LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=6, backoff_rate=2)
        return task

    def _publish(self, name: str, subject: str, message: str) -> tasks.SnsPublish:
        return tasks.SnsPublish(
            self,
            name,
            topic=self.topic,
            subject=sfn.JsonPath.string_at(subject) if subject.startswith("$") else subject,
            message=sfn.TaskInput.from_json_path_at(message)
            if message.startswith("$")
            else sfn.TaskInput.from_text(message),
            result_path=sfn.JsonPath.DISCARD,
        )

    def _definition(self, settings: GtsegSettings) -> sfn.IChainable:
        plan = sfn.JsonPath.string_at("$.prepared.plan")
        failed = sfn.Fail(
            self, "FinalizeFailed", cause="a finalize step failed after its retries", error="FinalizeFailed"
        )
        tell_failure = tasks.SnsPublish(
            self,
            "TellFinalizeFailed",
            topic=self.topic,
            subject="gtseg: finalizing a labeling job failed",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.format(
                    "Finalizing a labeling job failed: {} ({}). The job output is unchanged; run gtseg finalize "
                    "on its output manifest (docs/finalize.md).",
                    sfn.JsonPath.string_at("$.error.Error"),
                    sfn.JsonPath.string_at("$.error.Cause"),
                )
            ),
            result_path=sfn.JsonPath.DISCARD,
        ).next(failed)

        prepare = self._step("Prepare", "prepare", {"event": sfn.JsonPath.entire_payload}, "$.prepared")
        prepare.add_catch(tell_failure, result_path="$.error")

        batch = self._step("FinalizeBatch", "map", {"plan": sfn.JsonPath.string_at("$.BatchInput.plan"),
                                                    "items": sfn.JsonPath.list_at("$.Items")}, "$")  # fmt: skip
        # anything else a batch meets (a timeout, a fault of the store) is tried twice more
        batch.add_retry(errors=["States.ALL"], interval=Duration.seconds(10), max_attempts=2, backoff_rate=3)
        finalize_map = sfn.DistributedMap(
            self,
            "FinalizeLines",
            item_reader=sfn.S3JsonLItemReader(
                bucket=self._storage.output_bucket, key=sfn.JsonPath.string_at("$.prepared.manifest_key")
            ),
            item_selector={
                "index": sfn.JsonPath.number_at("$$.Map.Item.Index"),
                "line": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.finalize_batch_size,
                max_input_bytes_per_batch=FINALIZE_MAX_BATCH_BYTES,
                # written out: CDK passes BatchInput through as it is (no JsonPath rendering)
                batch_input={"plan.$": "$.prepared.plan"},
            ),
            max_concurrency=settings.finalize_max_concurrency,
            # a batch that fails for good leaves its lines as they were: the reduce copies and lists them
            tolerated_failure_percentage=100,
            result_writer_v2=sfn.ResultWriterV2(
                bucket=self._storage.output_bucket, prefix=sfn.JsonPath.string_at("$.prepared.results_prefix")
            ),
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_path="$.map",
        )
        finalize_map.item_processor(batch)

        reduce = self._step(
            "Reduce", "reduce", {"plan": plan, "map": sfn.JsonPath.object_at("$.map")}, "$.reduced"
        )
        reduce.add_catch(tell_failure, result_path="$.error")
        # the map itself failing (its reader, say) is the reduce's to report: every line is then kept
        finalize_map.add_catch(reduce, result_path="$.map")
        report = self._step("Report", "report", {"plan": plan}, "$.report")
        summarize = self._step(
            "Summarize",
            "summarize",
            {"plan": plan, "status": sfn.JsonPath.string_at("$.prepared.status"),
             "report": sfn.JsonPath.object_at("$.report")},
            "$.summary",
        )  # fmt: skip
        summarize.add_catch(tell_failure, result_path="$.error")
        # a report that cannot be drawn (too many large images for one call) is noted in the summary
        report.add_catch(summarize, result_path="$.report")
        finished = self._publish("TellJobFinalized", "$.summary.subject", "$.summary.message")
        done = sfn.Succeed(self, "Done")

        nothing = sfn.Choice(self, "TellWhyNot")
        nothing.when(
            sfn.Condition.is_present("$.prepared.notification.subject"),
            self._publish(
                "TellNotFinalized", "$.prepared.notification.subject", "$.prepared.notification.message"
            ).next(done),
        )
        nothing.otherwise(sfn.Succeed(self, "NotThisStacksJob"))
        finalize_map.next(reduce)
        reduce.next(report)
        report.next(summarize)
        summarize.next(finished)
        finished.next(done)
        return prepare.next(
            sfn.Choice(self, "ThisStacksJobWithOutput")
            .when(sfn.Condition.boolean_equals("$.prepared.finalize", True), finalize_map)
            .otherwise(nothing)
        )

    def _state_machine_rights(self, storage: Storage, topic_key: kms.IKey) -> None:
        role, stack = self.role, cdk.Stack.of(self)
        output = storage.output_bucket.bucket_arn
        allow(
            role,
            sid="InvokeFinalize",
            actions=["lambda:InvokeFunction"],
            resources=[self.function.function_arn],
        )
        allow(
            role,
            sid="ReadOutputManifests",
            # the Distributed Map's item reader: each job's manifests/output/output.manifest
            actions=["s3:GetObject"],
            resources=[f"{output}/{JOBS}*/{OUTPUT_MANIFEST}"],
            wildcard_reason=f"{OBJECT_ARNS} jobs/<job>/{OUTPUT_MANIFEST} (the job name is chosen at launch)",
        )
        allow(
            role,
            sid="WriteMapResults",
            # the Distributed Map's result writer: <job>/gtseg/work/map-results/
            actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            resources=[objects(output, FINALIZED_OUTPUT)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/<job>/{FINALIZED_DIR}/ (the map's result files)",
        )
        allow(role, sid="PublishJobFinished", actions=["sns:Publish"], resources=[self.topic.topic_arn])
        allow(role, sid="JobFinishedTopicKey", actions=["kms:Decrypt", "kms:GenerateDataKey"],
              resources=[topic_key.key_arn])  # fmt: skip
        key = storage.encryption_key
        if key is not None:
            allow(role, sid="UseDataKey", actions=list(KMS_READ_WRITE), resources=[key.key_arn])
        allow(
            role,
            sid="ExecutionLogs",
            # what Step Functions needs to deliver its logs to CloudWatch Logs (the developer guide's
            # policy for logging): these actions have no resource-level permissions
            actions=[
                "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
            ],
            resources=["*"],
            wildcard_reason="CloudWatch Logs' log-delivery actions have no resource-level permissions",
        )  # fmt: skip
        allow(
            role,
            sid="Tracing",
            actions=["xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords",
                     "xray:PutTraceSegments"],
            resources=["*"],
            wildcard_reason="X-Ray's trace actions have no resource-level permissions",
        )  # fmt: skip
        # The map's child executions: a policy of its own, since it names the state machine, which
        # itself must wait for the role's rights above.
        name = self.state_machine.state_machine_name
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        map_runs = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{name}/*:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        policy = iam.Policy(
            self,
            "MapRunPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(sid="StartMapRuns", actions=["states:StartExecution"],
                                    resources=[self.state_machine.state_machine_arn]),
                iam.PolicyStatement(sid="FollowMapRuns", actions=["states:DescribeExecution", "states:StopExecution"],
                                    resources=[executions]),
                iam.PolicyStatement(sid="RedriveMapRuns", actions=["states:RedriveExecution"], resources=[map_runs]),
            ],
        )  # fmt: skip
        for resource in (executions, map_runs):
            cdk.Validations.of(policy).acknowledge(
                cdk.Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{nag_resource(stack, resource)}]",
                    reason="the Distributed Map's own child executions and map runs: execution ARNs end in a "
                    "run-chosen name",
                )
            )
