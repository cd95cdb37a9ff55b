"""Finalize Lambda: the steps of the finalize state machine (``infra/finalize.py``), one per call.

Thin: ``event["step"]`` picks the step, its payload is parsed into the feature's models, the
feature does the work (``gtseg.finalize``), a small JSON answer goes back to Step Functions (every
answer well under its 256 KiB state limit; the records are in S3).

    prepare    {"step", "event": <EventBridge state change>}      -> job.Prepared
    map        {"step", "plan": <uri>, "items": [{index, line}]}  -> models.BatchOutcome
    reduce     {"step", "plan", "map": <Map state result>}        -> models.JobFigures (counts)
    report     {"step", "plan"}                                   -> models.ReportOutcome
    summarize  {"step", "plan", "status", "report"}               -> models.Notification + summary URI

Environment: GROUND_TRUTH_ROLE_ARN; optional FINALIZE_COPY_IMAGES, FINALIZE_REPORT_OBJECTS,
FINALIZE_THREADS, OUTPUT_KMS_KEY_ID.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gtseg.aws.clients import AwsClients
from gtseg.aws.observability import MetricUnit, entry_point, logger, metrics
from gtseg.finalize.batch import map_batch
from gtseg.finalize.job import batch_failures, prepare, read_plan
from gtseg.finalize.models import MapItem, ReportOutcome
from gtseg.finalize.reduce import read_figures, reduce_job
from gtseg.finalize.report import report_job
from gtseg.finalize.settings import FinalizeSettings
from gtseg.finalize.summary import notification, summary_document, write_summary
from gtseg.tools.jobdata import JobData

CLIENTS = AwsClients()
STEPS = ("prepare", "map", "reduce", "report", "summarize")


def _data(settings: FinalizeSettings) -> JobData:
    store = CLIENTS.get_store()
    store.kms_key_id = settings.kms_key_id
    return JobData(store=store)


@entry_point()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step") if isinstance(event, dict) else None
    if step not in STEPS:
        raise ValueError(f"finalize: 'step' must be one of {', '.join(STEPS)}, got {step!r}")
    settings = FinalizeSettings.from_env()
    data = _data(settings)
    logger.append_keys(step=step)
    if step == "prepare":
        prepared = prepare(
            event.get("event") or {}, sagemaker=CLIENTS.get_sagemaker(), data=data, settings=settings
        )
        logger.info("finalize prepared", extra=prepared.model_dump(exclude={"notification"}))
        return prepared.model_dump(mode="json")
    plan = read_plan(data, str(event.get("plan")))
    logger.append_keys(job=plan.job_name, out=plan.out)
    if step == "map":
        try:
            items = [MapItem.model_validate(item) for item in event.get("items") or []]
        except ValidationError as exc:
            raise ValueError(f"finalize: malformed map items: {exc.errors(include_url=False)[:3]}") from exc
        outcome = map_batch(plan, items, data, threads=settings.threads)
        metrics.add_metric(
            name="FinalizedObjects", unit=MetricUnit.Count, value=outcome.labeled + outcome.failed
        )
        metrics.add_metric(name="FinalizeLineErrors", unit=MetricUnit.Count, value=outcome.errors)
        return outcome.model_dump(mode="json")
    if step == "reduce":
        figures = reduce_job(plan, data, batch_failures=batch_failures(data, event.get("map")))
        metrics.add_metric(name="LinesNotFinalized", unit=MetricUnit.Count, value=figures.not_finalized)
        logger.info("finalize reduced", extra={"lines": figures.lines, "labeled": figures.labeled,
                                               "not_finalized": figures.not_finalized})  # fmt: skip
        return figures.model_dump(
            mode="json", include={"lines", "labeled", "failed", "errors", "not_finalized"}
        )
    if step == "report":
        return report_job(plan, data, read_figures(data, plan)).model_dump(mode="json")
    report = event.get("report")
    report_outcome = (
        ReportOutcome.model_validate(report)
        if isinstance(report, dict) and "error" in report
        else ReportOutcome(error=f"the report step failed: {_state_error(report)}")
    )
    document = summary_document(
        plan, read_figures(data, plan), report_outcome, job_status=event.get("status")
    )
    summary = write_summary(data, plan, document)
    return {**notification(document).model_dump(mode="json"), "summary": summary}


def _state_error(value: Any) -> str:
    """A Step Functions Catch result ({"Error", "Cause"}) in one line."""
    if isinstance(value, dict):
        return f"{value.get('Error', 'error')}: {str(value.get('Cause', ''))[:300]}"
    return "no report outcome"
