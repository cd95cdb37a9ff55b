"""The launcher's part of streaming labeling jobs (``"streaming": true``, docs/streaming.md).

A streaming job's CreateLabelingJob request differs from a one-time job's in three places
(developer guide, "Create a Streaming Labeling Job with the SageMaker API"):

* ``InputConfig.DataSource.SnsDataSource.SnsTopicArn``: the stack's input topic
  (``STREAMING_INPUT_TOPIC_ARN``). It is what makes the job a streaming one;
* ``InputConfig.DataSource.S3DataSource`` is optional: gtseg sends it only when the spec has
  ``images``, which become the job's first objects (Ground Truth labels the manifest's objects as
  soon as the job starts, then whatever arrives on the topic);
* ``OutputConfig.SnsTopicArn``: the stack's output topic (``STREAMING_OUTPUT_TOPIC_ARN``), where
  Ground Truth announces each labeled object, when the stack has one.

What must be absent (``StoppingConditions``, ``LabelingJobAlgorithmsConfig``) is refused by the spec
and checked on the request (``limits.streaming_request_problems``). Each line of the initial manifest
carries gtseg's de-duplication key (``core.streaming``), like every object ``gtseg send`` publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gtseg.core.streaming import dedupe_problem, with_dedupe_key
from gtseg.launcher.errors import LaunchConfigError
from gtseg.launcher.settings import ENVIRONMENT, LauncherSettings


def input_topic(settings: LauncherSettings) -> str:
    if not settings.streaming_input_topic_arn:
        raise LaunchConfigError(
            f"invalid launcher settings: {ENVIRONMENT['streaming_input_topic_arn']} is not set, so this stack "
            "cannot start streaming jobs (deploy a stack with the streaming topics, or remove 'streaming')"
        )
    return settings.streaming_input_topic_arn


def streaming_configs(
    settings: LauncherSettings, manifest_uri: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``InputConfig.DataSource``, the ``OutputConfig`` members streaming adds)."""
    source: dict[str, Any] = {"SnsDataSource": {"SnsTopicArn": input_topic(settings)}}
    if manifest_uri is not None:
        source["S3DataSource"] = {"ManifestS3Uri": manifest_uri}
    output = (
        {"SnsTopicArn": settings.streaming_output_topic_arn} if settings.streaming_output_topic_arn else {}
    )
    return source, output


def streaming_lines(lines: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The initial manifest's lines with gtseg's de-duplication key added where a line names none;
    a line whose own key or ID breaks Ground Truth's rules is left out, with the reason."""
    kept: list[dict[str, Any]] = []
    skipped: list[str] = []
    for number, line in enumerate(lines, start=1):
        problem = dedupe_problem(line)
        if problem:
            skipped.append(f"object {number} ({line.get('source-ref')}): {problem}")
        else:
            kept.append(with_dedupe_key(line))
    return kept, skipped
