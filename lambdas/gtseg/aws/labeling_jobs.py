"""Labeling-job lookups through SageMaker's DescribeLabelingJob."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError

from gtseg.core.manifest import job_name_from_arn


class DescribesLabelingJobs(Protocol):
    """The part of boto3's SageMaker client these lookups use."""

    def describe_labeling_job(self, **kwargs: Any) -> dict[str, Any]: ...


class ListsLabelingJobs(DescribesLabelingJobs, Protocol):
    def list_labeling_jobs(self, **kwargs: Any) -> dict[str, Any]: ...


# ListLabelingJobs pages (100 jobs each, newest first) searched for a job named only by its ARN.
MAX_LIST_PAGES = 20


def _is_no_such_job(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), str(error.get("Message", "")).lower()
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and "not" in message and "found" in message
    )


def describe_labeling_job(sagemaker: DescribesLabelingJobs, job_name: str) -> dict[str, Any] | None:
    """DescribeLabelingJob, or None when there is no such job; other failures raise."""
    try:
        return sagemaker.describe_labeling_job(LabelingJobName=job_name)
    except ClientError as exc:
        if _is_no_such_job(exc):
            return None
        raise


def label_category_config_uri(sagemaker: DescribesLabelingJobs, job_name: str) -> str | None:
    """The job's ``LabelCategoryConfigS3Uri`` (None when the job has none or does not exist).
    ``job_name`` in the job's own case: the ARN's name is lower-cased (docs/protocol.md §2.2)."""
    described = describe_labeling_job(sagemaker, job_name)
    uri = (described or {}).get("LabelCategoryConfigS3Uri")
    return uri if isinstance(uri, str) and uri else None


def describe_labeling_job_by_arn(
    sagemaker: ListsLabelingJobs, job_arn: str, *, max_pages: int = MAX_LIST_PAGES
) -> dict[str, Any] | None:
    """DescribeLabelingJob of the job an ARN names (an EventBridge event names jobs only so).

    The ARN's name part is lower-cased (docs/protocol.md §2.2), and whether DescribeLabelingJob
    finds a job created with capitals under that spelling is unconfirmed: when it does not, the
    job is looked up by its ARN in ListLabelingJobs (newest first) and described under the name
    it was created with. None when no such job is found.
    """
    described = describe_labeling_job(sagemaker, job_name_from_arn(job_arn))
    if described is not None:
        return described
    token: str | None = None
    for _ in range(max_pages):
        page = sagemaker.list_labeling_jobs(
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=100,
            **({"NextToken": token} if token else {}),
        )
        for summary in page.get("LabelingJobSummaryList") or ():
            if str(summary.get("LabelingJobArn", "")).lower() == job_arn.lower():
                return describe_labeling_job(sagemaker, summary["LabelingJobName"])
        token = page.get("NextToken")
        if not token:
            break
    return None
