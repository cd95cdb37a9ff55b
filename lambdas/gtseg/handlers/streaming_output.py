"""Streaming-output Lambda: subscribed to the stack's output topic, it finalizes each labeled object
of a streaming job into that job's streaming dataset (``gtseg.streaming.output``, docs/streaming.md).

Thin: each SNS record's message is one output line (``core.streaming.output_line``); a line that
cannot be finalized is logged and counted, never retried; an S3 failure raises, so Lambda retries
the event (every write is idempotent: the same keys, the same bytes).

Environment (optional): OUTPUT_KMS_KEY_ID (``StreamingOutputSettings``).
"""

from __future__ import annotations

from typing import Any

from gtseg.aws.clients import AwsClients
from gtseg.aws.observability import MetricUnit, entry_point, logger, metrics
from gtseg.aws.s3 import S3Store
from gtseg.core.streaming import output_line
from gtseg.streaming.output import AnnouncementError, finalize_announced_object
from gtseg.streaming.settings import StreamingOutputSettings

CLIENTS = AwsClients()


@entry_point()
def handler(event: Any, context: Any) -> dict[str, int]:
    settings = StreamingOutputSettings.from_env()
    store = S3Store(client=CLIENTS.get_store().client, kms_key_id=settings.output_kms_key_id)
    records = event.get("Records") if isinstance(event, dict) else None
    finalized = rejected = 0
    for record in records or []:
        message = (record.get("Sns") or {}).get("Message") if isinstance(record, dict) else None
        try:
            if not isinstance(message, str):
                raise AnnouncementError("the record has no SNS message")
            done = finalize_announced_object(store, output_line(message))
        except (AnnouncementError, ValueError) as exc:  # not JSON, no mask, no colour map
            rejected += 1
            logger.warning(
                "announced object not finalized",
                extra={"reason": str(exc), "announced": (message or "")[:500]},
            )
            continue
        finalized += 1
        logger.info(
            "object finalized",
            extra={"source_ref": done.source_ref, "line": done.line_uri, "mask": done.mask_uri},
        )
    metrics.add_metric(name="StreamingObjectsFinalized", unit=MetricUnit.Count, value=finalized)
    metrics.add_metric(name="StreamingAnnouncementsRejected", unit=MetricUnit.Count, value=rejected)
    return {"finalized": finalized, "rejected": rejected}
