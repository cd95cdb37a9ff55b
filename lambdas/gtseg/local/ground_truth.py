"""The local Ground Truth job driver: runs a recorded CreateLabelingJob request end to end.

What Ground Truth does for a custom-Lambda semantic-segmentation job (protocol doc §1, §2, §4),
reproduced step by step against moto S3 and local Lambda sandboxes:

1. read the input manifest (``InputConfig.DataSource.S3DataSource.ManifestS3Uri``) and the
   label-category file; each manifest line is a data object, ``datasetObjectId`` = its position;
2. pre-annotation: invoke ``PreHumanTaskLambdaArn`` once per object with
   ``{version, labelingJobArn, dataObject}``; an invoke error fails the whole job, as in Ground
   Truth (§1.4); ``isHumanAnnotationRequired: false`` keeps the object from workers;
3. render the worker template (``UiConfig.UiTemplateS3Uri``) with python-liquid and Ground Truth's
   filters (``grant_read_access`` = a presigned URL of the local S3, ``to_json``, ``escape``,
   ``skip_autoescape``), and check what a browser would get: one ``<crowd-semantic-segmentation>``
   with a ``name``, a ``src`` that loads the object's image with CORS, and ``labels`` that decode to
   the job's label list;
4. give each task to ``NumberOfHumanWorkersPerDataObject`` workers (a ``Workforce`` callback) and
   store their answers under ``annotations/worker-response/iteration-1/<id>/<ts>.json``;
5. write consolidation payloads in batches
   (``annotations/consolidated-annotation/consolidation-request/iteration-1/<ts>.json``), invoke
   ``AnnotationConsolidationLambdaArn`` with ``{version, labelingJobArn, labelCategories,
   labelAttributeName, roleArn, payload: {s3Uri}, outputConfig}`` (``outputConfig`` =
   ``<S3OutputPath>/<job>/annotations``, as real events carry it), check the response against the
   contract and store it under ``consolidation-response/``;
6. write ``manifests/output/output.manifest`` (each input line plus the returned content, with
   ``<lan>-metadata`` replaced by Ground Truth's own custom-job metadata, as published outputs of
   custom jobs show) and report the outcome to the SageMaker stand-in (DescribeLabelingJob shows it).

Where Ground Truth's behaviour is unconfirmed or only observed, ``GroundTruthBehaviour`` selects
each plausible variant (docs/protocol.md lists the evidence); other choices are marked "emulator
choice" below and in docs/local-run.md.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.core.labels import LabelCategoryConfig, LabelError
from gtseg.core.manifest import (
    CUSTOM_TYPE,
    ManifestError,
    dump_manifest_line,
    failure_content,
    iso_timestamp,
    job_name_from_arn,
    metadata_key,
    parse_manifest,
    safe_filename,
)
from gtseg.core.uris import join_uri, parse_s3_prefix, parse_s3_uri
from gtseg.local.lambda_runtime import Invocation
from gtseg.local.sagemaker_standin import ArnNames, DescribeNames, SageMakerStandin
from gtseg.protocol import DEFAULT_ELEMENT_NAME

PROTOCOL_VERSION = "2018-10-16"
ITERATION = 1
WORKER_RESPONSE_DIR = "annotations/worker-response"
CONSOLIDATED_DIR = "annotations/consolidated-annotation"
OUTPUT_MANIFEST = "manifests/output/output.manifest"
# The worker UI's origin; the image GET carries it so a missing CORS rule shows up (protocol §9.3).
WORKER_UI_ORIGIN = "https://local-emulator.labeling.us-east-1.sagemaker.aws"

# (phase, done, total): the CLI draws one progress bar per phase from it.
ProgressCallback = Callable[[str, int, int], None]


class Invoker(Protocol):
    """Anything that invokes a function synchronously (``gtseg.local.lambda_runtime.LocalLambda``)."""

    def invoke(self, event: Any) -> Invocation: ...


@dataclass(frozen=True)
class RenderedTask:
    """The worker template rendered for one task, and what the page would show a worker."""

    html: str
    element_name: str | None = None
    src: str | None = None
    labels: tuple[str, ...] = ()
    initial_value: str | None = None
    problems: tuple[str, ...] = ()  # why a worker could not do this task (empty = renders fine)


@dataclass(frozen=True)
class WorkerTask:
    """One data object as the workforce sees it."""

    job_name: str
    dataset_object_id: str
    data_object: Mapping[str, Any]  # the manifest line
    task_input: Mapping[str, Any]
    rendered: RenderedTask
    workers_needed: int


@dataclass(frozen=True)
class WorkerSubmission:
    """One worker's form output (``answerContent``), e.g. ``{"crowd-semantic-segmentation": {...}}``."""

    worker_id: str
    answer_content: Mapping[str, Any]
    time_spent_seconds: float = 60.0


Workforce = Callable[[WorkerTask], Sequence[WorkerSubmission]]

# outputConfig in the consolidation event: "annotations" = <S3OutputPath>/<job>/annotations (every
# real event found), "consolidated-output" = .../annotations/consolidated-annotation/output (what
# earlier notes guessed), "absent" = no outputConfig key (the 2023 doc schema omits it).
OutputConfigStyle = Literal["annotations", "consolidated-output", "absent"]
# What becomes of the <lan>-metadata a custom consolidation Lambda returns: "replaced" by Ground
# Truth's {type: groundtruth/custom, job-name, human-annotated, creation-date} (published outputs of
# custom jobs), "kept" as returned, or "merged" (returned keys, Ground Truth's on top: the
# developer guide's "will be added by Ground Truth").
LambdaMetadataStyle = Literal["replaced", "kept", "merged"]


@dataclass(frozen=True)
class GroundTruthBehaviour:
    """Ground Truth's behaviour where it is unconfirmed; the defaults are what real jobs showed.

    ``arn_names`` and ``describe_names`` are the SageMaker stand-in's part (the job's ARN and
    which spelling DescribeLabelingJob finds it under): pass them to ``SageMakerStandin``.
    """

    output_config: OutputConfigStyle = "annotations"
    lambda_metadata: LambdaMetadataStyle = "replaced"
    arn_names: ArnNames = "lower"
    describe_names: DescribeNames = "any-case"

    def custom_metadata(self, job_arn: str, creation_date: str) -> dict[str, Any]:
        """Ground Truth's own ``<lan>-metadata`` of a custom job's object. Emulator choice: the
        job-name is the ARN's name (plain, as in the published samples), creation-date when the
        consolidation Lambda answered."""
        return {
            "type": CUSTOM_TYPE,
            "job-name": job_name_from_arn(job_arn),
            "human-annotated": "yes",
            "creation-date": creation_date,
        }


@dataclass
class ObjectOutcome:
    dataset_object_id: str
    data_object: dict[str, Any]
    status: str = "pending"  # labeled | failed | skipped
    failure_reason: str | None = None
    task_input: dict[str, Any] | None = None
    rendered: RenderedTask | None = None
    submissions: int = 0
    content: dict[str, Any] | None = None  # consolidatedAnnotation.content as returned
    answered_at: datetime | None = None  # when the consolidation Lambda returned it


@dataclass
class BatchOutcome:
    request_uri: str
    response_uri: str | None
    object_ids: tuple[str, ...]
    seconds: float
    error: str | None = None


@dataclass
class JobReport:
    job_name: str
    job_arn: str
    label_attribute_name: str
    status: str = "InProgress"
    failure_reason: str | None = None
    labels: tuple[str, ...] = ()
    objects: list[ObjectOutcome] = field(default_factory=list)
    batches: list[BatchOutcome] = field(default_factory=list)
    contract_problems: list[str] = field(default_factory=list)  # consolidation responses off-contract
    manifest_errors: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    job_prefix: str = ""
    output_manifest_uri: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for o in self.objects if o.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobName": self.job_name,
            "jobArn": self.job_arn,
            "status": self.status,
            "failureReason": self.failure_reason,
            "labels": list(self.labels),
            "outputManifestUri": self.output_manifest_uri,
            "jobPrefix": self.job_prefix,
            "counts": {s: self.count(s) for s in ("labeled", "failed", "skipped")},
            "objects": [
                {
                    "datasetObjectId": o.dataset_object_id,
                    "source-ref": o.data_object.get("source-ref"),
                    "status": o.status,
                    "failureReason": o.failure_reason,
                    "submissions": o.submissions,
                    "templateProblems": list(o.rendered.problems) if o.rendered else [],
                }
                for o in self.objects
            ],
            "batches": [
                {
                    "request": b.request_uri,
                    "response": b.response_uri,
                    "objects": list(b.object_ids),
                    "seconds": round(b.seconds, 3),
                    "error": b.error,
                }
                for b in self.batches
            ],
            "contractProblems": list(self.contract_problems),
            "manifestErrors": list(self.manifest_errors),
            "phaseSeconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
        }


class JobFailed(Exception):
    """Ends the job the way Ground Truth would: status Failed with this reason."""


# --------------------------------------------------------------------------- worker template


def _to_json(value: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=False)


def _plain(value: Any) -> Any:
    """Liquid hands filters its own wrappers for undefined values; JSON wants plain data."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return None if not str(value) else str(value)


class TemplateRenderer:
    """Ground Truth's Liquid: auto-escaping on, plus its filters (``grant_read_access`` presigns)."""

    def __init__(self, source: str, presign: Callable[[str], str]) -> None:
        from liquid import Environment  # development dependency, only the emulator needs it
        from markupsafe import Markup

        self._presign = presign
        env = Environment(autoescape=True)
        env.filters["grant_read_access"] = self._grant_read_access
        env.filters["to_json"] = _to_json
        env.filters["skip_autoescape"] = lambda value: Markup(str(value))
        self._template = env.from_string(source)

    def _grant_read_access(self, value: Any) -> str:
        if isinstance(value, str) and value.startswith("s3://"):
            return self._presign(value)
        return "" if value is None else str(value)

    def render(self, task_input: Mapping[str, Any]) -> str:
        return self._template.render(task={"input": dict(task_input)})


class _CrowdElements(HTMLParser):
    def __init__(self, tag: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tag = tag
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == self.tag:
            self.found.append(dict(attrs))


def inspect_rendered_task(html: str, expected_labels: Sequence[str] | None) -> RenderedTask:
    """What the worker page holds: the crowd element, its ``src``, ``labels`` and ``initial-value``."""
    parser = _CrowdElements(DEFAULT_ELEMENT_NAME)
    parser.feed(html)
    parser.close()
    if len(parser.found) != 1:
        return RenderedTask(
            html,
            problems=(f"the page has {len(parser.found)} <{DEFAULT_ELEMENT_NAME}> elements; expected 1",),
        )
    attrs = parser.found[0]
    problems: list[str] = []
    name = attrs.get("name")
    if not name:
        problems.append(f"<{DEFAULT_ELEMENT_NAME}> has no name attribute: the answer would have no key")
    src = attrs.get("src")
    if not src:
        problems.append(f"<{DEFAULT_ELEMENT_NAME}> has no src")
    elif not src.startswith(("http://", "https://")):
        problems.append(f"src {src[:80]!r} is not a URL a browser can load (missing | grant_read_access?)")
    labels: tuple[str, ...] = ()
    raw_labels = attrs.get("labels")
    if raw_labels is None:
        problems.append(f"<{DEFAULT_ELEMENT_NAME}> has no labels attribute")
    else:
        try:
            decoded = json.loads(raw_labels)
        except ValueError as exc:
            decoded = None
            problems.append(f"labels attribute is not JSON ({exc}): {raw_labels[:80]!r}")
        if decoded is not None:
            if not isinstance(decoded, list) or not decoded or not all(isinstance(x, str) for x in decoded):
                problems.append(
                    f"labels attribute must be a non-empty JSON list of strings, got {raw_labels[:80]!r}"
                )
            else:
                labels = tuple(decoded)
                if expected_labels is not None and list(labels) != list(expected_labels):
                    problems.append(
                        f"the page offers labels {list(labels)} but the job's label categories are {list(expected_labels)}"
                    )
    initial_value = attrs.get("initial-value")
    if initial_value is not None:
        problems.extend(_initial_value_problems(initial_value))
    return RenderedTask(
        html, element_name=name or None, src=src, labels=labels, initial_value=initial_value,
        problems=tuple(problems),
    )  # fmt: skip


def _initial_value_problems(raw: str) -> list[str]:
    """``initial-value`` (adjustment / pre-label): JSON {labelMappings: {...}, src: <loadable URL>}."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return [f"initial-value is not JSON ({exc}): {raw[:80]!r}"]
    if not isinstance(value, Mapping):
        return [f"initial-value must be a JSON object, got {raw[:80]!r}"]
    problems = []
    if not isinstance(value.get("labelMappings"), Mapping):
        problems.append("initial-value has no labelMappings object")
    src = value.get("src")
    if not isinstance(src, str) or not src.startswith(("http://", "https://")):
        problems.append(
            f"initial-value src {str(src)[:80]!r} is not a URL a browser can load (missing | grant_read_access?)"
        )
    return problems


def fetch_like_a_browser(url: str, timeout: float = 30.0) -> tuple[int, bytes, Mapping[str, str]]:
    """GET ``url`` from the worker UI's origin; (status, body, headers). Never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Origin": WORKER_UI_ORIGIN})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers or {})


# --------------------------------------------------------------------------- the driver


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_bool(value: Any) -> bool | None:
    """isHumanAnnotationRequired: a JSON boolean per the docs; "true"/"false" strings seen in samples."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def lambda_failure_reason(arn: str, role_arn: str, invocation: Invocation) -> str:
    """Ground Truth's wording when a Lambda invoke fails (protocol §1.4), plus the function's error."""
    return (
        f"ClientError: Exception invoking the Lambda function {arn}. LambdaErrorCode: Unhandled. "
        f"Ensure the Lambda function exists, that the role {role_arn} has permissions to invoke it "
        f"and try your request again. (local emulator: {invocation.describe_error()})"
    )


class GroundTruthEmulator:
    """Runs labeling jobs recorded by a ``SageMakerStandin``; ``run(job_name) -> JobReport``."""

    def __init__(
        self,
        *,
        sagemaker: SageMakerStandin,
        functions: Mapping[str, Invoker],
        workforce: Workforce,
        store: S3Store | None = None,
        batch_size: int = 10,
        progress: ProgressCallback | None = None,
        clock: Callable[[], datetime] = _utc_now,
        behaviour: GroundTruthBehaviour | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.sagemaker = sagemaker
        self.functions = dict(functions)
        self.workforce = workforce
        self.store = store or S3Store()
        self.batch_size = batch_size
        self.progress = progress or (lambda phase, done, total: None)
        self.clock = clock
        self.behaviour = behaviour or GroundTruthBehaviour()
        self._used_stamps: set[tuple[str, str]] = set()
        self._cors_cache: dict[str, bool] = {}

    # ------------------------------------------------------------------ helpers

    def presign(self, uri: str, expires: int = 3600) -> str:
        bucket, key = parse_s3_uri(uri)
        return self.store.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )

    def _stamp(self, directory: str) -> str:
        """Ground Truth's ``YYYY-MM-DD_HH:MM:SS`` file stamp, unique within ``directory``.

        Emulator choice: two batches in one second would collide, so the later one takes the next
        free second (Ground Truth's own batches are minutes apart).
        """
        moment = self.clock()
        while True:
            stamp = moment.strftime("%Y-%m-%d_%H:%M:%S")
            if (directory, stamp) not in self._used_stamps:
                self._used_stamps.add((directory, stamp))
                return stamp
            moment += timedelta(seconds=1)

    def _cors_allows_worker_ui(self, uri: str) -> bool:
        """S3's CORS evaluation for a GET from the worker UI's origin, on the bucket's own rules.

        Read from the bucket configuration because moto's server answers every Origin with an
        Access-Control-Allow-Origin header, rule or not.
        """
        bucket, _ = parse_s3_uri(uri)
        if bucket not in self._cors_cache:
            try:
                rules = self.store.client.get_bucket_cors(Bucket=bucket).get("CORSRules", [])
            except ClientError:
                rules = []  # NoSuchCORSConfiguration
            self._cors_cache[bucket] = any(
                "GET" in rule.get("AllowedMethods", [])
                and any(fnmatchcase(WORKER_UI_ORIGIN, origin) for origin in rule.get("AllowedOrigins", []))
                for rule in rules
            )
        return self._cors_cache[bucket]

    def _invoke(self, arn: str, event: Any) -> Invocation:
        function = self.functions.get(arn)
        if function is None:
            return Invocation(
                request_id=str(uuid.uuid4()),
                error={
                    "errorType": "ResourceNotFoundException",
                    "errorMessage": f"Function not found: {arn} (no local function has this ARN)",
                },
            )
        return function.invoke(event)

    # ------------------------------------------------------------------ the job

    def run(self, job_name: str) -> JobReport:
        record = self.sagemaker.job(job_name)
        request = record.request
        lan = request["LabelAttributeName"]
        report = JobReport(job_name=record.name, job_arn=record.arn, label_attribute_name=lan)
        output_path = request["OutputConfig"]["S3OutputPath"]
        report.job_prefix = join_uri(output_path, record.name)
        try:
            self._run(record.name, record.arn, request, report)
        except JobFailed as exc:
            report.status = "Failed"
            report.failure_reason = str(exc)
        else:
            report.status = "Completed"
        counters = {
            "TotalLabeled": report.count("labeled"),
            "HumanLabeled": report.count("labeled"),
            "MachineLabeled": 0,
            "FailedNonRetryableError": report.count("failed"),
            "Unlabeled": report.count("skipped") + report.count("pending"),
        }
        self.sagemaker.update_job(
            record.name,
            status=report.status,
            counters=counters,
            failure_reason=report.failure_reason,
            output_manifest_uri=report.output_manifest_uri,
        )
        return report

    def _run(self, job_name: str, job_arn: str, request: Mapping[str, Any], report: JobReport) -> None:
        task_config = request["HumanTaskConfig"]
        role_arn = request["RoleArn"]
        report.labels = self._read_label_categories(request)
        self._read_manifest(request, report)
        template = self._read_template(task_config)

        started = time.monotonic()
        pre_arn = task_config.get("PreHumanTaskLambdaArn")
        self.progress("pre-annotation", 0, len(report.objects))
        for done, outcome in enumerate(report.objects, start=1):
            self._pre_annotate(outcome, pre_arn, job_arn, role_arn)
            self.progress("pre-annotation", done, len(report.objects))
        report.phase_seconds["pre-annotation"] = time.monotonic() - started

        started = time.monotonic()
        workers_needed = int(task_config["NumberOfHumanWorkersPerDataObject"])
        answers: dict[str, list[WorkerSubmission]] = {}
        to_label = [o for o in report.objects if o.status == "pending"]
        self.progress("workers", 0, len(to_label))
        for done, outcome in enumerate(to_label, start=1):
            submissions = self._label(
                outcome, template, report.labels or None, workers_needed, job_name, report
            )
            if submissions:
                answers[outcome.dataset_object_id] = submissions
            self.progress("workers", done, len(to_label))
        report.phase_seconds["workers"] = time.monotonic() - started

        started = time.monotonic()
        ready = [o for o in report.objects if o.dataset_object_id in answers]
        acs_arn = (task_config.get("AnnotationConsolidationConfig") or {}).get(
            "AnnotationConsolidationLambdaArn"
        )
        done = 0
        self.progress("consolidation", 0, len(ready))
        for first in range(0, len(ready), self.batch_size):
            batch = ready[first : first + self.batch_size]
            self._consolidate(batch, answers, acs_arn, job_arn, role_arn, request, report)
            done += len(batch)
            self.progress("consolidation", done, len(ready))
        report.phase_seconds["consolidation"] = time.monotonic() - started

        self._write_output_manifest(job_name, report)

    # ------------------------------------------------------------------ inputs

    def _read_label_categories(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        uri = request.get("LabelCategoryConfigS3Uri")
        if not uri:
            return ()
        try:
            return LabelCategoryConfig.parse(self.store.get_bytes(uri)).labels
        except (StorageError, LabelError) as exc:
            raise JobFailed(f"ClientError: cannot use the label category configuration {uri}: {exc}") from exc

    def _read_manifest(self, request: Mapping[str, Any], report: JobReport) -> None:
        source = request["InputConfig"]["DataSource"]
        manifest_uri = (source.get("S3DataSource") or {}).get("ManifestS3Uri")
        if not manifest_uri:
            raise JobFailed(
                "ClientError: the local emulator needs InputConfig.DataSource.S3DataSource.ManifestS3Uri"
            )
        try:
            text = self.store.get_bytes(manifest_uri).decode("utf-8")
        except (StorageError, UnicodeDecodeError) as exc:
            raise JobFailed(f"ClientError: cannot read the input manifest {manifest_uri}: {exc}") from exc
        for item in parse_manifest(text.splitlines()):
            if isinstance(item, ManifestError):
                # Emulator choice: a malformed line is reported and left out, not fatal.
                report.manifest_errors.append(str(item))
                continue
            report.objects.append(ObjectOutcome(str(len(report.objects)), item.data))
        if not report.objects:
            raise JobFailed(f"ClientError: the input manifest {manifest_uri} has no data objects")

    def _read_template(self, task_config: Mapping[str, Any]) -> TemplateRenderer:
        uri = (task_config.get("UiConfig") or {}).get("UiTemplateS3Uri")
        if not uri:
            raise JobFailed(
                "ClientError: UiConfig.UiTemplateS3Uri is required for a semantic-segmentation job"
            )
        try:
            source = self.store.get_bytes(uri).decode("utf-8")
            return TemplateRenderer(source, self.presign)
        except (StorageError, UnicodeDecodeError) as exc:
            raise JobFailed(f"ClientError: cannot read the worker task template {uri}: {exc}") from exc
        except Exception as exc:  # Liquid syntax errors have several types; any of them stops the job
            raise JobFailed(f"ClientError: the worker task template {uri} does not parse: {exc}") from exc

    # ------------------------------------------------------------------ per object

    def _pre_annotate(self, outcome: ObjectOutcome, arn: str | None, job_arn: str, role_arn: str) -> None:
        if not arn:
            # No pre-annotation Lambda: the manifest line itself is task.input (protocol §1.1).
            outcome.task_input = dict(outcome.data_object)
            return
        event = {"version": PROTOCOL_VERSION, "labelingJobArn": job_arn, "dataObject": outcome.data_object}
        invocation = self._invoke(arn, event)
        if not invocation.ok:
            # Ground Truth fails the whole job when the pre-annotation Lambda errors (protocol §1.4).
            raise JobFailed(lambda_failure_reason(arn, role_arn, invocation))
        response = invocation.payload
        task_input = response.get("taskInput") if isinstance(response, Mapping) else None
        if not isinstance(task_input, Mapping):
            raise JobFailed(
                f"ClientError: the pre-annotation Lambda {arn} returned no taskInput object for data object "
                f"{outcome.dataset_object_id} (got {json.dumps(response)[:200]})"
            )
        outcome.task_input = dict(task_input)
        required = response.get("isHumanAnnotationRequired", True)
        flag = _as_bool(required)
        if flag is None:
            raise JobFailed(
                f"ClientError: isHumanAnnotationRequired must be a boolean, got {required!r} "
                f"(data object {outcome.dataset_object_id})"
            )
        if not flag:
            # Emulator choice (unconfirmed in Ground Truth): the object is not labelled and its
            # output line says why.
            outcome.status = "skipped"
            outcome.failure_reason = "the pre-annotation Lambda returned isHumanAnnotationRequired=false"
            why = task_input.get("skipReason")  # gtseg's pre-annotation says why it skipped
            if isinstance(why, str) and why.strip():
                outcome.failure_reason += f" ({why.strip()})"

    def _render(
        self, outcome: ObjectOutcome, template: TemplateRenderer, labels: Sequence[str] | None
    ) -> RenderedTask:
        assert outcome.task_input is not None
        try:
            html = template.render(outcome.task_input)
        except Exception as exc:  # any Liquid render error: this worker page would not load
            return RenderedTask("", problems=(f"the worker template does not render: {exc}",))
        rendered = inspect_rendered_task(html, labels)
        if rendered.problems or not rendered.src:
            return rendered
        problems = list(rendered.problems)
        status, body, _headers = fetch_like_a_browser(rendered.src)
        if status != 200:
            problems.append(f"the image URL in src answers HTTP {status}")
        else:
            source = outcome.data_object.get("source-ref")
            if isinstance(source, str) and source.startswith("s3://"):
                try:
                    if body != self.store.get_bytes(source):
                        problems.append(f"the image in src is not the object's source-ref {source}")
                except StorageError as exc:
                    problems.append(str(exc))
            if (
                isinstance(source, str)
                and source.startswith("s3://")
                and not self._cors_allows_worker_ui(source)
            ):
                problems.append(
                    f"the bucket of {source} has no CORS rule allowing GET from the worker UI, so the "
                    "task would fail in the browser (protocol §9.3)"
                )
        return RenderedTask(
            rendered.html, rendered.element_name, rendered.src, rendered.labels, rendered.initial_value,
            tuple(problems),
        )  # fmt: skip

    def _label(
        self,
        outcome: ObjectOutcome,
        template: TemplateRenderer,
        labels: Sequence[str] | None,
        workers_needed: int,
        job_name: str,
        report: JobReport,
    ) -> list[WorkerSubmission]:
        rendered = self._render(outcome, template, labels)
        outcome.rendered = rendered
        if rendered.problems:
            # Emulator choice: a task whose page is broken fails that object only.
            outcome.status = "failed"
            outcome.failure_reason = "worker task page is broken: " + "; ".join(rendered.problems)
            return []
        task = WorkerTask(
            job_name,
            outcome.dataset_object_id,
            outcome.data_object,
            outcome.task_input or {},
            rendered,
            workers_needed,
        )
        submissions = list(self.workforce(task))[:workers_needed]
        outcome.submissions = len(submissions)
        if not submissions:
            outcome.status = "failed"
            outcome.failure_reason = "no worker annotated the object before the task expired"
            return []
        directory = join_uri(
            report.job_prefix, WORKER_RESPONSE_DIR, f"iteration-{ITERATION}", outcome.dataset_object_id
        )
        submitted = self.clock()
        answers = []
        for submission in submissions:
            spent = float(submission.time_spent_seconds)
            answers.append(
                {
                    "answerContent": dict(submission.answer_content),
                    "acceptanceTime": _iso_z(submitted - timedelta(seconds=spent)),
                    "submissionTime": _iso_z(submitted),
                    "timeSpentInSeconds": spent,
                    "workerId": submission.worker_id,
                    "workerMetadata": {
                        "identityData": {
                            "identityProviderType": "Cognito",
                            "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_localEmulator",
                            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, submission.worker_id)),
                        }
                    },
                }
            )
        # Not put_json: that sorts keys, and the answers should keep the order workers sent them in.
        body = json.dumps({"answers": answers}, ensure_ascii=False).encode("utf-8")
        self.store.put_bytes(join_uri(directory, f"{self._stamp(directory)}.json"), body, "application/json")
        return submissions

    # ------------------------------------------------------------------ consolidation

    def _consolidate(
        self,
        batch: Sequence[ObjectOutcome],
        answers: Mapping[str, Sequence[WorkerSubmission]],
        arn: str | None,
        job_arn: str,
        role_arn: str,
        request: Mapping[str, Any],
        report: JobReport,
    ) -> None:
        lan = report.label_attribute_name
        if not arn:
            # Without a consolidation Lambda the output holds an empty <lan> (protocol §1.1).
            for outcome in batch:
                outcome.status = "labeled"
                outcome.content = {lan: {}}
            return
        payload = []
        for outcome in batch:
            line = outcome.data_object
            data_object = (
                {"s3Uri": line["source-ref"]}
                if isinstance(line.get("source-ref"), str)
                else {"content": line.get("source")}
            )
            payload.append(
                {
                    "datasetObjectId": outcome.dataset_object_id,
                    "dataObject": data_object,
                    "annotations": [
                        {
                            "workerId": s.worker_id,
                            "annotationData": {
                                "content": json.dumps(s.answer_content, separators=(",", ":"))
                            },
                        }
                        for s in answers[outcome.dataset_object_id]
                    ],
                }
            )
        consolidated = join_uri(report.job_prefix, CONSOLIDATED_DIR)
        request_dir = join_uri(consolidated, "consolidation-request", f"iteration-{ITERATION}")
        stamp = self._stamp(request_dir)
        request_uri = join_uri(request_dir, f"{stamp}.json")
        self.store.put_bytes(request_uri, json.dumps(payload).encode("utf-8"), "application/json")
        event: dict[str, Any] = {
            "version": PROTOCOL_VERSION,
            "labelingJobArn": job_arn,
            "labelCategories": list(report.labels) if report.labels else None,
            "labelAttributeName": lan,
            "roleArn": role_arn,
            "payload": {"s3Uri": request_uri},
        }
        style = self.behaviour.output_config
        if style == "annotations":
            event["outputConfig"] = join_uri(report.job_prefix, "annotations")
        elif style == "consolidated-output":
            event["outputConfig"] = join_uri(consolidated, "output")
        kms = (request.get("OutputConfig") or {}).get("KmsKeyId")
        if kms:
            event["kmsKeyId"] = kms  # unconfirmed whether Ground Truth sends it (protocol §2.2)
        ids = tuple(o.dataset_object_id for o in batch)
        started = time.monotonic()
        invocation = self._invoke(arn, event)
        seconds = time.monotonic() - started
        if not invocation.ok:
            report.batches.append(BatchOutcome(request_uri, None, ids, seconds, invocation.describe_error()))
            # Emulator choice: like a pre-annotation failure, a consolidation invoke error ends the job.
            raise JobFailed(lambda_failure_reason(arn, role_arn, invocation))
        response_uri = join_uri(
            consolidated, "consolidation-response", f"iteration-{ITERATION}", f"{stamp}.json"
        )
        self.store.put_bytes(response_uri, json.dumps(invocation.payload).encode("utf-8"), "application/json")
        report.batches.append(BatchOutcome(request_uri, response_uri, ids, seconds))
        report.contract_problems.extend(apply_consolidation_response(batch, invocation.payload, lan))
        answered = self.clock()
        for outcome in batch:
            outcome.answered_at = answered

    # ------------------------------------------------------------------ output

    def _write_output_manifest(self, job_name: str, report: JobReport) -> None:
        created = iso_timestamp(self.clock())
        lines = [dump_manifest_line(self.output_line(o, job_name, report, created)) for o in report.objects]
        uri = join_uri(report.job_prefix, OUTPUT_MANIFEST)
        self.store.put_bytes(uri, "".join(lines).encode("utf-8"), "application/jsonlines")
        report.output_manifest_uri = uri

    def output_line(
        self, outcome: ObjectOutcome, job_name: str, report: JobReport, created: str
    ) -> dict[str, Any]:
        """The object's line in output.manifest (and, for a streaming job, on its output topic)."""
        lan = report.label_attribute_name
        line = dict(outcome.data_object)
        returned = outcome.content is not None and (outcome.status == "labeled" or outcome.failure_reason)
        if returned:
            # the content as returned: the label and the Lambda's own metadata (or failure entry)
            line.update(outcome.content or {})
        elif self.behaviour.lambda_metadata == "kept":
            # Emulator choice: failed or skipped objects carry their reason in <lan>-metadata.
            reason = outcome.failure_reason or "not labeled"
            line.update(failure_content(lan, job_name=job_name, reason=reason, creation_date=created))
        if self.behaviour.lambda_metadata != "kept":
            line[metadata_key(lan)] = self._ground_truth_metadata(line.get(metadata_key(lan)), outcome,
                                                                  report, created)  # fmt: skip
        return line

    def _ground_truth_metadata(
        self, returned: Any, outcome: ObjectOutcome, report: JobReport, created: str
    ) -> dict[str, Any]:
        """``<lan>-metadata`` as Ground Truth writes it for a custom job (``replaced``), or the
        Lambda's with Ground Truth's keys on top (``merged``). Emulator choice: an object that got no
        label keeps a failure-reason (built-in jobs write one; unconfirmed for custom jobs)."""
        answered = iso_timestamp(outcome.answered_at) if outcome.answered_at else created
        own = self.behaviour.custom_metadata(report.job_arn, answered)
        metadata = (
            {**returned, **own}
            if self.behaviour.lambda_metadata == "merged" and isinstance(returned, Mapping)
            else own
        )
        if outcome.status != "labeled":
            metadata["failure-reason"] = outcome.failure_reason or "not labeled"
        return metadata

    def download(self, report: JobReport, out_dir: Path | str) -> Path:
        """Copy everything under the job's output prefix to ``out_dir/<job-name>/`` (keys made file-safe)."""
        target = Path(out_dir) / safe_filename(report.job_name)
        bucket, prefix = parse_s3_prefix(report.job_prefix)
        for uri in self.store.list_keys(report.job_prefix):
            _, key = parse_s3_uri(uri)
            relative = key[len(prefix) :].lstrip("/") if prefix else key
            path = target.joinpath(*[safe_filename(part) for part in relative.split("/") if part])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.store.get_bytes(f"s3://{bucket}/{key}"))
        rendered = target / "local-emulator" / "rendered-tasks"
        for outcome in report.objects:
            if outcome.rendered is not None and outcome.rendered.html:
                rendered.mkdir(parents=True, exist_ok=True)
                (rendered / f"{safe_filename(outcome.dataset_object_id)}.html").write_text(
                    outcome.rendered.html
                )
        (target / "local-emulator").mkdir(parents=True, exist_ok=True)
        (target / "local-emulator" / "job-report.json").write_text(
            json.dumps(report.to_dict(), indent=1) + "\n"
        )
        return target


def apply_consolidation_response(batch: Sequence[ObjectOutcome], response: Any, lan: str) -> list[str]:
    """Check a consolidation response against the contract (protocol §2.4) and take each object's content.

    Every object of ``batch`` ends ``labeled`` or ``failed`` (with a reason); the returned list
    names each departure from the contract. A response that is not a list fails the job.
    """
    by_id = {o.dataset_object_id: o for o in batch}
    if not isinstance(response, list):
        raise JobFailed(
            "ClientError: the consolidation Lambda must return a list of "
            f"{{datasetObjectId, consolidatedAnnotation}}, got {type(response).__name__}"
        )
    problems: list[str] = []
    returned: list[str] = []
    for position, entry in enumerate(response):
        where = f"response[{position}]"
        object_id = entry.get("datasetObjectId") if isinstance(entry, Mapping) else None
        if isinstance(object_id, bool) or not isinstance(object_id, str | int):
            problems.append(f"{where}: no datasetObjectId")
            continue
        object_id = str(object_id)
        outcome = by_id.get(object_id)
        if outcome is None:
            problems.append(f"{where}: datasetObjectId {object_id!r} is not in this batch")
            continue
        if object_id in returned:
            problems.append(f"{where}: datasetObjectId {object_id!r} appears twice")
            continue
        returned.append(object_id)
        consolidated = entry.get("consolidatedAnnotation")
        content = consolidated.get("content") if isinstance(consolidated, Mapping) else None
        if not isinstance(content, Mapping):
            problems.append(f"{where}: no consolidatedAnnotation.content object")
            outcome.status, outcome.failure_reason = "failed", "the consolidation response has no content"
            continue
        outcome.content = dict(content)
        metadata = content.get(f"{lan}-metadata")
        failure = metadata.get("failure-reason") if isinstance(metadata, Mapping) else None
        if lan in content:
            outcome.status = "labeled"
        elif failure:
            outcome.status, outcome.failure_reason = "failed", str(failure)
        else:
            problems.append(
                f"{where}: content has no {lan!r} key (the labelAttributeName), so nothing would show up "
                "under the label in output.manifest"
            )
            outcome.status = "failed"
            outcome.failure_reason = f"the consolidation response has no {lan!r} value"
    expected = [o.dataset_object_id for o in batch]
    if returned != [i for i in expected if i in returned]:
        problems.append("the response is not in payload order (design.md contract)")
    for outcome in batch:
        if outcome.dataset_object_id not in returned:
            problems.append(
                f"datasetObjectId {outcome.dataset_object_id!r} is missing from the consolidation response"
            )
            outcome.status = "failed"
            outcome.failure_reason = "left out of the consolidation response"
    return problems


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
