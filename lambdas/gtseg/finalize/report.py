"""The report step: ``gtseg report`` over the objects the reduce chose, beside the other results.

``gtseg report`` draws every object it is given (overlay, disagreement heatmap, per-worker rows),
so a job of 100,000 objects is reported on a bounded selection: all objects of a job within
``report_objects``, else the lowest-confidence half of that many and the rest spread evenly over
the job (``reduce._Totals.report_indices``). The job-wide figures over every object are in
``summary.json``. The selection's lines are ``work/report-objects.manifest``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from gtseg.finalize.models import FinalizePlan, JobFigures, ReportOutcome
from gtseg.finalize.reduce import OUTPUT_MANIFEST
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import JobData, JobDataError, is_s3, join_ref
from gtseg.tools.report import build_report

REPORT_HTML = "report.html"
REPORT_MANIFEST = "work/report-objects.manifest"


def report_job(plan: FinalizePlan, data: JobData, figures: JobFigures) -> ReportOutcome:
    """Write ``<out>/report.html`` (its files beside it); a problem is the outcome's ``error``."""
    wanted = set(figures.report_indices)
    if not wanted:
        return ReportOutcome(error="no objects to report on")
    try:
        with tempfile.TemporaryDirectory(prefix="gtseg-report-") as tmp:
            folder = Path(tmp)
            subset = folder / "report-objects.manifest"
            with open(subset, "w", encoding="utf-8") as out:
                index = 0
                for raw in data.iter_lines(join_ref(plan.out, OUTPUT_MANIFEST)):
                    text = raw.strip()
                    if not text:
                        continue
                    if index in wanted:
                        out.write(text + "\n")
                    index += 1
            subset_ref = join_ref(plan.out, REPORT_MANIFEST)
            data.write_file(subset_ref, subset, "application/x-ndjson")
            local_out = not is_s3(data.resolve(plan.out))
            html = (
                Path(data.resolve(join_ref(plan.out, REPORT_HTML)))
                if local_out
                else folder / "out" / REPORT_HTML
            )
            summary = build_report(subset_ref, html, job_prefix=plan.job_prefix, data=data)
            if not local_out:
                for path in sorted(p for p in html.parent.rglob("*") if p.is_file()):
                    rel = path.relative_to(html.parent).as_posix()
                    data.write_file(join_ref(plan.out, rel), path, _content_type(path))
    except (ToolError, JobDataError, OSError) as exc:
        return ReportOutcome(error=f"the report could not be written: {exc}")
    return ReportOutcome(html=join_ref(plan.out, REPORT_HTML), objects=summary.objects)


def _content_type(path: Path) -> str:
    return {".html": "text/html", ".jpg": "image/jpeg", ".png": "image/png"}.get(
        path.suffix.lower(),
        "application/x-ndjson" if path.suffix == ".manifest" else "application/octet-stream",
    )
