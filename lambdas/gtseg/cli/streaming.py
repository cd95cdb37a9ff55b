"""What ``gtseg send``, ``gtseg stop`` and ``gtseg status`` share about streaming jobs (not a
command itself): finding the job, and the status lines of a streaming job (docs/streaming.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from gtseg.aws.streaming import QueueCounts, queue_counts
from gtseg.core.streaming import input_topic_of, output_topic_of

# status asks SQS in passing: it must not hang on an unreachable endpoint
QUICK = Config(connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 2})


class JobProblem(RuntimeError):
    """The job cannot be used as asked; the message is the one line the command prints."""


def describe(sagemaker: Any, job: str) -> dict[str, Any]:
    try:
        description: dict[str, Any] = sagemaker.describe_labeling_job(LabelingJobName=job)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ResourceNotFoundException"):
            raise JobProblem(f"no labeling job named {job!r}") from None
        raise
    return description


def streaming_input_topic(description: Mapping[str, Any]) -> str:
    """The job's input topic; a one-time job is a JobProblem."""
    topic = input_topic_of(description)
    if topic is None:
        raise JobProblem(
            f"{description.get('LabelingJobName')} is not a streaming job (it has no input topic); start one "
            'with "streaming": true in its spec (docs/streaming.md)'
        )
    return topic


def job_root(description: Mapping[str, Any]) -> str:
    """``<S3OutputPath>/<job>``: Ground Truth writes the job's output there, gtseg its datasets."""
    output = str((description.get("OutputConfig") or {}).get("S3OutputPath", "")).rstrip("/")
    return f"{output}/{description['LabelingJobName']}"


def status_lines(description: Mapping[str, Any], queue: QueueCounts | None) -> list[str]:
    """The streaming part of ``gtseg status`` (nothing for a one-time job)."""
    topic = input_topic_of(description)
    if topic is None:
        return []
    counters = description.get("LabelCounters") or {}
    labeled = int(counters.get("TotalLabeled", 0))
    failed = int(counters.get("FailedNonRetryableError", 0))
    unlabeled = int(counters.get("Unlabeled", 0))
    lines = [
        f"streaming: input topic {topic}",
        f"          objects so far: {labeled + failed + unlabeled} received, {labeled} labeled, {failed} failed, "
        f"{unlabeled} not labeled yet",
    ]
    if queue is not None:
        if queue.problem:
            lines.append(f"          queue {queue.name}: {queue.problem}")
        else:
            lines.append(
                f"          queue {queue.name}: {queue.waiting} waiting for a worker, {queue.in_flight} in flight"
            )
    output = output_topic_of(description)
    lines.append(f"          labels announced on {output}" if output else "          no output topic")
    lines.append(f"          dataset: {job_root(description)}/gtseg/streaming/")
    return lines


def streaming_status(description: Mapping[str, Any], make_client: Any) -> list[str]:
    """``status_lines`` with the queue's counts, asked with ``make_client("sqs")``; best effort."""
    if input_topic_of(description) is None:
        return []
    try:
        queue = queue_counts(make_client("sqs", QUICK), str(description.get("LabelingJobName", "")))
    except Exception as exc:  # no region or credentials for SQS: the rest of the status still shows
        queue = QueueCounts(name="GroundTruth-?", problem=f"cannot be read ({exc.__class__.__name__})")
    return status_lines(description, queue)
