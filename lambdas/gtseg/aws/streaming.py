"""SNS and SQS access for streaming labeling jobs: publish data objects to a job's input topic, and
read how many wait in the queue Ground Truth keeps for the job (``core.streaming`` has the rules).

Used by ``gtseg send`` and ``gtseg status`` and by the local emulator, with any boto3 SNS/SQS
client (moto's server in tests and ``gtseg simulate --streaming``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gtseg.core.streaming import MAX_SNS_MESSAGE_BYTES, queue_name

# SNS PublishBatch takes at most 10 entries.
PUBLISH_BATCH = 10


@dataclass
class PublishReport:
    sent: int = 0
    message_ids: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "<source-ref>: <code>: <message>"


def publish_lines(
    sns: Any,
    topic_arn: str,
    lines: Sequence[Mapping[str, Any]],
    progress: Callable[[int, int], None] | None = None,
) -> PublishReport:
    """Publish each line as one message (``PublishBatch``, 10 at a time); a message SNS refuses is
    reported by its source-ref, the others are still sent. A ClientError of the call itself (no
    rights, no such topic) is raised."""
    report = PublishReport()
    for first in range(0, len(lines), PUBLISH_BATCH):
        batch = lines[first : first + PUBLISH_BATCH]
        entries = []
        for i, line in enumerate(batch):
            body = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
            if len(body.encode("utf-8")) > MAX_SNS_MESSAGE_BYTES:
                report.failed.append(f"{line.get('source-ref')}: the message is over SNS's 256 KB limit")
                continue
            entries.append({"Id": str(i), "Message": body})
        if entries:
            response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
            for ok in response.get("Successful") or []:
                report.sent += 1
                report.message_ids.append(str(ok.get("MessageId")))
            for bad in response.get("Failed") or []:
                source = batch[int(bad.get("Id", 0))].get("source-ref")
                report.failed.append(
                    f"{source}: {bad.get('Code', '?')}: {bad.get('Message', '')}".rstrip(": ")
                )
        if progress is not None:
            progress(min(first + PUBLISH_BATCH, len(lines)), len(lines))
    return report


@dataclass(frozen=True)
class QueueCounts:
    name: str
    waiting: int | None = None  # ApproximateNumberOfMessages: not yet given to workers
    in_flight: int | None = None  # ApproximateNumberOfMessagesNotVisible
    problem: str | None = None  # why the counts could not be read (no queue yet, no rights)


def queue_counts(sqs: Any, job_name: str) -> QueueCounts:
    """How many of the job's objects wait in Ground Truth's queue ``GroundTruth-<job>``."""
    name = queue_name(job_name)
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        missing = code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
        return QueueCounts(name, problem="no such queue (yet)" if missing else f"cannot be read ({code})")
    except BotoCoreError as exc:
        return QueueCounts(name, problem=f"cannot be read ({exc.__class__.__name__})")
    return QueueCounts(
        name,
        waiting=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )
