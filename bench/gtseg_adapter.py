"""Everything the benchmark asks of gtseg, in one thin file, so the consolidation internals can change
freely: only these functions have to keep working.

* ``consolidate``: one object's masks -> labels + image confidence
  (``gtseg.core.consolidation.consolidate_masks``);
* ``run_batch``: a batch of objects through ``gtseg.consolidation.batch.BatchConsolidator``'s public
  API (payload in a dict-backed store, masks read back from the PNGs it writes);
* ``worker_answer_content``: a mask as the worker UI's answer (``gtseg.local.simulation``);
* ``handler_runner``: the consolidation Lambda handler end to end, in-process, S3 via moto;
* ``MEMORY_CHILD``: the script a fresh subprocess runs to measure peak memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GTSEG_METHOD = "gtseg"


@dataclass(frozen=True)
class Consolidated:
    labels: np.ndarray
    image_confidence: float


def consolidate(
    masks: Sequence[np.ndarray],
    num_classes: int,
    worker_ids: Sequence[str] | None = None,
    *,
    method: str = GTSEG_METHOD,
    options: Mapping[str, Any] | None = None,
) -> Consolidated:
    from gtseg.core.consolidation import consolidate_masks

    result = consolidate_masks(
        list(masks), num_classes, method=method, worker_ids=worker_ids, **dict(options or {})
    )
    return Consolidated(result.labels, float(result.image_confidence))


def worker_answer_content(mask: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The decoded ``annotationData.content`` a worker UI would send for ``mask`` (RGBA PNG)."""
    from gtseg.core.labels import ClassMap
    from gtseg.local.simulation import worker_answer

    return worker_answer(mask, ClassMap.from_labels(labels))


def png_of(content: Mapping[str, Any]) -> bytes:
    import base64

    (element,) = content.values()
    return base64.b64decode(element["labeledImage"]["pngImageData"])


class _MemoryStore:
    """The batch's storage interface over a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_object(self, uri: str) -> tuple[bytes, dict[str, Any]]:
        return self.objects[uri], {}

    def get_bytes(self, uri: str) -> bytes:
        return self.objects[uri]

    def get_range(self, uri: str, first: int, last: int) -> tuple[bytes, int | None]:
        data = self.objects[uri]
        return data[first : last + 1], len(data)

    def put_bytes(self, uri: str, data: bytes, content_type: str = "") -> None:
        self.objects[uri] = data


@dataclass(frozen=True)
class BatchOutcome:
    labels: list[np.ndarray | None]  # per object, None when it failed
    prior_used: int  # objects whose result says the batch's evidence about its workers was used
    failures: list[str]  # failure reasons of the objects that got none


def image_bytes(width: int, height: int) -> bytes:
    """A JPEG of the object's size: the data object the workers labelled (consolidation may read
    its header to check the masks' size)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 120, 120)).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def run_batch(
    labels: Sequence[str], objects: Sequence[tuple[Sequence[str], Sequence[np.ndarray]]]
) -> BatchOutcome:
    """``objects`` = (worker ids, masks) per data object; one consolidation request for all."""
    from gtseg.consolidation.batch import BatchConsolidator, BatchSettings
    from gtseg.core.labels import ClassMap
    from gtseg.core.masks import read_class_mask
    from gtseg.protocol import ConsolidationRequest

    class_map = ClassMap.from_labels(labels)
    store = _MemoryStore()
    items = []
    for i, (worker_ids, masks) in enumerate(objects):
        height, width = masks[0].shape
        store.objects[f"s3://bench/in/{i}.jpg"] = image_bytes(int(width), int(height))
        items.append(
            {
                "datasetObjectId": str(i),
                "dataObject": {"s3Uri": f"s3://bench/in/{i}.jpg"},
                "annotations": [
                    {
                        "workerId": w,
                        "annotationData": {"content": json.dumps(worker_answer_content(m, labels))},
                    }
                    for w, m in zip(worker_ids, masks, strict=True)
                ],
            }
        )
    payload = "s3://bench/job/annotations/consolidated-annotation/consolidation-request/iteration-1/p.json"
    store.objects[payload] = json.dumps(items).encode()
    request = ConsolidationRequest.model_validate(
        {
            "labelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/bench",
            "labelCategories": list(labels),
            "labelAttributeName": "bench-ref",
            "payload": {"s3Uri": payload},
        }
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _, outcomes = BatchConsolidator(request, store, settings=BatchSettings(threads=1)).run()
    out: list[np.ndarray | None] = []
    failures: list[str] = []
    prior_used = 0
    for outcome in outcomes:
        out.append(read_class_mask(store.objects[outcome.mask_uri], class_map) if outcome.mask_uri else None)
        if not outcome.mask_uri:
            failures.append(str(outcome.failure_reason))
        result = outcome.consolidation.result if outcome.consolidation else None
        method = getattr(result, "method", None)
        if bool(getattr(method, "batch_prior", False)):
            prior_used += 1
    return BatchOutcome(out, prior_used, failures)


def handler_runner(
    labels: Sequence[str], contents: Sequence[Mapping[str, Any]]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(run once, close): the consolidation handler on one object with these worker answers, S3 via
    moto, in this process. Metrics output (EMF on stdout) is swallowed."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["DESCRIBE_LABELING_JOB"] = "false"
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "gtseg-bench"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    import boto3
    from moto import mock_aws

    from gtseg.handlers.consolidation import handler

    payload_uri = (
        "s3://bench-out/job/annotations/consolidated-annotation/consolidation-request/iteration-1/t.json"
    )
    event = {
        "version": "2018-10-16",
        "labelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/bench",
        "labelCategories": list(labels),
        "labelAttributeName": "bench-ref",
        "roleArn": "arn:aws:iam::111122223333:role/gt",
        "payload": {"s3Uri": payload_uri},
    }
    item = {
        "datasetObjectId": "0",
        "dataObject": {"s3Uri": "s3://bench-in/0.jpg"},
        "annotations": [
            {"workerId": f"w{i}", "annotationData": {"content": json.dumps(c)}}
            for i, c in enumerate(contents)
        ],
    }
    mock = mock_aws()
    mock.start()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench-out")
    s3.create_bucket(Bucket="bench-in")
    (element,) = contents[0].values()
    size = element["inputImageProperties"]
    s3.put_object(Bucket="bench-in", Key="0.jpg", Body=image_bytes(int(size["width"]), int(size["height"])))
    s3.put_object(Bucket="bench-out", Key=payload_uri.split("/", 3)[3], Body=json.dumps([item]).encode())

    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            response = handler(event, None)
        content = response[0]["consolidatedAnnotation"]["content"] if response else {}
        if "bench-ref" not in content:  # a failure answer carries only bench-ref-metadata
            meta = content.get("bench-ref-metadata", {})
            raise RuntimeError(
                f"the handler did not consolidate the object: {meta.get('failure-reason', response)}"[:400]
            )

    return run, mock.stop


def gtseg_path() -> str:
    """The directory holding the gtseg package this process imports (for the memory subprocess)."""
    import gtseg

    return os.path.dirname(os.path.dirname(os.path.abspath(gtseg.__file__)))


# Run as `python -c MEMORY_CHILD <dir holding gtseg> <spec.json>`: load everything, reset the kernel's
# peak-RSS mark (Linux /proc/self/clear_refs), then decode the K worker PNGs, consolidate and encode
# the result, and report resident memory before and the peak during that. Without clear_refs the
# peak since process start (ru_maxrss) is the fallback, flagged as such.
MEMORY_CHILD = r"""
import gc, json, resource, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from gtseg.core.consolidation import WorkerAnswer, consolidate_worker_answers
from gtseg.core.labels import ClassMap
from gtseg.core.masks import encode_index_png
spec = json.load(open(sys.argv[2]))
cmap = ClassMap.from_labels(spec["labels"])
answers = [WorkerAnswer(f"w{i}", a["png"], a["mappings"], tuple(spec["size"])) for i, a in enumerate(spec["answers"])]
del spec
gc.collect()
try:  # hand freed heap back to the OS, so the baseline holds no reusable slack
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except Exception:
    pass
def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
before = status("VmRSS")
outcome = consolidate_worker_answers(answers, cmap)
if outcome.result is None:
    raise SystemExit(f"consolidation failed: {outcome.failure_reason}")
encode_index_png(outcome.result.labels, cmap)
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"baseline": before, "peak": peak, "peak_reset": reset}))
"""
