"""Where a data object's label list comes from, after the manifest line's own ``labels``: the
labeling job's label-category file (DescribeLabelingJob), then the stack's default
(LABEL_CATEGORY_CONFIG_URI). The order and the fall-through rules are ``task.resolve_labels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gtseg.aws.clients import AwsClients
from gtseg.aws.errors import is_transient
from gtseg.aws.labeling_jobs import describe_labeling_job
from gtseg.aws.observability import logger
from gtseg.aws.s3 import StorageError
from gtseg.core.labels import LabelCategoryConfig, LabelError
from gtseg.core.manifest import job_name_from_arn
from gtseg.pre_annotation.task import ResolvedLabels, resolve_labels

JOB_LABELS_SOURCE = "label-category file of the job"
DEFAULT_LABELS_SOURCE = "LABEL_CATEGORY_CONFIG_URI"


class LabelSources:
    """The label-category files, cached for the life of the container.

    Ground Truth calls once per data object; without the cache every object would describe the
    job and read its file again. A job's configuration never changes, so a job without a file is
    remembered too; a failed lookup is not (the next object tries again).
    """

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients
        self._by_job: dict[str, LabelCategoryConfig] = {}
        self._jobs_without_file: set[str] = set()
        self._by_uri: dict[str, LabelCategoryConfig] = {}

    def clear(self) -> None:
        self._by_job.clear()
        self._jobs_without_file.clear()
        self._by_uri.clear()

    def resolve(
        self, data_object: Mapping[str, Any], job_arn: str | None, default_uri: str | None
    ) -> ResolvedLabels:
        """The object's labels; raises ``SkipObject`` when there are none it may use."""
        return resolve_labels(
            data_object,
            [
                (JOB_LABELS_SOURCE, lambda: self.job_config(job_arn)),
                (DEFAULT_LABELS_SOURCE, lambda: self.file_config(default_uri)),
            ],
        )

    def job_config(self, job_arn: str | None) -> LabelCategoryConfig | None:
        """The job's own label-category file, or None when it has none or cannot be described."""
        if not job_arn or ":labeling-job/" not in job_arn:
            return None
        cached = self._by_job.get(job_arn)
        if cached is not None or job_arn in self._jobs_without_file:
            return cached
        job_name = job_name_from_arn(job_arn)
        try:
            described = describe_labeling_job(self._clients.get_sagemaker(), job_name)
        except Exception as exc:  # permissions, an emulator without the API: try the next source
            reason = f"{type(exc).__name__}: {exc}"
            if is_transient(exc):
                # The job has its own labels; they just could not be read this time. The next
                # source (the stack's default) would show workers another list than the one
                # consolidation maps classes by, so this object is skipped instead.
                raise LabelError(f"cannot describe the labeling job right now ({reason})") from None
            logger.warning("cannot describe the labeling job", extra={"reason": reason})
            return None
        if described is None:
            # Not remembered: Ground Truth named this job, so it may just not be visible yet.
            logger.warning(
                "cannot describe the labeling job", extra={"reason": f"no labeling job named {job_name!r}"}
            )
            return None
        uri = described.get("LabelCategoryConfigS3Uri")
        if not isinstance(uri, str) or not uri:
            self._jobs_without_file.add(job_arn)
            return None
        config = self._by_job[job_arn] = self._read(uri)
        return config

    def file_config(self, uri: str | None) -> LabelCategoryConfig | None:
        """The label-category file at ``uri`` (None when no URI is configured)."""
        if not uri:
            return None
        cached = self._by_uri.get(uri)
        if cached is None:
            cached = self._by_uri[uri] = self._read(uri)
        return cached

    def _read(self, uri: str) -> LabelCategoryConfig:
        try:
            data = self._clients.get_store().get_bytes(uri)
        except (StorageError, ValueError) as exc:  # ValueError: not an s3:// URI
            raise LabelError(f"cannot read the label-category file: {exc}") from None
        try:
            return LabelCategoryConfig.parse(data)
        except LabelError as exc:
            raise LabelError(f"{uri}: {exc}") from None
