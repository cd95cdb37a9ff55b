"""Who may do what: the Ground Truth execution role and the data rights of each Lambda role.

Every statement names exact actions (no wildcards, no managed policies) and the narrowest resource
we can name. Object ARNs end in ``/*`` or ``/<prefix>/*`` by nature; those and the few actions that
have no resource-level permissions are acknowledged to cdk-nag right here, each with its reason.

Prefixes inside the buckets (the handlers' constants are imported, so they cannot drift):
- data bucket: images and user manifests anywhere; the launcher writes only ``jobs/<job>/``
  (manifest, label-category file).
- output bucket: ``jobs/`` is every job's ``S3OutputPath`` (Ground Truth output, our consolidated
  masks, prior masks of adjustment jobs); ``prelabels/`` holds model pre-labels.
- assets bucket: ``templates/`` (worker template, default label-category file), read-only.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from gtseg.launch import JOBS_PREFIX
from gtseg.pre_annotation import PRELABEL_PREFIX
from infra.functions import Functions
from infra.settings import GtsegSettings
from infra.storage import Storage
from infra.worker_ui import WorkerUiAssets

# The same constants the handlers build their keys with.
JOBS = JOBS_PREFIX.strip("/") + "/"  # data: launcher's job files; output: S3OutputPath
PRELABELS = PRELABEL_PREFIX.strip("/") + "/"
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


def objects(bucket_arn: str, prefix: str = "") -> str:
    return f"{bucket_arn}/{prefix}*"


def acknowledge(scope: Construct, finding: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


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
        self._storage = storage
        data = storage.data_bucket.bucket_arn
        output = storage.output_bucket.bucket_arn
        assets = storage.assets_bucket.bucket_arn
        templates = objects(assets, worker_ui.templates_prefix)
        labeling_jobs = stack.format_arn(service="sagemaker", resource="labeling-job", resource_name="*")
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
        gt = self.ground_truth_role
        gt.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadLabelingInput",
                # Images, manifests and label files; worker template; model pre-labels shown to workers.
                actions=["s3:GetObject"],
                resources=[objects(data), templates, objects(output, PRELABELS)],
            )
        )
        gt.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadWriteJobOutput",
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources=[objects(output, JOBS)],
            )
        )
        gt.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LocateBuckets",
                actions=["s3:GetBucketLocation", "s3:ListBucket"],
                resources=[data, output, assets],
            )
        )
        gt.add_to_principal_policy(
            iam.PolicyStatement(
                sid="InvokeLabelingLambdas",
                # Explicit: our function names do not match the managed policy's name patterns.
                actions=["lambda:InvokeFunction"],
                resources=[functions.pre_annotation.function_arn, functions.consolidation.function_arn],
            )
        )
        gt.add_to_principal_policy(
            iam.PolicyStatement(
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
            )
        )
        gt.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LabelingJobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": LABELING_METRIC_NAMESPACE_PATTERN}},
            )
        )
        self._grant_key(gt, KMS_GROUND_TRUTH)

        self._lambda_rights(
            functions=functions,
            settings=settings,
            data=data,
            output=output,
            templates=templates,
            labeling_jobs=labeling_jobs,
        )
        self._acknowledge_findings(functions)

    def _grant_key(self, role: iam.IRole, actions: tuple[str, ...]) -> None:
        key: kms.IKey | None = self._storage.encryption_key
        if key is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(sid="UseDataKey", actions=list(actions), resources=[key.key_arn])
            )

    def _lambda_rights(
        self,
        *,
        functions: Functions,
        settings: GtsegSettings,
        data: str,
        output: str,
        templates: str,
        labeling_jobs: str,
    ) -> None:
        describe_job = iam.PolicyStatement(
            sid="DescribeLabelingJobs",
            # The job's label-category file when an event does not carry the labels.
            actions=["sagemaker:DescribeLabelingJob"],
            resources=[labeling_jobs],
        )

        pre = functions.pre_annotation.role
        assert pre is not None
        pre.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadImagesLabelsAndPriorMasks",
                actions=["s3:GetObject"],
                resources=[objects(data), templates, objects(output, JOBS)],
            )
        )
        pre.add_to_principal_policy(describe_job)
        if settings.prelabel_endpoint_name:
            pre.add_to_principal_policy(
                iam.PolicyStatement(
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
            )
            pre.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="WritePrelabels",
                    actions=["s3:PutObject"],
                    resources=[objects(output, PRELABELS)],
                )
            )
            self._grant_key(pre, KMS_READ_WRITE)
        else:
            self._grant_key(pre, KMS_READ)

        consolidation = functions.consolidation.role
        assert consolidation is not None
        consolidation.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadPayloadsWriteMasks",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[objects(output, JOBS)],
            )
        )
        consolidation.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadLabelCategoryFiles",
                actions=["s3:GetObject"],
                resources=[objects(data, JOBS), templates],
            )
        )
        consolidation.add_to_principal_policy(describe_job)
        self._grant_key(consolidation, KMS_READ_WRITE)

        launcher = functions.launcher.role
        assert launcher is not None
        launcher.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListImagePrefixes",
                actions=["s3:ListBucket"],
                resources=[self._storage.data_bucket.bucket_arn],
            )
        )
        launcher.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadManifestsAndLabelFiles",
                # User manifests and label files; prior jobs' output manifests for adjustment jobs.
                actions=["s3:GetObject"],
                resources=[objects(data), templates, objects(output, JOBS)],
            )
        )
        launcher.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteJobFiles",
                actions=["s3:PutObject"],
                resources=[objects(data, JOBS)],
            )
        )
        launcher.add_to_principal_policy(
            iam.PolicyStatement(
                sid="StartAndFollowLabelingJobs",
                # AddTags: CreateLabelingJob with Tags is authorised as a tagging call too.
                actions=[
                    "sagemaker:AddTags",
                    "sagemaker:CreateLabelingJob",
                    "sagemaker:DescribeLabelingJob",
                ],
                resources=[labeling_jobs],
            )
        )
        launcher.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PassGroundTruthRole",
                actions=["iam:PassRole"],
                resources=[self.ground_truth_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        self._grant_key(launcher, KMS_READ_WRITE)

    def _acknowledge_findings(self, functions: Functions) -> None:
        stack = cdk.Stack.of(self)

        def arn_ref(resource: cdk.IResource) -> str:
            cfn = resource.node.default_child
            assert isinstance(cfn, cdk.CfnElement)
            return f"<{stack.resolve(cfn.logical_id)}.Arn>"

        data = arn_ref(self._storage.data_bucket)
        output = arn_ref(self._storage.output_bucket)
        assets = arn_ref(self._storage.assets_bucket)
        templates = f"Resource::{assets}/templates/*"
        jobs = "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:labeling-job/*"
        object_reason = "S3 object ARNs need a key wildcard; scoped to one gtseg bucket or prefix"
        why = {
            f"Resource::{data}/*": f"{object_reason}: the data bucket holds only labeling input",
            f"Resource::{output}/{JOBS}*": f"{object_reason}: labeling jobs' output",
            templates: f"{object_reason}: worker templates and label-category files",
            f"Resource::{data}/{JOBS}*": f"{object_reason}: launcher-written job files",
            f"Resource::{output}/{PRELABELS}*": f"{object_reason}: model pre-label masks",
            jobs: "labeling job names are chosen per job at launch; scoped to this account and region",
            "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            f"{LABELING_JOB_LOG_GROUP}:*": "Ground Truth creates one log stream per labeling job in this group",
            "Resource::*": "cloudwatch:PutMetricData has no resource-level permissions; "
            "limited by a cloudwatch:namespace condition",
        }
        # Acknowledged on each role (the subtree holding the policy), never stack-wide.
        roles = [self.ground_truth_role, *(fn.role for fn in functions.all if fn.role is not None)]
        for role in roles:
            for finding, reason in why.items():
                acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)
