"""The launcher's settings: what the stack knows (the Lambda's environment, or ``gtseg launch --direct``
flags), each value checked against the service-model constraint of the request member it fills."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import Field

from gtseg.aws.environment import EnvironmentSettings
from gtseg.core.layout import JOBS_PREFIX, LABEL_CATEGORIES_NAME, MANIFEST_NAME
from gtseg.core.uris import join_uri, parse_s3_uri
from gtseg.launcher import limits
from gtseg.launcher.errors import LaunchConfigError

# Settings value -> the request member whose model constraint it must meet.
_SETTING_CONSTRAINTS = {
    "ground_truth_role_arn": "RoleArn",
    "pre_annotation_function_arn": "HumanTaskConfig.PreHumanTaskLambdaArn",
    "consolidation_function_arn": "HumanTaskConfig.AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn",
    "worker_template_uri": "HumanTaskConfig.UiConfig.UiTemplateS3Uri",
    "default_workteam_arn": "HumanTaskConfig.WorkteamArn",
    "output_kms_key_id": "OutputConfig.KmsKeyId",
    "streaming_input_topic_arn": "InputConfig.DataSource.SnsDataSource.SnsTopicArn",
    "streaming_output_topic_arn": "OutputConfig.SnsTopicArn",
}
_LAMBDA_ARN = re.compile(r"arn:(aws[a-z-]*):lambda:([a-z0-9-]+):\d{12}:function:.+")


class LauncherSettings(EnvironmentSettings):
    """What the stack knows (the launcher Lambda's environment, or ``gtseg launch --direct`` flags)."""

    settings_name: ClassVar[str] = "launcher settings"
    error_type: ClassVar[type[Exception]] = LaunchConfigError

    ground_truth_role_arn: str = Field(alias="GROUND_TRUTH_ROLE_ARN")
    pre_annotation_function_arn: str = Field(alias="PRE_ANNOTATION_FUNCTION_ARN")
    consolidation_function_arn: str = Field(alias="CONSOLIDATION_FUNCTION_ARN")
    worker_template_uri: str = Field(alias="WORKER_TEMPLATE_URI")
    data_bucket: str = Field(alias="DATA_BUCKET")
    output_bucket: str = Field(alias="OUTPUT_BUCKET")
    default_workteam_arn: str | None = Field(default=None, alias="DEFAULT_WORKTEAM_ARN")
    output_kms_key_id: str | None = Field(default=None, alias="OUTPUT_KMS_KEY_ID")
    # Streaming jobs (docs/streaming.md): the stack's SNS input and output topics.
    streaming_input_topic_arn: str | None = Field(default=None, alias="STREAMING_INPUT_TOPIC_ARN")
    streaming_output_topic_arn: str | None = Field(default=None, alias="STREAMING_OUTPUT_TOPIC_ARN")

    @classmethod
    def from_env(cls, environ: Mapping[str, str | None] | None = None) -> Self:
        """From environment-variable names (``GROUND_TRUTH_ROLE_ARN``...); each value is checked
        against the request member it fills, before any AWS call."""
        settings = super().from_env(environ)
        problems = settings.problems()
        if problems:
            raise LaunchConfigError("invalid launcher settings: " + "; ".join(problems))
        return settings

    @classmethod
    def from_mapping(cls, values: Mapping[str, str | None]) -> Self:
        """From a mapping of environment-variable names (``--direct`` flags, a function's environment)."""
        return cls.from_env(values)

    def problems(self) -> list[str]:
        out: list[str] = []
        for attr, path in _SETTING_CONSTRAINTS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            for problem in limits.constraint(path).problems(value):
                out.append(f"{ENVIRONMENT[attr]} {problem}")
        for attr in ("data_bucket", "output_bucket"):
            try:
                parse_s3_uri(f"s3://{getattr(self, attr)}/key")
            except ValueError:
                out.append(f"{ENVIRONMENT[attr]} is not a bucket name: {getattr(self, attr)!r}")
        if not _LAMBDA_ARN.fullmatch(self.pre_annotation_function_arn):
            out.append("PRE_ANNOTATION_FUNCTION_ARN must name a region (it is where the job runs)")
        else:
            out.extend(self._topic_region_problems())
        return out

    def _topic_region_problems(self) -> list[str]:
        """Ground Truth's rule: a streaming job's SNS topics are in the job's region."""
        _partition, region = self.partition_and_region
        out = []
        for attr in ("streaming_input_topic_arn", "streaming_output_topic_arn"):
            arn = getattr(self, attr)
            parts = arn.split(":") if arn else []
            if len(parts) > 3 and parts[3] != region:
                out.append(
                    f"{ENVIRONMENT[attr]} is a topic of {parts[3]}, but the job runs in {region} (where the "
                    "stack's Lambdas are); a streaming job's topics must be in its region"
                )
        return out

    @property
    def names_region(self) -> bool:
        """Whether PRE_ANNOTATION_FUNCTION_ARN is a Lambda ARN with a region (where the job runs)."""
        return _LAMBDA_ARN.fullmatch(self.pre_annotation_function_arn) is not None

    @property
    def partition_and_region(self) -> tuple[str, str]:
        """The job runs where our Lambdas are: Ground Truth invokes them in its own region."""
        match = _LAMBDA_ARN.fullmatch(self.pre_annotation_function_arn)
        if not match:
            raise LaunchConfigError("PRE_ANNOTATION_FUNCTION_ARN must name a region")
        return match.group(1), match.group(2)

    def job_prefix(self, job_name: str) -> str:
        return f"s3://{self.data_bucket}/{JOBS_PREFIX}/{job_name}"

    def manifest_uri(self, job_name: str) -> str:
        return join_uri(self.job_prefix(job_name), MANIFEST_NAME)

    def label_category_config_uri(self, job_name: str) -> str:
        return join_uri(self.job_prefix(job_name), LABEL_CATEGORIES_NAME)

    @property
    def output_path(self) -> str:
        """Ground Truth appends ``<jobName>/`` to this."""
        return f"s3://{self.output_bucket}/{JOBS_PREFIX}/"


# Field name -> environment variable, and the ones the stack may leave unset.
ENVIRONMENT: dict[str, str] = LauncherSettings.variables()
OPTIONAL_SETTINGS: tuple[str, ...] = tuple(
    name for name, field in LauncherSettings.model_fields.items() if not field.is_required()
)
