"""Annotation-consolidation Lambda (``AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn``).

Thin: parse the event, build the S3 store (own role, or the job's role when ASSUME_JOB_ROLE=true),
run the batch (``gtseg.consolidation.batch``), emit metrics, return one entry per data object in
payload order. No environment variable is required; ``ConsolidationSettings`` lists the optional ones.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from gtseg.aws.clients import assumed_role_session
from gtseg.aws.labeling_jobs import label_category_config_uri
from gtseg.aws.observability import MetricUnit, entry_point, logger, metrics
from gtseg.aws.retry import Deadline
from gtseg.aws.s3 import BOTO_CONFIG, S3Store, s3_client
from gtseg.consolidation.batch import BatchConsolidator, BatchSettings, ObjectOutcome
from gtseg.consolidation.settings import ConsolidationSettings
from gtseg.core.labels import LabelCategoryConfig
from gtseg.protocol import ConsolidationRequest

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


def _job_labels(session: Any, store: S3Store) -> Any:
    """The job's own label list (DescribeLabelingJob of the job's exact-case name -> its
    label-category file), for events without labelCategories."""

    def describe(job_name: str) -> list[str] | None:
        uri = label_category_config_uri(session.client("sagemaker", config=BOTO_CONFIG), job_name)
        if uri is None:
            return None
        return list(LabelCategoryConfig.parse(store.get_bytes(uri), require_version=False).labels)

    return describe


def _log(level: str, message: str, **fields: Any) -> None:
    getattr(logger, level)(message, extra=fields)


@entry_point()
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
        describe_labels=_job_labels(session, store) if settings.describe_job else None,
        log=_log,
        deadline=Deadline.from_context(context),
    )
    response, outcomes = batch.run()
    _record_metrics(outcomes)
    logger.info(
        "batch consolidated",
        extra={
            "objects": len(outcomes),
            "failed": sum(1 for o in outcomes if o.failure_reason),
            "rejected_annotations": sum(len(o.consolidation.rejected) for o in outcomes if o.consolidation),
            "output": batch.prefix,
        },
    )
    return response


def _record_metrics(outcomes: list[ObjectOutcome]) -> None:
    failed = sum(1 for o in outcomes if o.failure_reason)
    rejected = sum(len(o.consolidation.rejected) for o in outcomes if o.consolidation)
    results = [o.consolidation.result for o in outcomes if o.consolidation and o.consolidation.result]
    metrics.add_metric(name="ObjectsConsolidated", unit=MetricUnit.Count, value=len(outcomes) - failed)
    metrics.add_metric(name="ObjectsFailed", unit=MetricUnit.Count, value=failed)
    metrics.add_metric(name="AnnotationsRejected", unit=MetricUnit.Count, value=rejected)
    # objects lost to faults that outlasted their retries: repairable with gtseg reconsolidate
    metrics.add_metric(
        name="TransientFailures", unit=MetricUnit.Count, value=sum(1 for o in outcomes if o.transient)
    )
    agreements = [w.agreement for r in results for w in r.workers if not w.excluded]
    if agreements:
        metrics.add_metric(
            name="MeanWorkerAgreement", unit=MetricUnit.NoUnit, value=sum(agreements) / len(agreements)
        )
    if results:
        confidences = [r.image_confidence for r in results]
        metrics.add_metric(
            name="MeanConfidence", unit=MetricUnit.NoUnit, value=sum(confidences) / len(confidences)
        )
