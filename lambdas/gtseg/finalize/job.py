"""The deployed finalize's own steps around the map and reduce: which job an event is about (and
whether it is this stack's), what the map failed on, and where the results of a job go.

Ground Truth's "SageMaker Ground Truth Labeling Job State Change" event names the job by its ARN
only (``resources``; docs/protocol.md §5): the job is described by that ARN
(``aws.labeling_jobs.describe_labeling_job_by_arn``, the ARN's name being lower-cased) and is this
stack's when its ``RoleArn`` is the stack's Ground Truth role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gtseg.aws.labeling_jobs import ListsLabelingJobs, describe_labeling_job_by_arn
from gtseg.core.labels import LabelCategoryConfig, LabelError
from gtseg.core.layout import FINALIZED_DIR, OUTPUT_MANIFEST, job_root_of_output_manifest
from gtseg.core.uris import join_uri, parse_s3_uri
from gtseg.finalize.models import FinalizePlan, Notification
from gtseg.finalize.plan import plan_job
from gtseg.finalize.settings import FinalizeSettings
from gtseg.tools.jobdata import JobData, JobDataError, join_ref

PLAN_FILE = "work/plan.json"
MAP_RESULTS_DIR = "work/map-results"
MAX_FAILURES = 100  # failed batches listed; each names its lines


class JobStateChange(BaseModel):
    """The EventBridge event (only what is used; unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def job_arn(self) -> str | None:
        arn = self.detail.get("LabelingJobArn")
        if isinstance(arn, str) and arn:
            return arn
        return next((r for r in self.resources if ":labeling-job/" in r), None)


class Prepared(BaseModel):
    """The prepare step's answer: whether to finalize, and what the map needs to start."""

    finalize: bool
    reason: str | None = None
    job: str | None = None
    status: str | None = None
    plan: str | None = None  # the plan file (s3:// URI)
    lines: int = 0
    manifest_bucket: str | None = None
    manifest_key: str | None = None
    results_bucket: str | None = None
    results_prefix: str | None = None
    notification: Notification | None = None  # when there is nothing to finalize but people should know


def prepare(
    event: Mapping[str, Any], *, sagemaker: ListsLabelingJobs, data: JobData, settings: FinalizeSettings
) -> Prepared:
    """The job the event is about, described; its plan written under ``<job>/gtseg/work/``."""
    change = JobStateChange.model_validate(event)
    arn = change.job_arn
    if arn is None:
        return Prepared(finalize=False, reason="the event names no labeling job")
    described = describe_labeling_job_by_arn(sagemaker, arn)
    if described is None:
        return Prepared(finalize=False, reason=f"no labeling job {arn} can be described")
    name = str(described.get("LabelingJobName") or arn.rsplit("/", 1)[-1])
    status = str(described.get("LabelingJobStatus") or change.detail.get("LabelingJobStatus") or "?")
    if described.get("RoleArn") != settings.ground_truth_role_arn:
        return Prepared(
            finalize=False, job=name, status=status, reason="not this stack's job (another RoleArn)"
        )
    manifest = (described.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if not manifest:
        output_path = (described.get("OutputConfig") or {}).get("S3OutputPath")
        manifest = join_uri(output_path, name, OUTPUT_MANIFEST) if output_path else None
    if not manifest or not data.exists(manifest):
        why = f"job {name} ended ({status}) without an output manifest"
        return Prepared(
            finalize=False, job=name, status=status, reason=why,
            notification=Notification(subject=f"gtseg: {name} ended without output"[:100], message=why + ".\n"),
        )  # fmt: skip
    manifest_bucket, manifest_key = parse_s3_uri(manifest)
    if settings.output_bucket and manifest_bucket != settings.output_bucket:
        why = f"job {name}'s output {manifest} is not in this stack's output bucket {settings.output_bucket}"
        return Prepared(
            finalize=False, job=name, status=status, reason=why,
            notification=Notification(subject=f"gtseg: {name} not finalized"[:100],
                                      message=why + "; run gtseg finalize on it instead.\n"),
        )  # fmt: skip
    job_root = job_root_of_output_manifest(manifest) or manifest.rsplit("/", 3)[0]
    out = join_uri(job_root, FINALIZED_DIR)
    plan = plan_job(
        manifest, out, data=data,
        label_attribute=described.get("LabelAttributeName"), job_name=name,
        labels=_job_labels(data, described.get("LabelCategoryConfigS3Uri")), job_prefix=job_root,
        copy_images=settings.copy_images, report_objects=settings.report_objects,
    )  # fmt: skip
    plan_ref = join_ref(out, PLAN_FILE)
    data.write_text(plan_ref, plan.to_json(), "application/json")
    results_bucket, results_key = parse_s3_uri(join_ref(out, MAP_RESULTS_DIR) + "/x")
    return Prepared(
        finalize=True, job=name, status=status, plan=plan_ref, lines=plan.lines,
        manifest_bucket=manifest_bucket, manifest_key=manifest_key,
        results_bucket=results_bucket, results_prefix=results_key[:-2],
    )  # fmt: skip


def _job_labels(data: JobData, uri: Any) -> list[str] | None:
    if not isinstance(uri, str) or not uri:
        return None
    try:
        return list(LabelCategoryConfig.parse(data.read_bytes(uri), require_version=False).labels)
    except (JobDataError, LabelError, ValueError):
        return None  # the lines' colour maps or the sidecars decide the classes


def read_plan(data: JobData, ref: str) -> FinalizePlan:
    return FinalizePlan.model_validate_json(data.read_bytes(ref))


def batch_failures(data: JobData, result_writer: Mapping[str, Any] | None) -> list[str]:
    """What the Distributed Map's failed batches failed on, from its ResultWriter files: one line per
    batch naming its lines, the error and the start of its cause."""
    if isinstance(result_writer, Mapping) and result_writer.get("Error"):
        # the Map state itself failed (caught): no batch result can be trusted to exist
        return [f"the map run failed: {_describe_failure(result_writer)}"]
    details = (result_writer or {}).get("ResultWriterDetails") or {}
    bucket, key = details.get("Bucket"), details.get("Key")
    if not bucket or not key:
        return []
    try:
        manifest = data.read_json(f"s3://{bucket}/{key}")
    except JobDataError as exc:
        return [f"the map's results cannot be read: {exc}"]
    out: list[str] = []
    for entry in (manifest.get("ResultFiles") or {}).get("FAILED") or []:
        try:
            failed = data.read_json(f"s3://{bucket}/{entry['Key']}")
        except (JobDataError, KeyError, TypeError) as exc:
            out.append(f"a failed batch's result cannot be read: {exc}")
            continue
        for execution in failed if isinstance(failed, list) else []:
            out.append(_describe_failure(execution))
            if len(out) >= MAX_FAILURES:
                return out
    return out


def _describe_failure(execution: Mapping[str, Any]) -> str:
    if "Input" not in execution:
        return f"{execution.get('Error') or 'failed'} ({str(execution.get('Cause') or '')[:300]})"
    try:
        items = json.loads(execution.get("Input") or "{}").get("Items") or []
        indices = [int(i["index"]) for i in items]
        where = f"lines {min(indices) + 1}-{max(indices) + 1}" if indices else "a batch"
    except (ValueError, TypeError, KeyError, AttributeError):
        where = "a batch"
    cause = str(execution.get("Cause") or "")[:300]
    return f"{where}: {execution.get('Error') or 'failed'}{f' ({cause})' if cause else ''}"
