"""The job spec: what a user writes to start a labeling job (``gtseg launch SPEC.json``, or the
launcher Lambda's event).

The field names are a public contract (issue 5): camelCase, and unknown fields are an error so a
typo never passes silently. Every check that needs no AWS call happens here, at parse time, and
names the field: the service model's constraints (via ``gtseg.launcher.limits``) and Ground
Truth's own rules. Settings the stack provides (ARNs, buckets) are checked in ``gtseg.launcher.settings``.

``python -m gtseg.launcher.spec > docs/job-spec.schema.json`` regenerates the published JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gtseg.core.labels import LabelError, validate_labels
from gtseg.core.uris import parse_s3_prefix, parse_s3_uri
from gtseg.launcher import limits as limits

ContentClassifier = Literal["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]

# Tag keys the launcher sets itself; users may not set them.
RESERVED_TAG_PREFIXES = ("aws:", "gtseg:")


class SpecError(ValueError):
    """A job spec that cannot be launched; each line of the message names a field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid job spec: " + "; ".join(self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _model_check(path: str, value: Any) -> Any:
    """Apply the service model's constraint for ``path``; a ValueError becomes a pydantic error."""
    try:
        return limits.check(path, value)
    except limits.LimitError as exc:
        raise ValueError(str(exc)) from None


def _s3_uri(value: str) -> str:
    parse_s3_uri(value)
    return value


class Images(_Strict):
    """Exactly one of: an S3 prefix to list (jpg/jpeg/png kept), or an existing manifest."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["prefix"]}, {"required": ["manifestUri"]}]}
    )

    prefix: str | None = Field(default=None, description="s3://bucket/prefix/ listed for .jpg/.jpeg/.png")
    manifest_uri: str | None = Field(
        default=None, alias="manifestUri", description="s3:// JSON Lines manifest"
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None:
            parse_s3_prefix(value)
        return value

    @field_validator("manifest_uri")
    @classmethod
    def _manifest(cls, value: str | None) -> str | None:
        return None if value is None else _s3_uri(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Images:
        if (self.prefix is None) == (self.manifest_uri is None):
            raise ValueError("give exactly one of 'prefix' or 'manifestUri'")
        return self


class PublicWorkforce(_Strict):
    """Amazon Mechanical Turk: a price from Ground Truth's list and the data's content declarations."""

    price_in_usd: Decimal = Field(alias="priceInUsd", description="0.84, 0.96, 1.08 or 1.20")
    content_classifiers: list[ContentClassifier] = Field(
        default_factory=list,
        alias="contentClassifiers",
        description="must include FreeOfPersonallyIdentifiableInformation: jobs without it fail on MTurk",
    )

    @field_validator("price_in_usd")
    @classmethod
    def _price(cls, value: Decimal) -> Decimal:
        problem = limits.public_price_problem(value)
        if problem:
            raise ValueError(problem)
        return limits.normalize_price(value)

    @field_validator("content_classifiers")
    @classmethod
    def _classifiers(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _required_classifiers(self) -> PublicWorkforce:
        # checked here, not on the field: a field validator does not see an omitted list's name
        missing = limits.missing_public_classifiers(self.content_classifiers)
        if missing:
            raise ValueError(
                f"contentClassifiers must include {', '.join(missing)} for the public workforce: declare "
                "that the images contain no personally identifiable information, or use a private workteam"
            )
        return self


class Workforce(_Strict):
    """Exactly one of: a private or vendor workteam ARN, or the public workforce."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["workteamArn"]}, {"required": ["public"]}]}
    )

    workteam_arn: str | None = Field(default=None, alias="workteamArn")
    public: PublicWorkforce | None = None

    @field_validator("workteam_arn")
    @classmethod
    def _workteam(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if limits.is_public_workteam(value):
            raise ValueError("that is the public workforce: use 'workforce.public' with a price instead")
        return _model_check("HumanTaskConfig.WorkteamArn", value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Workforce:
        if (self.workteam_arn is None) == (self.public is None):
            raise ValueError("give exactly one of 'workteamArn' or 'public'")
        return self


class StoppingConditions(_Strict):
    max_human_labeled_object_count: int | None = Field(default=None, alias="maxHumanLabeledObjectCount")
    max_percentage_of_input_dataset_labeled: int | None = Field(
        default=None, alias="maxPercentageOfInputDatasetLabeled"
    )

    @field_validator("max_human_labeled_object_count")
    @classmethod
    def _count(cls, value: int | None) -> int | None:
        return None if value is None else _model_check("StoppingConditions.MaxHumanLabeledObjectCount", value)

    @field_validator("max_percentage_of_input_dataset_labeled")
    @classmethod
    def _percent(cls, value: int | None) -> int | None:
        if value is None:
            return None
        return _model_check("StoppingConditions.MaxPercentageOfInputDatasetLabeled", value)


class Instructions(_Strict):
    """Written into the label-category file's ``instructions`` (Ground Truth's own key names).
    Workers do not see them: only Ground Truth's built-in NER, 3D and video UIs read that key; the
    gtseg worker template has its own instruction blocks (docs/worker-template.md)."""

    short_instruction: str | None = Field(default=None, alias="shortInstruction")
    full_instruction: str | None = Field(default=None, alias="fullInstruction")


class Prior(_Strict):
    """An adjustment (review) job: start from a previous job's masks.

    The prior output manifest comes from ``manifestUri`` or from the job ``jobName``
    (DescribeLabelingJob's output manifest). ``labelAttributeName`` is the prior masks' attribute;
    when omitted it is the prior job's, or the single segmentation attribute found on the lines.
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["manifestUri"]}, {"required": ["jobName"]}]}
    )

    manifest_uri: str | None = Field(default=None, alias="manifestUri")
    job_name: str | None = Field(default=None, alias="jobName")
    label_attribute_name: str | None = Field(default=None, alias="labelAttributeName")

    @field_validator("manifest_uri")
    @classmethod
    def _manifest(cls, value: str | None) -> str | None:
        return None if value is None else _s3_uri(value)

    @field_validator("job_name")
    @classmethod
    def _job(cls, value: str | None) -> str | None:
        return None if value is None else _model_check("LabelingJobName", value)

    @field_validator("label_attribute_name")
    @classmethod
    def _lan(cls, value: str | None) -> str | None:
        return None if value is None else _model_check("LabelAttributeName", value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Prior:
        if (self.manifest_uri is None) == (self.job_name is None):
            raise ValueError("give exactly one of 'manifestUri' or 'jobName'")
        return self


class Gold(_Strict):
    """Gold objects (honeypots): images with known masks, mixed into the job to score each worker.

    ``manifestUri`` is an output manifest (what Ground Truth and gtseg write): per line a
    ``source-ref``, the known mask's URI under ``labelAttributeName`` and its colour map under
    ``<labelAttributeName>-metadata.internal-color-map``. ``labelAttributeName`` defaults to the
    single segmentation attribute found on the lines. ``count`` gold objects (the first usable
    lines, in manifest order) are spread evenly through the job's manifest; the default is every
    usable line.
    """

    manifest_uri: str = Field(
        alias="manifestUri", description="s3:// output manifest of images with known masks"
    )
    label_attribute_name: str | None = Field(
        default=None,
        alias="labelAttributeName",
        description="the gold lines' mask attribute; defaults to the only one on the lines",
    )
    count: int | None = Field(
        default=None,
        ge=1,
        le=limits.MAX_DATASET_OBJECTS,
        description="how many gold objects to mix in (the first usable lines); defaults to all of them",
    )

    @field_validator("manifest_uri")
    @classmethod
    def _manifest(cls, value: str) -> str:
        return _s3_uri(value)

    @field_validator("label_attribute_name")
    @classmethod
    def _lan(cls, value: str | None) -> str | None:
        return None if value is None else _model_check("LabelAttributeName", value)


class JobSpec(_Strict):
    """A semantic-segmentation labeling job, as users write it."""

    schema_ref: str | None = Field(default=None, alias="$schema", description="ignored; for editors")
    job_name: str = Field(alias="jobName", description="unique per account and region (case-insensitive)")
    labels: list[str] | None = Field(default=None, description="class names, in class-index order 1..N")
    label_category_config_uri: str | None = Field(
        default=None,
        alias="labelCategoryConfigUri",
        description="s3:// label-category file (instead of labels)",
    )
    images: Images | None = Field(default=None, description="required unless 'prior' gives the manifest")
    workforce: Workforce | None = Field(
        default=None, description="defaults to the stack's DEFAULT_WORKTEAM_ARN"
    )
    workers_per_object: int = Field(default=limits.DEFAULT_WORKERS_PER_OBJECT, alias="workersPerObject")
    task_time_limit_seconds: int = Field(default=600, alias="taskTimeLimitSeconds")
    task_availability_seconds: int | None = Field(default=None, alias="taskAvailabilitySeconds")
    max_concurrent_tasks: int | None = Field(default=None, alias="maxConcurrentTasks")
    title: str = "Semantic segmentation"
    description: str = "Paint every pixel of the image with the class it belongs to."
    keywords: list[str] = Field(default_factory=lambda: ["image", "segmentation"])
    instructions: Instructions | None = None
    label_attribute_name: str | None = Field(
        default=None, alias="labelAttributeName", description="defaults to '<jobName>-ref'"
    )
    stopping_conditions: StoppingConditions | None = Field(default=None, alias="stoppingConditions")
    output_kms_key_id: str | None = Field(
        default=None, alias="outputKmsKeyId", description="defaults to the stack's OUTPUT_KMS_KEY_ID"
    )
    tags: dict[str, str] = Field(default_factory=dict)
    prior: Prior | None = Field(default=None, description="adjustment job: review a previous job's masks")
    gold: Gold | None = Field(
        default=None, description="gold objects (known masks) mixed into a new-image job to score workers"
    )
    streaming: bool = Field(
        default=False,
        description="a streaming job: it takes images from the stack's SNS input topic (`gtseg send`) until it "
        "is stopped; 'images', when given, are its first objects (docs/streaming.md)",
    )

    # ------------------------------------------------------------ field checks

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str) -> str:
        try:
            return limits.check("LabelingJobName", value)
        except limits.LimitError as exc:
            hint = "letters, digits and hyphens only, starting and ending with a letter or digit"
            raise ValueError(f"{hint}; {exc}") from None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return list(validate_labels(value))
        except LabelError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("label_category_config_uri")
    @classmethod
    def _label_uri(cls, value: str | None) -> str | None:
        return None if value is None else _model_check("LabelCategoryConfigS3Uri", _s3_uri(value))

    @field_validator("workers_per_object")
    @classmethod
    def _workers(cls, value: int) -> int:
        return _model_check("HumanTaskConfig.NumberOfHumanWorkersPerDataObject", value)

    @field_validator("task_time_limit_seconds")
    @classmethod
    def _task_time(cls, value: int) -> int:
        problem = limits.task_time_limit_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("max_concurrent_tasks")
    @classmethod
    def _concurrency(cls, value: int | None) -> int | None:
        return None if value is None else _model_check("HumanTaskConfig.MaxConcurrentTaskCount", value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _model_check("HumanTaskConfig.TaskTitle", value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return _model_check("HumanTaskConfig.TaskDescription", value)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        _model_check("HumanTaskConfig.TaskKeywords", value)
        for i, keyword in enumerate(value):
            try:
                limits.check("HumanTaskConfig.TaskKeywords[]", keyword)
            except limits.LimitError as exc:
                raise ValueError(f"keyword {i} ({keyword!r}): {exc}") from None
        return value

    @field_validator("label_attribute_name")
    @classmethod
    def _lan(cls, value: str | None) -> str | None:
        return None if value is None else _model_check("LabelAttributeName", value)

    @field_validator("output_kms_key_id")
    @classmethod
    def _kms(cls, value: str | None) -> str | None:
        return None if value is None else _model_check("OutputConfig.KmsKeyId", value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag_value in value.items():
            if key.lower().startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(f"tag {key!r}: keys starting with aws: or gtseg: are reserved")
            for path, item in (("Tags[].Key", key), ("Tags[].Value", tag_value)):
                try:
                    limits.check(path, item)
                except limits.LimitError as exc:
                    raise ValueError(f"tag {key!r}: {exc}") from None
        return value

    # ------------------------------------------------------------ cross-field checks

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        has_labels = self.labels is not None
        has_file = self.label_category_config_uri is not None
        if has_labels and has_file:
            raise ValueError("give 'labels' or 'labelCategoryConfigUri', not both")
        if not (has_labels or has_file or self.prior):
            raise ValueError("give 'labels' or 'labelCategoryConfigUri'")
        if self.images is not None and self.prior is not None:
            raise ValueError("an adjustment job takes its images from 'prior'; remove 'images'")
        if self.streaming:
            _streaming_rules(self)
        elif self.images is None and self.prior is None:
            raise ValueError("give 'images' ({'prefix': ...} or {'manifestUri': ...})")
        if self.gold is not None and self.prior is not None:
            # Workers of an adjustment job start from a mask: a gold object would show either its
            # known mask (the answer) or an empty canvas (unlike every other task).
            raise ValueError(
                "'gold' is for new-image jobs ('images'); an adjustment job ('prior') cannot take gold "
                "objects: remove 'gold' or 'prior'"
            )
        problems = limits.label_attribute_problems(
            self.effective_label_attribute_name,
            prior=self.prior.label_attribute_name if self.prior else None,
        )
        if problems:
            raise ValueError("labelAttributeName " + "; ".join(problems))
        if self.task_availability_seconds is not None:
            problem = limits.task_availability_problem(self.task_availability_seconds, public=self.is_public)
            if problem:
                raise ValueError(f"taskAvailabilitySeconds {problem}")
        return self

    # ------------------------------------------------------------ derived values

    @property
    def effective_label_attribute_name(self) -> str:
        return self.label_attribute_name or f"{self.job_name}{limits.LABEL_ATTRIBUTE_SUFFIX}"

    @property
    def is_public(self) -> bool:
        return self.workforce is not None and self.workforce.public is not None

    def canonical_json(self) -> str:
        """Every field with defaults filled in, keys sorted: equal specs give equal text."""
        # An absent 'gold' (and a false 'streaming') is left out, so specs written before they
        # existed keep their hash.
        exclude = {"schema_ref"} | ({"gold"} if self.gold is None else set())
        exclude |= set() if self.streaming else {"streaming"}
        data = self.model_dump(mode="json", by_alias=True, exclude=exclude)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def sha256(self) -> str:
        """The spec's identity for idempotent relaunch (stored in the job's ``gtseg:spec-sha256`` tag)."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def _streaming_rules(spec: JobSpec) -> None:
    """What a streaming job cannot have (developer guide, "Create a Streaming Labeling Job with the
    SageMaker API"; docs/streaming.md says why for the gtseg-only ones)."""
    if spec.stopping_conditions is not None:
        raise ValueError(
            "'stoppingConditions' with 'streaming': Ground Truth ignores stopping conditions for a streaming "
            "job, which runs until it is stopped (`gtseg stop`) or idle for 10 days; remove them"
        )
    if spec.prior is not None:
        raise ValueError(
            "'prior' with 'streaming': an adjustment job reviews a finished job's manifest; stream the "
            "images of a new-image job instead, or launch the adjustment job without 'streaming'"
        )
    if spec.gold is not None:
        raise ValueError(
            "'gold' with 'streaming': gold objects are spread through a known number of objects, and a "
            "streaming job has no end; remove 'gold' or 'streaming'"
        )


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "spec"


def format_validation_error(exc: ValidationError) -> list[str]:
    """pydantic errors -> ``"<field path>: <message>"`` lines using the spec's own field names."""
    out = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see docs/job-spec.schema.json)"
        out.append(f"{_loc(error['loc'])}: {message}")
    return out


def parse_job_spec(data: Any) -> JobSpec:
    """A dict or JSON text -> ``JobSpec``; any problem raises ``SpecError`` naming the fields."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise SpecError([f"spec: not valid JSON ({exc})"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"spec: must be a JSON object, got {type(data).__name__}"])
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


# Spec property -> the request member whose model constraint it carries (for the JSON Schema).
_SCHEMA_CONSTRAINTS: dict[tuple[str, ...], str] = {
    ("jobName",): "LabelingJobName",
    ("labelAttributeName",): "LabelAttributeName",
    ("title",): "HumanTaskConfig.TaskTitle",
    ("description",): "HumanTaskConfig.TaskDescription",
    ("keywords",): "HumanTaskConfig.TaskKeywords",
    ("keywords", "items"): "HumanTaskConfig.TaskKeywords[]",
    ("workersPerObject",): "HumanTaskConfig.NumberOfHumanWorkersPerDataObject",
    ("maxConcurrentTasks",): "HumanTaskConfig.MaxConcurrentTaskCount",
    ("outputKmsKeyId",): "OutputConfig.KmsKeyId",
}


def _annotate(node: dict[str, Any], path: str) -> None:
    """Add the model's limits as JSON Schema keywords (patterns anchored: they apply whole)."""
    target = next((o for o in node.get("anyOf", []) if o.get("type") != "null"), node)
    found = limits.constraint(path)
    is_text = found.type_name == "string"
    is_list = found.type_name == "list"
    if found.min is not None:
        target["minLength" if is_text else "minItems" if is_list else "minimum"] = found.min
    if found.max is not None:
        target["maxLength" if is_text else "maxItems" if is_list else "maximum"] = found.max
    if found.pattern is not None:
        target["pattern"] = f"^(?:{found.pattern})$"


def json_schema() -> dict[str, Any]:
    schema = JobSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gtseg job spec"
    for keys, path in _SCHEMA_CONSTRAINTS.items():
        node = schema["properties"][keys[0]]
        if len(keys) > 1:
            node = node[keys[1]]
        _annotate(node, path)
    task_time = schema["properties"]["taskTimeLimitSeconds"]
    task_time["minimum"] = limits.constraint("HumanTaskConfig.TaskTimeLimitInSeconds").min
    task_time["maximum"] = limits.TASK_TIME_LIMIT_MAX_SECONDS
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates docs/job-spec.schema.json
    import sys

    sys.stdout.write(json_schema_text())
