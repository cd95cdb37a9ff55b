"""The consolidation Lambda loses nothing: sizes decided by the image, decompression bombs refused
undecoded, malformed annotations rejected, collision-free keys, duplicate ids, and S3 faults.

Faults are injected at the HTTP layer: a botocore ``before-send`` hook on the S3 client answers
chosen requests itself (503 SlowDown, 403, a dropped connection) before they reach moto.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from PIL import Image

from gtseg.core.labels import ClassMap
from gtseg.core.masks import read_class_mask
from gtseg.handlers import consolidation as handler_module
from gtseg.local.simulation import SimulatedCrowd, make_scene, worker_answer

BUCKET = "gt-output"
DATA = "gt-data"
JOB = "seg-job-002"
JOB_ROOT = f"s3://{BUCKET}/jobs/{JOB}"
PAYLOAD_URI = f"{JOB_ROOT}/annotations/consolidated-annotation/consolidation-request/iteration-1/2024-05-01_12:00:00.json"
OUTPUT = f"{JOB_ROOT}/annotations/consolidated-annotation/output/iteration-1"
LAN = f"{JOB}-ref"
LABELS = ("road", "sidewalk", "building", "vegetation", "car", "person", "pole")


@dataclass
class Fault:
    matches: Callable[[Any], bool]
    times: int
    make: Callable[[Any], AWSResponse]  # or raise
    seen: int = 0


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any):
        yield self._body


def s3_error(status: int, code: str) -> Callable[[Any], AWSResponse]:
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()

    def make(request: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))

    return make


def dropped_connection(request: Any) -> AWSResponse:
    raise EndpointConnectionError(endpoint_url=request.url)


@dataclass
class FaultyS3:
    """An S3 client whose chosen requests fail before they are sent (moto answers the rest)."""

    client: Any
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client.meta.events.register("before-send.s3.*", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        for fault in self.faults:
            if fault.seen < fault.times and fault.matches(request):
                fault.seen += 1
                return fault.make(request)
        return None

    def fail(self, method: str, key_part: str, times: int, make: Callable[[Any], AWSResponse]) -> Fault:
        fault = Fault(lambda r: r.method == method and key_part in r.url, times, make)
        self.faults.append(fault)
        return fault


class LambdaContext:
    """What Lambda passes: the four attributes Powertools reads, and the time left."""

    function_name = "gtseg-consolidation"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:gtseg-consolidation"
    aws_request_id = "test-request"

    def __init__(self, remaining_ms: int = 600_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("DESCRIBE_LABELING_JOB", "false")
    monkeypatch.delenv("CONSOLIDATION_METHOD", raising=False)
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        # botocore's own retries off, so the faults reach gtseg's retry layer after one try each
        client = session.client("s3", config=Config(retries={"total_max_attempts": 1}))
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=DATA)
        faulty = FaultyS3(client)
        monkeypatch.setattr(handler_module, "_CLIENTS", {None: (float("inf"), session, client)})
        yield faulty


def put(s3: FaultyS3, uri: str, body: bytes) -> None:
    bucket, key = uri[5:].split("/", 1)
    s3.client.put_object(Bucket=bucket, Key=key, Body=body)


def get(s3: FaultyS3, uri: str) -> bytes:
    bucket, key = uri[5:].split("/", 1)
    return s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()


def keys(s3: FaultyS3, prefix: str) -> list[str]:
    listing = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def image_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 95)).save(buf, format="PNG")
    return buf.getvalue()


def event(**overrides: Any) -> dict[str, Any]:
    base = {
        "version": "2018-10-16",
        "labelingJobArn": f"arn:aws:sagemaker:us-east-1:111122223333:labeling-job/{JOB}",
        "labelCategories": list(LABELS),
        "labelAttributeName": LAN,
        "payload": {"s3Uri": PAYLOAD_URI},
        "outputConfig": f"{JOB_ROOT}/annotations",
    }
    base.update(overrides)
    return base


def answer_of(mask: np.ndarray, cmap: ClassMap, **props: Any) -> dict[str, Any]:
    answer = worker_answer(mask, cmap)
    if props:
        answer["crowd-semantic-segmentation"]["inputImageProperties"] = props
    return answer


def item(object_id: str, answers: list[dict[str, Any]], *, image: str | None = None) -> dict[str, Any]:
    return {
        "datasetObjectId": object_id,
        "dataObject": {"s3Uri": image or f"s3://{DATA}/images/{object_id}.png"},
        "annotations": [
            {"workerId": f"w{i}", "annotationData": {"content": json.dumps(a)}} for i, a in enumerate(answers)
        ],
    }


def crowd(seed: int, width: int = 64, height: int = 48, profiles=("careful", "average", "sloppy")):
    scene = make_scene(seed, width, height)
    return scene, SimulatedCrowd(list(profiles), seed=seed).paint(scene)


def run(s3: FaultyS3, items: list[dict[str, Any]], context: Any = None, **overrides: Any):
    put(s3, PAYLOAD_URI, json.dumps(items).encode())
    return handler_module.handler(event(**overrides), context or LambdaContext())


def sidecar_of(s3: FaultyS3, entry: dict[str, Any]) -> dict[str, Any]:
    content = entry["consolidatedAnnotation"]["content"]
    mask = content.get(LAN)
    object_key = mask[: -len(".png")] if mask else None
    if object_key is None:
        return {}
    return json.loads(get(s3, object_key + ".json"))


# --------------------------------------------------------------------------- the image decides the size


def test_the_image_decides_the_size_not_a_workers_claim(s3):
    scene, masks = crowd(1, profiles=("careful", "average"))
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    honest = answer_of(masks[0], scene.class_map, width=64, height=48)
    big = np.zeros((49, 65), dtype=np.uint8)  # empty, claiming its own (wrong) size
    liar = answer_of(big, scene.class_map, width=65, height=49)
    (entry,) = run(s3, [item("0", [honest, liar])])
    uri = entry["consolidatedAnnotation"]["content"][LAN]
    labels = read_class_mask(get(s3, uri), scene.class_map)
    assert labels.shape == (48, 64)
    np.testing.assert_array_equal(labels, masks[0])
    (rejection,) = sidecar_of(s3, entry)["rejected"]
    assert rejection["workerId"] == "w1" and "65x49" in rejection["reason"] and "64x48" in rejection["reason"]


def _bomb_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of ``width`` x ``height`` zeros: a few kilobytes claiming a huge image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_an_oversized_answer_is_refused_without_being_decoded(s3, monkeypatch):
    from gtseg.core.consolidation import answers as answers_module

    scene, masks = crowd(2, profiles=("careful", "average"))
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    bomb = _bomb_png(10_000, 10_000)
    assert len(bomb) < 20_000
    opened: list[tuple[int, int]] = []
    real_open_png = answers_module.open_png

    def recording_open_png(png: bytes):
        image = real_open_png(png)
        opened.append(image.size)
        return image

    monkeypatch.setattr(answers_module, "open_png", recording_open_png)
    bomb_answer = {
        "crowd-semantic-segmentation": {
            "labelMappings": {"road": {"color": scene.class_map.colors[1]}},
            "labeledImage": {"pngImageData": base64.b64encode(bomb).decode()},
            "inputImageProperties": {"width": 10_000, "height": 10_000},
        }
    }
    answers = [answer_of(masks[0], scene.class_map), answer_of(masks[1], scene.class_map), bomb_answer]
    (entry,) = run(s3, [item("0", answers)])
    assert opened == [(64, 48), (64, 48)]  # the bomb's pixels were never decoded
    (rejection,) = sidecar_of(s3, entry)["rejected"]
    assert rejection["workerId"] == "w2" and "10000x10000" in rejection["reason"]


def test_without_a_readable_image_the_workers_decide_and_a_tie_goes_to_the_smaller_size(s3):
    scene, masks = crowd(3, profiles=("careful",))
    big_scene, big_masks = crowd(3, width=66, height=50, profiles=("careful",))
    answers = [answer_of(masks[0], scene.class_map), answer_of(big_masks[0], big_scene.class_map)]
    (entry,) = run(s3, [item("0", answers, image=f"s3://{DATA}/images/missing.png")])
    labels = read_class_mask(get(s3, entry["consolidatedAnnotation"]["content"][LAN]), scene.class_map)
    assert labels.shape == (48, 64)


# --------------------------------------------------------------------------- malformed input


def test_a_malformed_annotation_uri_rejects_that_annotation_only(s3):
    scene, masks = crowd(4, profiles=("careful", "average"))
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    payload_item = item("0", [answer_of(m, scene.class_map) for m in masks])
    payload_item["annotations"].append(
        {"workerId": "w9", "annotationData": {"s3Uri": "https://example.com/a.json"}}
    )
    payload_item["annotations"].append({"workerId": "w8", "annotationData": {"s3Uri": 17}})
    payload_item["annotations"].append({"workerId": "w7", "annotationData": "not an object"})
    (entry,) = run(s3, [payload_item])
    sidecar = sidecar_of(s3, entry)
    assert sorted(r["workerId"] for r in sidecar["rejected"]) == ["w7", "w8", "w9"]
    assert {w["workerId"] for w in sidecar["workers"]} == {"w0", "w1"}


def test_different_ids_never_share_an_output(s3):
    scene, _ = crowd(5, profiles=("careful",))
    ids = ["a/b", "a_b", "a:b", "..", "x" * 300]
    others = [crowd(20 + i, profiles=("careful",))[1][0] for i in range(len(ids))]
    items = [
        item(object_id, [answer_of(mask, scene.class_map)])
        for object_id, mask in zip(ids, others, strict=True)
    ]
    response = run(s3, items)
    uris = [e["consolidatedAnnotation"]["content"][LAN] for e in response]
    assert len(set(uris)) == len(ids)
    assert uris[1] == f"{OUTPUT}/a_b.png"  # a plain id keeps its name
    for uri, mask in zip(uris, others, strict=True):
        np.testing.assert_array_equal(read_class_mask(get(s3, uri), scene.class_map), mask)
    assert all(re.fullmatch(r"[A-Za-z0-9._=~-]+\.png", u.rsplit("/", 1)[1]) for u in uris)


def test_a_duplicate_id_is_answered_once_from_its_first_occurrence(s3):
    scene, first = crowd(6, profiles=("careful",))
    _, second = crowd(7, profiles=("careful",))
    items = [item("7", [answer_of(first[0], scene.class_map)]), item("8", [answer_of(second[0], scene.class_map)]),
             item("7", [answer_of(second[0], scene.class_map)])]  # fmt: skip
    response = run(s3, items)
    assert [e["datasetObjectId"] for e in response] == ["7", "8"]
    uri = response[0]["consolidatedAnnotation"]["content"][LAN]
    np.testing.assert_array_equal(read_class_mask(get(s3, uri), scene.class_map), first[0])
    assert sidecar_of(s3, response[0])["duplicates"] == [2]
    before = get(s3, uri)
    again = handler_module.handler(event(), LambdaContext())  # Ground Truth retrying the same payload
    assert again == response and get(s3, uri) == before


# --------------------------------------------------------------------------- S3 faults


def _answers_in_s3(s3: FaultyS3, masks, cmap, object_id: str) -> dict[str, Any]:
    payload_item = item(object_id, [])
    for i, mask in enumerate(masks):
        uri = f"{JOB_ROOT}/annotations/worker-response/iteration-1/{object_id}/w{i}.json"
        put(s3, uri, json.dumps(answer_of(mask, cmap)).encode())
        payload_item["annotations"].append({"workerId": f"w{i}", "annotationData": {"s3Uri": uri}})
    return payload_item


def test_a_run_of_slowdowns_on_a_workers_answer_loses_nothing(s3):
    scene, masks = crowd(8)
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    fault = s3.fail("GET", "/0/w1.json", 6, s3_error(503, "SlowDown"))
    (entry,) = run(s3, [_answers_in_s3(s3, masks, scene.class_map, "0")])
    assert fault.seen == 6
    sidecar = sidecar_of(s3, entry)
    assert sidecar["rejected"] == [] and {w["workerId"] for w in sidecar["workers"]} == {"w0", "w1", "w2"}


def test_dropped_connections_are_retried_too(s3):
    scene, masks = crowd(9)
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    fault = s3.fail("GET", "/0/w2.json", 3, dropped_connection)
    (entry,) = run(s3, [_answers_in_s3(s3, masks, scene.class_map, "0")])
    assert fault.seen == 3 and len(sidecar_of(s3, entry)["workers"]) == 3


def test_a_throttled_mask_write_is_retried_and_the_answer_points_at_the_written_mask(s3):
    scene, masks = crowd(10)
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    fault = s3.fail("PUT", "/iteration-1/0.png", 4, s3_error(503, "SlowDown"))
    (entry,) = run(s3, [item("0", [answer_of(m, scene.class_map) for m in masks])])
    assert fault.seen == 4
    assert get(s3, entry["consolidatedAnnotation"]["content"][LAN])[:4] == b"\x89PNG"


def test_a_fault_that_outlasts_the_time_fails_that_object_as_transient_and_only_it(s3, capsys):
    scene, masks = crowd(11)
    _, other = crowd(12)
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    put(s3, f"s3://{DATA}/images/1.png", image_png(64, 48))
    s3.fail("GET", "/0/w0.json", 10_000, s3_error(503, "SlowDown"))
    items = [
        _answers_in_s3(s3, masks, scene.class_map, "0"),
        item("1", [answer_of(m, scene.class_map) for m in other]),
    ]
    # 3 s left: a fifth is kept to answer, so retrying stops after about 2.4 s
    response = run(s3, items, LambdaContext(remaining_ms=3000))
    failed, fine = (e["consolidatedAnnotation"]["content"] for e in response)
    assert LAN not in failed and failed[f"{LAN}-metadata"]["failure-reason"].startswith("transient:")
    assert LAN in fine
    assert not any(
        k.endswith("/0.png") for k in keys(s3, f"jobs/{JOB}/annotations/consolidated-annotation/output/")
    )
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics[-1]["TransientFailures"] == [1.0]


def test_a_permanent_error_on_an_answer_rejects_that_annotation(s3):
    scene, masks = crowd(13)
    put(s3, f"s3://{DATA}/images/0.png", image_png(64, 48))
    s3.fail("GET", "/0/w2.json", 10_000, s3_error(403, "AccessDenied"))
    (entry,) = run(s3, [_answers_in_s3(s3, masks, scene.class_map, "0")])
    (rejection,) = sidecar_of(s3, entry)["rejected"]
    assert rejection["workerId"] == "w2" and "AccessDenied" in rejection["reason"]


def test_a_payload_that_keeps_failing_raises_so_ground_truth_retries_the_batch(s3):
    put(s3, PAYLOAD_URI, b"[]")
    s3.fail("GET", "consolidation-request", 10_000, s3_error(503, "SlowDown"))
    with pytest.raises(RuntimeError, match="transient"):
        handler_module.handler(event(), LambdaContext(remaining_ms=2000))


# --------------------------------------------------------------------------- no payload makes it raise

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_annotation = st.one_of(
    _json_values,
    st.fixed_dictionaries(
        {
            "workerId": _json_values,
            "annotationData": st.one_of(
                _json_values,
                st.fixed_dictionaries({"content": _json_values}),
                st.fixed_dictionaries({"s3Uri": _json_values}),
            ),
        }
    ),
)
_item = st.one_of(
    _json_values,
    st.fixed_dictionaries(
        {
            "datasetObjectId": st.one_of(st.text(max_size=10), st.integers(), _json_values),
            "dataObject": _json_values,
            "annotations": st.lists(_annotation, max_size=3),
        }
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=st.lists(_item, max_size=4))
def test_no_payload_makes_the_handler_raise(s3, items):
    response = run(s3, items)
    ids = [
        str(i["datasetObjectId"])
        for i in items
        if isinstance(i, dict)
        and isinstance(i.get("datasetObjectId"), str | int)
        and not isinstance(i.get("datasetObjectId"), bool)
    ]
    assert [e["datasetObjectId"] for e in response] == list(dict.fromkeys(ids))
