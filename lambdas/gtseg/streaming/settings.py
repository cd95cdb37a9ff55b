"""The streaming-output Lambda's environment (set by the stack, ``infra/streaming.py``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gtseg.aws.environment import EnvironmentSettings


class StreamingOutputSettings(EnvironmentSettings):
    settings_name: ClassVar[str] = "streaming-output settings"

    # The stack's KMS key, when the buckets use one: the dataset's objects are written with it.
    output_kms_key_id: str | None = Field(default=None, alias="OUTPUT_KMS_KEY_ID")
