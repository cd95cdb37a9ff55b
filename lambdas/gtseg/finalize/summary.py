"""The last step: ``<out>/summary.json`` and the short notification of a finalized job."""

from __future__ import annotations

import json
from typing import Any

from gtseg.finalize.models import SUMMARY_SCHEMA, FinalizePlan, JobFigures, Notification, ReportOutcome
from gtseg.finalize.objects import DATASET_DIR
from gtseg.finalize.reduce import OUTPUT_MANIFEST
from gtseg.finalize.report import REPORT_HTML
from gtseg.tools.jobdata import JobData, join_ref

SUMMARY_FILE = "summary.json"
SUBJECT_LIMIT = 100  # SNS subjects are at most 100 characters


def outputs(out: str, report: ReportOutcome | None) -> dict[str, str | None]:
    return {
        "output-manifest": join_ref(out, OUTPUT_MANIFEST),
        "dataset": join_ref(out, DATASET_DIR),
        "report": join_ref(out, REPORT_HTML) if report is not None and report.html else None,
        "summary": join_ref(out, SUMMARY_FILE),
    }


def summary_document(
    plan: FinalizePlan,
    figures: JobFigures,
    report: ReportOutcome,
    *,
    job_status: str | None = None,
    public_out: str | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """``summary.json``: what the job produced and where; ``public_out`` is where the results end
    up when the run writes them to a staging folder first."""
    where = public_out or plan.out
    return {
        "schema": SUMMARY_SCHEMA,
        "job": plan.job_name,
        "job-status": job_status,
        "label-attribute": plan.label_attribute,
        "source-manifest": plan.manifest,
        "created": plan.created,
        "outputs": outputs(where, report),
        "objects": figures.lines,
        "labeled": figures.labeled,
        "failed": figures.failed,
        "errors": figures.errors,
        "not-finalized": figures.not_finalized,
        "mean-confidence": figures.mean_confidence,
        "adjustment": figures.adjustment,
        "classes": [c.model_dump(mode="json") for c in figures.classes],
        "workers": [w.model_dump(mode="json") for w in figures.workers],
        "report": {
            "objects": report.objects,
            "of": figures.lines,
            "selection": _selection(figures, plan),
            "error": report.error,
        },
        "problems": [p.model_dump(mode="json") for p in figures.problems],
        "batch-failures": list(figures.batch_failures),
        "seconds": {k: round(v, 3) for k, v in (seconds or {}).items()},
    }


def _selection(figures: JobFigures, plan: FinalizePlan) -> str:
    if figures.lines <= plan.report_objects:
        return "every object"
    return f"the {plan.report_objects // 2} lowest-confidence objects and the rest spread evenly over the job"


def write_summary(data: JobData, plan: FinalizePlan, document: dict[str, Any]) -> str:
    ref = join_ref(plan.out, SUMMARY_FILE)
    data.write_text(ref, json.dumps(document, indent=1, ensure_ascii=False) + "\n", "application/json")
    return ref


def notification(document: dict[str, Any]) -> Notification:
    """A few lines for people: objects, failures, mean confidence, where things are."""
    job = document.get("job") or "a labeling job"
    status = document.get("job-status")
    subject = f"gtseg: {job} finalized ({document['labeled']} of {document['objects']} objects labelled)"
    confidence = document.get("mean-confidence")
    problems = document["failed"] + document["errors"] + document["not-finalized"]
    lines = [
        f"Labeling job {job}{f' ({status})' if status else ''} is finalized.",
        f"Objects: {document['objects']}; labelled {document['labeled']}, failed in the job {document['failed']}, "
        f"not convertible {document['errors']}, not finalized {document['not-finalized']}.",
        f"Mean confidence: {confidence:.3f}" if isinstance(confidence, float) else "Mean confidence: n/a",
    ]
    if problems:
        lines.append(f"See 'problems' and 'batch-failures' in summary.json ({problems} objects need a look).")
    if document["report"].get("error"):
        lines.append(f"Report: not written ({document['report']['error']}).")
    for name, ref in document["outputs"].items():
        if ref:
            lines.append(f"{name}: {ref}")
    return Notification(subject=subject[:SUBJECT_LIMIT], message="\n".join(lines) + "\n")
