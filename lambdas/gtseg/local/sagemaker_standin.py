"""A local SageMaker stand-in for labeling jobs (moto does not implement them: toolchain.md §6).

An HTTP server on 127.0.0.1 speaking the AWS JSON 1.1 protocol (``POST /`` with
``X-Amz-Target: SageMaker.<Operation>``), so an unmodified boto3 ``sagemaker`` client works when
``AWS_ENDPOINT_URL_SAGEMAKER`` points at it, in this process and in the local Lambda sandboxes.

Implemented: CreateLabelingJob, DescribeLabelingJob, ListLabelingJobs, StopLabelingJob. Requests
are checked against botocore's service model the way the service does (required members, types,
min/max, enums and the ``pattern`` regexes that botocore's client-side validation skips), and
errors come back in the service's shape (``ValidationException``, ``ResourceInUse``,
``ResourceNotFound``). Every accepted CreateLabelingJob request is recorded: the job driver
(``gtseg.local.ground_truth``) reads it and reports progress back through ``update_job``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator

from gtseg.local.loopback import LocalService, ThreadedHttpServer

ACCOUNT_ID = "123456789012"
# The job name inside LabelingJobArn: "lower" = lower-cased, as real events show
# (.../labeling-job/test-labeling-job-20211118t021255 for ...T021255); "as-created" = its own case.
ArnNames = Literal["lower", "as-created"]
# Which spelling DescribeLabelingJob / StopLabelingJob find a job under: "any-case" (names are unique
# case-insensitively), "as-created" (only the name it was created with) or "lower" (only the
# lower-cased name of its ARN). Unconfirmed; the handlers must work under each.
DescribeNames = Literal["any-case", "as-created", "lower"]
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
_SUMMARY_KEYS = (
    "LabelingJobName",
    "LabelingJobArn",
    "CreationTime",
    "LastModifiedTime",
    "LabelingJobStatus",
    "LabelCounters",
    "FailureReason",
    "LabelingJobOutput",
    "InputConfig",
)


class StandinError(Exception):
    """An API error returned to the client as ``{"__type": code, "message": ...}``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class LabelingJobRecord:
    """One labeling job: the CreateLabelingJob request as sent, and the state the driver reports."""

    name: str
    arn: str
    request: dict[str, Any]
    created: float = field(default_factory=time.time)
    status: str = "InProgress"
    failure_reason: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    output_manifest_uri: str | None = None
    last_modified: float = field(default_factory=time.time)
    stop_requested: bool = False


def _pattern_problem(value: str, pattern: str) -> bool:
    try:
        return re.fullmatch(pattern, value, flags=re.DOTALL) is None
    except re.error:  # a pattern Python's re cannot compile: the service would check it, we cannot
        return False


def check_constraints(value: Any, shape: Shape, path: str, problems: list[str]) -> None:
    """The model's max/min lengths, numeric ranges and patterns (re.fullmatch), recursively.

    botocore's ParamValidator covers required members, types and minimums; this adds what the
    service enforces on top (toolchain.md §6: botocore accepts ``LabelingJobName="bad_name"``).
    """
    meta = shape.metadata
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        for name, member in shape.members.items():
            if name in value:
                check_constraints(value[name], member, f"{path}.{name}", problems)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items; the maximum is {meta['max']}")
        for i, item in enumerate(value):
            check_constraints(item, shape.member, f"{path}[{i}]", problems)
    elif isinstance(shape, MapShape) and isinstance(value, Mapping):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} entries; the maximum is {meta['max']}")
        for key, item in value.items():
            check_constraints(key, shape.key, f"{path} key {key!r}", problems)
            check_constraints(item, shape.value, f"{path}[{key!r}]", problems)
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} characters; the maximum is {meta['max']}")
        if "pattern" in meta and _pattern_problem(value, meta["pattern"]):
            problems.append(f"{path}: {value!r} does not match the pattern {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
    elif (
        shape.type_name in ("integer", "long")
        and isinstance(value, int)
        and "max" in meta
        and value > meta["max"]
    ):
        problems.append(f"{path}: {value} is above the maximum {meta['max']}")


def validate_request(operation: OperationModel, params: Mapping[str, Any]) -> None:
    """Raise ``StandinError(ValidationException)`` listing every problem with ``params``."""
    problems: list[str] = []
    report = ParamValidator().validate(dict(params), operation.input_shape)
    if report.has_errors():
        problems.extend(line.strip() for line in report.generate_report().splitlines() if line.strip())
    check_constraints(params, operation.input_shape, operation.name, problems)
    if problems:
        raise StandinError("ValidationException", "; ".join(problems))


class SageMakerStandin(LocalService):
    """``with SageMakerStandin() as sm: sm.endpoint_url``: labeling-job APIs on 127.0.0.1."""

    def __init__(
        self,
        region: str = "us-east-1",
        *,
        arn_names: ArnNames = "lower",
        describe_names: DescribeNames = "any-case",
        initial_status: str = "InProgress",
    ) -> None:
        self.region = region
        # A created job's status until its engine says otherwise. Ground Truth's jobs start
        # Initializing; the streaming engine marks InProgress once its queue is subscribed, so
        # nothing sent before is lost. The one-time engine needs no such step.
        self.initial_status = initial_status
        self.arn_names = arn_names
        self.describe_names = describe_names
        self._model = botocore.session.get_session().get_service_model("sagemaker")
        self._jobs: dict[str, LabelingJobRecord] = {}  # key: lower-case name (names are case-insensitive)
        self._lock = threading.Lock()
        self._server: ThreadedHttpServer | None = None
        self.requests: list[tuple[str, dict[str, Any]]] = []  # every call received: (operation, body)
        self.endpoint_url: str | None = None

    # ------------------------------------------------------------------ server

    def start(self) -> str:
        standin = self

        class Handler(_JsonHandler):
            owner = standin

        self._server = ThreadedHttpServer(Handler, name="sagemaker-standin")
        self.endpoint_url = self._server.start()
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # ------------------------------------------------------------------ job state (driver side)

    def job(self, name: str) -> LabelingJobRecord:
        with self._lock:
            record = self._jobs.get(name.lower())
        if record is None:
            raise KeyError(f"no labeling job named {name!r} was created")
        return record

    def _job_as_named(self, name: str) -> LabelingJobRecord:
        """The job an API call names, under this stand-in's ``describe_names`` rule."""
        record = self.job(name)
        if self.describe_names == "as-created" and name != record.name:
            raise KeyError(name)
        if self.describe_names == "lower" and name != record.name.lower():
            raise KeyError(name)
        return record

    def jobs(self) -> list[LabelingJobRecord]:
        with self._lock:
            return list(self._jobs.values())

    def update_job(
        self,
        name: str,
        *,
        status: str | None = None,
        counters: Mapping[str, int] | None = None,
        failure_reason: str | None = None,
        output_manifest_uri: str | None = None,
    ) -> None:
        with self._lock:
            record = self._jobs[name.lower()]
            if status is not None:
                record.status = status
            if counters is not None:
                record.counters = dict(counters)
            if failure_reason is not None:
                record.failure_reason = failure_reason
            if output_manifest_uri is not None:
                record.output_manifest_uri = output_manifest_uri
            record.last_modified = time.time()

    # ------------------------------------------------------------------ operations

    def dispatch(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        service, _, operation = target.partition(".")
        if service != "SageMaker" or not operation:
            raise StandinError("UnknownOperationException", f"unknown target {target!r}")
        self.requests.append((operation, copy.deepcopy(body)))
        method = getattr(self, f"_op_{operation}", None)
        if method is None:
            raise StandinError(
                "UnknownOperationException",
                f"the local SageMaker stand-in does not implement {operation} "
                "(only CreateLabelingJob, DescribeLabelingJob, ListLabelingJobs, StopLabelingJob)",
            )
        validate_request(self._model.operation_model(operation), body)
        return method(body)

    def _op_CreateLabelingJob(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["LabelingJobName"]
        lan = body["LabelAttributeName"]
        if lan.endswith("-metadata"):
            raise StandinError(
                "ValidationException", f"LabelAttributeName {lan!r} must not end with '-metadata'"
            )
        arn_name = name.lower() if self.arn_names == "lower" else name
        arn = f"arn:aws:sagemaker:{self.region}:{ACCOUNT_ID}:labeling-job/{arn_name}"
        with self._lock:
            if name.lower() in self._jobs:
                raise StandinError("ResourceInUse", f"Labeling job {name} already exists")
            self._jobs[name.lower()] = LabelingJobRecord(
                name=name, arn=arn, request=copy.deepcopy(body), status=self.initial_status
            )
        return {"LabelingJobArn": arn}

    def _op_DescribeLabelingJob(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            record = self._job_as_named(body["LabelingJobName"])
        except KeyError:
            raise StandinError(
                "ResourceNotFound", f"Could not find labeling job {body['LabelingJobName']!r}"
            ) from None
        return self._describe(record)

    def _describe(self, record: LabelingJobRecord) -> dict[str, Any]:
        request = record.request
        counters = {
            "TotalLabeled": 0,
            "HumanLabeled": 0,
            "MachineLabeled": 0,
            "FailedNonRetryableError": 0,
            "Unlabeled": 0,
            **record.counters,
        }
        out: dict[str, Any] = {
            "LabelingJobStatus": record.status,
            "LabelCounters": counters,
            "CreationTime": record.created,
            "LastModifiedTime": record.last_modified,
            "JobReferenceCode": record.name.lower()[:16],
            "LabelingJobName": record.name,
            "LabelingJobArn": record.arn,
        }
        # Members DescribeLabelingJob echoes from the request, under the same names.
        for key in (
            "LabelAttributeName",
            "InputConfig",
            "OutputConfig",
            "RoleArn",
            "LabelCategoryConfigS3Uri",
            "StoppingConditions",
            "LabelingJobAlgorithmsConfig",
            "HumanTaskConfig",
            "Tags",
        ):
            if key in request:
                out[key] = copy.deepcopy(request[key])
        if record.failure_reason:
            out["FailureReason"] = record.failure_reason
        if record.output_manifest_uri:
            out["LabelingJobOutput"] = {"OutputDatasetS3Uri": record.output_manifest_uri}
        return out

    def _op_ListLabelingJobs(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("NameContains", "").lower()
        status = body.get("StatusEquals")
        summaries = []
        for record in sorted(self.jobs(), key=lambda r: r.created, reverse=True):
            if wanted and wanted not in record.name.lower():
                continue
            if status and record.status != status:
                continue
            described = self._describe(record)
            summary = {key: described[key] for key in _SUMMARY_KEYS if key in described}
            task = record.request["HumanTaskConfig"]
            summary["WorkteamArn"] = task["WorkteamArn"]
            if "PreHumanTaskLambdaArn" in task:
                summary["PreHumanTaskLambdaArn"] = task["PreHumanTaskLambdaArn"]
            summaries.append(summary)
        limit = int(body.get("MaxResults") or 10)
        return {"LabelingJobSummaryList": summaries[:limit]}

    def _op_StopLabelingJob(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            record = self._job_as_named(body["LabelingJobName"])
        except KeyError:
            raise StandinError(
                "ResourceNotFound", f"Could not find labeling job {body['LabelingJobName']!r}"
            ) from None
        with self._lock:
            if record.status not in TERMINAL_STATUSES:
                record.stop_requested = True
                record.status = "Stopping"
        return {}


class _JsonHandler(BaseHTTPRequestHandler):
    owner: SageMakerStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, payload: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", f"local-{time.monotonic_ns()}")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        target = self.headers.get("X-Amz-Target", "")
        try:
            if self.path.split("?")[0] != "/":
                raise StandinError("UnknownOperationException", f"unexpected path {self.path!r}", 404)
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:
                raise StandinError("SerializationException", f"request body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise StandinError("SerializationException", "request body must be a JSON object")
            result = self.owner.dispatch(target, body)
        except StandinError as exc:
            self._send(
                exc.status, {"__type": exc.code, "message": exc.message}, {"x-amzn-ErrorType": exc.code}
            )
            return
        self._send(200, result)
