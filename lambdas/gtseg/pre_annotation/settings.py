"""The pre-annotation Lambda's environment: every variable is optional.

Nothing here may be required or constrained: ``from_env`` raising would make the Lambda raise, and
a raising pre-annotation Lambda fails the whole labeling job (protocol doc §1.4).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gtseg.aws.environment import EnvironmentSettings


class PreAnnotationSettings(EnvironmentSettings):
    settings_name: ClassVar[str] = "pre-annotation settings"

    # The stack's default label list, for jobs whose description names no label-category file.
    label_category_config_uri: str | None = Field(default=None, alias="LABEL_CATEGORY_CONFIG_URI")
    # Which earlier job's mask a task starts from, when the manifest line does not say.
    prior_label_attribute: str | None = Field(default=None, alias="PRIOR_LABEL_ATTRIBUTE")
    prelabel_endpoint_name: str | None = Field(default=None, alias="PRELABEL_ENDPOINT_NAME")
    # Where model pre-labels are written (the worker's browser reads them from there).
    output_bucket: str | None = Field(default=None, alias="OUTPUT_BUCKET")
