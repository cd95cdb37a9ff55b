"""Who may do what: the Ground Truth execution role and the data rights of each Lambda role.

Every statement names exact actions (no wildcards, no managed policies) and the narrowest resource
we can name. Object ARNs end in ``/*`` or ``/<prefix>/*`` by nature; those and the few actions that
have no resource-level permissions are acknowledged to cdk-nag right here, each with its reason.

Prefixes inside the buckets (the handlers' constants are imported, so they cannot drift):
- data bucket: images and user manifests anywhere; the launcher writes only ``jobs/<job>/``
  (manifest, label-category file).
- output bucket: ``jobs/`` is every job's ``S3OutputPath`` (Ground Truth output, our consolidated
  masks, prior masks of adjustment jobs); the consolidation Lambda writes only
  ``jobs/<job>/annotations/consolidated-annotation/output/``; ``prelabels/`` holds model pre-labels.
- assets bucket: ``templates/`` (worker template, default label-category file), read-only.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from gtseg.core.layout import CONSOLIDATED_OUTPUT_DIR, JOBS_PREFIX, PRELABEL_PREFIX
from infra.functions import Functions
from infra.settings import GtsegSettings
from infra.storage import Storage
from infra.worker_ui import WorkerUiAssets

# The same constants the handlers build their keys with.
JOBS = JOBS_PREFIX.strip("/") + "/"  # data: launcher's job files; output: S3OutputPath
PRELABELS = PRELABEL_PREFIX.strip("/") + "/"
# Where the consolidation Lambda writes (output bucket): jobs/<job>/annotations/consolidated-annotation/output/
CONSOLIDATED_OUTPUT = f"{JOBS}*/{CONSOLIDATED_OUTPUT_DIR.strip('/')}/"
# Ground Truth writes job logs here (CloudWatch Logs group of every labeling job).
LABELING_JOB_LOG_GROUP = "/aws/sagemaker/LabelingJobs"
# PutMetricData has no resource-level permissions; the namespace condition is the only fence.
# Ground Truth's own metric namespace is not documented for the execution role (UNCONFIRMED), so
# the fence is SageMaker's customer-side namespace family rather than one exact name.
LABELING_METRIC_NAMESPACE_PATTERN = "/aws/sagemaker/*"

# KMS actions per use, spelled out (no ``GenerateDataKey*`` wildcards).
KMS_READ = ("kms:Decrypt", "kms:DescribeKey")
KMS_READ_WRITE = ("kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey")
# Ground Truth with an output key (protocol doc §9.4): Encrypt, Decrypt, ReEncrypt*, GenerateDataKey*.
KMS_GROUND_TRUTH = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)


OBJECT_ARNS = "S3 object ARNs need a key wildcard; this one is limited to"
LABELING_JOB_ARNS = (
    "job names are chosen per job at launch; limited to this account's and region's labeling jobs"
)


def objects(bucket_arn: str, prefix: str = "") -> str:
    return f"{bucket_arn}/{prefix}*"


def nag_resource(stack: cdk.Stack, resource: str) -> str:
    """A resource as cdk-nag spells it in a finding id: ``<LogicalId.Arn>/*``, ``<AWS::Region>``."""

    def render(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return f"<{value['Ref']}>"
        if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            return "<{}.{}>".format(*value["Fn::GetAtt"])
        if isinstance(value, dict) and set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(render(part) for part in parts)
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith("Fn::"):
            # any other intrinsic (Fn::Select of a state machine's name, ...) as cdk-nag prints it: JSON
            return json.dumps(value, separators=(",", ":"))
        raise ValueError(f"cannot render {value!r} as a cdk-nag resource")

    return render(stack.resolve(resource))


def allow(
    role: iam.IRole,
    *,
    sid: str,
    actions: list[str],
    resources: list[str],
    wildcard_reason: str | None = None,
    conditions: dict[str, Any] | None = None,
) -> None:
    """Add one statement to ``role``; a resource with a wildcard needs a reason, which is recorded
    as the cdk-nag acknowledgement of exactly that resource on exactly this role."""
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions)
    )
    stack = cdk.Stack.of(role)
    wildcards = [nag_resource(stack, r) for r in resources if "*" in nag_resource(stack, r)]
    if wildcards and not wildcard_reason:
        raise ValueError(f"statement {sid} has wildcard resources {wildcards} but no reason")
    for resource in wildcards:
        cdk.Validations.of(role).acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=f"{sid}: {wildcard_reason}"
            )
        )


class GroundTruthAccess(Construct):
    """The execution role Ground Truth assumes for our labeling jobs, and the Lambda roles' rights."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: GtsegSettings,
        storage: Storage,
        functions: Functions,
        worker_ui: WorkerUiAssets,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._key: kms.IKey | None = storage.encryption_key
        self._data = storage.data_bucket.bucket_arn
        self._output = storage.output_bucket.bucket_arn
        self._assets = storage.assets_bucket.bucket_arn
        self._templates = objects(self._assets, worker_ui.templates_prefix)
        self._labeling_jobs = stack.format_arn(
            service="sagemaker", resource="labeling-job", resource_name="*"
        )
        self.ground_truth_role = iam.Role(
            self,
            "GroundTruthExecutionRole",
            description=f"gtseg {settings.stage}: assumed by SageMaker Ground Truth for labeling jobs",
            # Confused-deputy guard: only SageMaker acting for this account may assume it.
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
        )
        self._ground_truth_rights(self.ground_truth_role, functions)
        self._pre_annotation_rights(_role(functions.pre_annotation), settings)
        self._consolidation_rights(_role(functions.consolidation))
        self._launcher_rights(_role(functions.launcher))

    def _ground_truth_rights(self, gt: iam.IRole, functions: Functions) -> None:
        stack = cdk.Stack.of(self)
        allow(
            gt,
            sid="ReadLabelingInput",
            # Images, manifests and label files; worker template; model pre-labels shown to workers.
            actions=["s3:GetObject"],
            resources=[objects(self._data), self._templates, objects(self._output, PRELABELS)],
            wildcard_reason=f"{OBJECT_ARNS} the data bucket (labeling input only), templates/ and prelabels/",
        )
        allow(
            gt,
            sid="ReadWriteJobOutput",
            actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            resources=[objects(self._output, JOBS)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/, the S3OutputPath of every gtseg labeling job",
        )
        allow(
            gt,
            sid="LocateBuckets",
            actions=["s3:GetBucketLocation", "s3:ListBucket"],
            resources=[self._data, self._output, self._assets],
        )
        allow(
            gt,
            sid="InvokeLabelingLambdas",
            # Explicit: our function names do not match the managed policy's name patterns.
            actions=["lambda:InvokeFunction"],
            resources=[functions.pre_annotation.function_arn, functions.consolidation.function_arn],
        )
        allow(
            gt,
            sid="LabelingJobLogs",
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
            ],
            resources=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"{LABELING_JOB_LOG_GROUP}:*",
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            wildcard_reason=f"Ground Truth writes one log stream per labeling job into {LABELING_JOB_LOG_GROUP}",
        )
        allow(
            gt,
            sid="LabelingJobMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": LABELING_METRIC_NAMESPACE_PATTERN}},
            wildcard_reason="PutMetricData has no resource-level permissions; fenced by a cloudwatch:namespace "
            "condition",
        )
        self._grant_key(gt, KMS_GROUND_TRUTH)

    def _pre_annotation_rights(self, pre: iam.IRole, settings: GtsegSettings) -> None:
        allow(
            pre,
            sid="ReadImagesAndLabels",
            # Prior masks are passed on by URI (the template presigns them with the Ground Truth
            # role), never read here; of the output bucket only the sidecars are readable (below).
            actions=["s3:GetObject"],
            resources=[objects(self._data), self._templates],
            wildcard_reason=f"{OBJECT_ARNS} the data bucket (images, label files) and templates/",
        )
        allow(
            pre,
            sid="ReadPriorSidecars",
            # A prior job's colour map when Ground Truth replaced its metadata (docs/protocol.md
            # §2.4): the gtseg sidecar next to each consolidated mask, nothing else of the output.
            actions=["s3:GetObject"],
            resources=[f"{self._output}/{CONSOLIDATED_OUTPUT}*.json"],
            wildcard_reason=f"{OBJECT_ARNS} the .json sidecars under jobs/<job>/{CONSOLIDATED_OUTPUT_DIR}/",
        )
        allow(
            pre,
            sid="TellMissingImagesApart",
            # Without ListBucket, S3 answers 403 for a missing key; with it, 404, so a missing
            # image is reported as missing rather than as an access problem.
            actions=["s3:ListBucket"],
            resources=[self._data],
        )
        self._describe_labeling_jobs(pre)
        if not settings.prelabel_endpoint_name:
            self._grant_key(pre, KMS_READ)
            return
        allow(
            pre,
            sid="InvokePrelabelEndpoint",
            actions=["sagemaker:InvokeEndpoint"],
            resources=[
                cdk.Stack.of(self).format_arn(
                    service="sagemaker",
                    resource="endpoint",
                    resource_name=settings.prelabel_endpoint_name.lower(),
                )
            ],
        )
        allow(
            pre,
            sid="WritePrelabels",
            actions=["s3:PutObject"],
            resources=[objects(self._output, PRELABELS)],
            wildcard_reason=f"{OBJECT_ARNS} prelabels/ (one mask per image)",
        )
        self._grant_key(pre, KMS_READ_WRITE)

    def _consolidation_rights(self, consolidation: iam.IRole) -> None:
        allow(
            consolidation,
            sid="WriteConsolidatedMasks",
            # The only place consolidation writes: each job's masks and their sidecars. Worker
            # responses, payloads and manifests under the same job stay Ground Truth's alone.
            actions=["s3:PutObject"],
            resources=[objects(self._output, CONSOLIDATED_OUTPUT)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/<job>/{CONSOLIDATED_OUTPUT_DIR}/ (one mask and sidecar "
            "per object; the job name is chosen per job at launch)",
        )
        allow(
            consolidation,
            sid="ReadJobOutput",
            # Payloads (consolidation-request/), the workers' answers and known masks of gold objects.
            actions=["s3:GetObject"],
            resources=[objects(self._output, JOBS)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/ (payloads, worker answers, gold masks)",
        )
        allow(
            consolidation,
            sid="ReadImagesAndLabelFiles",
            # Every image's header (its size decides the mask size; images may live anywhere in the
            # data bucket), the launcher's jobs/ files (label-category file, gold masks) and templates/.
            actions=["s3:GetObject"],
            resources=[objects(self._data), self._templates],
            wildcard_reason=f"{OBJECT_ARNS} the data bucket (images, job files, gold masks) and templates/",
        )
        allow(
            consolidation,
            sid="TellMissingObjectsApart",
            # Without ListBucket, S3 answers 403 for a missing key; with it, 404, so a missing image,
            # worker answer or gold mask is reported as missing rather than as an access problem.
            actions=["s3:ListBucket"],
            resources=[self._data, self._output],
        )
        self._describe_labeling_jobs(consolidation)
        self._grant_key(consolidation, KMS_READ_WRITE)

    def _launcher_rights(self, launcher: iam.IRole) -> None:
        allow(
            launcher,
            sid="ListImagePrefixes",
            actions=["s3:ListBucket"],
            resources=[self._data],
        )
        allow(
            launcher,
            sid="ReadManifestsAndLabelFiles",
            # User manifests and label files; prior jobs' output manifests for adjustment jobs.
            actions=["s3:GetObject"],
            resources=[objects(self._data), self._templates, objects(self._output, JOBS)],
            wildcard_reason=f"{OBJECT_ARNS} the data bucket, templates/ and the jobs' output (prior manifests)",
        )
        allow(
            launcher,
            sid="WriteJobFiles",
            actions=["s3:PutObject"],
            resources=[objects(self._data, JOBS)],
            wildcard_reason=f"{OBJECT_ARNS} jobs/ (one manifest and label-category file per job)",
        )
        allow(
            launcher,
            sid="StartAndFollowLabelingJobs",
            # AddTags: CreateLabelingJob with Tags is authorised as a tagging call too.
            actions=["sagemaker:AddTags", "sagemaker:CreateLabelingJob", "sagemaker:DescribeLabelingJob"],
            resources=[self._labeling_jobs],
            wildcard_reason=LABELING_JOB_ARNS,
        )
        allow(
            launcher,
            sid="PassGroundTruthRole",
            actions=["iam:PassRole"],
            resources=[self.ground_truth_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        self._grant_key(launcher, KMS_READ_WRITE)

    def _describe_labeling_jobs(self, role: iam.IRole) -> None:
        allow(
            role,
            sid="DescribeLabelingJobs",
            # The job's label-category file when an event does not carry the labels.
            actions=["sagemaker:DescribeLabelingJob"],
            resources=[self._labeling_jobs],
            wildcard_reason=LABELING_JOB_ARNS,
        )

    def _grant_key(self, role: iam.IRole, actions: tuple[str, ...]) -> None:
        if self._key is not None:
            allow(role, sid="UseDataKey", actions=list(actions), resources=[self._key.key_arn])


def _role(function: lambda_.Function) -> iam.IRole:
    if function.role is None:
        raise ValueError(f"{function.node.path} has no role")
    return function.role
