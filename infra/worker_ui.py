"""The worker task template and the default label-category file, deployed to the assets bucket.

The whole ``lambdas/gtseg/templates`` directory is deployed (a plain zip asset: no bundling, works
offline), so new templates ship without touching the stack.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.settings import WORKER_TEMPLATES_DIR, GtsegSettings

TEMPLATES_PREFIX = "templates/"
WORKER_TEMPLATE_FILE = "semantic-segmentation.liquid.html"
LABEL_CATEGORIES_FILE = "label-categories.json"


class WorkerUiAssets(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, assets_bucket: s3.IBucket, settings: GtsegSettings
    ) -> None:
        super().__init__(scope, construct_id)
        if not WORKER_TEMPLATES_DIR.is_dir():
            raise FileNotFoundError(f"worker templates directory missing: {WORKER_TEMPLATES_DIR}")
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Templates",
            sources=[
                s3deploy.Source.asset(str(WORKER_TEMPLATES_DIR), exclude=[".gitkeep", "**/__pycache__"])
            ],
            destination_bucket=assets_bucket,
            destination_key_prefix=TEMPLATES_PREFIX,
            # Objects under templates/ are ours alone: prune what a previous version deployed.
            prune=True,
            # The deploy-time handler's own logs, with the stack's retention instead of forever.
            log_group=logs.LogGroup(
                self,
                "DeploymentLogs",
                retention=settings.log_retention,
                removal_policy=settings.removal_policy,
            ),
        )
        self.templates_prefix = TEMPLATES_PREFIX
        self.worker_template_uri = assets_bucket.s3_url_for_object(TEMPLATES_PREFIX + WORKER_TEMPLATE_FILE)
        self.label_category_config_uri = assets_bucket.s3_url_for_object(
            TEMPLATES_PREFIX + LABEL_CATEGORIES_FILE
        )
        self._acknowledge_cdk_handler(assets_bucket)

    def _acknowledge_cdk_handler(self, assets_bucket: s3.IBucket) -> None:
        """BucketDeployment runs a CDK-managed singleton Lambda at stack level; its role and runtime
        are aws-cdk-lib's, not ours, so its findings are acknowledged on that singleton only."""
        stack = Stack.of(self)
        singletons = [c for c in stack.node.children if c.node.id.startswith("Custom::CDKBucketDeployment")]
        cdk_managed = "CDK-managed BucketDeployment handler (aws-cdk-lib code, deploy-time only)"
        findings = {
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": f"{cdk_managed}: basic execution role for its logs",
            "AwsSolutions-IAM5[Action::s3:GetBucket*]": f"{cdk_managed}: reads the staged asset",
            "AwsSolutions-IAM5[Action::s3:GetObject*]": f"{cdk_managed}: reads the staged asset",
            "AwsSolutions-IAM5[Action::s3:List*]": f"{cdk_managed}: syncs (lists) the destination",
            "AwsSolutions-IAM5[Action::s3:Abort*]": f"{cdk_managed}: multipart uploads to the destination",
            "AwsSolutions-IAM5[Action::s3:DeleteObject*]": f"{cdk_managed}: prunes old templates",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-"
            "<AWS::Region>/*]": f"{cdk_managed}: the CDK bootstrap asset bucket",
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": f"{cdk_managed}: writes to the KMS bucket",
            "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": f"{cdk_managed}: writes to the KMS bucket",
            "AwsSolutions-L1": f"{cdk_managed}: its runtime is pinned by aws-cdk-lib",
        }
        assets_cfn = assets_bucket.node.default_child
        if isinstance(assets_cfn, CfnElement):
            logical_id = stack.resolve(assets_cfn.logical_id)
            findings[f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/*]"] = (
                f"{cdk_managed}: writes the templates into the assets bucket"
            )
        for singleton in singletons:
            for finding, reason in findings.items():
                Validations.of(singleton).acknowledge(Acknowledgment(id=finding, reason=reason))
