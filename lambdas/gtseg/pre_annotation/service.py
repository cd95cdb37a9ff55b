"""One pre-annotation request, answered: read what the decisions in ``task`` need (the image header,
the label list, a prior mask or a model pre-label), build the task or the reason there is none, and
count the outcome.

Every problem with an object becomes ``isHumanAnnotationRequired: false`` plus a logged reason and
a metric; the handler adds the last line of defence for anything unexpected.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.config import Config
from pydantic import ValidationError

from gtseg.aws.clients import AwsClients
from gtseg.aws.errors import error_code, is_missing
from gtseg.aws.observability import MetricUnit, logger, metrics
from gtseg.aws.s3 import StorageError
from gtseg.aws.sidecars import with_builtin_metadata
from gtseg.core.images import ImageHeaderError, ImageInfo, UnsupportedImageError, probe_image
from gtseg.core.manifest import PRIOR_LABEL_ATTRIBUTE_KEY
from gtseg.pre_annotation.labels import LabelSources
from gtseg.pre_annotation.prelabel import PRELABEL_CLIENT_CONFIG, ModelPrelabels
from gtseg.pre_annotation.settings import PreAnnotationSettings
from gtseg.pre_annotation.task import (
    InitialValueOutcome,
    Outcome,
    SkipObject,
    build_task_input,
    check_image,
    find_prior_mask,
    image_source,
    priors_without_colour_map,
    skipped_task_input,
)
from gtseg.protocol import PreAnnotationRequest, PreAnnotationResponse

# A stalled S3 read must not outlast the function: a timed-out pre-annotation Lambda fails the
# whole labeling job. Worst case 3 attempts x (2 s connect + 5 s read) stays well under 60 s.
S3_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 3, "mode": "standard"})
# Appended for one request so every log line names the job and the image.
REQUEST_LOG_KEYS = ("labeling_job_arn", "source_ref")


def new_clients() -> AwsClients:
    """The clients with this function's time limits (bounded S3 reads, a fail-fast endpoint)."""
    return AwsClients(s3_config=S3_CONFIG, sagemaker_runtime_config=PRELABEL_CLIENT_CONFIG)


class PreAnnotation:
    """Answers pre-annotation requests; holds what outlives one request (clients, label files)."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients
        self.labels = LabelSources(clients)
        self.prelabels = ModelPrelabels(clients)

    def reset(self) -> None:
        """Forget cached label files and clients (tests; a new container starts like this)."""
        self.labels.clear()
        self.clients.reset()

    def answer(self, event: Any, remaining_ms: int | None = None) -> PreAnnotationResponse:
        """The response to ``event``; ``remaining_ms`` is what is left of the Lambda's timeout."""
        try:
            request = PreAnnotationRequest.model_validate(event)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()[:3]
            )
            return skipped(Outcome.INVALID_EVENT, f"not a pre-annotation request ({problems})")
        job_arn = request.labeling_job_arn
        source = request.data_object.get("source-ref")
        logger.append_keys(labeling_job_arn=job_arn, source_ref=source if isinstance(source, str) else None)
        settings = PreAnnotationSettings.from_env()
        try:
            return self._task_for(request.data_object, job_arn, settings, remaining_ms)
        except SkipObject as skip:
            return skipped(skip.outcome, skip.reason)

    def _task_for(
        self,
        data_object: dict[str, Any],
        job_arn: str | None,
        settings: PreAnnotationSettings,
        remaining_ms: int | None,
    ) -> PreAnnotationResponse:
        started = time.monotonic()
        source_ref = image_source(data_object)
        info = self._checked_image(source_ref)
        resolved = self.labels.resolve(data_object, job_arn, settings.label_category_config_uri)
        line_prior = data_object.get(PRIOR_LABEL_ATTRIBUTE_KEY)  # set by the launcher for adjustment jobs
        prior_attribute = (
            line_prior if isinstance(line_prior, str) and line_prior else settings.prior_label_attribute
        )
        data_object = self._with_prior_colour_maps(data_object, prior_attribute)
        prior = find_prior_mask(data_object, resolved.labels, prior_attribute)
        for note in prior.notes:
            logger.info(note)
        initial_value = prior.initial_value
        if prior.problem:
            # The task still goes out, starting from an empty canvas: better than no task at all.
            logger.warning("prior mask not offered", extra={"reason": prior.problem})
            count(InitialValueOutcome.PRIOR_REJECTED)
        elif initial_value is not None:
            count(InitialValueOutcome.PRIOR_USED)
        if initial_value is None and settings.prelabel_endpoint_name:
            # Human work already on the line wins over a model's guess, so the model is asked only here.
            elapsed_ms = int((time.monotonic() - started) * 1000)
            attempt = self.prelabels.attempt(
                source_ref,
                info,
                resolved.labels,
                job_arn=job_arn,
                endpoint_name=settings.prelabel_endpoint_name,
                output_bucket=settings.output_bucket,
                remaining_ms=None if remaining_ms is None else remaining_ms - elapsed_ms,
            )
            count(attempt.outcome)
            initial_value = attempt.initial_value
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
        count(Outcome.TASK_CREATED)
        return PreAnnotationResponse(task_input=task_input, is_human_annotation_required=True)

    def _with_prior_colour_maps(self, data_object: dict[str, Any], configured: str | None) -> dict[str, Any]:
        """The line with each prior mask's metadata in the built-in form, from its gtseg sidecar,
        where Ground Truth replaced it; the workers' template then finds the colour map too."""
        for attribute in priors_without_colour_map(data_object, configured):
            completed, problem = with_builtin_metadata(self.clients.get_store(), data_object, attribute)
            if problem:
                logger.warning(
                    "prior mask has no colour map", extra={"attribute": attribute, "reason": problem}
                )
                continue
            data_object = completed
        return data_object

    def _checked_image(self, source_ref: str) -> ImageInfo:
        """The image's header facts, read with ranged GETs; raises ``SkipObject`` for an unusable one."""
        store = self.clients.get_store()
        try:
            info, size = probe_image(lambda first, last: store.get_range(source_ref, first, last))
        except StorageError as exc:
            code = error_code(exc)
            if is_missing(exc):
                raise SkipObject(Outcome.MISSING_OBJECT, f"{source_ref} does not exist ({code})") from None
            if code == "InvalidRange":  # S3's answer to a ranged GET of a 0-byte object
                raise SkipObject(Outcome.UNSUPPORTED_IMAGE, f"{source_ref} is an empty file") from None
            raise SkipObject(Outcome.UNREADABLE_OBJECT, str(exc)) from None
        except UnsupportedImageError as exc:
            raise SkipObject(Outcome.UNSUPPORTED_IMAGE, f"{source_ref}: {exc}") from None
        except ImageHeaderError as exc:
            raise SkipObject(
                Outcome.UNSUPPORTED_IMAGE, f"{source_ref} is not a readable image: {exc}"
            ) from None
        for note in check_image(source_ref, info, size):
            logger.warning(note)
        return info


def skipped(outcome: Outcome, reason: str) -> PreAnnotationResponse:
    """The answer for an object that gets no task, logged and counted."""
    logger.warning("object skipped: no task is created", extra={"outcome": outcome.value, "reason": reason})
    count(outcome)
    return PreAnnotationResponse(task_input=skipped_task_input(reason), is_human_annotation_required=False)


def internal_error(exc: Exception) -> PreAnnotationResponse:
    """The answer when answering failed unexpectedly; call it while ``exc`` is being handled, so the
    log line carries the traceback."""
    reason = f"internal error: {type(exc).__name__}: {exc}"
    logger.exception("pre-annotation failed unexpectedly; the object is skipped", extra={"reason": reason})
    count(Outcome.INTERNAL_ERROR)
    return PreAnnotationResponse(task_input=skipped_task_input(reason), is_human_annotation_required=False)


def count(outcome: Outcome | InitialValueOutcome) -> None:
    try:
        metrics.add_metric(name=outcome.value, unit=MetricUnit.Count, value=1)
    except Exception:  # a metrics problem must not turn into a failed labeling job
        logger.warning("could not record metric", extra={"metric": outcome.value})


def end_request() -> None:
    """Flush this request's metrics and drop its log keys; never raises."""
    try:
        metrics.flush_metrics()
    except Exception:  # a metrics problem must not turn into a failed labeling job
        logger.warning("could not flush metrics")
    # The logger is shared by every handler in a process (the local emulator runs them side by
    # side); inject_lambda_context only clears it when this handler is entered again.
    logger.remove_keys(list(REQUEST_LOG_KEYS))
