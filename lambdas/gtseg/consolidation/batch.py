"""One consolidation request (a batch of data objects) end to end, behind a small storage interface.

The handler wires AWS clients and settings; this module holds the rules:

* every data object in the payload gets exactly one answer, in payload order: a consolidated
  mask, or a failure-reason (one broken object or annotation never fails the batch); an id that
  appears twice is answered once, from its first occurrence;
* the image decides the mask size (its header, read with a ranged GET), so no worker's claim can;
* masks go to ``<job>/annotations/consolidated-annotation/output/<iteration>/<key>.png`` with a
  ``.json`` sidecar, at keys that never collide for different ids, and an answer never points at
  a mask that was not written;
* a transient S3 fault is retried for as long as the invocation has time (``gtseg.aws.retry``);
  only then does that object fail, saying so (``gtseg reconsolidate`` repairs it after the job);
* a retry of the same payload writes the same bytes: every choice is fixed by the payload.

Objects are consolidated in two passes when the batch has more than one: what each object shows
about its workers (and gold objects against their known masks), then every object with what the
batch's *other* objects showed (``gtseg.core.consolidation.workforce``).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np

from gtseg.aws.retry import Deadline, TransientError, with_retries
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
from gtseg.core.images import ImageHeaderError, probe_image
from gtseg.core.labels import GROUND_TRUTH_COLORS, ClassMap, LabelError, normalize_hex
from gtseg.core.layout import CONSOLIDATED_OUTPUT_DIR, iteration_of, job_root_of_payload, object_key
from gtseg.core.manifest import (
    ADJUSTMENT_STATUS_KEY,
    adjustment_status,
    failure_content,
    iso_timestamp,
    segmentation_content,
    segmentation_metadata,
)
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
    def get_range(self, uri: str, first: int, last: int) -> tuple[bytes, int | None]: ...
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
    transient: bool = False  # failed on a fault that outlasted its retries (repairable later)


def output_prefix(request: ConsolidationRequest) -> str:
    """``<job>/annotations/consolidated-annotation/output``: where the built-in task writes its masks.

    Real events carry ``outputConfig`` = ``s3://<S3OutputPath>/<job>/annotations``; others have been
    documented with ``.../annotations/consolidated-annotation/output``; both name the job's folder
    before its ``annotations`` segment. Without one, the payload's own path names it (payloads live
    under ``<job>/annotations/consolidated-annotation/consolidation-request/``)."""
    if request.output_config:
        bucket, key = parse_s3_uri(request.output_config.rstrip("/") + "/x")
        segments = key[:-2].strip("/").split("/")
        if "annotations" in segments:
            segments = segments[: len(segments) - 1 - segments[::-1].index("annotations")]
        root = "/".join(s for s in segments if s)
        return join_uri(f"s3://{bucket}/{root}".rstrip("/"), CONSOLIDATED_OUTPUT_DIR)
    payload = request.payload.s3_uri
    job_root = job_root_of_payload(payload)
    if job_root is not None:
        return join_uri(job_root, CONSOLIDATED_OUTPUT_DIR)
    return join_uri(posixpath.dirname(payload), CONSOLIDATED_OUTPUT_DIR)


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
    """First-pass result for one object: what it shows about its workers, and its image's size.

    A gold object's known mask is not kept: the second pass reads it again, so a batch's memory
    does not grow with its number of gold objects.
    """

    measures: dict[str, WorkerMeasure]
    image_sizes: tuple[tuple[int, int], ...] = ()


_NO_EVIDENCE = ItemEvidence({})


@dataclass
class ParsedItem:
    raw_id: str | None
    item: PayloadItem | None
    answers: list[tuple[str, SegmentationAnswer]]
    rejected: list[tuple[str, str]]
    error: str | None
    transient: bool = False  # ``error`` is a fault that outlasted its retries
    duplicates: list[int] = field(default_factory=list)  # payload positions repeating this id


class BatchConsolidator:
    def __init__(
        self,
        request: ConsolidationRequest,
        store: Store,
        *,
        settings: BatchSettings | None = None,
        describe_labels: Callable[[str], list[str] | None] | None = None,
        log: Callable[..., None] | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.request = request
        self.store = store
        self.settings = settings or BatchSettings()
        self.describe_labels = describe_labels
        self.log = log or (lambda *a, **k: None)
        self.deadline = deadline or Deadline()
        self.prefix = join_uri(output_prefix(request), iteration_of(request.payload.s3_uri))

    def _s3(self, what: str, call: Callable[[], T]) -> T:
        return with_retries(call, what=what, deadline=self.deadline)

    # ----------------------------------------------------------------------------- reading
    def load_payload(self) -> tuple[list[Any], str]:
        uri = self.request.payload.s3_uri
        # A payload that cannot be read is the whole batch's failure: raising lets Ground Truth retry.
        body, meta = self._s3(f"reading the payload {uri}", lambda: self.store.get_object(uri))
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"payload {uri} is not valid JSON: {exc}") from exc
        if isinstance(items, dict) and isinstance(items.get("items"), list):
            items = items["items"]
        if not isinstance(items, list):
            raise ProtocolError(f"payload {uri} must be a JSON array of data objects")
        # The payload's own timestamp makes creation-date identical across retries.
        modified = meta.get("LastModified")
        moment = modified if isinstance(modified, datetime) else datetime(1970, 1, 1, tzinfo=UTC)
        return items, iso_timestamp(moment.astimezone(UTC))

    def _answer_content(self, annotation: WorkerAnnotation) -> Any:
        data = annotation.annotation_data
        if data.content is not None:
            return data.content
        if data.s3_uri:
            uri = data.s3_uri
            parse_s3_uri(uri)  # a malformed URI is this annotation's problem, said before any call
            return self._s3(f"reading the answer {uri}", lambda: self.store.get_bytes(uri))
        raise ProtocolError("annotationData has neither content nor s3Uri")

    def parse_item(self, raw: Any) -> ParsedItem:
        raw_id = None
        value = raw.get("datasetObjectId") if isinstance(raw, dict) else None
        # Ground Truth's ids are strings of digits; a number is read as one, anything else cannot
        # be answered (no entry could ever be matched to it)
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            raw_id = str(value)
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
            except TransientError as exc:
                # Human work that could not be read right now: the object fails as transient, so it
                # can be consolidated again later, instead of being consolidated without it.
                return ParsedItem(item.dataset_object_id, item, [], [], _short(exc), transient=True)
            except Exception as exc:  # any malformed annotation (any URI, any shape) is rejected
                rejected.append((worker_id, _short(exc)))
                continue
            answers.append((worker_id, answer))
        return ParsedItem(item.dataset_object_id, item, answers, rejected, None)

    def class_map(self, parsed: Sequence[ParsedItem]) -> ClassMap:
        labels = self.request.label_categories
        if not labels and self.describe_labels is not None:
            try:
                # the job's own name, not the ARN's lower-cased one (docs/protocol.md §2.2)
                labels = self.describe_labels(self.request.job_name)
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

    def _image_sizes(self, parsed: ParsedItem) -> tuple[tuple[int, int], ...]:
        """The sizes the image may be shown at (as stored, then as its EXIF orientation shows it);
        empty when the image cannot be read (the workers' own claims are the fallback)."""
        source = parsed.item.source_uri if parsed.item is not None else None
        if not source:
            return ()
        try:
            parse_s3_uri(source)
            info, _ = probe_image(
                lambda first, last: self._s3(
                    f"reading the image header {source}", lambda: self.store.get_range(source, first, last)
                )
            )
        except TransientError:
            raise
        except (ImageHeaderError, RuntimeError, ValueError) as exc:
            self.log(
                "info", "image size unknown; the workers' masks decide it", source=source, reason=_short(exc)
            )
            return ()
        return tuple(dict.fromkeys([(info.width, info.height), info.display_size]))

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
            png = self._s3(
                f"reading the known mask {reference.mask}", lambda: self.store.get_bytes(reference.mask)
            )
            gold_indices = read_class_mask(png, gold_map)
            to_job = np.array([class_map.index_of(name) for name in gold_map.names], dtype=np.uint8)
        except TransientError:
            raise
        except (RuntimeError, LabelError, MaskError, ValueError) as exc:
            return None, f"{GOLD_KEY}: the known mask cannot be used: {_short(exc)}"
        return to_job[gold_indices], None

    def measure_item(self, parsed: ParsedItem, class_map: ClassMap) -> ItemEvidence:
        """First pass: what this object shows about each of its workers (nothing is written)."""
        if parsed.error or parsed.item is None:
            return _NO_EVIDENCE
        known, _ = self._known_mask(parsed, class_map)
        sizes = self._image_sizes(parsed)
        decoded = decode_answers(self._answers(parsed), class_map, image_sizes=sizes)
        if known is not None:
            measures = measure_against_gold(decoded.masks, decoded.worker_ids, known, len(class_map))
        else:
            measures = measure_workers(decoded.masks, decoded.worker_ids, len(class_map))
        return ItemEvidence(measures, sizes)

    def _failed(
        self, object_id: str, reason: str, creation_date: str, *, transient: bool = False
    ) -> ObjectOutcome:
        lan, job = self.request.label_attribute_name, self.request.job_name
        content = failure_content(lan, job_name=job, reason=reason, creation_date=creation_date)
        return ObjectOutcome(object_id, content, None, reason, None, transient=transient)

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
            if parsed.transient:
                reason = f"transient: {reason}"
            return self._failed(object_id, reason, creation_date, transient=parsed.transient)
        known, gold_problem = self._known_mask(parsed, class_map)
        if evidence is None or evidence is _NO_EVIDENCE:
            sizes = self._image_sizes(parsed)
        else:
            sizes = evidence.image_sizes
        if gold_problem:
            self.log(
                "warning",
                "gold object used as an ordinary object",
                dataset_object_id=object_id,
                reason=gold_problem,
            )
        decoded = decode_answers(self._answers(parsed), class_map, image_sizes=sizes)
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
        base = join_uri(self.prefix, object_key(object_id))
        mask_uri = base + ".png"
        result = outcome.result
        failure = outcome.failure_reason
        if result is None and parsed.rejected and not parsed.answers:
            failure = "no usable annotation: " + "; ".join(f"{w}: {r}" for w, r in parsed.rejected)
        # an adjustment task (workers were shown a prior mask): did anyone change it?
        adjustment = adjustment_status(a.initial_value_modified for _, a in parsed.answers)
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
            duplicates=parsed.duplicates,
            adjustment_status=adjustment,
        ).to_json_bytes()
        if result is None:
            self._s3(
                f"writing {base}.json",
                lambda: self.store.put_bytes(base + ".json", sidecar, "application/json"),
            )
            return self._failed(object_id, failure or "no usable annotation", creation_date)
        png = encode_index_png(result.labels, class_map)
        # the mask first: an answer (and a sidecar) never points at a mask that was not written
        self._s3(f"writing {mask_uri}", lambda: self.store.put_bytes(mask_uri, png, "image/png"))
        self._s3(
            f"writing {base}.json", lambda: self.store.put_bytes(base + ".json", sidecar, "application/json")
        )
        confidences = [result.image_confidence] * len(class_map)  # built-in: one value per image
        metadata = segmentation_metadata(
            class_map,
            job_name=job,
            creation_date=creation_date,
            confidences=confidences,
            extra={ADJUSTMENT_STATUS_KEY: adjustment} if adjustment else None,
        )
        # The pixels are written; only the figures travel on (a batch's masks never pile up).
        return ObjectOutcome(
            object_id, segmentation_content(lan, mask_uri, metadata), without_pixels(outcome), None, mask_uri
        )

    def _guarded(
        self, parsed: ParsedItem, creation_date: str, work: Callable[[], ObjectOutcome]
    ) -> ObjectOutcome:
        """One object's work; whatever goes wrong fails that object only, with the reason."""
        object_id = parsed.raw_id or "?"
        try:
            return work()
        except TransientError as exc:
            reason = f"transient: {_short(exc)}"
            self.log("error", "object failed on a transient fault", dataset_object_id=object_id, error=reason)
            return self._failed(object_id, reason, creation_date, transient=True)
        except Exception as exc:
            reason = f"internal error: {_short(exc)}"
            self.log("exception", "object failed", dataset_object_id=object_id, error=reason)
            return self._failed(object_id, reason, creation_date)

    def _measure_guarded(self, parsed: ParsedItem, class_map: ClassMap) -> ItemEvidence:
        try:
            return self.measure_item(parsed, class_map)
        except Exception as exc:  # the second pass meets the same problem and reports it
            self.log("warning", "object not measured", dataset_object_id=parsed.raw_id, error=_short(exc))
            return _NO_EVIDENCE

    def _map(self, work: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
        threads = max(1, min(self.settings.threads, len(items) or 1))
        if threads == 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gtseg") as pool:
            return list(pool.map(work, items))

    # ----------------------------------------------------------------------------- the batch
    def _unique(self, parsed: list[ParsedItem]) -> list[ParsedItem]:
        """One item per datasetObjectId, the first occurrence; later ones are named on it."""
        first: dict[str, ParsedItem] = {}
        out = []
        for position, item in enumerate(parsed):
            if item.raw_id is not None and item.raw_id in first:
                first[item.raw_id].duplicates.append(position)
                self.log(
                    "warning",
                    "duplicate datasetObjectId: the first occurrence is answered",
                    dataset_object_id=item.raw_id,
                    position=position,
                )
                continue
            if item.raw_id is not None:
                first[item.raw_id] = item
            out.append(item)
        return out

    def run(self) -> tuple[list[dict[str, Any]], list[ObjectOutcome]]:
        items, creation_date = self.load_payload()
        parsed = self._unique([self.parse_item(raw) for raw in items])
        try:
            class_map = self.class_map(parsed)
        except (ProtocolError, LabelError) as exc:
            # Without a class map no object can be consolidated: each gets the reason, the
            # batch still answers for every object.
            reason = f"no usable label list: {exc}"
            self.log("error", "batch cannot be consolidated", error=reason)
            failed = [self._failed(p.raw_id or "?", reason, creation_date) for p in parsed]
            return [
                consolidation_entry(p.raw_id, o.content)
                for p, o in zip(parsed, failed, strict=True)
                if p.raw_id
            ], failed
        keys = [str(i) for i in range(len(parsed))]
        has_gold = any(p.item is not None and GOLD_KEY in (p.item.data_object or {}) for p in parsed)
        evidence: list[ItemEvidence | None] = [None] * len(parsed)
        records: dict[str, WorkerRecord] = {}
        if len(parsed) > 1 or has_gold:
            evidence = self._map(lambda p: self._measure_guarded(p, class_map), parsed)
            records = workforce({key: ev.measures for key, ev in zip(keys, evidence, strict=True) if ev})

        def consolidate(entry: tuple[str, ParsedItem, ItemEvidence | None]) -> ObjectOutcome:
            key, item, item_evidence = entry
            priors = priors_for_object(records, key, [w for w, _ in item.answers])
            return self._guarded(
                item,
                creation_date,
                lambda: self.consolidate_item(item, class_map, creation_date, priors, item_evidence, records),
            )

        outcomes = self._map(consolidate, list(zip(keys, parsed, evidence, strict=True)))
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
                transient=outcome.transient,
            )
            if p.raw_id is None:
                # Without an id Ground Truth cannot match an answer to anything; say so loudly.
                self.log("error", "data object without datasetObjectId skipped", error=outcome.failure_reason)
                continue
            response.append(consolidation_entry(p.raw_id, outcome.content))
        return response, outcomes


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
