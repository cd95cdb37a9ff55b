"""Pre-annotation Lambda: Ground Truth calls it once per data object, before the task is created.

Thin: parse the request, read what the logic needs (image header, label-category file, optional
model pre-label), let ``gtseg.pre_annotation`` decide, answer. It never raises: an exception here
fails the whole labeling job (protocol doc §1.4), so every problem becomes
``isHumanAnnotationRequired: false`` plus a logged reason and a metric.

Environment (all optional): LABEL_CATEGORY_CONFIG_URI, PRIOR_LABEL_ATTRIBUTE,
PRELABEL_ENDPOINT_NAME, OUTPUT_BUCKET.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import ValidationError

from gtseg.aws.clients import AwsClients
from gtseg.aws.observability import MetricUnit, logger, metrics
from gtseg.aws.s3 import StorageError
from gtseg.core.images import ImageHeaderError, ImageInfo, UnsupportedImageError, probe_image
from gtseg.core.labels import LabelCategoryConfig, LabelError
from gtseg.core.layout import prelabel_key
from gtseg.core.manifest import PRIOR_LABEL_ATTRIBUTE_KEY, job_name_from_arn
from gtseg.pre_annotation.task import (
    InitialValue,
    InitialValueOutcome,
    Outcome,
    SkipObject,
    build_task_input,
    check_image,
    decode_prelabel,
    encode_prelabel_png,
    find_prior_mask,
    image_source,
    prelabel_blocker,
    prelabel_initial_value,
    resolve_labels,
    skipped_task_input,
)
from gtseg.protocol import PreAnnotationRequest, PreAnnotationResponse

# The endpoint must answer well inside the Lambda's own timeout; a slow model is skipped, not
# waited for (no retries: a retry doubles the wait for the same likely failure).
PRELABEL_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 1})
PRELABEL_ACCEPT = "image/png, application/json"
# The pre-label needs the whole image, the endpoint (up to 2 s + 10 s) and a write. With less of the
# Lambda's timeout left than this (slow S3 reads or a retried DescribeLabelingJob ate it), the model
# is not asked: a Lambda that times out is an unhandled error, which fails the whole labeling job.
PRELABEL_MIN_REMAINING_MS = 25_000

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
# What botocore's standard retry mode retries (throttling and transient errors), seen here once its
# retries ran out; plus HTTP 429 and 5xx (see _is_transient).
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclass(frozen=True)
class Settings:
    label_category_config_uri: str | None
    prior_label_attribute: str | None
    prelabel_endpoint_name: str | None
    output_bucket: str | None

    @classmethod
    def from_env(cls) -> Settings:
        # Read per invocation (a handful of dict lookups), so tests and the local emulator can
        # change the environment between calls.
        def opt(name: str) -> str | None:
            value = os.environ.get(name, "").strip()
            return value or None

        return cls(
            label_category_config_uri=opt("LABEL_CATEGORY_CONFIG_URI"),
            prior_label_attribute=opt("PRIOR_LABEL_ATTRIBUTE"),
            prelabel_endpoint_name=opt("PRELABEL_ENDPOINT_NAME"),
            output_bucket=opt("OUTPUT_BUCKET"),
        )


# A stalled S3 read must not outlast the function: a timed-out pre-annotation Lambda fails the
# whole labeling job. Worst case 3 attempts x (2 s connect + 5 s read) stays well under 60 s.
PRE_ANNOTATION_S3_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 3, "mode": "standard"}
)
CLIENTS = AwsClients(s3_config=PRE_ANNOTATION_S3_CONFIG, sagemaker_runtime_config=PRELABEL_CLIENT_CONFIG)
# Label-category files for the life of the container: "job:<arn>" and "uri:<s3 uri>" keys.
# Ground Truth calls once per object, so without this every object would describe the job again.
LABEL_CACHE: dict[str, LabelCategoryConfig] = {}
# Jobs whose description has no label-category file: a job's configuration never changes.
JOBS_WITHOUT_LABEL_FILE: set[str] = set()


def reset_state() -> None:
    """Forget cached label files and clients (tests; a new container starts like this)."""
    LABEL_CACHE.clear()
    JOBS_WITHOUT_LABEL_FILE.clear()
    CLIENTS.reset()


def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        response = _answer(event, _remaining_ms(context))
    except Exception as exc:  # the last line of defence: never fail the labeling job
        reason = f"internal error: {type(exc).__name__}: {exc}"
        logger.exception(
            "pre-annotation failed unexpectedly; the object is skipped", extra={"reason": reason}
        )
        _count(Outcome.INTERNAL_ERROR)
        response = PreAnnotationResponse(
            taskInput=skipped_task_input(reason), isHumanAnnotationRequired=False
        )
    finally:
        _flush_metrics()
        logger.remove_keys(["labeling_job_arn", "source_ref"])
    return response.to_wire()


def _remaining_ms(context: Any) -> int | None:
    """Milliseconds left before the Lambda's timeout, or None when unknown (no Lambda context)."""
    try:
        return int(context.get_remaining_time_in_millis())
    except Exception:  # no context (tests, local calls) or not a Lambda context
        return None


def _answer(event: Any, remaining_ms: int | None = None) -> PreAnnotationResponse:
    try:
        request = PreAnnotationRequest.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()[:3]
        )
        return _skip(Outcome.INVALID_EVENT, f"not a pre-annotation request ({problems})")
    job_arn = request.labeling_job_arn
    source = request.data_object.get("source-ref")
    logger.append_keys(labeling_job_arn=job_arn, source_ref=source if isinstance(source, str) else None)
    settings = Settings.from_env()
    try:
        return _task_for(request.data_object, job_arn, settings, remaining_ms)
    except SkipObject as skip:
        return _skip(skip.outcome, skip.reason)


def _task_for(
    data_object: dict[str, Any], job_arn: str | None, settings: Settings, remaining_ms: int | None = None
) -> PreAnnotationResponse:
    started = time.monotonic()
    source_ref = image_source(data_object)
    info = _checked_image(source_ref)
    resolved = resolve_labels(
        data_object,
        [
            ("label-category file of the job", lambda: _job_label_config(job_arn)),
            ("LABEL_CATEGORY_CONFIG_URI", lambda: _env_label_config(settings.label_category_config_uri)),
        ],
    )
    line_prior = data_object.get(PRIOR_LABEL_ATTRIBUTE_KEY)  # set by the launcher for adjustment jobs
    prior_attribute = (
        line_prior if isinstance(line_prior, str) and line_prior else settings.prior_label_attribute
    )
    prior = find_prior_mask(data_object, resolved.labels, prior_attribute)
    for note in prior.notes:
        logger.info(note)
    initial_value = prior.initial_value
    if prior.problem:
        # The task still goes out, starting from an empty canvas: better than no task at all.
        logger.warning("prior mask not offered", extra={"reason": prior.problem})
        _count(InitialValueOutcome.PRIOR_REJECTED)
    elif initial_value is not None:
        _count(InitialValueOutcome.PRIOR_USED)
    if initial_value is None and settings.prelabel_endpoint_name:
        # Human work already on the line wins over a model's guess, so the model is asked only here.
        left = None if remaining_ms is None else remaining_ms - int((time.monotonic() - started) * 1000)
        initial_value = _prelabel(source_ref, info, resolved.labels, job_arn, settings, left)
    task_input = build_task_input(source_ref, resolved.labels, data_object, initial_value)
    logger.info(
        "task created",
        extra={
            "labels_from": resolved.source,
            "labels_not_from": list(resolved.skipped),
            "label_count": len(resolved.labels),
            "image": f"{info.format.value} {info.width}x{info.height}",
            "initial_value": initial_value.origin if initial_value else None,
        },
    )
    _count(Outcome.TASK_CREATED)
    return PreAnnotationResponse(taskInput=task_input, isHumanAnnotationRequired=True)


def _skip(outcome: Outcome, reason: str) -> PreAnnotationResponse:
    logger.warning("object skipped: no task is created", extra={"outcome": outcome.value, "reason": reason})
    _count(outcome)
    return PreAnnotationResponse(taskInput=skipped_task_input(reason), isHumanAnnotationRequired=False)


# --------------------------------------------------------------------------- the image


def _checked_image(source_ref: str) -> ImageInfo:
    store = CLIENTS.get_store()
    try:
        info, size = probe_image(lambda first, last: store.get_range(source_ref, first, last))
    except StorageError as exc:
        code = _error_code(exc)
        if code in _MISSING_CODES:
            raise SkipObject(Outcome.MISSING_OBJECT, f"{source_ref} does not exist ({code})") from None
        if code == "InvalidRange":  # S3's answer to a ranged GET of a 0-byte object
            raise SkipObject(Outcome.UNSUPPORTED_IMAGE, f"{source_ref} is an empty file") from None
        raise SkipObject(Outcome.UNREADABLE_OBJECT, str(exc)) from None
    except UnsupportedImageError as exc:
        raise SkipObject(Outcome.UNSUPPORTED_IMAGE, f"{source_ref}: {exc}") from None
    except ImageHeaderError as exc:
        raise SkipObject(Outcome.UNSUPPORTED_IMAGE, f"{source_ref} is not a readable image: {exc}") from None
    for note in check_image(source_ref, info, size):
        logger.warning(note)
    return info


def _error_code(exc: BaseException) -> str | None:
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code"))
    return None


# --------------------------------------------------------------------------- labels


def _job_label_config(job_arn: str | None) -> LabelCategoryConfig | None:
    """The job's own label-category file (DescribeLabelingJob), cached per job ARN."""
    if not job_arn or ":labeling-job/" not in job_arn:
        return None
    cached = LABEL_CACHE.get(f"job:{job_arn}")
    if cached is not None or job_arn in JOBS_WITHOUT_LABEL_FILE:
        return cached
    try:
        described = CLIENTS.get_sagemaker().describe_labeling_job(LabelingJobName=job_name_from_arn(job_arn))
    except Exception as exc:  # permissions, an emulator without the API: try the next source
        reason = f"{type(exc).__name__}: {exc}"
        if _is_transient(exc):
            # The job has its own labels; they just could not be read this time. The next source
            # (the stack's default LABEL_CATEGORY_CONFIG_URI) would show workers another list than
            # the one consolidation maps classes by, so this object is skipped instead (not cached:
            # the next object describes the job again).
            raise LabelError(f"cannot describe the labeling job right now ({reason})") from None
        logger.warning("cannot describe the labeling job", extra={"reason": reason})
        return None
    uri = described.get("LabelCategoryConfigS3Uri")
    if not isinstance(uri, str) or not uri:
        JOBS_WITHOUT_LABEL_FILE.add(job_arn)
        return None
    config = _read_label_config(uri)
    LABEL_CACHE[f"job:{job_arn}"] = config
    return config


def _is_transient(exc: BaseException) -> bool:
    """Throttling, a server error or a network failure: the job exists, its description did not arrive."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(error.get("Code")) in _TRANSIENT_CODES or (
            isinstance(status, int) and (status == 429 or status >= 500)
        )
    return isinstance(exc, BotoConnectionError | HTTPClientError)


def _env_label_config(uri: str | None) -> LabelCategoryConfig | None:
    if not uri:
        return None
    cached = LABEL_CACHE.get(f"uri:{uri}")
    if cached is None:
        cached = LABEL_CACHE[f"uri:{uri}"] = _read_label_config(uri)
    return cached


def _read_label_config(uri: str) -> LabelCategoryConfig:
    try:
        data = CLIENTS.get_store().get_bytes(uri)
    except (StorageError, ValueError) as exc:  # ValueError: not an s3:// URI
        raise LabelError(f"cannot read the label-category file: {exc}") from None
    try:
        return LabelCategoryConfig.parse(data)
    except LabelError as exc:
        raise LabelError(f"{uri}: {exc}") from None


# --------------------------------------------------------------------------- model pre-labels


def _prelabel(
    source_ref: str,
    info: ImageInfo,
    labels: tuple[str, ...],
    job_arn: str | None,
    settings: Settings,
    remaining_ms: int | None = None,
) -> InitialValue | None:
    """Ask the endpoint for a class-index mask; any failure means no pre-label, never an error."""
    blocker = prelabel_blocker(info)
    if blocker is None and remaining_ms is not None and remaining_ms < PRELABEL_MIN_REMAINING_MS:
        blocker = f"only {remaining_ms / 1000:.1f} s of the Lambda's timeout left; the endpoint is not asked"
    if blocker:
        logger.info("no model pre-label for this image", extra={"reason": blocker})
        _count(InitialValueOutcome.PRELABEL_SKIPPED)
        return None
    if not settings.output_bucket:
        logger.warning("PRELABEL_ENDPOINT_NAME is set but OUTPUT_BUCKET is not; no pre-label")
        _count(InitialValueOutcome.PRELABEL_FAILED)
        return None
    try:
        image = CLIENTS.get_store().get_bytes(source_ref)
        answer = CLIENTS.get_sagemaker_runtime().invoke_endpoint(
            EndpointName=settings.prelabel_endpoint_name,
            ContentType=f"image/{info.format.value}",
            Accept=PRELABEL_ACCEPT,
            Body=image,
        )
        body = answer["Body"].read()
        indices = decode_prelabel(body, answer.get("ContentType"), len(labels) + 1, (info.width, info.height))
        uri = f"s3://{settings.output_bucket}/{prelabel_key(job_name_from_arn(job_arn), source_ref)}"
        CLIENTS.get_store().put_bytes(uri, encode_prelabel_png(indices, labels), "image/png")
    except Exception as exc:  # timeout, endpoint error, bad mask, write failure: all mean "no pre-label"
        logger.warning(
            "model pre-label failed; the task starts empty",
            extra={"endpoint": settings.prelabel_endpoint_name, "reason": f"{type(exc).__name__}: {exc}"},
        )
        _count(InitialValueOutcome.PRELABEL_FAILED)
        return None
    _count(InitialValueOutcome.PRELABEL_USED)
    return prelabel_initial_value(uri, labels)


# --------------------------------------------------------------------------- metrics


def _count(outcome: Outcome | InitialValueOutcome) -> None:
    try:
        metrics.add_metric(name=outcome.value, unit=MetricUnit.Count, value=1)
    except Exception:  # a metrics problem must not turn into a failed labeling job
        logger.warning("could not record metric", extra={"metric": outcome.value})


def _flush_metrics() -> None:
    try:
        metrics.flush_metrics()
    except Exception:
        logger.warning("could not flush metrics")
