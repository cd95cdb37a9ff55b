"""Finalize one labeled object of a streaming job, as Ground Truth announces it on the output topic.

A streaming job has no end, so there is no moment to finalize it whole (``gtseg finalize`` does
that for a finished job). Instead each announced object is finalized on its own, into the job's
streaming dataset under ``<job output folder>/gtseg/streaming/`` (``core.streaming``)::

    lines/<stem>.json   the object's output line in the built-in semantic-segmentation form
                        (``<lan>-metadata`` rebuilt from gtseg's sidecar: colour map, confidence,
                        job-name; ``core.builtin_output``), one JSON object
    masks/<stem>.png    its mask as an 8-bit single-channel PNG, pixel = class index (0 =
                        BACKGROUND, 1..N = the job's labels), as ``gtseg export --format index``
    labels.json         the classes (index, name, colour), as a dataset's labels.json without
                        pixel counts (the dataset is never complete), written with every object

``<stem>`` is the image's name plus a hash of its URI, so every invocation names an object alike
and a second announcement of the same image overwrites the same three files with the same bytes.
Every file is one object of its own: concurrent invocations never write the same key with
different content, so nothing needs a lock. ``gtseg stop`` gathers ``lines/`` into
``output.manifest`` once the job has stopped (docs/streaming.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.aws.sidecars import with_builtin_metadata
from gtseg.core.builtin_output import COLOR_MAP_KEY, mask_attributes
from gtseg.core.labels import ClassMap, LabelError, labels_json
from gtseg.core.layout import CONSOLIDATED_OUTPUT_DIR, job_prefix_from_mask_uri
from gtseg.core.manifest import dump_manifest_line, metadata_key
from gtseg.core.masks import MaskError, mask_to_png, read_class_mask
from gtseg.core.streaming import SOURCE_REF, STREAMING_DATASET_DIR, dataset_stem
from gtseg.core.uris import join_uri


class AnnouncementError(ValueError):
    """An announced line that cannot be finalized (retrying cannot help); the message says why."""


@dataclass(frozen=True)
class FinalizedObject:
    job_root: str  # s3://<output bucket>/jobs/<job>
    source_ref: str
    label_attribute: str
    line_uri: str
    mask_uri: str
    classes: int


def dataset_root(job_root: str) -> str:
    return join_uri(job_root, STREAMING_DATASET_DIR)


def label_attribute_of(line: Mapping[str, Any]) -> str:
    """The attribute holding this job's consolidated mask: the one whose mask lies in a job's
    ``annotations/consolidated-annotation/output/`` (a chained line may carry earlier jobs' masks,
    which lie in their own jobs' folders; the newest of those is this job's)."""
    marker = f"/{CONSOLIDATED_OUTPUT_DIR}/"
    found = [a for a in mask_attributes(line) if marker in str(line.get(a))]
    if not found:
        raise AnnouncementError("the line has no consolidated mask (<label attribute> + its -metadata)")
    if len(found) > 1:
        # several jobs' masks: this job's metadata is the most recent one Ground Truth wrote
        def created(attribute: str) -> str:
            meta = line.get(metadata_key(attribute))
            return str(meta.get("creation-date", "")) if isinstance(meta, Mapping) else ""

        found.sort(key=created)
    return found[-1]


def finalize_announced_object(store: S3Store, line: Mapping[str, Any]) -> FinalizedObject:
    """Write the object's built-in-form line, index mask and the job's class list; raises
    ``AnnouncementError`` for a line that cannot be finalized and ``StorageError`` when S3 fails
    (the caller retries those)."""
    source = line.get(SOURCE_REF)
    if not isinstance(source, str) or not source:
        raise AnnouncementError("the line has no source-ref")
    attribute = label_attribute_of(line)
    mask = str(line[attribute])
    job_root = job_prefix_from_mask_uri(mask)
    if job_root is None:
        raise AnnouncementError(f"the mask {mask} is not in a job's annotations/ folder")
    built_in, problem = with_builtin_metadata(store, line, attribute)
    color_map = (built_in.get(metadata_key(attribute)) or {}).get(COLOR_MAP_KEY)
    if not isinstance(color_map, Mapping):
        raise AnnouncementError(problem or f"no internal-color-map for {attribute}")
    try:
        classes = ClassMap.from_internal_color_map(color_map)
        indices = read_class_mask(store.get_bytes(mask), classes)
    except (LabelError, MaskError) as exc:
        raise AnnouncementError(f"the mask {mask} cannot be read with its colour map: {exc}") from exc
    root = dataset_root(job_root)
    stem = dataset_stem(source)
    line_uri = join_uri(root, "lines", f"{stem}.json")
    mask_uri = join_uri(root, "masks", f"{stem}.png")
    store.put_bytes(mask_uri, mask_to_png(indices), "image/png")
    labels = labels_json(classes, attribute).encode("utf-8")
    store.put_bytes(join_uri(root, "labels.json"), labels, "application/json")
    store.put_bytes(line_uri, dump_manifest_line(built_in).encode("utf-8"), "application/json")
    return FinalizedObject(job_root, source, attribute, line_uri, mask_uri, len(classes))


def gather_lines(store: S3Store, job_root: str) -> tuple[str, int]:
    """Every finalized line of the job's streaming dataset -> its ``output.manifest`` (lines in
    key order); (the manifest's URI, the number of lines). For a stopped job (one writer)."""
    root = dataset_root(job_root)
    lines = []
    for uri in store.list_keys(join_uri(root, "lines") + "/"):
        if uri.endswith(".json"):
            try:
                lines.append(store.get_bytes(uri).decode("utf-8").strip() + "\n")
            except (StorageError, UnicodeDecodeError) as exc:
                raise StorageError(f"cannot gather {uri}: {exc}") from exc
    manifest = join_uri(root, "output.manifest")
    store.put_bytes(manifest, "".join(lines).encode("utf-8"), "application/jsonlines")
    return manifest, len(lines)
