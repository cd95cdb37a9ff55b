"""Model pre-labels: a class-index mask from a SageMaker endpoint, offered as the task's starting
mask (``initialValue``) when the manifest line has no earlier human work.

Optional by design: any failure (timeout, endpoint error, unusable mask, write failure) means the
task starts from an empty canvas, never a skipped object or a failed Lambda.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.config import Config

from gtseg.aws.clients import AwsClients
from gtseg.aws.observability import logger
from gtseg.core.images import PNG_SIGNATURE, ImageInfo
from gtseg.core.labels import ClassMap
from gtseg.core.layout import prelabel_key
from gtseg.core.manifest import job_name_from_arn
from gtseg.core.masks import MaskError, b64decode_png, encode_index_png, open_png
from gtseg.pre_annotation.task import (
    MAX_IMAGE_PIXELS,
    InitialValue,
    InitialValueOutcome,
    prelabel_initial_value,
)

# The endpoint must answer well inside the Lambda's own timeout; a slow model is skipped, not
# waited for (no retries: a retry doubles the wait for the same likely failure).
PRELABEL_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 1})
PRELABEL_ACCEPT = "image/png, application/json"
# The pre-label needs the whole image, the endpoint (up to 2 s + 10 s) and a write. With less of the
# Lambda's timeout left than this (slow S3 reads or a retried DescribeLabelingJob ate it), the model
# is not asked: a Lambda that times out is an unhandled error, which fails the whole labeling job.
PRELABEL_MIN_REMAINING_MS = 25_000


@dataclass(frozen=True)
class PrelabelAttempt:
    """What asking for a pre-label came to: the metric to count and, when used, the mask."""

    outcome: InitialValueOutcome
    initial_value: InitialValue | None = None


class ModelPrelabels:
    """Asks the endpoint for an image's mask and writes it where the worker's browser reads it."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients

    def attempt(
        self,
        source_ref: str,
        info: ImageInfo,
        labels: tuple[str, ...],
        *,
        job_arn: str | None,
        endpoint_name: str,
        output_bucket: str | None,
        remaining_ms: int | None = None,
    ) -> PrelabelAttempt:
        blocker = prelabel_blocker(info, remaining_ms)
        if blocker:
            logger.info("no model pre-label for this image", extra={"reason": blocker})
            return PrelabelAttempt(InitialValueOutcome.PRELABEL_SKIPPED)
        if not output_bucket:
            logger.warning("PRELABEL_ENDPOINT_NAME is set but OUTPUT_BUCKET is not; no pre-label")
            return PrelabelAttempt(InitialValueOutcome.PRELABEL_FAILED)
        try:
            store = self._clients.get_store()
            image = store.get_bytes(source_ref)
            answer = self._clients.get_sagemaker_runtime().invoke_endpoint(
                EndpointName=endpoint_name,
                ContentType=f"image/{info.format.value}",
                Accept=PRELABEL_ACCEPT,
                Body=image,
            )
            body = answer["Body"].read()
            indices = decode_prelabel(
                body, answer.get("ContentType"), len(labels) + 1, (info.width, info.height)
            )
            uri = f"s3://{output_bucket}/{prelabel_key(job_name_from_arn(job_arn), source_ref)}"
            store.put_bytes(uri, encode_prelabel_png(indices, labels), "image/png")
        except Exception as exc:  # timeout, endpoint error, bad mask, write failure: all mean "no pre-label"
            logger.warning(
                "model pre-label failed; the task starts empty",
                extra={"endpoint": endpoint_name, "reason": f"{type(exc).__name__}: {exc}"},
            )
            return PrelabelAttempt(InitialValueOutcome.PRELABEL_FAILED)
        return PrelabelAttempt(InitialValueOutcome.PRELABEL_USED, prelabel_initial_value(uri, labels))


def prelabel_blocker(info: ImageInfo, remaining_ms: int | None = None) -> str | None:
    """Why no model pre-label should be asked for on this image, or ``None``.

    Browsers show a JPEG with its EXIF orientation applied, and Ground Truth's UI appears to do
    the same (its CORS requirement came with that browser change); the endpoint sees the stored
    pixels. Whether the worker's canvas is rotated is unconfirmed, so a mask that might be
    misaligned is not offered at all. ``remaining_ms`` is what is left of the Lambda's timeout
    (None when unknown).
    """
    if info.orientation != 1:
        return (
            f"EXIF orientation {info.orientation}: the worker may see the image rotated from the "
            "stored pixels the endpoint sees, so a pre-label could be misaligned"
        )
    if remaining_ms is not None and remaining_ms < PRELABEL_MIN_REMAINING_MS:
        return f"only {remaining_ms / 1000:.1f} s of the Lambda's timeout left; the endpoint is not asked"
    return None


class PrelabelError(ValueError):
    """An endpoint response that is not a usable class-index mask."""


def decode_prelabel(
    body: bytes, content_type: str | None, num_classes: int, expected_size: tuple[int, int] | None
) -> np.ndarray:
    """The endpoint's answer -> (H, W) uint8 class indices.

    Accepted: a single-channel PNG whose pixel values are class indices (8- or 16-bit greyscale or
    palette), or JSON ``{"mask": [[...], ...]}`` / ``{"png": "<base64 PNG>"}``. ``expected_size``
    is the image's (width, height); the mask must match it and every index must be < num_classes.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    if body.startswith(PNG_SIGNATURE) or kind == "image/png":
        indices = _png_indices(body)
    else:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PrelabelError(
                f"response is neither a PNG nor JSON ({content_type or 'no content type'})"
            ) from exc
        if not isinstance(document, Mapping):
            raise PrelabelError("JSON response must be an object with 'mask' or 'png'")
        if "png" in document:
            if not isinstance(document["png"], str):
                raise PrelabelError("'png' must be a base64 string")
            try:
                indices = _png_indices(b64decode_png(document["png"]))
            except MaskError as exc:
                raise PrelabelError(f"'png': {exc}") from None
        elif "mask" in document:
            indices = _nested_list_indices(document["mask"])
        else:
            raise PrelabelError("JSON response has neither 'mask' nor 'png'")
    height, width = indices.shape
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise PrelabelError(
            f"mask is {width}x{height} but the image is {expected_size[0]}x{expected_size[1]}"
        )
    if indices.size == 0:
        raise PrelabelError("mask is empty")
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= num_classes:
        raise PrelabelError(
            f"class index {high if high >= num_classes else low} outside 0..{num_classes - 1}"
        )
    return indices.astype(np.uint8)


def _png_indices(png: bytes) -> np.ndarray:
    try:
        image = open_png(png)
    except MaskError as exc:
        raise PrelabelError(str(exc)) from None
    if image.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
        raise PrelabelError(f"PNG is {image.mode}; expected one channel of class indices (L, P or 16-bit)")
    return np.asarray(image).astype(np.int64)


def _nested_list_indices(mask: Any) -> np.ndarray:
    if not isinstance(mask, list) or not mask or not all(isinstance(row, list) for row in mask):
        raise PrelabelError("'mask' must be a non-empty list of rows")
    width = len(mask[0])
    if width == 0 or any(len(row) != width for row in mask):
        raise PrelabelError("'mask' rows must all have the same, non-zero length")
    if len(mask) * width > MAX_IMAGE_PIXELS:
        raise PrelabelError("'mask' is larger than 100 MP")
    for row in mask:
        for value in row:
            # bool is an int subclass; True as a class index is a bug in the model wrapper
            if not isinstance(value, int) or isinstance(value, bool):
                raise PrelabelError(f"'mask' values must be integers, found {value!r}")
    return np.array(mask, dtype=np.int64)


def encode_prelabel_png(indices: np.ndarray, labels: Sequence[str]) -> bytes:
    """Indices -> the palette PNG offered as initial value (colours = the job's class map)."""
    return encode_index_png(indices, ClassMap.from_labels(labels))
