"""Where things live: Ground Truth's job-output layout and gtseg's own keys, in one place.

Ground Truth writes under ``<S3OutputPath>/<job>/`` (protocol doc §4.2)::

    <job>/manifests/output/output.manifest
    <job>/annotations/worker-response/iteration-<n>/<datasetObjectId>/<timestamp>.json
    <job>/annotations/consolidated-annotation/consolidation-request/iteration-<n>/<timestamp>.json
    <job>/annotations/consolidated-annotation/output/...

gtseg adds, per consolidated object, ``<id>.png`` and its ``<id>.json`` sidecar; the launcher
writes each job's inputs under ``s3://<data bucket>/jobs/<job>/`` and model pre-labels go under
``s3://<output bucket>/prelabels/<job>/``. Pure string work: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath

OUTPUT_MANIFEST = "manifests/output/output.manifest"
# gtseg finalize writes a finished job's built-in-form manifest, dataset, report and summary here.
FINALIZED_DIR = "gtseg"
FINALIZED_MANIFEST = f"{FINALIZED_DIR}/output.manifest"
WORKER_RESPONSE_DIR = "annotations/worker-response"
CONSOLIDATED_DIR = "annotations/consolidated-annotation"
CONSOLIDATION_REQUEST_DIR = f"{CONSOLIDATED_DIR}/consolidation-request"
CONSOLIDATED_OUTPUT_DIR = f"{CONSOLIDATED_DIR}/output"

# The launcher's inputs of a job: s3://<data bucket>/jobs/<job>/{manifest.jsonl,label-categories.json};
# Ground Truth's output path is s3://<output bucket>/jobs/ (it appends <job>/).
JOBS_PREFIX = "jobs"
MANIFEST_NAME = "manifest.jsonl"
LABEL_CATEGORIES_NAME = "label-categories.json"
# Model pre-labels in the output bucket (documented in docs/worker-template.md).
PRELABEL_PREFIX = "prelabels"

_ITERATION_IN_PATH = re.compile(r"/(iteration-\d+)/")
_ITERATION_DIR = re.compile(r"iteration-(\d+)")
_OBJECT_ID_IN_MASK_NAME = re.compile(r"(\d+)(?:[_.]|$)")


# Object ids made only of these characters are their own file name; any other id is made safe
# and followed by "~" and a hash of the id ("~" is never in a plain name, so no two ids share a key).
_PLAIN_ID = re.compile(r"[A-Za-z0-9._=-]{1,100}")
_RESERVED_NAMES = frozenset({".", ".."})


def object_key(object_id: str) -> str:
    """The file name of an object's mask: readable for plain ids, unambiguous for every id."""
    if _PLAIN_ID.fullmatch(object_id) and object_id not in _RESERVED_NAMES:
        return object_id
    readable = re.sub(r"[^A-Za-z0-9._=-]", "_", object_id)[:60].strip(".") or "_"
    return f"{readable}~{hashlib.sha256(object_id.encode('utf-8')).hexdigest()[:16]}"


def ref_basename(ref: str) -> str:
    """The last path component of a URI or path (``.../0_2024-05-01T12:00:05.png`` -> that name)."""
    return ref.rstrip("/").rsplit("/", 1)[-1] if ref.startswith("s3://") else PurePath(ref).name


def iteration_of(payload_uri: str) -> str:
    """``iteration-N`` from a consolidation-request path; otherwise a stable name derived from it."""
    match = _ITERATION_IN_PATH.search(payload_uri)
    if match:
        return match.group(1)
    return "payload-" + hashlib.sha1(payload_uri.encode()).hexdigest()[:12]


def iteration_number(folder_name: str) -> int | None:
    """``iteration-3`` -> 3; None for any other name."""
    match = _ITERATION_DIR.fullmatch(folder_name)
    return int(match.group(1)) if match else None


def job_root_of_payload(payload_uri: str) -> str | None:
    """``s3://b/p/<job>/annotations/consolidated-annotation/consolidation-request/...`` -> ``s3://b/p/<job>``."""
    marker = f"/{CONSOLIDATION_REQUEST_DIR}/"
    return payload_uri.split(marker, 1)[0] if marker in payload_uri else None


def job_root_of_output_manifest(manifest_uri: str) -> str | None:
    """``s3://b/p/<job>/manifests/output/output.manifest`` -> ``s3://b/p/<job>``; None elsewhere."""
    marker = "/" + OUTPUT_MANIFEST
    return manifest_uri[: -len(marker)] if manifest_uri.endswith(marker) else None


def finalized_manifest_of(manifest_uri: str) -> str | None:
    """Where ``gtseg finalize`` puts the built-in-form copy of a job's output manifest."""
    root = job_root_of_output_manifest(manifest_uri)
    return f"{root}/{FINALIZED_MANIFEST}" if root else None


def job_folder_of_output_config(output_config: str) -> str | None:
    """The job's folder name in an ``outputConfig``: the segment before its last ``annotations``
    (``s3://b/p/<job>/annotations`` in real events, ``.../<job>/annotations/consolidated-annotation/
    output`` in older documentation); None when it has no ``annotations`` segment."""
    segments = [s for s in output_config.removeprefix("s3://").split("/") if s]
    if "annotations" not in segments[1:]:
        return None
    last = len(segments) - 1 - segments[::-1].index("annotations")
    return segments[last - 1] if last >= 2 else None


def job_prefix_from_mask_uri(mask_uri: str) -> str | None:
    """``s3://b/p/<job>/annotations/consolidated-annotation/...`` -> ``s3://b/p/<job>``."""
    marker = "/annotations/"
    if marker in mask_uri:
        return mask_uri.split(marker, 1)[0]
    return None


def dataset_object_id_from_mask(mask_uri: str) -> str | None:
    """Ground Truth names consolidated masks ``<datasetObjectId>_<timestamp>.png`` (built-in) and
    gtseg names them ``iteration-<N>/<datasetObjectId>.png``; the id is the leading digits."""
    match = _OBJECT_ID_IN_MASK_NAME.match(ref_basename(mask_uri))
    return match.group(1) if match else None


def sidecar_ref(mask_ref: str) -> str:
    """gtseg writes ``<id>.json`` next to each consolidated ``<id>.png`` (design contract 3)."""
    return mask_ref[: -len(".png")] + ".json" if mask_ref.lower().endswith(".png") else mask_ref + ".json"


def prelabel_key(job_name: str, source_ref: str) -> str:
    """``prelabels/<job-name>/<sha1 of source-ref>.png``: stable, so a retried call overwrites."""
    digest = hashlib.sha1(source_ref.encode("utf-8")).hexdigest()
    return f"{PRELABEL_PREFIX}/{job_name}/{digest}.png"
