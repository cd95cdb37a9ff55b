"""Every limit a CreateLabelingJob request must meet, in one place.

Two sources:

* the API's own constraints (min/max, patterns, enums, required members), read at run time from
  botocore's SageMaker service model, so they follow the installed botocore instead of numbers
  copied into this file. botocore's client-side validation checks types, required members and
  minimums but neither patterns nor maximum lengths (toolchain doc §6), so ``request_problems``
  applies all of them itself, patterns with ``re.fullmatch`` (the model's patterns are unanchored);
* Ground Truth's own rules for semantic segmentation that the model does not carry (protocol doc
  §3.5, §3.6, §6, §10): the ``-ref`` suffix, the 8-hour task limit, the public price list, the
  20,000-object quota, the public workforce's content classifiers.

Pure Python plus botocore's bundled model files: no AWS call is made here.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import botocore.session

from gtseg.core.labels import MAX_LABEL_LENGTH, MAX_LABELS

__all__ = [
    "DEFAULT_WORKERS_PER_OBJECT",
    "FORBIDDEN_LABEL_ATTRIBUTE_SUFFIX",
    "IMAGE_EXTENSIONS",
    "LABEL_ATTRIBUTE_SUFFIX",
    "MAX_DATASET_OBJECTS",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "MAX_MANIFEST_LINE_BYTES",
    "PUBLIC_PRICES_USD",
    "PUBLIC_WORKTEAM_ACCOUNT",
    "REQUIRED_PUBLIC_CLASSIFIERS",
    "TASK_AVAILABILITY_MAX_SECONDS_PRIVATE",
    "TASK_AVAILABILITY_MAX_SECONDS_PUBLIC",
    "TASK_TIME_LIMIT_MAX_SECONDS",
    "LimitError",
    "MemberConstraint",
    "check",
    "constraint",
    "constraints",
    "is_public_workteam",
    "label_attribute_problems",
    "missing_public_classifiers",
    "normalize_price",
    "object_count_problem",
    "price_to_amount",
    "public_price_problem",
    "public_workteam_arn",
    "request_problems",
    "streaming_request_problems",
    "task_availability_problem",
    "task_time_limit_problem",
    "to_python_pattern",
]

OPERATION = "CreateLabelingJob"

# ---------------------------------------------------------------- Ground Truth's own rules
# (not in the service model; sources in the protocol doc)

LABEL_ATTRIBUTE_SUFFIX = "-ref"  # built-in semantic segmentation and its adjustment task (§6)
FORBIDDEN_LABEL_ATTRIBUTE_SUFFIX = "-metadata"  # would collide with <lan>-metadata (§6)
TASK_TIME_LIMIT_MAX_SECONDS = 8 * 3600  # image and custom tasks; the minimum comes from the model
TASK_AVAILABILITY_MAX_SECONDS_PUBLIC = 12 * 3600  # Mechanical Turk
TASK_AVAILABILITY_MAX_SECONDS_PRIVATE = 30 * 24 * 3600  # private / vendor workteams
MAX_DATASET_OBJECTS = 20_000  # semantic-segmentation dataset quota (§3.6)
MAX_MANIFEST_LINE_BYTES = 100 * 1024  # a manifest line, and so dataObject (§1.2)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # input formats Ground Truth accepts (§3.6)
DEFAULT_WORKERS_PER_OBJECT = 3  # the console's default for semantic segmentation
# The public (Mechanical Turk) price list for semantic segmentation, USD per task (§6).
PUBLIC_PRICES_USD: tuple[Decimal, ...] = tuple(Decimal(p) for p in ("0.840", "0.960", "1.080", "1.200"))
PUBLIC_WORKTEAM_ACCOUNT = "394669845002"
# Mechanical Turk jobs fail when the data is not declared free of PII (§6, ContentClassifiers).
REQUIRED_PUBLIC_CLASSIFIERS = ("FreeOfPersonallyIdentifiableInformation",)


class LimitError(ValueError):
    """A value outside a SageMaker or Ground Truth limit; the message says which and why."""


# ---------------------------------------------------------------- service-model constraints


@dataclass(frozen=True)
class MemberConstraint:
    """One member of the request shape: ``path`` like ``HumanTaskConfig.TaskKeywords[]``."""

    path: str
    type_name: str
    required: bool
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] = ()

    def problems(self, value: Any) -> list[str]:
        """What is wrong with ``value`` for this member (empty when it is fine)."""
        out: list[str] = []
        kind = self.type_name
        if kind == "string":
            if not isinstance(value, str):
                return [f"must be a string, got {type(value).__name__}"]
            size, unit = len(value), "characters"
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                return [f"must be an integer, got {type(value).__name__}"]
            size, unit = value, None
        elif kind == "list":
            if not isinstance(value, list | tuple):
                return [f"must be a list, got {type(value).__name__}"]
            size, unit = len(value), "items"
        elif kind == "structure":
            if not isinstance(value, Mapping):
                return [f"must be an object, got {type(value).__name__}"]
            return []
        else:
            return []
        if self.min is not None and size < self.min:
            out.append(f"must be at least {self.min}" + (f" {unit}" if unit else "") + f" (got {size})")
        if self.max is not None and size > self.max:
            out.append(f"must be at most {self.max}" + (f" {unit}" if unit else "") + f" (got {size})")
        if kind == "string":
            if self.enum and value not in self.enum:
                out.append(f"must be one of {', '.join(self.enum)} (got {value!r})")
            if self.pattern is not None and not _compiled(self.pattern).fullmatch(value):
                out.append(f"must match the pattern {self.pattern} (got {_preview(value)})")
        return out


def _preview(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


@functools.cache
def _operation_input_shape(operation: str) -> Any:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model(operation).input_shape


@functools.cache
def constraints(operation: str = OPERATION) -> dict[str, MemberConstraint]:
    """Every member of the operation's input, by dotted path (list items end in ``[]``)."""
    out: dict[str, MemberConstraint] = {}

    def walk(shape: Any, path: str, required: bool) -> None:
        meta = shape.metadata
        out[path] = MemberConstraint(
            path=path,
            type_name=shape.type_name,
            required=required,
            min=meta.get("min"),
            max=meta.get("max"),
            pattern=meta.get("pattern"),
            enum=tuple(getattr(shape, "enum", None) or ()),
        )
        if shape.type_name == "structure":
            for name, member in shape.members.items():
                walk(member, f"{path}.{name}" if path else name, name in shape.required_members)
        elif shape.type_name == "list":
            walk(shape.member, f"{path}[]", True)

    walk(_operation_input_shape(operation), "", True)
    out.pop("")
    return out


def constraint(path: str, operation: str = OPERATION) -> MemberConstraint:
    try:
        return constraints(operation)[path]
    except KeyError:
        raise KeyError(f"{operation} has no member {path!r}") from None


def check(path: str, value: Any, operation: str = OPERATION) -> Any:
    """Raise ``LimitError`` when ``value`` breaks the model's constraint for ``path``; else return it."""
    problems = constraint(path, operation).problems(value)
    if problems:
        raise LimitError("; ".join(problems))
    return value


def request_problems(request: Mapping[str, Any], operation: str = OPERATION) -> list[tuple[str, str]]:
    """(path, problem) for everything in ``request`` the service model forbids.

    Covers what botocore checks (required members, unknown members, types, minimums) and what it
    does not (maximum lengths and values, patterns, enums).
    """
    found: list[tuple[str, str]] = []

    def walk(shape: Any, value: Any, path: str, shown: str) -> None:
        if path:
            for problem in constraints(operation)[path].problems(value):
                found.append((shown, problem))
        if shape.type_name == "structure" and isinstance(value, Mapping):
            for name in shape.required_members:
                if name not in value:
                    found.append((_join(shown, name), "is required"))
            for name, member_value in value.items():
                if name not in shape.members:
                    found.append((_join(shown, name), "is not a member of this structure"))
                    continue
                walk(shape.members[name], member_value, _join(path, name), _join(shown, name))
        elif shape.type_name == "list" and isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(shape.member, item, f"{path}[]", f"{shown}[{i}]")

    walk(_operation_input_shape(operation), request, "", "")
    return found


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ---------------------------------------------------------------- Java-style patterns -> Python re

_UNICODE_PROPERTY = re.compile(r"\\p\{([A-Z][a-z]?)\}")


@functools.cache
def _category_ranges(category: str) -> str:
    """A character-class body (no brackets) matching Unicode general category ``category``
    (``L`` or ``Lu`` style). Built once per category (~0.15 s), only for patterns that need it."""
    body: list[str] = []
    start = -1
    for code in range(0x110000):
        if unicodedata.category(chr(code)).startswith(category):
            if start < 0:
                start = code
        elif start >= 0:
            body.append(_range(start, code - 1))
            start = -1
    if start >= 0:
        body.append(_range(start, 0x10FFFF))
    return "".join(body)


def _range(first: int, last: int) -> str:
    return f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}"


def to_python_pattern(pattern: str) -> str:
    """The model's Java-flavoured patterns use ``\\p{L}`` etc., which Python's ``re`` lacks.

    Each ``\\p{X}`` becomes the exact set of code points in Unicode category X (from
    ``unicodedata``), inside a character class when it already is in one.
    """
    if "\\p{" not in pattern:
        return pattern
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            match = _UNICODE_PROPERTY.match(pattern, i)
            if match:
                body = _category_ranges(match.group(1))
                out.append(body if in_class else f"[{body}]")
                i = match.end()
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(to_python_pattern(pattern))


# ---------------------------------------------------------------- Ground Truth rule checks


def label_attribute_problems(name: str, *, prior: str | None = None) -> list[str]:
    """Ground Truth's rules for a semantic-segmentation ``LabelAttributeName`` beyond the model's."""
    out: list[str] = []
    if not name.endswith(LABEL_ATTRIBUTE_SUFFIX):
        out.append(f"must end with {LABEL_ATTRIBUTE_SUFFIX!r} for semantic segmentation (got {name!r})")
    if name.endswith(FORBIDDEN_LABEL_ATTRIBUTE_SUFFIX):
        out.append(f"must not end with {FORBIDDEN_LABEL_ATTRIBUTE_SUFFIX!r}")
    if prior is not None and name.casefold() == prior.casefold():
        out.append(f"must differ from the prior job's label attribute name {prior!r} (adjustment job)")
    return out


def task_time_limit_problem(seconds: int) -> str | None:
    low = constraint("HumanTaskConfig.TaskTimeLimitInSeconds").min
    if low is not None and seconds < low:
        return f"must be at least {low} seconds (got {seconds})"
    if seconds > TASK_TIME_LIMIT_MAX_SECONDS:
        return (
            f"must be at most {TASK_TIME_LIMIT_MAX_SECONDS} seconds (8 hours) for image tasks (got {seconds})"
        )
    return None


def task_availability_problem(seconds: int, *, public: bool) -> str | None:
    low = constraint("HumanTaskConfig.TaskAvailabilityLifetimeInSeconds").min
    high = TASK_AVAILABILITY_MAX_SECONDS_PUBLIC if public else TASK_AVAILABILITY_MAX_SECONDS_PRIVATE
    if low is not None and seconds < low:
        return f"must be at least {low} seconds (got {seconds})"
    if seconds > high:
        who = "the public workforce (12 hours)" if public else "a private or vendor workteam (30 days)"
        return f"must be at most {high} seconds for {who} (got {seconds})"
    return None


def normalize_price(price: Any) -> Decimal:
    """A price in USD to three decimals (the API's resolution: a tenth of a cent)."""
    try:
        return Decimal(str(price)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        raise LimitError(f"not a price in USD: {price!r}") from None


def public_price_problem(price: Any) -> str | None:
    try:
        value = normalize_price(price)
    except LimitError as exc:
        return str(exc)
    if value not in PUBLIC_PRICES_USD:
        allowed = ", ".join(f"{p:.2f}" for p in PUBLIC_PRICES_USD)
        return f"must be one of Ground Truth's semantic-segmentation prices {allowed} USD (got {price})"
    return None


def price_to_amount(price: Any) -> dict[str, int]:
    """0.84 -> ``{"Dollars": 0, "Cents": 84, "TenthFractionsOfACent": 0}`` (``USD`` shape)."""
    value = normalize_price(price)
    tenths = int(value * 1000)
    return {"Dollars": tenths // 1000, "Cents": (tenths // 10) % 100, "TenthFractionsOfACent": tenths % 10}


def public_workteam_arn(region: str, partition: str = "aws") -> str:
    return f"arn:{partition}:sagemaker:{region}:{PUBLIC_WORKTEAM_ACCOUNT}:workteam/public-crowd/default"


def is_public_workteam(arn: str) -> bool:
    return ":workteam/public-crowd/" in arn


def missing_public_classifiers(classifiers: Sequence[str]) -> list[str]:
    return [c for c in REQUIRED_PUBLIC_CLASSIFIERS if c not in classifiers]


def object_count_problem(count: int) -> str | None:
    if count <= 0:
        return "no images: Ground Truth needs at least one data object"
    if count > MAX_DATASET_OBJECTS:
        return (
            f"{count} data objects is over Ground Truth's semantic-segmentation quota of "
            f"{MAX_DATASET_OBJECTS} per job; split the images into several jobs"
        )
    return None


# ---------------------------------------------------------------- streaming jobs
# Ground Truth's rules for a streaming labeling job (developer guide: "Create a Streaming Labeling
# Job with the SageMaker API", "Ground Truth streaming labeling jobs"; the model's documentation of
# LabelingJobInputConfig): the input topic makes the job a streaming one, the manifest becomes
# optional (objects labeled first), and these members must be absent.
STREAMING_INPUT_TOPIC = "InputConfig.DataSource.SnsDataSource.SnsTopicArn"
STREAMING_OUTPUT_TOPIC = "OutputConfig.SnsTopicArn"
STREAMING_FORBIDDEN = {
    "LabelingJobAlgorithmsConfig": "streaming jobs do not support automated data labeling: leave it out",
    "StoppingConditions": (
        "Ground Truth ignores stopping conditions for a streaming job (it runs until it is stopped, or "
        "idle for 10 days): leave them out and stop the job with `gtseg stop`"
    ),
}


def is_streaming_request(request: Mapping[str, Any]) -> bool:
    source = (request.get("InputConfig") or {}).get("DataSource") or {}
    return isinstance(source, Mapping) and "SnsDataSource" in source


def streaming_request_problems(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, problem) for a streaming request that breaks Ground Truth's streaming rules; nothing
    for a request without an input topic (a one-time job), except an output topic on one."""
    if not is_streaming_request(request):
        if (request.get("OutputConfig") or {}).get("SnsTopicArn"):
            return [
                (STREAMING_OUTPUT_TOPIC, "an output topic belongs to a streaming job (with an input topic)")
            ]
        return []
    found = [(name, why) for name, why in STREAMING_FORBIDDEN.items() if name in request]
    topics = {path: _lookup(request, path) for path in (STREAMING_INPUT_TOPIC, STREAMING_OUTPUT_TOPIC)}
    regions = {
        path: arn.split(":")[3]
        for path, arn in topics.items()
        if isinstance(arn, str) and arn.count(":") >= 5
    }
    lambda_arn = (request.get("HumanTaskConfig") or {}).get("PreHumanTaskLambdaArn")
    job_region = (
        lambda_arn.split(":")[3] if isinstance(lambda_arn, str) and lambda_arn.count(":") >= 6 else None
    )
    for path, region in regions.items():
        if job_region and region != job_region:
            found.append(
                (
                    path,
                    f"the topic is in {region} but the job runs in {job_region}; it must be in the job's region",
                )
            )
    if (
        topics[STREAMING_INPUT_TOPIC] is not None
        and topics[STREAMING_INPUT_TOPIC] == topics[STREAMING_OUTPUT_TOPIC]
    ):
        found.append(
            (
                STREAMING_OUTPUT_TOPIC,
                "the output topic must not be the input topic (labels would come back as new objects)",
            )
        )
    return found


def _lookup(request: Mapping[str, Any], path: str) -> Any:
    value: Any = request
    for name in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value
