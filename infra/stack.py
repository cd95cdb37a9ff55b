"""The gtseg stack: composes one construct per concern and wires them; it holds no resources itself."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from gtseg.launcher.settings import LauncherSettings
from infra.access import GroundTruthAccess
from infra.events import LabelingJobEvents
from infra.finalize import JobFinalize
from infra.functions import Functions
from infra.monitoring import Monitoring
from infra.settings import GtsegSettings, LambdaPlatform
from infra.storage import Storage
from infra.streaming import StreamingTopics
from infra.worker_ui import WorkerUiAssets


class GtsegStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: GtsegSettings,
        platform: LambdaPlatform,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.storage = Storage(self, "Storage", settings=settings)
        self.worker_ui = WorkerUiAssets(
            self, "WorkerUi", assets_bucket=self.storage.assets_bucket, settings=settings
        )
        self.functions = Functions(
            self,
            "Functions",
            settings=settings,
            platform=platform,
            storage=self.storage,
            label_category_config_uri=self.worker_ui.label_category_config_uri,
        )
        self.access = GroundTruthAccess(
            self,
            "Access",
            settings=settings,
            storage=self.storage,
            functions=self.functions,
            worker_ui=self.worker_ui,
        )
        self.streaming = StreamingTopics(
            self, "Streaming", settings=settings, storage=self.storage, functions=self.functions,
            ground_truth_role=self.access.ground_truth_role,
        )  # fmt: skip
        key = self.storage.encryption_key
        self.functions.configure_launcher(
            LauncherSettings(
                ground_truth_role_arn=self.access.ground_truth_role.role_arn,
                pre_annotation_function_arn=self.functions.pre_annotation.function_arn,
                consolidation_function_arn=self.functions.consolidation.function_arn,
                worker_template_uri=self.worker_ui.worker_template_uri,
                data_bucket=self.storage.data_bucket.bucket_name,
                output_bucket=self.storage.output_bucket.bucket_name,
                default_workteam_arn=settings.workteam_arn,
                output_kms_key_id=key.key_arn if key is not None else None,
                streaming_input_topic_arn=self.streaming.input_topic.topic_arn,
                streaming_output_topic_arn=self.streaming.output_topic.topic_arn,
            )
        )
        self.events = LabelingJobEvents(self, "LabelingJobEvents", settings=settings)
        self.monitoring = Monitoring(
            self, "Monitoring", settings=settings, storage=self.storage, functions=self.functions
        )
        self.finalize = JobFinalize(
            self, "Finalize", settings=settings, storage=self.storage, functions=self.functions,
            ground_truth_role=self.access.ground_truth_role, topic_key=self.monitoring.topic_key,
        )  # fmt: skip
        self.streaming.add_alarms(self.monitoring)
        self.finalize.add_alarms(self.monitoring)
        self.dashboard = self.monitoring.add_dashboard(settings)
        self._outputs()

    def _outputs(self) -> None:
        # Output names are a contract: `gtseg launch --stack NAME` reads them.
        outputs = {
            "DataBucketName": (self.storage.data_bucket.bucket_name, "input images and manifests"),
            "OutputBucketName": (self.storage.output_bucket.bucket_name, "job output and masks"),
            "AssetsBucketName": (self.storage.assets_bucket.bucket_name, "worker template and labels"),
            "LauncherFunctionName": (self.functions.launcher.function_name, "invoke with a job spec"),
            "LauncherFunctionArn": (self.functions.launcher.function_arn, "launcher ARN"),
            "PreAnnotationFunctionArn": (self.functions.pre_annotation.function_arn, "PreHumanTaskLambdaArn"),
            "ConsolidationFunctionArn": (
                self.functions.consolidation.function_arn,
                "AnnotationConsolidationLambdaArn",
            ),
            "GroundTruthRoleArn": (self.access.ground_truth_role.role_arn, "labeling job RoleArn"),
            "WorkerTemplateUri": (self.worker_ui.worker_template_uri, "UiTemplateS3Uri"),
            "LabelCategoryConfigUri": (self.worker_ui.label_category_config_uri, "default label file"),
            "LabelingJobEventsLogGroup": (self.events.log_group.log_group_name, "job state changes"),
            "AlarmTopicArn": (self.monitoring.topic.topic_arn, "every gtseg alarm notifies this topic"),
            "DashboardName": (self.dashboard.dashboard_name, "the gtseg CloudWatch dashboard"),
            "JobFinishedTopicArn": (self.finalize.topic.topic_arn, "a short note when a job is finalized"),
            "FinalizeStateMachineArn": (
                self.finalize.state_machine.state_machine_arn,
                "finalizes ended jobs",
            ),
            "StreamingInputTopicArn": (self.streaming.input_topic.topic_arn, "streaming jobs: gtseg send"),
            "StreamingOutputTopicArn": (
                self.streaming.output_topic.topic_arn,
                "streaming jobs: labeled objects",
            ),
            "StreamingTopicKeyArn": (self.streaming.key.key_arn, "publishers need Decrypt/GenerateDataKey"),
        }
        for name, (value, description) in outputs.items():
            cdk.CfnOutput(self, name, value=value, description=description)
