"""The messages of streaming jobs (gtseg.core.streaming), by the developer guide's rules: input
lines and their de-duplication key and ID, S3 event notifications and S3's test event, the output
topic's line, and the streaming dataset's file names."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gtseg.core.streaming import (
    DEDUPE_KEY,
    dataset_stem,
    dedupe_problem,
    input_line,
    output_line,
    parse_input_message,
    queue_name,
    with_dedupe_key,
)

LAN = "cams-ref"


def test_gtseg_sends_the_image_as_its_own_dedupe_id():
    line = input_line("s3://b/cams/a.jpg")
    assert line == {"source-ref": "s3://b/cams/a.jpg", DEDUPE_KEY: "source-ref"}
    (obj,) = parse_input_message(json.dumps(line), "m-1", LAN).objects
    assert obj.dedupe_id == "s3://b/cams/a.jpg" and obj.line == line and obj.origin == "sns"


def test_a_line_without_a_key_is_deduplicated_by_the_sns_message_id():
    (obj,) = parse_input_message('{"source-ref": "s3://b/a.jpg"}', "m-7", LAN).objects
    assert obj.dedupe_id == "m-7"
    assert obj.line[DEDUPE_KEY] == f"${LAN}-object-id" and obj.line[f"${LAN}-object-id"] == "m-7"


def test_an_s3_upload_is_one_object_per_created_key_with_uri_and_sequencer():
    event = {
        "Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "data"}, "object": {"key": "incoming/frame+0001%281%29.jpg", "sequencer": "0A1B"}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "data"}, "object": {"key": "incoming/old.jpg"}}},
        ]
    }  # fmt: skip
    parsed = parse_input_message(json.dumps(event), "m-2", LAN)
    (obj,) = parsed.objects
    assert obj.line["source-ref"] == "s3://data/incoming/frame 0001(1).jpg"  # keys arrive URL-encoded
    assert obj.dedupe_id == "s3://data/incoming/frame 0001(1).jpg0A1B" and obj.origin == "s3"
    assert obj.line["$sequencer"] == "0A1B"
    assert parsed.skipped and "ObjectRemoved" in parsed.skipped[0]


def test_s3s_test_event_is_not_a_data_object():
    message = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "data"})
    parsed = parse_input_message(message, "m-3", LAN)
    assert parsed.test_event and parsed.objects == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"source-ref": "s3://b/a.jpg", DEDUPE_KEY: "frame"}), "does not carry as a string"),
        (json.dumps({"source-ref": "s3://b/a.jpg", DEDUPE_KEY: "frame", "frame": "42"}), "s3:// or https://"),
        (json.dumps({"source-ref": "s3://b/a.jpg", DEDUPE_KEY: "k" * 141}), "at most 140"),
        (json.dumps({"source-ref": "s3://b/a.jpg", DEDUPE_KEY: "bad key"}), "at most 140"),
    ],
)
def test_messages_that_hold_no_usable_object_say_why(text, problem):
    parsed = parse_input_message(text, "m-4", LAN)
    assert parsed.objects == () and problem in (parsed.problem or "")


def test_dedupe_rules_and_their_defaults():
    assert dedupe_problem({"source-ref": "s3://b/a.jpg"}) is None  # no key: Ground Truth's own
    assert dedupe_problem(input_line("s3://b/" + "x" * 1100)) is not None  # an ID over 1,024 characters
    own = {"source-ref": "s3://b/a.jpg", DEDUPE_KEY: "frame", "frame": "s3://cams/1/42"}
    assert with_dedupe_key(own) == own and dedupe_problem(own) is None
    assert with_dedupe_key({"source-ref": "s3://b/a.jpg"})[DEDUPE_KEY] == "source-ref"


def test_the_output_line_is_read_raw_or_from_snss_envelope():
    line = {"source-ref": "s3://b/a.jpg", LAN: "s3://o/jobs/j/annotations/x.png"}
    assert output_line(json.dumps(line)) == line
    envelope = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(line)}
    assert output_line(json.dumps(envelope)) == line
    with pytest.raises(ValueError):
        output_line("[]")


def test_queue_name_is_ground_truths():
    assert queue_name("Live-Cams") == "GroundTruth-live-cams"


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_stems_are_stable_safe_and_tell_uris_apart(folder, name):
    a, b = f"s3://bucket/{folder}/{name}.jpg", f"s3://bucket/{folder}x/{name}.jpg"
    assert dataset_stem(a) == dataset_stem(a)
    assert dataset_stem(a) != dataset_stem(b)
    assert not set('<>:"/\\|?*') & set(dataset_stem(a))
