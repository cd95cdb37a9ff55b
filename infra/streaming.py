"""Streaming labeling jobs: the SNS input and output topics, what Ground Truth needs to use them,
optional S3 uploads wired to the input topic, and the Lambda that finalizes announced objects.

What the developer guide requires ("Use Amazon SNS topics for data labeling", "Create a SageMaker
execution role for a Ground Truth labeling job": the streaming execution-role policy):

* Ground Truth subscribes an SQS queue of its own, ``GroundTruth-<job name in lower case>``, to the
  input topic, and publishes each labeled object to the output topic, with the **execution role**:
  ``sqs:CreateQueue`` ... ``sqs:SetQueueAttributes`` on that queue, ``sns:Subscribe`` (protocol
  ``sqs``, endpoint a ``GroundTruth`` queue), ``sns:Publish`` and ``sns:Unsubscribe`` on the topics.
  The guide's policy names both topics in each of the three SNS statements; so does this one, for
  this stack's two topics only;
* an output topic encrypted with a customer-managed key (the AWS-managed ``alias/aws/sns`` key is
  not allowed) needs ``kms:Decrypt`` and ``kms:GenerateDataKey`` on the key for the execution role;
  the key policy only has to let the account's IAM policies grant it (CDK's default key policy).

Both topics are encrypted with one customer-managed key of their own (not the data key: S3 and the
publishers of the input topic get rights on it) and accept only TLS requests. Wired to uploads
(``streamingUploadPrefix``), the data bucket publishes ``ObjectCreated`` events of .jpg/.jpeg/.png
keys under that prefix to the input topic: the topic policy lets ``s3.amazonaws.com`` publish for
this bucket only, the key policy lets S3 use the key (CDK's SnsDestination adds both). S3 sends its
``s3:TestEvent`` to the topic when the configuration is written, i.e. at deploy time, before any
job subscribes, which is what the guide asks for.

The ``StreamingOutput`` Lambda (``gtseg.handlers.streaming_output``) is subscribed to the output
topic: it reads each announced object's mask and sidecar from ``jobs/`` of the output bucket and
writes the job's streaming dataset under ``jobs/<job>/gtseg/streaming/``, nothing else.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from gtseg.core.layout import JOBS_PREFIX
from gtseg.core.streaming import QUEUE_PREFIX, STREAMING_DATASET_DIR
from infra.access import KMS_READ_WRITE, OBJECT_ARNS, allow, objects
from infra.functions import Functions
from infra.monitoring import Monitoring, gtseg_metric
from infra.settings import GtsegSettings
from infra.storage import Storage

STREAMING_OUTPUT_HANDLER = "gtseg.handlers.streaming_output.handler"
STREAMING_OUTPUT_SERVICE = "gtseg-streaming-output"
ANNOUNCEMENTS_REJECTED = "StreamingAnnouncementsRejected"  # gtseg.handlers.streaming_output's metric
# Reads one mask and sidecar, writes three small objects: seconds; 60 s leaves room for a large mask.
STREAMING_OUTPUT_TIMEOUT = Duration.seconds(60)
STREAMING_OUTPUT_MEMORY_MB = 1024
# Ground Truth's image formats (S3 suffix filters are case-sensitive, so both cases).
UPLOAD_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
# The developer guide's streaming statement for the execution role's queue, action for action, but
# for sqs:SendMessageBatch, which IAM does not have (a batch is authorized as sqs:SendMessage).
GROUND_TRUTH_QUEUE_ACTIONS = [
    "sqs:CreateQueue",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
    "sqs:SetQueueAttributes",
]
# What SNS does with a publisher's rights on an encrypted topic (and what the guide lists).
KMS_TOPIC = ["kms:Decrypt", "kms:GenerateDataKey"]
STREAMING_JOBS_QUEUES = "Ground Truth names the queue of each streaming job after the job (GroundTruth-<job>)"


class StreamingTopics(Construct):
    """The input and output topics of streaming labeling jobs and everything around them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: GtsegSettings,
        storage: Storage,
        functions: Functions,
        ground_truth_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description=f"gtseg {settings.stage}: the streaming input and output topics",
            enable_key_rotation=True,
            # SNS keeps no messages: once the topics are gone nothing needs this key.
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self.input_topic = sns.Topic(
            self,
            "InputTopic",
            display_name=f"gtseg {settings.stage} streaming input",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.output_topic = sns.Topic(
            self,
            "OutputTopic",
            display_name=f"gtseg {settings.stage} streaming output",
            master_key=self.key,
            enforce_ssl=True,
        )
        self._ground_truth_rights(ground_truth_role)
        self.upload_prefix = settings.streaming_upload_prefix
        if self.upload_prefix:
            self._wire_uploads(storage.data_bucket, self.upload_prefix)
        self.output_function = self._output_function(settings, storage, functions)

    def add_alarms(self, monitoring: Monitoring) -> None:
        """What a lost or refused announcement looks like, on the stack's alarm topic."""
        repair = (
            "The streaming dataset misses those objects until it is rebuilt: once the job is stopped, "
            "`gtseg finalize` over its output manifest (docs/finalize.md) writes every labeled object."
        )
        monitoring.watch_function(
            "streaming-output",
            self.output_function,
            on_error=(
                "An announcement was not finalized (an S3 fault, a timeout, out of memory): Lambda "
                f"retries the event twice, then drops it. Find it in the function's log group. {repair}"
            ),
            on_throttle=f"An announcement's delivery was refused; SNS retries it. {repair}",
            on_slow=(
                "A large mask or slow S3: raise STREAMING_OUTPUT_TIMEOUT in infra/streaming.py "
                f"({STREAMING_OUTPUT_TIMEOUT.to_seconds():.0f} s)."
            ),
        )
        monitoring.watch_metric(
            f"streaming-output.{ANNOUNCEMENTS_REJECTED}",
            metric=gtseg_metric(STREAMING_OUTPUT_SERVICE, ANNOUNCEMENTS_REJECTED),
            description=(
                f"gtseg streaming-output: announced objects it could not finalize ({ANNOUNCEMENTS_REJECTED} "
                "> 0 in 5 minutes: not a line of the job, no mask, no colour map). The log group's "
                f"'announced object not finalized' entries say why. {repair}"
            ),
        )

    @property
    def topics(self) -> tuple[sns.Topic, sns.Topic]:
        return (self.input_topic, self.output_topic)

    def _ground_truth_rights(self, gt: iam.IRole) -> None:
        stack = cdk.Stack.of(self)
        queues = stack.format_arn(
            service="sqs", resource=f"{QUEUE_PREFIX}*", arn_format=cdk.ArnFormat.NO_RESOURCE_NAME
        )
        topics = [t.topic_arn for t in self.topics]
        allow(
            gt,
            sid="StreamingJobQueue",
            actions=GROUND_TRUTH_QUEUE_ACTIONS,
            resources=[queues],
            wildcard_reason=STREAMING_JOBS_QUEUES,
        )
        allow(
            gt,
            sid="StreamingTopicSubscribe",
            actions=["sns:Subscribe"],
            resources=topics,
            # only Ground Truth's own queue, over SQS (the guide's conditions)
            conditions={"StringEquals": {"sns:Protocol": "sqs"}, "StringLike": {"sns:Endpoint": queues}},
        )
        allow(gt, sid="StreamingTopicPublish", actions=["sns:Publish"], resources=topics)
        allow(gt, sid="StreamingTopicUnsubscribe", actions=["sns:Unsubscribe"], resources=topics)
        allow(gt, sid="StreamingTopicKey", actions=KMS_TOPIC, resources=[self.key.key_arn])

    def _wire_uploads(self, bucket: s3.Bucket, prefix: str) -> None:
        destination = s3n.SnsDestination(self.input_topic)
        for suffix in UPLOAD_SUFFIXES:
            bucket.add_event_notification(
                s3.EventType.OBJECT_CREATED,
                destination,
                s3.NotificationKeyFilter(prefix=prefix, suffix=suffix),
            )
        self._acknowledge_notifications_handler()

    def _acknowledge_notifications_handler(self) -> None:
        """Bucket notifications are written by a CDK-managed singleton Lambda at stack level (there is
        no CloudFormation property that can reference a topic whose policy names the bucket); its
        role is aws-cdk-lib's, so its findings are acknowledged on that singleton only."""
        stack = cdk.Stack.of(self)
        cdk_managed = "CDK-managed bucket-notifications handler (aws-cdk-lib code, deploy-time only)"
        findings = {
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": f"{cdk_managed}: basic execution role for its logs",
            "AwsSolutions-IAM5[Resource::*]": f"{cdk_managed}: s3:PutBucketNotification has to name the "
            "bucket at deploy time",
        }
        for child in stack.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                for finding, reason in findings.items():
                    cdk.Validations.of(child).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))

    def _output_function(
        self, settings: GtsegSettings, storage: Storage, functions: Functions
    ) -> lambda_.Function:
        key = storage.encryption_key
        function = functions.add_function(
            "StreamingOutput",
            handler=STREAMING_OUTPUT_HANDLER,
            service_name=STREAMING_OUTPUT_SERVICE,
            description="Streaming labeling jobs: finalizes each labeled object announced on the output topic",
            memory_mb=STREAMING_OUTPUT_MEMORY_MB,
            timeout=STREAMING_OUTPUT_TIMEOUT,
            environment={"OUTPUT_KMS_KEY_ID": key.key_arn} if key is not None else {},
        )
        self.output_topic.add_subscription(subscriptions.LambdaSubscription(function))
        role = function.role
        assert role is not None
        output = storage.output_bucket.bucket_arn
        jobs = JOBS_PREFIX.strip("/") + "/"
        allow(
            role,
            sid="ReadAnnouncedObjects",
            # each object's consolidated mask and its gtseg sidecar
            actions=["s3:GetObject"],
            resources=[objects(output, jobs)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/ (the masks and sidecars of every job's objects)",
        )
        allow(
            role,
            sid="WriteStreamingDatasets",
            actions=["s3:PutObject"],
            resources=[objects(output, f"{jobs}*/{STREAMING_DATASET_DIR}/")],
            wildcard_reason=f"{OBJECT_ARNS} jobs/<job>/{STREAMING_DATASET_DIR}/ (the job name is chosen per job "
            "at launch)",
        )
        allow(
            role,
            sid="TellMissingObjectsApart",
            # a missing sidecar or mask reads as missing (404), not as an access problem (403)
            actions=["s3:ListBucket"],
            resources=[output],
        )
        if key is not None:
            allow(role, sid="UseDataKey", actions=list(KMS_READ_WRITE), resources=[key.key_arn])
        self.output_role = role
        return function
