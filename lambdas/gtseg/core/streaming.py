"""Streaming labeling jobs: the messages on the input and output topics, as data (pure: no I/O).

Ground Truth's streaming jobs (developer guide, "Ground Truth streaming labeling jobs") take data
objects from an SNS *input topic* and announce each labeled object on an optional *output topic*:

* an input message is one manifest line as JSON (``{"source-ref": "s3://..."}``), or an S3 event
  notification when the topic is wired to a bucket's uploads (``Records[].s3``), or S3's
  ``s3:TestEvent``, which S3 publishes when a notification configuration is set up;
* **de-duplication**: each data object gets a de-duplication ID, named by the key under
  ``dataset-objectid-attribute-name``. gtseg sends ``"dataset-objectid-attribute-name":
  "source-ref"``, so the ID is the image's URI and a resend of the same image is not labeled twice.
  Without a key Ground Truth uses the SNS message ID; for an S3 event, the object's URI plus the
  event's sequencer. The key may be up to 140 characters, the ID up to 1,024 (both documented);
* an output message is the labeled object's output line: the input line plus ``<lan>`` and
  ``<lan>-metadata`` (the documented use is chaining to another streaming job, whose input is a
  manifest line). The exact body is UNCONFIRMED; ``output_line`` accepts the line itself or SNS's
  JSON envelope around it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from gtseg.core.layout import FINALIZED_DIR, ref_basename
from gtseg.core.manifest import safe_filename

DEDUPE_KEY = "dataset-objectid-attribute-name"
# gtseg's choice of de-duplication key: the image itself (documented: "Use an Existing Key").
SOURCE_REF = "source-ref"
MAX_DEDUPE_KEY_CHARS = 140
MAX_DEDUPE_ID_CHARS = 1024
# The documented patterns of a de-duplication key and ID.
DEDUPE_KEY_PATTERN = re.compile(r"[$a-zA-Z0-9](-*[a-zA-Z0-9])*")
DEDUPE_ID_PATTERN = re.compile(r"(https|s3)://([^/]+)/?(.*)", re.DOTALL)
# SNS's limit for one message (256 KB); Ground Truth's own limit for a manifest line is 100 KB.
MAX_SNS_MESSAGE_BYTES = 256 * 1024
S3_TEST_EVENT = "s3:TestEvent"
# Ground Truth's queue of a streaming job: GroundTruth-<job name in lower case> (developer guide).
QUEUE_PREFIX = "GroundTruth-"
# Where the streaming output finalizer keeps each announced object (under the job's output folder).
STREAMING_DATASET_DIR = f"{FINALIZED_DIR}/streaming"


def input_topic_of(job: Mapping[str, Any]) -> str | None:
    """The input topic of a CreateLabelingJob request or DescribeLabelingJob answer (None: one-time job)."""
    source = (job.get("InputConfig") or {}).get("DataSource") or {}
    topic = (source.get("SnsDataSource") or {}).get("SnsTopicArn")
    return topic if isinstance(topic, str) else None


def output_topic_of(job: Mapping[str, Any]) -> str | None:
    topic = (job.get("OutputConfig") or {}).get("SnsTopicArn")
    return topic if isinstance(topic, str) else None


def queue_name(job_name: str) -> str:
    """The SQS queue Ground Truth creates for a streaming job (it is left behind when the job stops)."""
    return f"{QUEUE_PREFIX}{job_name.lower()}"


def input_line(source_ref: str) -> dict[str, Any]:
    """The input message for one image, de-duplicated by its URI (a resend is harmless)."""
    return {SOURCE_REF: source_ref, DEDUPE_KEY: SOURCE_REF}


def with_dedupe_key(line: Mapping[str, Any]) -> dict[str, Any]:
    """``line`` with gtseg's de-duplication key unless it already names one of its own."""
    out = dict(line)
    if DEDUPE_KEY not in out and isinstance(out.get(SOURCE_REF), str):
        out[DEDUPE_KEY] = SOURCE_REF
    return out


def dedupe_problem(line: Mapping[str, Any]) -> str | None:
    """Why ``line``'s de-duplication key or ID breaks the documented rules (None when fine)."""
    key = line.get(DEDUPE_KEY)
    if key is None:
        return None
    if not isinstance(key, str) or len(key) > MAX_DEDUPE_KEY_CHARS or not DEDUPE_KEY_PATTERN.fullmatch(key):
        return f"{DEDUPE_KEY} must name a key of at most {MAX_DEDUPE_KEY_CHARS} characters (got {key!r})"
    value = line.get(key)
    if not isinstance(value, str):
        return f"{DEDUPE_KEY} names {key!r}, which the line does not carry as a string"
    if len(value) > MAX_DEDUPE_ID_CHARS:
        return f"the de-duplication ID ({key}) is over {MAX_DEDUPE_ID_CHARS} characters"
    if not DEDUPE_ID_PATTERN.fullmatch(value):
        return f"the de-duplication ID ({key}) must look like an s3:// or https:// URI (got {value[:60]!r})"
    return None


@dataclass(frozen=True)
class InputObject:
    """One data object taken from an input message: its manifest line and de-duplication ID."""

    line: dict[str, Any]
    dedupe_id: str
    origin: str  # "sns" (a manifest line) | "s3" (an upload's event notification)


@dataclass(frozen=True)
class InputMessage:
    """What one input-topic message holds: objects, S3's test event, or a reason it holds nothing."""

    objects: tuple[InputObject, ...] = ()
    test_event: bool = False
    problem: str | None = None
    skipped: tuple[str, ...] = field(default_factory=tuple)  # S3 records that are not object creations


def service_key(label_attribute_name: str) -> str:
    """The key Ground Truth writes the de-duplication ID under when the message names none."""
    return f"${label_attribute_name}-object-id"


def parse_input_message(text: str, message_id: str, label_attribute_name: str) -> InputMessage:
    """One input-topic message as Ground Truth reads it (developer guide, "Duplicate Message
    Handling"). ``message_id`` is SNS's, the fallback de-duplication ID."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        return InputMessage(problem=f"the message is not JSON ({exc})")
    if not isinstance(body, dict):
        return InputMessage(problem=f"the message must be a JSON object, got {type(body).__name__}")
    if body.get("Event") == S3_TEST_EVENT:
        return InputMessage(test_event=True)
    records = body.get("Records")
    if isinstance(records, list) and records and all(_is_s3_record(r) for r in records):
        return _s3_objects(records, label_attribute_name)
    key = body.get(DEDUPE_KEY)
    if key is not None:
        problem = dedupe_problem(body)
        if problem:
            return InputMessage(problem=problem)
        return InputMessage(objects=(InputObject(dict(body), str(body[str(key)]), "sns"),))
    generated = service_key(label_attribute_name)
    line = {**body, DEDUPE_KEY: generated, generated: message_id}
    return InputMessage(objects=(InputObject(line, message_id, "sns"),))


def _is_s3_record(record: Any) -> bool:
    return isinstance(record, Mapping) and record.get("eventSource") == "aws:s3" and "s3" in record


def _s3_objects(records: list[Any], label_attribute_name: str) -> InputMessage:
    objects: list[InputObject] = []
    skipped: list[str] = []
    generated = service_key(label_attribute_name)
    for record in records:
        name = str(record.get("eventName", ""))
        s3 = record["s3"]
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        key = obj.get("key")
        if not isinstance(bucket, str) or not isinstance(key, str):
            skipped.append("an S3 record without bucket and key")
            continue
        uri = f"s3://{bucket}/{unquote_plus(key)}"  # S3 event keys are URL-encoded
        if not name.startswith("ObjectCreated"):
            skipped.append(f"{name or 'an event'} for {uri} (only object creations are data objects)")
            continue
        sequencer = str(obj.get("sequencer") or record.get("eventTime") or "")
        dedupe_id = f"{uri}{sequencer}"
        line = {SOURCE_REF: uri, DEDUPE_KEY: generated, generated: dedupe_id, "$sequencer": sequencer}
        objects.append(InputObject(line, dedupe_id, "s3"))
    return InputMessage(objects=tuple(objects), skipped=tuple(skipped))


def output_line(text: str) -> dict[str, Any]:
    """The labeled object's line from an output-topic message body (raw, or SNS's JSON envelope
    around it). Raises ValueError when it holds no JSON object."""
    body = json.loads(text)
    if isinstance(body, dict) and body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        body = json.loads(body["Message"])
    if not isinstance(body, dict):
        raise ValueError(f"an output message must hold one JSON object, got {type(body).__name__}")
    return body


def dataset_stem(source_ref: str) -> str:
    """A file stem for an object of a streaming job's dataset: the image's name plus a short hash of
    its whole URI, so that every invocation names the same object alike without knowing the others
    (a resend overwrites the same files; two images called ``a.jpg`` in different folders differ)."""
    name = ref_basename(source_ref)
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    digest = hashlib.sha256(source_ref.encode("utf-8")).hexdigest()[:10]
    return f"{safe_filename(stem)[:80] or 'object'}-{digest}"
