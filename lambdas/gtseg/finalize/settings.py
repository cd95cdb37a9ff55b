"""The finalize Lambda's settings (the stack sets them; ``infra/finalize.py``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gtseg.aws.environment import EnvironmentSettings
from gtseg.finalize.batch import DEFAULT_THREADS
from gtseg.finalize.plan import DEFAULT_REPORT_OBJECTS


class FinalizeSettings(EnvironmentSettings):
    settings_name: ClassVar[str] = "finalize settings"

    # Only jobs run with this role are this stack's (the state-change event does not say).
    ground_truth_role_arn: str = Field(alias="GROUND_TRUTH_ROLE_ARN")
    copy_images: bool = Field(default=True, alias="FINALIZE_COPY_IMAGES")
    report_objects: int = Field(
        default=DEFAULT_REPORT_OBJECTS, ge=0, le=5000, alias="FINALIZE_REPORT_OBJECTS"
    )
    threads: int = Field(default=DEFAULT_THREADS, ge=1, le=32, alias="FINALIZE_THREADS")
    kms_key_id: str | None = Field(default=None, alias="OUTPUT_KMS_KEY_ID")
    # The state machine reads manifests and writes results in this bucket only (its IAM says so).
    output_bucket: str | None = Field(default=None, alias="OUTPUT_BUCKET")
