"""The plan of a finalize run: one streaming pass over the output manifest, before any batch.

It decides what every batch must agree on without talking to the others:

* the label attribute (``--label-attribute``, else the only one the lines carry);
* the dataset's class map: the job's label categories when known, else every colour map on the
  lines reconciled by class name (``gtseg export``'s rule), else the first mask's sidecar (a
  custom job whose metadata Ground Truth replaced: every gtseg sidecar lists all the job's classes);
* which file stems two lines would share (8 bytes per line, the only memory that grows with the
  manifest): those lines' files get a hash of their line in the name, the others keep their name;
* where the sidecars of objects that got no label may be (the consolidation's iteration folders).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath

import numpy as np

from gtseg.core.builtin_output import COLOR_MAP_KEY, FAILURE_KEY, is_custom_metadata, mask_attributes
from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.layout import CONSOLIDATED_OUTPUT_DIR, job_prefix_from_mask_uri, ref_basename
from gtseg.core.manifest import (
    JOB_NAME_PREFIX,
    METADATA_SUFFIX,
    PRIOR_LABEL_ATTRIBUTE_KEY,
    ManifestError,
    iso_timestamp,
    metadata_key,
    parse_manifest,
    safe_filename,
)
from gtseg.finalize.models import FinalizePlan, PlanClass
from gtseg.tools.class_maps import ClassReconciler, parse_color_map
from gtseg.tools.errors import ToolError
from gtseg.tools.export import DEFAULT_VAL_FRACTION
from gtseg.tools.jobdata import (
    JobData,
    JobDataError,
    job_prefix_from_manifest,
    join_ref,
    parent_ref,
    read_sidecar,
)
from gtseg.tools.manifest_lines import AttributeChooser, auto_map_local_job

# How many objects the report shows (it renders every one): all of a job this small, else the
# lowest-confidence half of this many and the rest spread evenly over the job.
DEFAULT_REPORT_OBJECTS = 200

ProgressCallback = Callable[[int, int | None], None]


def stem_and_ext(ref: str) -> tuple[str, str]:
    """A file's stem and lower-cased extension, as ``gtseg export`` names dataset files."""
    name = PurePosixPath(ref_basename(ref).replace("\\", "/")).name
    path = PurePosixPath(name)
    suffix = path.suffix.lower()
    if not suffix or len(suffix) > 6:
        return safe_filename(name), ""
    return safe_filename(path.stem), "." + safe_filename(suffix[1:])


def stem_hash(stem: str) -> int:
    """64 bits of a stem, case-folded (case-insensitive file systems hold one of two such names)."""
    return int.from_bytes(hashlib.blake2b(stem.lower().encode("utf-8"), digest_size=8).digest(), "big")


def failed_attribute(line: dict) -> str | None:
    """The label attribute of a line the job gave no label: only ``<lan>-metadata`` is there."""
    for key, value in line.items():
        if (
            key.endswith(METADATA_SUFFIX)
            and key[: -len(METADATA_SUFFIX)] not in line
            and isinstance(value, dict)
            and (FAILURE_KEY in value or is_custom_metadata(value))
        ):
            return key[: -len(METADATA_SUFFIX)]
    return None


def own_attribute(line: dict, job_folder: str | None, number: int, known: str | None = None) -> str | None:
    """The job's own label on a line that may carry earlier jobs' too (a chained or adjustment job's
    line keeps its prior's): the one mask attribute that is not the launcher's named prior
    (``gtseg-prior-label-attribute``), else the one named after the job (``<job>-ref``, or whose
    metadata names the job); None when the line has no mask; ``ToolError`` when it stays ambiguous.
    ``known``: the attribute an earlier line showed the job failed (the one to look for)."""
    if known is not None:
        return known if isinstance(line.get(known), str) else None
    failed = failed_attribute(line)  # the job may have failed this object: only its metadata is there
    found = [
        a
        for a in [*mask_attributes(line), *([failed] if failed else [])]
        if a != line.get(PRIOR_LABEL_ATTRIBUTE_KEY)
    ]
    if len(found) > 1 and job_folder:
        folder = job_folder.lower()
        named = [a for a in found if a.lower() == f"{folder}-ref" or _metadata_job(line, a) == folder]
        found = named or found
    if len(found) > 1:
        raise ToolError(
            f"line {number} has several segmentation labels ({', '.join(found)}); choose one with --label-attribute"
        )
    return found[0] if found else None


def _metadata_job(line: dict, attribute: str) -> str | None:
    meta = line.get(metadata_key(attribute))
    name = meta.get("job-name") if isinstance(meta, dict) else None
    return name.removeprefix(JOB_NAME_PREFIX).lower() if isinstance(name, str) else None


class _Stems:
    """Stem hashes in 8-byte chunks; which occur more than once."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._pending: list[int] = []

    def add(self, stem: str) -> None:
        self._pending.append(stem_hash(stem))
        if len(self._pending) >= 8192:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.array(self._pending, dtype=np.uint64))
            self._pending = []

    def colliding(self) -> list[str]:
        self._flush()
        if not self._chunks:
            return []
        values, counts = np.unique(np.concatenate(self._chunks), return_counts=True)
        return [f"{int(v):016x}" for v in values[counts > 1]]


def plan_job(
    manifest: str,
    out: str,
    *,
    data: JobData,
    label_attribute: str | None = None,
    job_name: str | None = None,
    labels: Sequence[str] | None = None,
    job_prefix: str | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    copy_images: bool = True,
    report_objects: int = DEFAULT_REPORT_OBJECTS,
    created: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> FinalizePlan:
    """Read the manifest once and decide the plan; ``ToolError`` when it cannot be finalized."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ToolError(f"--val-fraction must be within 0..1, got {val_fraction}")
    if not data.exists(manifest):
        raise ToolError(f"no manifest at {manifest}")
    try:
        seed = ClassMap.from_labels(list(labels)) if labels else None
    except LabelError as exc:
        raise ToolError(f"the job's label categories cannot be used: {exc}") from exc
    reconciler = ClassReconciler(seed=seed)
    chooser = AttributeChooser(label_attribute)
    job_root = job_prefix or job_prefix_from_manifest(manifest)
    job_folder = ref_basename(job_root) if job_root else None
    stems = _Stems()
    base = parent_ref(manifest)
    lines = 0
    inline_maps = 0
    failed_attr: str | None = None
    first_mask: str | None = None
    total = data.count_lines(manifest)
    for item in parse_manifest(data.iter_lines(manifest)):
        lines += 1
        if progress:
            progress(lines, total)
        if isinstance(item, ManifestError):
            continue
        if chooser.chosen is None:
            chooser.chosen = own_attribute(item.data, job_folder, item.number, failed_attr)
            if chooser.chosen is not None and chooser.chosen not in item.data:
                failed_attr, chooser.chosen = (
                    chooser.chosen,
                    None,
                )  # a failed object: decide on a labelled line
        # only the attribute decided above, never whichever single mask a line happens to carry
        attribute = chooser.choose(item) if chooser.chosen is not None else None
        if attribute is None:
            failed_attr = failed_attr or failed_attribute(item.data)
            stems.add(stem_and_ext(item.source_ref or f"line-{item.number}")[0])
            continue
        mask = item.data[attribute]
        stems.add(stem_and_ext(item.source_ref or mask)[0])
        first_mask = first_mask or mask
        meta = item.data.get(metadata_key(attribute))
        if isinstance(meta, dict) and isinstance(meta.get(COLOR_MAP_KEY), dict):
            try:
                reconciler.add(parse_color_map(meta[COLOR_MAP_KEY]))
                inline_maps += 1
            except LabelError:
                pass  # that line's own problem, reported by its batch
    attribute = chooser.chosen or label_attribute or failed_attr
    if attribute is None:
        raise ToolError(
            f"{manifest} has no segmentation label (no '<name>' mask with '<name>-metadata' on any line)"
        )
    prefix = (
        job_prefix
        or job_prefix_from_manifest(manifest)
        or (job_prefix_from_mask_uri(first_mask) if first_mask else None)
    )
    if first_mask is not None:
        auto_map_local_job(data, manifest, first_mask)
    sidecar = read_sidecar(data, data.resolve(first_mask, base)) if first_mask else None
    if not labels and not inline_maps:
        if sidecar is None or not sidecar.classes:
            if first_mask is not None:
                raise ToolError(
                    f"the lines of {manifest} carry no colour map (Ground Truth replaced the metadata) and the first "
                    f"mask has no gtseg sidecar ({first_mask}): give the job's labels (--labels)"
                )
        else:
            reconciler.add(sidecar.class_map())
    class_map = reconciler.class_map()
    return FinalizePlan(
        manifest=manifest,
        out=out,
        label_attribute=attribute,
        job_name=job_name or (sidecar.job_name if sidecar else None),
        job_prefix=prefix,
        lines=lines,
        classes=[PlanClass(name=n, color=c) for n, c in zip(class_map.names, class_map.colors, strict=True)],
        colliding_stems=stems.colliding(),
        sidecar_folders=_sidecar_folders(data, prefix),
        val_fraction=val_fraction,
        copy_images=copy_images,
        report_objects=report_objects,
        created=iso_timestamp(created or datetime.now(UTC)),
    )


def _sidecar_folders(data: JobData, job_prefix: str | None) -> list[str]:
    """The consolidation's iteration folders of the job, latest first."""
    if not job_prefix:
        return []
    root = join_ref(job_prefix, CONSOLIDATED_OUTPUT_DIR)
    try:
        names = data.list_folders(root)
    except JobDataError:
        return []
    ordered = sorted(
        names, key=lambda n: int(n.rsplit("-", 1)[-1]) if n.rsplit("-", 1)[-1].isdigit() else -1, reverse=True
    )
    return [join_ref(root, name) for name in ordered]
