"""Labeling-job lookups through SageMaker's DescribeLabelingJob."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError

from gtseg.core.manifest import job_name_from_arn


class DescribesLabelingJobs(Protocol):
    """The part of boto3's SageMaker client these lookups use."""

    def describe_labeling_job(self, **kwargs: Any) -> dict[str, Any]: ...


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


def label_category_config_uri(sagemaker: DescribesLabelingJobs, job_arn: str) -> str | None:
    """The job's ``LabelCategoryConfigS3Uri`` (None when the job has none or does not exist)."""
    described = describe_labeling_job(sagemaker, job_name_from_arn(job_arn))
    uri = (described or {}).get("LabelCategoryConfigS3Uri")
    return uri if isinstance(uri, str) and uri else None
