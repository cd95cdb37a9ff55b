"""The launcher's settings: what the stack knows (the Lambda's environment, or ``gtseg launch --direct``
flags), each value checked against the service-model constraint of the request member it fills."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from gtseg.core.layout import JOBS_PREFIX, LABEL_CATEGORIES_NAME, MANIFEST_NAME
from gtseg.core.uris import join_uri, parse_s3_uri
from gtseg.launcher import limits
from gtseg.launcher.errors import LaunchConfigError

ENVIRONMENT = {
    "ground_truth_role_arn": "GROUND_TRUTH_ROLE_ARN",
    "pre_annotation_function_arn": "PRE_ANNOTATION_FUNCTION_ARN",
    "consolidation_function_arn": "CONSOLIDATION_FUNCTION_ARN",
    "worker_template_uri": "WORKER_TEMPLATE_URI",
    "data_bucket": "DATA_BUCKET",
    "output_bucket": "OUTPUT_BUCKET",
    "default_workteam_arn": "DEFAULT_WORKTEAM_ARN",
    "output_kms_key_id": "OUTPUT_KMS_KEY_ID",
}
OPTIONAL_SETTINGS = ("default_workteam_arn", "output_kms_key_id")

# Settings value -> the request member whose model constraint it must meet.
_SETTING_CONSTRAINTS = {
    "ground_truth_role_arn": "RoleArn",
    "pre_annotation_function_arn": "HumanTaskConfig.PreHumanTaskLambdaArn",
    "consolidation_function_arn": "HumanTaskConfig.AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn",
    "worker_template_uri": "HumanTaskConfig.UiConfig.UiTemplateS3Uri",
    "default_workteam_arn": "HumanTaskConfig.WorkteamArn",
    "output_kms_key_id": "OutputConfig.KmsKeyId",
}
_LAMBDA_ARN = re.compile(r"arn:(aws[a-z-]*):lambda:([a-z0-9-]+):\d{12}:function:.+")


class LauncherSettings(BaseModel):
    """What the stack knows (the launcher Lambda's environment, or ``gtseg launch --direct`` flags)."""

    model_config = ConfigDict(frozen=True)

    ground_truth_role_arn: str
    pre_annotation_function_arn: str
    consolidation_function_arn: str
    worker_template_uri: str
    data_bucket: str
    output_bucket: str
    default_workteam_arn: str | None = None
    output_kms_key_id: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, str | None]) -> LauncherSettings:
        """From environment-variable names (``GROUND_TRUTH_ROLE_ARN``...); empty counts as unset."""
        data = {attr: (values.get(var) or None) for attr, var in ENVIRONMENT.items()}
        missing = [ENVIRONMENT[a] for a, v in data.items() if v is None and a not in OPTIONAL_SETTINGS]
        if missing:
            raise LaunchConfigError(f"missing launcher settings: {', '.join(missing)}")
        settings = cls(**data)
        problems = settings.problems()
        if problems:
            raise LaunchConfigError("invalid launcher settings: " + "; ".join(problems))
        return settings

    def as_env(self) -> dict[str, str]:
        """The launcher Lambda's environment for these settings (the stack sets it)."""
        return {var: value for attr, var in ENVIRONMENT.items() if (value := getattr(self, attr)) is not None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LauncherSettings:
        return cls.from_mapping(os.environ if environ is None else environ)

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
