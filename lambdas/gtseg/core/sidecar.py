"""The consolidation sidecar (``gtseg/consolidation-sidecar@1``): what gtseg knows about one
consolidated object beyond the built-in output, written as ``<id>.json`` next to ``<id>.png``.

Written by the consolidation Lambda and by ``gtseg reconsolidate``, read by ``gtseg export``
(the colour map when Ground Truth replaced the metadata), ``report`` and ``reconsolidate``. The
JSON keys are the published format; the model is how code reads and writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gtseg.core.consolidation import AppliedMethod, ObjectConsolidation
from gtseg.core.labels import ClassMap, LabelError

SIDECAR_SCHEMA = "gtseg/consolidation-sidecar@1"


class _Record(BaseModel):
    # Unknown keys are ignored when reading: a newer gtseg may add some.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class SidecarClass(_Record):
    index: int
    class_name: str = Field(alias="class-name")
    hex_color: str = Field(alias="hex-color")
    confidence: float | None = None
    pixel_fraction: float | None = Field(default=None, alias="pixel-fraction")


class SidecarWorker(_Record):
    worker_id: str = Field(alias="workerId")
    quality: float | None = None  # 0.0 with a single worker: cannot be estimated
    agreement: float | None = None
    weight: float | None = None
    excluded: bool = False
    matched_pixels: int | None = Field(default=None, alias="matched-pixels")
    snapped_pixels: int | None = Field(default=None, alias="snapped-pixels")
    unmatched_pixels: int | None = Field(default=None, alias="unmatched-pixels")
    unknown_labels: list[str] = Field(default_factory=list, alias="unknown-labels")
    # the worker's mean IoU with the known masks of the batch's gold objects, and how many
    gold_iou: float | None = Field(default=None, alias="gold-iou")
    gold_objects: int = Field(default=0, alias="gold-objects")


class SidecarRejection(_Record):
    worker_id: str | None = Field(default=None, alias="workerId")
    reason: str


class ConsolidationSidecar(_Record):
    schema_id: Literal["gtseg/consolidation-sidecar@1"] = Field(
        default="gtseg/consolidation-sidecar@1", alias="schema"
    )
    dataset_object_id: str = Field(alias="datasetObjectId")
    # Always written; optional when read, so a reader needs only the parts it uses.
    job_name: str | None = Field(default=None, alias="job-name")
    label_attribute_name: str | None = Field(default=None, alias="labelAttributeName")
    source_ref: str | None = Field(default=None, alias="source-ref")
    mask: str | None = None
    method: AppliedMethod | None = None
    image_confidence: float | None = Field(default=None, alias="image-confidence")
    unanimous_fraction: float | None = Field(default=None, alias="unanimous-fraction")
    classes: list[SidecarClass] = Field(default_factory=list)
    workers: list[SidecarWorker] = Field(default_factory=list)
    rejected: list[SidecarRejection] = Field(default_factory=list)
    failure_reason: str | None = Field(default=None, alias="failure-reason")
    # payload positions (0-based) of later items with this datasetObjectId; only the first is answered
    duplicates: list[int] = Field(default_factory=list)
    # adjustment tasks only (workers were shown a prior mask): "adjusted" when any changed it
    adjustment_status: Literal["adjusted", "unadjusted"] | None = Field(
        default=None, alias="adjustment-status"
    )

    @classmethod
    def describe(
        cls,
        *,
        dataset_object_id: str,
        job_name: str,
        label_attribute_name: str,
        source_ref: str | None,
        class_map: ClassMap,
        outcome: ObjectConsolidation | None,
        mask: str | None,
        rejected: Sequence[tuple[str | None, str]] = (),
        failure_reason: str | None = None,
        gold_scores: Mapping[str, tuple[float | None, int]] | None = None,
        duplicates: Sequence[int] = (),
        adjustment_status: str | None = None,
    ) -> ConsolidationSidecar:
        """The sidecar of one object: ``outcome`` consolidated (``mask`` is where its PNG went) or
        not (no result; ``failure_reason`` says why)."""
        result = outcome.result if outcome is not None else None
        stats = {s.worker_id: s for s in outcome.decode_stats} if outcome is not None else {}
        fractions = (result.class_fractions if result else ()) or ()
        return cls(
            dataset_object_id=dataset_object_id,
            job_name=job_name,
            label_attribute_name=label_attribute_name,
            source_ref=source_ref,
            mask=mask if result is not None else None,
            method=result.method if result else None,
            image_confidence=result.image_confidence if result else None,
            unanimous_fraction=result.unanimous_fraction if result else None,
            classes=[
                SidecarClass(
                    index=i,
                    class_name=name,
                    hex_color=color,
                    confidence=result.class_confidence[i] if result else None,
                    pixel_fraction=(fractions[i] if i < len(fractions) else 0.0) if result else None,
                )
                for i, (name, color) in enumerate(zip(class_map.names, class_map.colors, strict=True))
            ],
            workers=[
                SidecarWorker(
                    worker_id=w.worker_id,
                    quality=w.quality,
                    agreement=w.agreement,
                    weight=w.weight,
                    excluded=w.excluded,
                    matched_pixels=stat.matched_pixels if stat else None,
                    snapped_pixels=stat.snapped_pixels if stat else None,
                    unmatched_pixels=stat.unmatched_pixels if stat else None,
                    unknown_labels=list(stat.unknown_labels) if stat else [],
                    gold_iou=_rounded((gold_scores or {}).get(w.worker_id, (None, 0))[0]),
                    gold_objects=(gold_scores or {}).get(w.worker_id, (None, 0))[1],
                )
                for w in (result.workers if result else ())
                for stat in [stats.get(w.worker_id)]
            ],
            rejected=[SidecarRejection(worker_id=w, reason=r) for w, r in rejected],
            failure_reason=failure_reason,
            duplicates=list(duplicates),
            adjustment_status=adjustment_status,  # type: ignore[arg-type]  # checked by pydantic
        )

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> ConsolidationSidecar | None:
        """A sidecar from its JSON, or ``None`` when it is not one (other schema, malformed)."""
        try:
            doc = json.loads(data) if isinstance(data, bytes | str) else data
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("schema") != SIDECAR_SCHEMA:
            return None
        try:
            return cls.model_validate(doc)
        except ValidationError:
            return None

    def to_json_bytes(self) -> bytes:
        """Deterministic bytes (sorted keys): a retried consolidation writes the same object."""
        body = self.model_dump(by_alias=True, mode="json")
        return (json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")

    def internal_color_map(self) -> dict[str, dict[str, str]]:
        """The object's classes as an ``internal-color-map`` (index -> class-name, hex-color)."""
        return {str(c.index): {"class-name": c.class_name, "hex-color": c.hex_color} for c in self.classes}

    def class_map(self) -> ClassMap:
        """Raises ``LabelError`` when the classes do not form a class map."""
        if not self.classes:
            raise LabelError("the sidecar lists no classes")
        return ClassMap.from_internal_color_map(self.internal_color_map())

    def worker(self, worker_id: str) -> SidecarWorker | None:
        return next((w for w in self.workers if w.worker_id == worker_id), None)

    def class_confidences(self) -> dict[str, float]:
        return {c.class_name: c.confidence for c in self.classes if c.confidence is not None}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
