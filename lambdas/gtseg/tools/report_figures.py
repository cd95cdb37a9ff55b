"""What ``gtseg report`` knows about one object and one worker, and the rules that keep its figures
honest: a value that cannot be estimated is ``None`` with the reason why, never 0.0 or 1.0.

The consolidation excludes untrusted workers (vote weight 0, ``excluded`` in the sidecar). With
fewer than two trusted workers nothing cross-checks the result: its confidence cannot be
estimated, and the one trusted worker was scored against its own mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gtseg.core.consolidation import AppliedMethod
from gtseg.core.sidecar import ConsolidationSidecar

ONE_TRUSTED = "one trusted worker"
NO_TRUSTED = "no trusted worker"
NO_CONSENSUS = "no consensus: no two workers agreed beyond chance"
SELF_SCORED = "scored against its own mask (the only trusted worker)"
NOT_MEASURED = (SELF_SCORED, NO_CONSENSUS)  # a worker's figures that say nothing about the worker


@dataclass(frozen=True)
class Trust:
    """Who the consolidation trusted on one object."""

    trusted: int | None  # workers whose votes counted (None: unknown, no sidecar and no answers)
    excluded: frozenset[str]  # worker ids it left out (weight 0)
    known_from_sidecar: bool  # without a gtseg sidecar every answering worker counts as trusted
    no_consensus: bool = False  # the consolidation found no consensus (kept one mask, or the plain vote)

    @property
    def cross_checked(self) -> bool:
        """Two or more trusted workers that agreed (or nothing says otherwise: no answers to read)."""
        return not self.no_consensus and (self.trusted is None or self.trusted >= 2)

    @property
    def why_not(self) -> str:
        """Why nothing cross-checks this object ('' when something does)."""
        if self.cross_checked:
            return ""
        if self.no_consensus:
            return NO_CONSENSUS
        return ONE_TRUSTED if self.trusted == 1 else NO_TRUSTED

    def unmeasured(self, worker_excluded: bool) -> str:
        """Why a worker's agreement and quality on this object say nothing ('' when they do)."""
        if self.no_consensus:
            return NO_CONSENSUS
        if self.trusted == 1 and not worker_excluded:
            return SELF_SCORED
        return ""

    @classmethod
    def of(cls, sidecar: ConsolidationSidecar | None, answering: list[str]) -> Trust:
        if sidecar is None or not sidecar.workers:
            return cls(len(answering) if answering else None, frozenset(), known_from_sidecar=False)
        if sidecar.method == AppliedMethod.GOLD:  # the known mask decided: every worker was scored by it
            return cls(len(sidecar.workers), frozenset(), known_from_sidecar=True)
        excluded = frozenset(w.worker_id for w in sidecar.workers if w.excluded or w.weight == 0)
        trusted = len(sidecar.workers) - len(excluded)
        if sidecar.method == AppliedMethod.SINGLE_WORKER:
            trusted = min(trusted, 1)
        no_consensus = sidecar.method is not None and sidecar.method.no_consensus
        return cls(trusted, excluded, known_from_sidecar=True, no_consensus=no_consensus)


@dataclass
class WorkerOnObject:
    """One worker's answer on one object."""

    worker_id: str
    agreement: float | None  # pixel agreement with the consensus
    quality: float | None
    time_spent: float | None
    excluded: bool = False
    weight: float | None = None
    note: str = ""  # why the answer could not be used, or why a figure is n/a
    gold_iou: float | None = None  # on a gold object: mean IoU with its known mask
    mask_file: str | None = None  # the worker's mask layer, relative to the HTML


@dataclass
class ObjectFigures:
    line: int
    object_id: str
    name: str  # as the page shows it (the image's name); its files have a file-safe one
    source_ref: str | None
    confidence: float | None
    confidence_note: str  # why the confidence is n/a ('' when it is not)
    agreement: float | None  # mean agreement of the trusted workers with the consensus
    classes: list[str]
    trust: Trust
    method: str | None
    photo: str | None  # files relative to the HTML
    thumbnail: str
    mask_layer: str
    heatmap: str | None
    heatmap_workers: int  # how many workers the heatmap counts
    width: int
    height: int
    links: dict[str, str] = field(default_factory=dict)  # what -> href or URI (image, mask, sidecar)
    workers: list[WorkerOnObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: int = 0  # answers that could not be used (decoding, rejected by the consolidation)
    gold: bool = False

    @property
    def gold_iou(self) -> float | None:
        values = [w.gold_iou for w in self.workers if w.gold_iou is not None]
        return sum(values) / len(values) if values else None

    @property
    def review_score(self) -> float:
        """Lower = review first: the confidence; an object nothing cross-checked comes first of all."""
        if self.confidence is not None:
            return self.confidence
        return (
            -1.0 if not self.trust.cross_checked else (self.agreement if self.agreement is not None else 1.0)
        )


@dataclass
class WorkerFigures:
    """One worker over the whole job."""

    worker_id: str
    objects: int = 0  # answers given
    scored: int = 0  # answers with an agreement figure
    agreement_sum: float = 0.0
    quality_sum: float = 0.0
    quality_n: int = 0
    time_sum: float = 0.0
    time_n: int = 0
    rejected: int = 0
    excluded_on: int = 0  # objects on which the consolidation left this worker out
    unmeasured: int = 0  # objects whose figures say nothing about it (only trusted worker, no consensus)
    gold_sum: float = 0.0
    gold_n: int = 0

    def add(self, worker: WorkerOnObject) -> None:
        self.objects += 1
        if worker.excluded:
            self.excluded_on += 1
        if worker.note in NOT_MEASURED:
            self.unmeasured += 1
        if worker.agreement is None:
            if worker.note not in NOT_MEASURED:
                self.rejected += 1
        else:
            self.scored += 1
            self.agreement_sum += worker.agreement
        if worker.quality is not None:
            self.quality_sum += worker.quality
            self.quality_n += 1
        if worker.time_spent is not None:
            self.time_sum += worker.time_spent
            self.time_n += 1
        if worker.gold_iou is not None:
            self.gold_sum += worker.gold_iou
            self.gold_n += 1

    @property
    def agreement(self) -> float | None:
        return self.agreement_sum / self.scored if self.scored else None

    @property
    def quality(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None

    @property
    def mean_time(self) -> float | None:
        return self.time_sum / self.time_n if self.time_n else None

    @property
    def gold_iou(self) -> float | None:
        return self.gold_sum / self.gold_n if self.gold_n else None

    @property
    def untrusted(self) -> bool:
        """Excluded on every object it answered."""
        return self.objects > 0 and self.excluded_on == self.objects

    def why_no_figure(self) -> str:
        if self.scored or not self.objects:
            return ""
        if self.unmeasured:
            return "never measured: the only trusted worker, or no consensus, on each of its objects"
        return "no usable answer"


@dataclass
class ClassFigures:
    name: str
    color: str
    pixels: int = 0
    objects: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    not_estimated: int = 0  # objects whose confidence could not be estimated
