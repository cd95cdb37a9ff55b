"""What crosses the finalize steps (and Step Functions' states): the plan, the map items, a batch's
outcome, one object's figures, the job's figures, the report's outcome and the summary.

All JSON: the plan and the figures are files under ``<out>/work/``; items and outcomes travel in
the state machine (each well under its 256 KiB state limit).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gtseg.core.labels import ClassMap

PLAN_SCHEMA = "gtseg/finalize-plan@1"
FIGURES_SCHEMA = "gtseg/finalize-figures@1"
SUMMARY_SCHEMA = "gtseg/finalize-summary@1"

ObjectStatus = Literal["labeled", "failed", "error"]


class _Model(BaseModel):
    # cache_strings="keys": pydantic's JSON string cache would otherwise keep up to 16,384 values
    # (source-refs, worker ids) of the figures the reduce reads, a megabyte for nothing
    model_config = ConfigDict(frozen=True, extra="ignore", cache_strings="keys")


class PlanClass(_Model):
    name: str
    color: str


class FinalizePlan(_Model):
    """Everything every batch needs, decided once from one pass over the manifest."""

    schema_id: Literal["gtseg/finalize-plan@1"] = Field(default="gtseg/finalize-plan@1", alias="schema")
    manifest: str  # the job's output manifest (s3:// URI or local path)
    out: str  # where the results go: <job>/gtseg (or the local runner's staging folder)
    label_attribute: str
    job_name: str | None = None  # in its own case; None: each line's sidecar or metadata says
    job_prefix: str | None = None  # the job's output folder (worker responses, sidecars)
    lines: int  # non-blank lines of the manifest = map items
    classes: list[PlanClass]  # the dataset's class map: index = position
    colliding_stems: list[str] = Field(default_factory=list)  # 64-bit hashes (hex) of stems of >1 line
    sidecar_folders: list[str] = Field(default_factory=list)  # where failed objects' sidecars may be
    val_fraction: float = 0.2
    copy_images: bool = True
    report_objects: int = 200
    created: str  # ISO-8601; the dataset and summary carry it

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, cache_strings="keys")

    def class_map(self) -> ClassMap:
        return ClassMap(
            names=tuple(c.name for c in self.classes), colors=tuple(c.color for c in self.classes)
        )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1) + "\n"


class MapItem(_Model):
    """One manifest line as the Distributed Map hands it over: its position and its JSON. A line
    that is not a JSON object (only the local runner meets one) keeps its ``text`` and ``error``."""

    index: int = Field(ge=0)
    line: dict[str, Any] | None = None
    number: int | None = None  # 1-based line number in the file, when it differs from index + 1
    text: str | None = None
    error: str | None = None

    @property
    def line_number(self) -> int:
        return self.number if self.number is not None else self.index + 1


class BatchOutcome(_Model):
    """What the map step returns per batch (its records are in the part file)."""

    first: int
    count: int
    part: str
    labeled: int = 0
    failed: int = 0
    errors: int = 0


class WorkerFigures(_Model):
    id: str
    agreement: float | None = None
    quality: float | None = None
    excluded: bool = False


class ObjectFigures(_Model):
    """One object's figures, kept from its sidecar and its mask (the ``F`` records of a part)."""

    index: int
    line: int
    status: ObjectStatus
    id: str | None = None
    source_ref: str | None = None
    stem: str | None = None
    split: str | None = None
    confidence: float | None = None
    method: str | None = None
    classes: dict[str, int] = Field(default_factory=dict)  # class name -> pixels
    workers: list[WorkerFigures] = Field(default_factory=list)
    adjustment: str | None = None
    reason: str | None = None  # failed: the job's reason; error: why the line was kept as it was


class LineProblem(_Model):
    line: int
    source_ref: str | None = None
    reason: str


class ClassTotals(_Model):
    name: str
    color: str
    pixels: int = 0
    objects: int = 0


class WorkerTotals(_Model):
    id: str
    objects: int = 0
    mean_agreement: float | None = None
    mean_quality: float | None = None
    excluded: int = 0


class JobFigures(_Model):
    """The reduce's figures of the whole job (``work/figures.json``)."""

    schema_id: Literal["gtseg/finalize-figures@1"] = Field(default="gtseg/finalize-figures@1", alias="schema")
    lines: int
    labeled: int
    failed: int
    errors: int
    not_finalized: int
    mean_confidence: float | None
    classes: list[ClassTotals]
    workers: list[WorkerTotals]
    adjustment: dict[str, int] = Field(default_factory=dict)
    problems: list[LineProblem] = Field(default_factory=list)  # the first of them; counts are complete
    batch_failures: list[str] = Field(default_factory=list)
    report_indices: list[int] = Field(default_factory=list)

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, cache_strings="keys")


class ReportOutcome(_Model):
    html: str | None = None
    objects: int = 0
    error: str | None = None


class Notification(_Model):
    subject: str
    message: str
