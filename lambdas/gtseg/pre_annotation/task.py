"""Pre-annotation logic: which image, which labels, which starting mask, and the task input.

Pure: no boto3, no Lambda types. ``gtseg.pre_annotation.service`` does the I/O and passes what it
read in; anything that needs I/O but decides *order* (label sources) takes callables. Every reason
an object cannot become a task is a ``SkipObject`` with an ``Outcome`` (the metric name) and a
sentence naming what is wrong, because the Lambda must answer, never raise (protocol doc §1.4: a
raising pre-annotation Lambda fails the whole labeling job).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gtseg.core.gold import GOLD_KEY, without_gold
from gtseg.core.images import ImageFormat, ImageInfo
from gtseg.core.labels import ClassMap, LabelCategoryConfig, LabelError, labels_from_manifest_line
from gtseg.core.manifest import METADATA_SUFFIX, metadata_key
from gtseg.core.masks import MAX_MASK_PIXELS
from gtseg.core.uris import parse_s3_uri

# Ground Truth's input-data quotas (protocol doc §3.6). 40 MB is read as 40 * 10**6 bytes: the
# stricter reading, because an image Ground Truth refuses fails its task after workers see it.
MAX_IMAGE_BYTES = 40_000_000
MAX_IMAGE_PIXELS = MAX_MASK_PIXELS  # 100 megapixels
IMAGE_EXTENSIONS: Mapping[str, ImageFormat] = {
    ".jpg": ImageFormat.JPEG,
    ".jpeg": ImageFormat.JPEG,
    ".png": ImageFormat.PNG,
}

# Manifest-line keys this module reads besides source-ref and labels.
HEADER_KEY = "header"
REF_SUFFIX = "-ref"


class Outcome(StrEnum):
    """One metric per outcome; the value is the metric name."""

    TASK_CREATED = "TaskCreated"
    INVALID_EVENT = "SkippedInvalidEvent"
    INVALID_SOURCE = "SkippedInvalidSource"
    MISSING_OBJECT = "SkippedMissingObject"
    UNREADABLE_OBJECT = "SkippedUnreadableObject"
    UNSUPPORTED_IMAGE = "SkippedUnsupportedImage"
    IMAGE_TOO_LARGE = "SkippedImageTooLarge"
    NO_LABELS = "SkippedNoLabels"
    INTERNAL_ERROR = "SkippedInternalError"


class InitialValueOutcome(StrEnum):
    """Metrics for the optional starting mask, alongside the main outcome."""

    PRIOR_USED = "PriorMaskUsed"
    PRIOR_REJECTED = "PriorMaskRejected"
    PRELABEL_USED = "PrelabelUsed"
    PRELABEL_FAILED = "PrelabelFailed"
    PRELABEL_SKIPPED = "PrelabelSkipped"


class SkipObject(Exception):
    """This data object gets no task (``isHumanAnnotationRequired: false``) for ``reason``."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


# --------------------------------------------------------------------------- the image


def image_source(data_object: Mapping[str, Any]) -> str:
    """The manifest line's ``source-ref``, checked to be an ``s3://`` URI of a jpg/jpeg/png."""
    source_ref = data_object.get("source-ref")
    if source_ref is None:
        if "source" in data_object:
            raise SkipObject(
                Outcome.INVALID_SOURCE,
                "the manifest line has inline 'source' text; semantic segmentation needs an image 'source-ref'",
            )
        raise SkipObject(Outcome.INVALID_SOURCE, "the manifest line has no 'source-ref'")
    if not isinstance(source_ref, str):
        raise SkipObject(
            Outcome.INVALID_SOURCE, f"'source-ref' must be a string, got {type(source_ref).__name__}"
        )
    try:
        _bucket, key = parse_s3_uri(source_ref)
    except ValueError as exc:
        raise SkipObject(Outcome.INVALID_SOURCE, f"'source-ref' {exc}") from None
    if image_extension(key) is None:
        allowed = "/".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
        raise SkipObject(Outcome.UNSUPPORTED_IMAGE, f"'source-ref' {source_ref!r} is not a {allowed} file")
    return source_ref.strip()


def image_extension(key: str) -> str | None:
    dot = key.rfind(".")
    ext = key[dot:].lower() if dot >= 0 else ""
    return ext if ext in IMAGE_EXTENSIONS else None


def check_image(source_ref: str, info: ImageInfo, size_bytes: int | None) -> list[str]:
    """Ground Truth's size limits; raises ``SkipObject``. Returns notes worth logging."""
    if size_bytes is not None and size_bytes > MAX_IMAGE_BYTES:
        raise SkipObject(
            Outcome.IMAGE_TOO_LARGE, f"image is {size_bytes} bytes; Ground Truth's limit is {MAX_IMAGE_BYTES}"
        )
    if info.pixels > MAX_IMAGE_PIXELS:
        raise SkipObject(
            Outcome.IMAGE_TOO_LARGE,
            f"image is {info.width}x{info.height} ({info.pixels / 1e6:.1f} MP); the limit is "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP",
        )
    notes = []
    ext = image_extension(parse_s3_uri(source_ref)[1])
    if ext is not None and IMAGE_EXTENSIONS[ext] != info.format:
        # Browsers sniff the content, so the task still works; worth knowing about, not fatal.
        notes.append(f"file extension {ext} but the content is {info.format.value.upper()}")
    return notes


# --------------------------------------------------------------------------- labels

LabelLoader = Callable[[], LabelCategoryConfig | None]


@dataclass(frozen=True)
class ResolvedLabels:
    labels: tuple[str, ...]
    source: str  # "manifest-line", or the name of the loader that supplied them
    skipped: tuple[str, ...] = ()  # why earlier sources gave nothing, for the log


def resolve_labels(
    data_object: Mapping[str, Any], sources: Sequence[tuple[str, LabelLoader]]
) -> ResolvedLabels:
    """Labels in the documented order: the manifest line's ``labels``, then each source in turn.

    A loader returns ``None`` when its source is not available here (no job ARN, nothing
    configured, the job could not be described): the next one is tried. A loader that raises
    ``LabelError`` found its source but it is broken: that stops the search, because falling back
    to another list could give workers labels that do not match the job's.
    """
    try:
        labels = labels_from_manifest_line(data_object)
    except LabelError as exc:
        raise SkipObject(Outcome.NO_LABELS, f"invalid 'labels' on the manifest line: {exc}") from None
    if labels is not None:
        return ResolvedLabels(labels, "manifest-line")
    skipped = ["manifest-line: no 'labels' key"]
    for name, load in sources:
        try:
            config = load()
        except LabelError as exc:
            raise SkipObject(Outcome.NO_LABELS, f"{name}: {exc}") from None
        if config is not None:
            return ResolvedLabels(config.labels, name, tuple(skipped))
        skipped.append(f"{name}: not available")
    raise SkipObject(Outcome.NO_LABELS, "no label list found (" + "; ".join(skipped) + ")")


# --------------------------------------------------------------------------- initial value


@dataclass(frozen=True)
class InitialValue:
    """What ``<crowd-semantic-segmentation initial-value>`` needs, with the mask as an S3 URI.

    The template passes ``src`` through ``grant_read_access`` itself (it must run in Liquid).
    """

    label_mappings: dict[str, dict[str, str]]
    src: str
    origin: str  # "prior:<attribute>" or "prelabel"

    def to_task_input(self) -> dict[str, Any]:
        return {"labelMappings": self.label_mappings, "src": self.src}


@dataclass(frozen=True)
class PriorMask:
    """The result of looking for an earlier job's mask on the manifest line."""

    attribute: str | None = None
    initial_value: InitialValue | None = None
    problem: str | None = None  # set when a prior mask was expected or found but is unusable
    notes: tuple[str, ...] = field(default=())


def _prior_candidates(data_object: Mapping[str, Any]) -> list[str]:
    """``<x>-ref`` attributes whose ``<x>-ref-metadata`` carries an ``internal-color-map``.

    Looser than ``manifest.segmentation_attributes`` on purpose: a malformed prior (bad URI,
    bad colour map) is still found here, so it is reported instead of silently ignored.
    """
    found = []
    for key, value in data_object.items():
        if not key.endswith(REF_SUFFIX + METADATA_SUFFIX) or not isinstance(value, Mapping):
            continue
        if "internal-color-map" in value:
            found.append(key[: -len(METADATA_SUFFIX)])
    return sorted(found)


def priors_without_colour_map(data_object: Mapping[str, Any], configured_attribute: str | None) -> list[str]:
    """Prior masks on the line whose metadata has no colour map: Ground Truth replaced the metadata
    of a custom job's output (docs/protocol.md §2.4), so it is in the mask's gtseg sidecar."""
    data_object = without_gold(data_object)
    if configured_attribute:
        names = [configured_attribute] if configured_attribute != GOLD_KEY else []
    else:
        names = [k for k in data_object if k.endswith(REF_SUFFIX)]
    return sorted(
        name
        for name in names
        if isinstance(data_object.get(name), str)
        and str(data_object[name]).lower().endswith(".png")
        and isinstance(data_object.get(metadata_key(name)), Mapping)
        and "internal-color-map" not in data_object[metadata_key(name)]
    )


def find_prior_mask(
    data_object: Mapping[str, Any], labels: Sequence[str], configured_attribute: str | None = None
) -> PriorMask:
    """The earlier job's mask to start from (adjustment/review, protocol doc §10), if any.

    ``configured_attribute`` (``PRIOR_LABEL_ATTRIBUTE``) names it; otherwise it is auto-detected
    when exactly one ``*-ref`` attribute with a colour map is on the line. A gold object's known
    mask (``gtseg-gold``) is never a prior, whatever the setting: it is the answer.
    """
    data_object = without_gold(data_object)
    if configured_attribute == GOLD_KEY:
        return PriorMask(notes=(f"no prior mask: {GOLD_KEY!r} is a gold object's known mask, never a prior",))
    if configured_attribute:
        attribute = configured_attribute
        if attribute not in data_object and metadata_key(attribute) not in data_object:
            return PriorMask(notes=(f"no prior mask: {attribute!r} is not on this manifest line",))
    else:
        candidates = _prior_candidates(data_object)
        if not candidates:
            return PriorMask()
        if len(candidates) > 1:
            return PriorMask(
                problem=f"several prior masks ({', '.join(candidates)}); set PRIOR_LABEL_ATTRIBUTE to choose one"
            )
        attribute = candidates[0]
    try:
        value = prior_initial_value(data_object, attribute, labels)
    except ValueError as exc:
        return PriorMask(attribute=attribute, problem=f"prior mask {attribute!r} is unusable: {exc}")
    return PriorMask(attribute=attribute, initial_value=value)


def prior_initial_value(
    data_object: Mapping[str, Any], attribute: str, labels: Sequence[str]
) -> InitialValue:
    """``labelMappings`` from the prior's ``internal-color-map`` (BACKGROUND skipped) + its PNG URI.

    Raises ``ValueError`` (``LabelError`` is one) naming what is wrong.
    """
    metadata = data_object.get(metadata_key(attribute))
    if not isinstance(metadata, Mapping):
        raise ValueError(f"no {metadata_key(attribute)!r} object")
    if "failure-reason" in metadata and attribute not in data_object:
        raise ValueError(f"the earlier job failed on this object: {metadata['failure-reason']}")
    uri = data_object.get(attribute)
    if not isinstance(uri, str):
        raise ValueError("the mask URI is missing or not a string")
    _bucket, key = parse_s3_uri(uri)
    if not key.lower().endswith(".png"):
        raise ValueError(f"{uri!r} is not a .png")
    color_map = metadata.get("internal-color-map")
    if not isinstance(color_map, Mapping):
        raise ValueError("'internal-color-map' must be an object")
    prior_classes = ClassMap.from_internal_color_map(color_map)
    missing = [name for name in prior_classes.labels if name not in labels]
    if missing:
        # Ground Truth requires an adjustment job to keep the original labels (protocol doc §5);
        # a prior class the worker UI does not know would be painted with no label.
        raise ValueError(f"its classes {missing} are not in this job's labels")
    return InitialValue(prior_classes.label_mappings(), uri.strip(), f"prior:{attribute}")


def prelabel_initial_value(uri: str, labels: Sequence[str]) -> InitialValue:
    """A model pre-label written with the job's class map (``encode_index_png``)."""
    return InitialValue(ClassMap.from_labels(labels).label_mappings(), uri, "prelabel")


# --------------------------------------------------------------------------- the answer


def build_task_input(
    source_ref: str,
    labels: Sequence[str],
    data_object: Mapping[str, Any],
    initial_value: InitialValue | None = None,
) -> dict[str, Any]:
    """``taskInput``: the keys the worker template reads (``task.input.*``).

    ``taskObject`` and ``labels`` keep AWS's own template working unchanged; ``manifestLine`` is
    the whole line so templates can reach other keys (AWS's adjustment examples use it), except a
    gold object's ``gtseg-gold`` key: the worker must not be able to read the known mask.
    """
    task_input: dict[str, Any] = {
        "taskObject": source_ref,
        "labels": list(labels),
        "manifestLine": without_gold(data_object),
    }
    header = data_object.get(HEADER_KEY)
    if isinstance(header, str) and header.strip():
        task_input["header"] = header.strip()
    if initial_value is not None:
        task_input["initialValue"] = initial_value.to_task_input()
    return task_input


def skipped_task_input(reason: str) -> dict[str, Any]:
    """``taskInput`` of an object that gets no task: only the reason, for anyone reading the logs."""
    return {"skipReason": reason}
