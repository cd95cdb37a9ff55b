"""Manifest lines and the output content/metadata of a semantic-segmentation object.

Pure Python. The content matches Ground Truth's built-in semantic-segmentation output
(protocol doc §4.1): ``<lan>`` = S3 URI of the PNG, ``<lan>-metadata`` = internal-color-map,
type, human-annotated, creation-date, job-name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gtseg.core.labels import ClassMap

SEGMENTATION_TYPE = "groundtruth/semantic-segmentation"
CUSTOM_TYPE = "groundtruth/custom"
METADATA_SUFFIX = "-metadata"
JOB_NAME_PREFIX = "labeling-job/"
# Built-in adjustment jobs say whether a worker changed the prior mask (docs/protocol.md §4.1).
ADJUSTMENT_STATUS_KEY = "adjustment-status"
ADJUSTED = "adjusted"
UNADJUSTED = "unadjusted"
# Manifest key the launcher adds to adjustment-job lines: which earlier attribute holds the prior
# mask (the pre-annotation Lambda receives only the line, no job-level parameters).
PRIOR_LABEL_ATTRIBUTE_KEY = "gtseg-prior-label-attribute"


class ManifestError(ValueError):
    """A manifest line that cannot be used: its 1-based number and why."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


def job_name_from_arn(arn: str | None) -> str:
    """``arn:aws:sagemaker:r:a:labeling-job/NAME`` -> ``NAME``."""
    if not arn:
        return "unknown-job"
    return arn.rsplit("/", 1)[-1]


def exact_job_name(arn_name: str, *spellings: str | None) -> str:
    """The job's name in the case it was created with.

    Real events carry the name lower-cased in ``labelingJobArn`` while the job's S3 folder and
    the label attribute keep its case (docs/protocol.md); the first of ``spellings`` that is
    ``arn_name`` in another case wins, else ``arn_name`` as it is.
    """
    for spelling in spellings:
        if spelling and spelling.lower() == arn_name.lower():
            return spelling
    return arn_name


def adjustment_status(modified: Iterable[bool | None]) -> str | None:
    """``adjusted`` when any worker changed the prior mask (``initialValueModified: true``),
    ``unadjusted`` when every worker who was shown one left it as it was, None when no worker was
    shown a prior (not an adjustment task)."""
    flags = [flag for flag in modified if flag is not None]
    if not flags:
        return None
    return ADJUSTED if any(flags) else UNADJUSTED


def iso_timestamp(moment: datetime) -> str:
    """Ground Truth's creation-date style: ISO-8601, no timezone, microseconds."""
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds")


def metadata_key(label_attribute_name: str) -> str:
    return label_attribute_name + METADATA_SUFFIX


def segmentation_metadata(
    class_map: ClassMap,
    *,
    job_name: str,
    creation_date: str,
    confidences: Sequence[float] | None = None,
    human_annotated: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "internal-color-map": class_map.internal_color_map(confidences),
        "type": SEGMENTATION_TYPE,
        "human-annotated": "yes" if human_annotated else "no",
        "creation-date": creation_date,
        "job-name": f"{JOB_NAME_PREFIX}{job_name}",
    }
    if extra:
        metadata.update(extra)
    return metadata


def segmentation_content(
    label_attribute_name: str, mask_uri: str, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    return {label_attribute_name: mask_uri, metadata_key(label_attribute_name): dict(metadata)}


def failure_content(
    label_attribute_name: str, *, job_name: str, reason: str, creation_date: str
) -> dict[str, Any]:
    """Content for an object that could not be consolidated (no ``<lan>`` value, a failure-reason)."""
    return {
        metadata_key(label_attribute_name): {
            "type": SEGMENTATION_TYPE,
            "human-annotated": "yes",
            "creation-date": creation_date,
            "job-name": f"{JOB_NAME_PREFIX}{job_name}",
            "failure-reason": reason,
        }
    }


@dataclass(frozen=True)
class ManifestLine:
    number: int  # 1-based line number in its file
    data: dict[str, Any]

    @property
    def source_ref(self) -> str | None:
        value = self.data.get("source-ref")
        return value if isinstance(value, str) else None


def parse_manifest(lines: Iterable[str | bytes]) -> Iterator[ManifestLine | ManifestError]:
    """JSON Lines -> ManifestLine per non-blank line; a bad line yields a ManifestError (not raised)."""
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if not text:
            continue
        try:
            data = json.loads(text)
        except ValueError as exc:
            yield ManifestError(number, f"not valid JSON ({exc})")
            continue
        if not isinstance(data, dict):
            yield ManifestError(number, "a manifest line must be a JSON object")
            continue
        yield ManifestLine(number, data)


def dump_manifest_line(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def segmentation_attributes(line: Mapping[str, Any]) -> list[str]:
    """Label attribute names on a line that carry a segmentation mask with a colour map."""
    found = []
    for key, value in line.items():
        meta = line.get(metadata_key(key))
        if (
            isinstance(value, str)
            and isinstance(meta, Mapping)
            and isinstance(meta.get("internal-color-map"), Mapping)
        ):
            found.append(key)
    return sorted(found)


_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def safe_filename(name: str) -> str:
    """A file name that is valid on every common filesystem (Ground Truth keys contain ':')."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    return cleaned or "_"
