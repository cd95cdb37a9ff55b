"""Reading an output manifest's lines the same way in export, report and reconsolidate: which
label attribute, which mask, which colour map, why an object failed, and how a problem is named."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtseg.core.builtin_output import mask_attributes
from gtseg.core.labels import LabelError
from gtseg.core.layout import job_prefix_from_mask_uri, ref_basename
from gtseg.core.manifest import ManifestError, ManifestLine, metadata_key
from gtseg.tools.errors import ToolError
from gtseg.tools.jobdata import JobData, is_s3, job_prefix_from_manifest, read_sidecar


@dataclass
class LineProblem:
    line: int
    source_ref: str | None
    reason: str

    def __str__(self) -> str:
        where = f" ({self.source_ref})" if self.source_ref else ""
        return f"line {self.line}{where}: {self.reason}"


def manifest_error_problem(error: ManifestError) -> LineProblem:
    return LineProblem(error.line, None, error.reason)


def object_color_map(
    data: JobData, line: Mapping[str, Any], attribute: str, mask_ref: str
) -> Mapping[str, Any]:
    """The object's internal-color-map: from its metadata, else from gtseg's sidecar next to
    ``mask_ref`` (the mask's resolved location)."""
    meta = line.get(metadata_key(attribute))
    if isinstance(meta, Mapping) and isinstance(meta.get("internal-color-map"), Mapping):
        return meta["internal-color-map"]
    sidecar = read_sidecar(data, mask_ref)
    if sidecar is not None and sidecar.classes:
        return sidecar.internal_color_map()
    raise LabelError(f"{metadata_key(attribute)} has no internal-color-map and there is no gtseg sidecar")


def failure_reason(line: Mapping[str, Any], attribute: str | None) -> str | None:
    """Ground Truth's (or gtseg's) failure-reason for an object that got no label."""
    candidates = [metadata_key(attribute)] if attribute else [k for k in line if k.endswith("-metadata")]
    for key in candidates:
        meta = line.get(key)
        if isinstance(meta, Mapping) and meta.get("failure-reason") and key[: -len("-metadata")] not in line:
            return str(meta["failure-reason"])
    return None


class AttributeChooser:
    """Which label attribute to export: ``--label-attribute``, else the only one the lines carry."""

    def __init__(self, requested: str | None) -> None:
        self.chosen = requested

    def choose(self, line: ManifestLine) -> str | None:
        if self.chosen is not None:
            return self.chosen if isinstance(line.data.get(self.chosen), str) else None
        found = mask_attributes(line.data)
        if len(found) > 1:
            raise ToolError(
                f"line {line.number} has several segmentation labels ({', '.join(found)}); "
                "choose one with --label-attribute"
            )
        if found:
            self.chosen = found[0]
            return self.chosen
        return None


def auto_map_local_job(data: JobData, manifest_ref: str, mask_uri: str) -> None:
    """A job synced to a local folder: map its S3 prefix to the folder, once, when the folder
    name matches the job folder in the mask URI (``aws s3 sync s3://b/p/JOB ./JOB``)."""
    if is_s3(manifest_ref) or not is_s3(mask_uri):
        return
    local_job = job_prefix_from_manifest(str(Path(manifest_ref).resolve()))
    remote_job = job_prefix_from_mask_uri(mask_uri)
    if not local_job or not remote_job or ref_basename(remote_job) != Path(local_job).name:
        return
    if any(remote_job.rstrip("/") + "/" == prefix for prefix, _ in data.mappings):
        return
    data.map_prefix(remote_job, local_job)
