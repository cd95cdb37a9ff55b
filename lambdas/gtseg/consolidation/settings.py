"""The consolidation Lambda's optional tuning; no environment variable is required."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gtseg.aws.environment import EnvironmentSettings
from gtseg.core.consolidation import DEFAULT_NEIGHBOURHOOD_RADIUS, Method


class ConsolidationSettings(EnvironmentSettings):
    settings_name: ClassVar[str] = "consolidation settings"

    method: Method = Field(default=Method.GTSEG, alias="CONSOLIDATION_METHOD")
    smoothing: int = Field(default=DEFAULT_NEIGHBOURHOOD_RADIUS, ge=0, le=8, alias="CONSOLIDATION_SMOOTHING")
    # Pattern A of the protocol doc: S3 work under the labeling job's own role (the event's roleArn).
    assume_job_role: bool = Field(default=False, alias="ASSUME_JOB_ROLE")
    kms_key_id: str | None = Field(default=None, alias="OUTPUT_KMS_KEY_ID")
    element_name: str | None = Field(default=None, alias="ELEMENT_NAME")
    threads: int = Field(default=2, ge=1, le=16, alias="CONSOLIDATION_THREADS")
    # Without labelCategories in the event, the job's label file (DescribeLabelingJob) comes before
    # the workers' labelMappings.
    describe_job: bool = Field(default=True, alias="DESCRIBE_LABELING_JOB")
