"""Gold objects (honeypots): images with a known mask, mixed into a job to measure each worker.

The launcher adds one key to a gold object's manifest line, ``gtseg-gold``, holding where the
known mask is and its colour map. Workers see a gold object like any other (the pre-annotation
Lambda strips the key from what the worker template can read); the consolidation Lambda scores
each worker's mask against the known one, uses the scores as the workers' priors for the batch,
and answers the gold object with its known mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.layout import JOBS_PREFIX
from gtseg.core.uris import parse_s3_uri

GOLD_KEY = "gtseg-gold"
# Where a known mask may live: under this prefix of the stack's data or output bucket. The
# consolidation Lambda's role reads ``jobs/*`` of both buckets (infra/access.py) and nothing else.
GOLD_MASK_PREFIX = f"{JOBS_PREFIX}/"


class GoldError(ValueError):
    """A ``gtseg-gold`` entry that cannot be used; the message says what is wrong."""


class GoldReference(BaseModel):
    """``{"mask": "s3://.../known.png", "internal-color-map": {...}}`` on a manifest line."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    mask: str
    internal_color_map: dict[str, dict[str, Any]] = Field(alias="internal-color-map")

    @field_validator("mask")
    @classmethod
    def _s3_png(cls, value: str) -> str:
        _bucket, key = parse_s3_uri(value)
        if not key.lower().endswith(".png"):
            raise ValueError(f"the known mask {value!r} is not a .png")
        return value.strip()

    def class_map(self) -> ClassMap:
        """The known mask's classes (raises ``LabelError``)."""
        return ClassMap.from_internal_color_map(self.internal_color_map)

    def to_line_value(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def gold_reference(line: Mapping[str, Any]) -> GoldReference | None:
    """The line's gold reference; None for an ordinary object. ``GoldError`` when malformed."""
    raw = line.get(GOLD_KEY)
    if raw is None:
        return None
    try:
        reference = GoldReference.model_validate(raw)
        reference.class_map()
    except (ValidationError, LabelError, ValueError) as exc:
        raise GoldError(f"{GOLD_KEY} is unusable: {exc}") from None
    return reference


def without_gold(line: Mapping[str, Any]) -> dict[str, Any]:
    """The line as a worker may see it: no trace of the known mask."""
    return {key: value for key, value in line.items() if key != GOLD_KEY}


def gold_line(source_ref: str, reference: GoldReference) -> dict[str, Any]:
    """A gold object's manifest line: the image and the gold key, nothing else a worker could notice."""
    return {"source-ref": source_ref, GOLD_KEY: reference.to_line_value()}
