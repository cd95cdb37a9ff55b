"""One consolidation request (a batch of data objects) end to end, behind a small storage interface.

The handler wires AWS clients and settings; this module holds the rules: where outputs go, how
labels are resolved, how every object in the payload gets exactly one answer (a consolidated
mask or a failure-reason), and that a retry of the same payload writes the same bytes.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np

from gtseg.core.consolidation import (
    DEFAULT_NEIGHBOURHOOD_RADIUS,
    Method,
    ObjectConsolidation,
    WorkerAnswer,
    consolidate_decoded,
    decode_answers,
    gold_outcome,
    without_pixels,
)
from gtseg.core.consolidation.reliability import WorkerPrior
from gtseg.core.consolidation.workforce import (
    WorkerMeasure,
    WorkerRecord,
    measure_against_gold,
    measure_workers,
    priors_for_object,
    workforce,
)
from gtseg.core.gold import GOLD_KEY, GoldError, gold_reference
from gtseg.core.labels import GROUND_TRUTH_COLORS, ClassMap, LabelError, normalize_hex
from gtseg.core.layout import CONSOLIDATED_OUTPUT_DIR, iteration_of, job_root_of_payload
from gtseg.core.manifest import failure_content, iso_timestamp, segmentation_content, segmentation_metadata
from gtseg.core.masks import MaskError, encode_index_png, read_class_mask
from gtseg.core.sidecar import ConsolidationSidecar
from gtseg.core.uris import join_uri, parse_s3_uri
from gtseg.protocol import (
    ConsolidationRequest,
    PayloadItem,
    ProtocolError,
    SegmentationAnswer,
    ValidationError,
    WorkerAnnotation,
    consolidation_entry,
    find_segmentation_answer,
)

T = TypeVar("T")


class Store(Protocol):
    def get_object(self, uri: str) -> tuple[bytes, dict[str, Any]]: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def put_bytes(self, uri: str, data: bytes, content_type: str = ...) -> None: ...


@dataclass(frozen=True)
class BatchSettings:
    method: Method = Method.GTSEG
    smoothing: int = DEFAULT_NEIGHBOURHOOD_RADIUS
    element_name: str | None = None
    threads: int = 2


@dataclass(frozen=True)
class ObjectOutcome:
    dataset_object_id: str
    content: dict[str, Any]
    consolidation: ObjectConsolidation | None
    failure_reason: str | None
    mask_uri: str | None


def output_prefix(request: ConsolidationRequest) -> str:
    """``outputConfig`` when given, else the job's ``.../annotations/consolidated-annotation/output``
    next to the payload (where the built-in task writes its PNGs), else beside the payload."""
    if request.output_config:
        bucket, key = parse_s3_uri(request.output_config.rstrip("/") + "/x")
        return f"s3://{bucket}/{key[:-2]}".rstrip("/")
    payload = request.payload.s3_uri
    job_root = job_root_of_payload(payload)
    if job_root is not None:
        return join_uri(job_root, CONSOLIDATED_OUTPUT_DIR)
    return posixpath.dirname(payload) + "/gtseg-output"


def labels_from_mappings(answers: Sequence[SegmentationAnswer]) -> list[str]:
    """Union of the workers' labels in a stable order: by the worker UI's colour order (which
    follows the label-category order, protocol doc §3.4), then by name."""
    colour_rank = {c: i for i, c in enumerate(GROUND_TRUTH_COLORS)}
    seen: dict[str, int] = {}
    for answer in answers:
        for label, value in answer.label_mappings.items():
            if label == "BACKGROUND" or label in seen:
                continue
            colour = value.get("color") if isinstance(value, dict) else value
            try:
                seen[label] = colour_rank.get(normalize_hex(str(colour)), len(colour_rank))
            except LabelError:
                seen[label] = len(colour_rank)
    return sorted(seen, key=lambda label: (seen[label], label))


@dataclass(frozen=True)
class ItemEvidence:
    """First-pass result for one object: its workers' measures, and a gold object's known mask."""

    measures: dict[str, WorkerMeasure]
    known: np.ndarray | None  # gold objects: the known mask in the job's class indices
    gold_problem: str | None  # a gold key that could not be used, and why


@dataclass
class ParsedItem:
    raw_id: str | None
    item: PayloadItem | None
    answers: list[tuple[str, SegmentationAnswer]]
    rejected: list[tuple[str, str]]
    error: str | None


class BatchConsolidator:
    def __init__(
        self,
        request: ConsolidationRequest,
        store: Store,
        *,
        settings: BatchSettings | None = None,
        describe_labels: Callable[[str], list[str] | None] | None = None,
        log: Callable[..., None] | None = None,
    ) -> None:
        self.request = request
        self.store = store
        self.settings = settings or BatchSettings()
        self.describe_labels = describe_labels
        self.log = log or (lambda *a, **k: None)
        self.prefix = join_uri(output_prefix(request), iteration_of(request.payload.s3_uri))

    # ----------------------------------------------------------------------------- reading
    def load_payload(self) -> tuple[list[Any], str]:
        body, meta = self.store.get_object(self.request.payload.s3_uri)
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"payload {self.request.payload.s3_uri} is not valid JSON: {exc}") from exc
        if isinstance(items, dict) and isinstance(items.get("items"), list):
            items = items["items"]
        if not isinstance(items, list):
            raise ProtocolError(f"payload {self.request.payload.s3_uri} must be a JSON array of data objects")
        # The payload's own timestamp makes creation-date identical across retries.
        modified = meta.get("LastModified")
        moment = modified if isinstance(modified, datetime) else datetime(1970, 1, 1, tzinfo=UTC)
        return items, iso_timestamp(moment.astimezone(UTC))

    def _answer_content(self, annotation: Any) -> Any:
        data = annotation.annotation_data
        if data.content is not None:
            return data.content
        if data.s3_uri:
            return self.store.get_bytes(data.s3_uri)
        raise ProtocolError("annotationData has neither content nor s3Uri")

    def parse_item(self, raw: Any) -> ParsedItem:
        raw_id = None
        if isinstance(raw, dict) and raw.get("datasetObjectId") is not None:
            raw_id = str(raw["datasetObjectId"])
        try:
            item = PayloadItem.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "item"
            return ParsedItem(raw_id, None, [], [], f"malformed data object ({where}: {first.get('msg')})")
        answers: list[tuple[str, SegmentationAnswer]] = []
        rejected: list[tuple[str, str]] = []
        for i, raw_annotation in enumerate(item.annotations):
            worker_id = f"annotation-{i}"
            try:
                if isinstance(raw_annotation, dict) and raw_annotation.get("workerId") is not None:
                    worker_id = str(raw_annotation["workerId"])
                annotation = WorkerAnnotation.model_validate(raw_annotation)
                answer = find_segmentation_answer(
                    self._answer_content(annotation), self.settings.element_name
                )
            except (ValidationError, ProtocolError, OSError, RuntimeError) as exc:
                rejected.append((worker_id, _short(exc)))
                continue
            answers.append((worker_id, answer))
        return ParsedItem(item.dataset_object_id, item, answers, rejected, None)

    def class_map(self, parsed: Sequence[ParsedItem]) -> ClassMap:
        labels = self.request.label_categories
        if not labels and self.describe_labels is not None:
            try:
                labels = self.describe_labels(self.request.labeling_job_arn)
            except Exception as exc:
                self.log(
                    "warning", "label categories unavailable from DescribeLabelingJob", error=_short(exc)
                )
                labels = None
        if not labels:
            labels = labels_from_mappings([a for p in parsed for _, a in p.answers])
            self.log("info", "labelCategories missing; using the workers' labelMappings", labels=labels)
        if not labels:
            raise ProtocolError("no labels: labelCategories is empty and no worker submitted labelMappings")
        return ClassMap.from_labels(labels)

    # ----------------------------------------------------------------------------- per object
    def _answers(self, parsed: ParsedItem) -> list[WorkerAnswer]:
        return [
            WorkerAnswer(wid, a.png_image_data, a.label_mappings, a.expected_size)
            for wid, a in parsed.answers
        ]

    def _known_mask(self, parsed: ParsedItem, class_map: ClassMap) -> tuple[np.ndarray | None, str | None]:
        """A gold object's known mask in the job's classes, or why it cannot be used."""
        if parsed.item is None or not parsed.item.data_object:
            return None, None
        try:
            reference = gold_reference(parsed.item.data_object)
        except GoldError as exc:
            return None, str(exc)
        if reference is None:
            return None, None
        try:
            gold_map = reference.class_map()
            gold_indices = read_class_mask(self.store.get_bytes(reference.mask), gold_map)
            to_job = np.array([class_map.index_of(name) for name in gold_map.names], dtype=np.uint8)
        except (RuntimeError, LabelError, MaskError, ValueError) as exc:
            return None, f"{GOLD_KEY}: the known mask cannot be used: {_short(exc)}"
        return to_job[gold_indices], None

    def measure_item(self, parsed: ParsedItem, class_map: ClassMap) -> ItemEvidence:
        """First pass: what this object shows about each of its workers (nothing is written)."""
        if parsed.error or parsed.item is None:
            return ItemEvidence({}, None, None)
        known, problem = self._known_mask(parsed, class_map)
        decoded = decode_answers(self._answers(parsed), class_map)
        if known is not None:
            measures = measure_against_gold(decoded.masks, decoded.worker_ids, known, len(class_map))
        else:
            measures = measure_workers(decoded.masks, decoded.worker_ids, len(class_map))
        return ItemEvidence(measures, known, problem)

    def consolidate_item(
        self,
        parsed: ParsedItem,
        class_map: ClassMap,
        creation_date: str,
        priors: Mapping[str, WorkerPrior] | None = None,
        evidence: ItemEvidence | None = None,
        workforce_records: Mapping[str, WorkerRecord] | None = None,
    ) -> ObjectOutcome:
        lan = self.request.label_attribute_name
        job = self.request.job_name
        object_id = parsed.raw_id or "?"
        if parsed.error or parsed.item is None:
            reason = parsed.error or "malformed data object"
            return ObjectOutcome(
                object_id,
                failure_content(lan, job_name=job, reason=reason, creation_date=creation_date),
                None,
                reason,
                None,
            )
        if evidence is None:
            known, gold_problem = self._known_mask(parsed, class_map)
        else:
            known, gold_problem = evidence.known, evidence.gold_problem
        if gold_problem:
            self.log(
                "warning",
                "gold object used as an ordinary object",
                dataset_object_id=object_id,
                reason=gold_problem,
            )
        decoded = decode_answers(self._answers(parsed), class_map)
        if known is not None and decoded.masks:
            outcome = gold_outcome(decoded, known, len(class_map))
        else:
            outcome = consolidate_decoded(
                decoded,
                class_map,
                method=self.settings.method,
                smoothing=self.settings.smoothing,
                worker_priors=priors or None,
            )
        rejected = [*parsed.rejected, *outcome.rejected]
        base = join_uri(self.prefix, _safe_key(object_id))
        mask_uri = base + ".png"
        result = outcome.result
        failure = outcome.failure_reason
        if result is None and parsed.rejected and not parsed.answers:
            failure = "no usable annotation: " + "; ".join(f"{w}: {r}" for w, r in parsed.rejected)
        sidecar = ConsolidationSidecar.describe(
            dataset_object_id=object_id,
            job_name=job,
            label_attribute_name=lan,
            source_ref=parsed.item.source_uri,
            class_map=class_map,
            outcome=outcome,
            mask=mask_uri,
            rejected=rejected,
            failure_reason=failure,
            gold_scores={w: r.gold_iou() for w, r in (workforce_records or {}).items()},
        ).to_json_bytes()
        if result is None:
            self.store.put_bytes(base + ".json", sidecar, "application/json")
            content = failure_content(
                lan, job_name=job, reason=failure or "no usable annotation", creation_date=creation_date
            )
            return ObjectOutcome(object_id, content, outcome, failure, None)
        self.store.put_bytes(mask_uri, encode_index_png(result.labels, class_map), "image/png")
        self.store.put_bytes(base + ".json", sidecar, "application/json")
        confidences = [result.image_confidence] * len(class_map)  # built-in: one value per image
        metadata = segmentation_metadata(
            class_map, job_name=job, creation_date=creation_date, confidences=confidences
        )
        # The pixels are written; only the figures travel on (a batch's masks never pile up).
        return ObjectOutcome(
            object_id, segmentation_content(lan, mask_uri, metadata), without_pixels(outcome), None, mask_uri
        )

    def _safe(self, work: Callable[[], T], parsed: ParsedItem, fallback: Callable[[str], T]) -> T:
        try:
            return work()
        except Exception as exc:
            reason = f"internal error: {_short(exc)}"
            self.log("exception", "object failed", dataset_object_id=parsed.raw_id, error=reason)
            return fallback(reason)

    def _safe_consolidate(
        self,
        parsed: ParsedItem,
        class_map: ClassMap,
        creation_date: str,
        priors: Mapping[str, WorkerPrior] | None = None,
        evidence: ItemEvidence | None = None,
        workforce_records: Mapping[str, WorkerRecord] | None = None,
    ) -> ObjectOutcome:
        lan, job = self.request.label_attribute_name, self.request.job_name

        def failed(reason: str) -> ObjectOutcome:
            content = failure_content(lan, job_name=job, reason=reason, creation_date=creation_date)
            return ObjectOutcome(parsed.raw_id or "?", content, None, reason, None)

        return self._safe(
            lambda: self.consolidate_item(
                parsed, class_map, creation_date, priors, evidence, workforce_records
            ),
            parsed,
            failed,
        )

    def _map_indexed(
        self,
        work: Callable[[str, ParsedItem, ItemEvidence | None], T],
        items: Sequence[tuple[str, ParsedItem, ItemEvidence | None]],
    ) -> list[T]:
        threads = max(1, min(self.settings.threads, len(items) or 1))
        if threads == 1:
            return [work(*item) for item in items]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gtseg") as pool:
            return list(pool.map(lambda item: work(*item), items))

    def _map(self, work: Callable[[ParsedItem], T], parsed: Sequence[ParsedItem]) -> list[T]:
        threads = max(1, min(self.settings.threads, len(parsed) or 1))
        if threads == 1:
            return [work(p) for p in parsed]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gtseg") as pool:
            return list(pool.map(work, parsed))

    # ----------------------------------------------------------------------------- the batch
    def run(self) -> tuple[list[dict[str, Any]], list[ObjectOutcome]]:
        items, creation_date = self.load_payload()
        parsed = [self.parse_item(raw) for raw in items]
        try:
            class_map = self.class_map(parsed)
        except (ProtocolError, LabelError) as exc:
            # Without a class map no object can be consolidated: each gets the reason, the
            # batch still answers for every object.
            reason = f"no usable label list: {exc}"
            self.log("error", "batch cannot be consolidated", error=reason)
            lan, job = self.request.label_attribute_name, self.request.job_name
            failed = [
                ObjectOutcome(
                    p.raw_id or "?",
                    failure_content(lan, job_name=job, reason=reason, creation_date=creation_date),
                    None,
                    reason,
                    None,
                )
                for p in parsed
            ]
            return [
                consolidation_entry(p.raw_id, o.content)
                for p, o in zip(parsed, failed, strict=True)
                if p.raw_id
            ], failed
        # First pass (only when other objects can inform an object): each object's evidence about
        # its workers. Second pass: every object consolidated with what the *other* objects of
        # the batch (gold objects above all) showed about its workers. The payload fixes both
        # passes, so a retry still writes the same bytes.
        keys = [str(i) for i in range(len(parsed))]
        has_gold = any(p.item is not None and GOLD_KEY in (p.item.data_object or {}) for p in parsed)
        evidence: list[ItemEvidence | None] = [None] * len(parsed)
        records: dict[str, WorkerRecord] = {}
        if len(parsed) > 1 or has_gold:
            evidence = self._map(
                lambda p: self._safe(
                    lambda: self.measure_item(p, class_map), p, lambda _r: ItemEvidence({}, None, None)
                ),
                parsed,
            )
            records = workforce({key: ev.measures for key, ev in zip(keys, evidence, strict=True) if ev})
        indexed = list(zip(keys, parsed, evidence, strict=True))
        outcomes = self._map_indexed(
            lambda key, p, ev: self._safe_consolidate(
                p,
                class_map,
                creation_date,
                priors_for_object(records, key, [w for w, _ in p.answers]),
                ev,
                records,
            ),
            indexed,
        )
        response = []
        for p, outcome in zip(parsed, outcomes, strict=True):
            result = outcome.consolidation.result if outcome.consolidation else None
            self.log(
                "info",
                "object consolidated" if result else "object failed",
                dataset_object_id=outcome.dataset_object_id,
                mask=outcome.mask_uri,
                method=result.method if result else None,
                confidence=result.image_confidence if result else None,
                excluded_workers=[w.worker_id for w in result.workers if w.excluded] if result else [],
                rejected=len(outcome.consolidation.rejected) if outcome.consolidation else len(p.rejected),
                failure_reason=outcome.failure_reason,
            )
            if p.raw_id is None:
                # Without an id Ground Truth cannot match an answer to anything; say so loudly.
                self.log("error", "data object without datasetObjectId skipped", error=outcome.failure_reason)
                continue
            response.append(consolidation_entry(p.raw_id, outcome.content))
        return response, outcomes


def _safe_key(object_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", object_id) or "_"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
