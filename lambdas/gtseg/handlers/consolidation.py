"""Annotation-consolidation Lambda (``AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn``).

Thin: parse the event, build the S3 store (own role, or the job's role when ASSUME_JOB_ROLE=true),
run the batch (gtseg.batch), emit metrics, return one entry per data object in payload order.
No environment variable is required; see ``ConsolidationSettings`` for the optional ones.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from gtseg.aws.clients import assumed_role_session
from gtseg.aws.observability import MetricUnit, logger, metrics
from gtseg.aws.s3 import BOTO_CONFIG, S3Store, s3_client
from gtseg.consolidation.batch import BatchConsolidator, BatchSettings
from gtseg.core.consolidation import DEFAULT_NEIGHBOURHOOD_RADIUS, METHODS
from gtseg.core.labels import LabelCategoryConfig
from gtseg.protocol import ConsolidationRequest


class ConsolidationSettings(BaseModel):
    """Optional tuning, parsed once per invocation from the environment."""

    method: str = Field(default="gtseg", alias="CONSOLIDATION_METHOD")
    smoothing: int = Field(default=DEFAULT_NEIGHBOURHOOD_RADIUS, ge=0, le=8, alias="CONSOLIDATION_SMOOTHING")
    assume_job_role: bool = Field(default=False, alias="ASSUME_JOB_ROLE")
    kms_key_id: str | None = Field(default=None, alias="OUTPUT_KMS_KEY_ID")
    element_name: str | None = Field(default=None, alias="ELEMENT_NAME")
    threads: int = Field(default=2, ge=1, le=16, alias="CONSOLIDATION_THREADS")
    describe_job: bool = Field(default=True, alias="DESCRIBE_LABELING_JOB")

    @classmethod
    def from_env(cls) -> ConsolidationSettings:
        values = {k: v for k, v in os.environ.items() if k in {f.alias for f in cls.model_fields.values()}}
        settings = cls.model_validate({k: v for k, v in values.items() if v != ""})
        if settings.method not in METHODS:
            raise ValueError(f"CONSOLIDATION_METHOD={settings.method!r}; choose from {', '.join(METHODS)}")
        return settings


def _describe_labels_factory(session: Any, store: S3Store):
    def describe(job_arn: str) -> list[str] | None:
        name = job_arn.rsplit("/", 1)[-1]
        client = session.client("sagemaker", config=BOTO_CONFIG)
        uri = client.describe_labeling_job(LabelingJobName=name).get("LabelCategoryConfigS3Uri")
        if not uri:
            return None
        return list(LabelCategoryConfig.parse(store.get_bytes(uri), require_version=False).labels)

    return describe


# Creating a boto3 client costs ~0.2 s (service models, endpoint rules): once per container, and
# for the opt-in assumed role once per role until its credentials are near expiry.
_CLIENTS: dict[str | None, tuple[float, Any, Any]] = {}
_ASSUMED_ROLE_REUSE_SECONDS = 45 * 60


def _clients(role_arn: str | None) -> tuple[Any, Any]:
    import boto3

    cached = _CLIENTS.get(role_arn)
    if cached and (role_arn is None or time.monotonic() - cached[0] < _ASSUMED_ROLE_REUSE_SECONDS):
        return cached[1], cached[2]
    session = assumed_role_session(role_arn) if role_arn else boto3.session.Session()
    client = s3_client(session)
    _CLIENTS[role_arn] = (time.monotonic(), session, client)
    return session, client


def _log(level: str, message: str, **fields: Any) -> None:
    getattr(logger, level)(message, extra=fields)


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    try:
        request = ConsolidationRequest.model_validate(event)
    except ValidationError as exc:
        # Without a payload URI or label attribute name there is nothing to answer for.
        logger.error("invalid consolidation event", extra={"errors": exc.errors(include_url=False)})
        raise ValueError(f"invalid consolidation event: {exc.errors(include_url=False)}") from exc
    settings = ConsolidationSettings.from_env()
    logger.append_keys(labeling_job_arn=request.labeling_job_arn, payload=request.payload.s3_uri)

    session, client = _clients(request.role_arn if settings.assume_job_role else None)
    # The job's own output key (sent with the event, when Ground Truth sends it) wins over the
    # stack's default: the masks are part of that job's output.
    store = S3Store(client=client, kms_key_id=request.kms_key_id or settings.kms_key_id)
    batch = BatchConsolidator(
        request,
        store,
        settings=BatchSettings(
            method=settings.method,
            smoothing=settings.smoothing,
            element_name=settings.element_name,
            threads=settings.threads,
        ),
        describe_labels=_describe_labels_factory(session, store) if settings.describe_job else None,
        log=_log,
    )
    response, outcomes = batch.run()

    failed = sum(1 for o in outcomes if o.failure_reason)
    rejected = sum(len(o.consolidation.rejected) for o in outcomes if o.consolidation)
    confidences = [
        o.consolidation.result.image_confidence
        for o in outcomes
        if o.consolidation and o.consolidation.result
    ]
    metrics.add_metric(name="ObjectsConsolidated", unit=MetricUnit.Count, value=len(outcomes) - failed)
    metrics.add_metric(name="ObjectsFailed", unit=MetricUnit.Count, value=failed)
    metrics.add_metric(name="AnnotationsRejected", unit=MetricUnit.Count, value=rejected)
    agreements = [
        w.agreement
        for o in outcomes
        if o.consolidation and o.consolidation.result
        for w in o.consolidation.result.workers
        if not w.excluded
    ]
    if agreements:
        metrics.add_metric(
            name="MeanWorkerAgreement", unit=MetricUnit.NoUnit, value=sum(agreements) / len(agreements)
        )
    if confidences:
        metrics.add_metric(
            name="MeanConfidence", unit=MetricUnit.NoUnit, value=sum(confidences) / len(confidences)
        )
    logger.info(
        "batch consolidated",
        extra={
            "objects": len(outcomes),
            "failed": failed,
            "rejected_annotations": rejected,
            "output": batch.prefix,
        },
    )
    return response
