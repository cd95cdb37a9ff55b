"""Start a semantic-segmentation labeling job from a job spec (the launcher Lambda's logic).

Steps, in this order:

1. parse and check the spec (``gtseg.launcher.spec``) and the stack's settings, then build the
   CreateLabelingJob request and check it against every constraint of the service model:
   all before any AWS call;
2. DescribeLabelingJob: a job of that name that carries this spec's hash in its
   ``gtseg:spec-sha256`` tag is returned as it is (idempotent relaunch); any other job of that
   name is a ``LaunchConflictError``;
3. read the input (list the prefix, or read the manifest / the prior job's output manifest: its
   finalized ``<job>/gtseg/output.manifest`` when there is one, else Ground Truth's, whose lines
   get their colour maps back from gtseg's sidecars) and the label categories, and the gold manifest if the spec names one (its lines are checked and
   spread evenly through the job's manifest: ``gtseg.launcher.gold``); refuse an empty input and
   one over Ground Truth's quota (gold objects count);
4. write ``label-categories.json`` and ``manifest.jsonl`` under ``s3://DATA_BUCKET/jobs/<jobName>/``;
5. CreateLabelingJob.

AWS is reached only through the two objects passed in: an ``S3Store`` and a SageMaker client
(anything with boto3's ``describe_labeling_job`` / ``create_labeling_job``), so tests and the
local emulator can substitute their own.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError
from pydantic import ValidationError

from gtseg.aws.labeling_jobs import describe_labeling_job
from gtseg.aws.s3 import S3Store, StorageError
from gtseg.aws.sidecars import with_builtin_metadata
from gtseg.core.builtin_output import mask_attributes, needs_sidecar
from gtseg.core.gold import GOLD_KEY, GoldError, GoldReference, gold_line, gold_reference
from gtseg.core.labels import ClassMap, LabelCategoryConfig, LabelError, labels_from_manifest_line
from gtseg.core.layout import finalized_manifest_of
from gtseg.core.manifest import (
    PRIOR_LABEL_ATTRIBUTE_KEY,
    ManifestError,
    ManifestLine,
    dump_manifest_line,
    metadata_key,
    parse_manifest,
)
from gtseg.core.streaming import input_topic_of
from gtseg.core.uris import parse_s3_uri
from gtseg.launcher import limits as limits
from gtseg.launcher.errors import LaunchConfigError, LaunchConflictError
from gtseg.launcher.gold import mask_location_problem, mix_gold
from gtseg.launcher.settings import LauncherSettings
from gtseg.launcher.spec import JobSpec, SpecError, parse_job_spec
from gtseg.launcher.streaming import streaming_configs, streaming_lines

SPEC_HASH_TAG = "gtseg:spec-sha256"
OBJECT_COUNT_TAG = "gtseg:object-count"
# Set only on jobs whose spec has 'gold', so the requests of other specs are unchanged.
GOLD_COUNT_TAG = "gtseg:gold-count"
# How many skipped input lines a result lists by name; the count is always complete.
MAX_REPORTED_SKIPS = 50
# Sidecars read in parallel when a prior job's lines lack their colour maps (one GET each; 20,000
# lines in well under the launcher's timeout).
SIDECAR_READERS = 16


class SageMakerClient(Protocol):
    """The part of boto3's SageMaker client the launcher uses."""

    def describe_labeling_job(self, **kwargs: Any) -> dict[str, Any]: ...

    def create_labeling_job(self, **kwargs: Any) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LaunchResult:
    job_name: str
    job_arn: str
    manifest_uri: str | None  # None: a streaming job started without initial images
    object_count: int | None
    label_category_config_uri: str
    created: bool  # False when an existing job started from the same spec was returned
    skipped_count: int = 0
    skipped: tuple[str, ...] = ()
    gold_count: int | None = 0  # gold objects among object_count; None when a relaunch cannot tell
    input_topic_arn: str | None = None  # a streaming job's input topic (`gtseg send` publishes there)

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobName": self.job_name,
            "jobArn": self.job_arn,
            "manifestUri": self.manifest_uri,
            "objectCount": self.object_count,
            "goldCount": self.gold_count,
            "labelCategoryConfigUri": self.label_category_config_uri,
            "created": self.created,
            "skippedCount": self.skipped_count,
            "skipped": list(self.skipped),
            **({"inputTopicArn": self.input_topic_arn} if self.input_topic_arn else {}),
        }


@dataclass
class JobInputs:
    """What the job will label: manifest lines (gold objects mixed in) and label categories, plus
    what was left out."""

    lines: list[dict[str, Any]]
    label_config: LabelCategoryConfig
    skipped: list[str] = field(default_factory=list)
    prior_label_attribute: str | None = None
    gold_count: int = 0  # how many of ``lines`` are gold objects

    def manifest_text(self) -> str:
        return "".join(dump_manifest_line(line) for line in self.lines)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything ``launch`` would write and send, computed without writing or sending."""

    spec: JobSpec
    request: dict[str, Any]
    manifest_uri: str | None  # None: a streaming job without initial images (no manifest written)
    manifest_text: str
    label_category_config_uri: str
    label_config_text: str
    object_count: int
    skipped: tuple[str, ...]
    prior_label_attribute: str | None
    gold_count: int = 0  # gold objects among object_count


# --------------------------------------------------------------------------- request building

# Request member -> where its value comes from, so a problem names what the user must change.
_REQUEST_SOURCES = {
    "LabelingJobName": "jobName",
    "LabelAttributeName": "labelAttributeName",
    "InputConfig.DataSource.S3DataSource.ManifestS3Uri": "DATA_BUCKET",
    "InputConfig.DataAttributes": "workforce.public.contentClassifiers",
    "OutputConfig.S3OutputPath": "OUTPUT_BUCKET",
    "OutputConfig.KmsKeyId": "outputKmsKeyId",
    "RoleArn": "GROUND_TRUTH_ROLE_ARN",
    "LabelCategoryConfigS3Uri": "DATA_BUCKET",
    "StoppingConditions": "stoppingConditions",
    "HumanTaskConfig.WorkteamArn": "workforce",
    "HumanTaskConfig.UiConfig": "WORKER_TEMPLATE_URI",
    "HumanTaskConfig.PreHumanTaskLambdaArn": "PRE_ANNOTATION_FUNCTION_ARN",
    "HumanTaskConfig.AnnotationConsolidationConfig": "CONSOLIDATION_FUNCTION_ARN",
    "HumanTaskConfig.TaskKeywords": "keywords",
    "HumanTaskConfig.TaskTitle": "title",
    "HumanTaskConfig.TaskDescription": "description",
    "HumanTaskConfig.NumberOfHumanWorkersPerDataObject": "workersPerObject",
    "HumanTaskConfig.TaskTimeLimitInSeconds": "taskTimeLimitSeconds",
    "HumanTaskConfig.TaskAvailabilityLifetimeInSeconds": "taskAvailabilitySeconds",
    "HumanTaskConfig.MaxConcurrentTaskCount": "maxConcurrentTasks",
    "HumanTaskConfig.PublicWorkforceTaskPrice": "workforce.public.priceInUsd",
    "Tags": "tags",
    "InputConfig.DataSource.SnsDataSource": "STREAMING_INPUT_TOPIC_ARN",
    "OutputConfig.SnsTopicArn": "STREAMING_OUTPUT_TOPIC_ARN",
}


def _source_of(path: str) -> str:
    bare = re.sub(r"\[\d+\]", "", path)
    best = max(
        (key for key in _REQUEST_SOURCES if bare == key or bare.startswith(key + ".")), key=len, default=""
    )
    return _REQUEST_SOURCES.get(best, "request")


def workteam_arn(spec: JobSpec, settings: LauncherSettings) -> str:
    if spec.workforce is None:
        if settings.default_workteam_arn is None:
            raise SpecError(["workforce: required (the stack has no DEFAULT_WORKTEAM_ARN)"])
        problem = _workteam_region_problem(settings.default_workteam_arn, settings)
        if problem:  # only when it is used: a spec naming its own workteam still launches
            raise LaunchConfigError(f"invalid launcher settings: DEFAULT_WORKTEAM_ARN: {problem}")
        return settings.default_workteam_arn
    if spec.workforce.public is not None:
        partition, region = settings.partition_and_region
        return limits.public_workteam_arn(region, partition)
    assert spec.workforce.workteam_arn is not None  # guaranteed by Workforce's validator
    problem = _workteam_region_problem(spec.workforce.workteam_arn, settings)
    if problem:
        raise SpecError([f"workforce.workteamArn: {problem}"])
    return spec.workforce.workteam_arn


def _workteam_region_problem(arn: str, settings: LauncherSettings) -> str | None:
    """A workteam is a regional resource: the job (where our Lambdas are) must be in its region."""
    parts = arn.split(":")
    if len(parts) < 6 or not settings.names_region:
        return None  # malformed values are reported by the model's constraints
    _partition, region = settings.partition_and_region
    if parts[3] != region:
        return (
            f"the workteam is in {parts[3]} but the job runs in {region}, where the stack's Lambdas are; "
            f"use a workteam of {region} (or deploy the stack in {parts[3]})"
        )
    return None


def build_request(
    spec: JobSpec,
    settings: LauncherSettings,
    *,
    object_count: int | None = None,
    gold_count: int | None = None,
) -> dict[str, Any]:
    """The CreateLabelingJob request for ``spec`` (pure: no AWS call)."""
    human: dict[str, Any] = {
        "WorkteamArn": workteam_arn(spec, settings),
        "UiConfig": {"UiTemplateS3Uri": settings.worker_template_uri},
        "PreHumanTaskLambdaArn": settings.pre_annotation_function_arn,
        "TaskKeywords": list(spec.keywords),
        "TaskTitle": spec.title,
        "TaskDescription": spec.description,
        "NumberOfHumanWorkersPerDataObject": spec.workers_per_object,
        "TaskTimeLimitInSeconds": spec.task_time_limit_seconds,
        "AnnotationConsolidationConfig": {
            "AnnotationConsolidationLambdaArn": settings.consolidation_function_arn
        },
    }
    if spec.task_availability_seconds is not None:
        human["TaskAvailabilityLifetimeInSeconds"] = spec.task_availability_seconds
    if spec.max_concurrent_tasks is not None:
        human["MaxConcurrentTaskCount"] = spec.max_concurrent_tasks
    input_config: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"ManifestS3Uri": settings.manifest_uri(spec.job_name)}}
    }
    streaming_output: dict[str, Any] = {}
    if spec.streaming:  # the input topic, the manifest only with initial images (launcher.streaming)
        manifest = settings.manifest_uri(spec.job_name) if spec.images is not None else None
        input_config["DataSource"], streaming_output = streaming_configs(settings, manifest)
    if spec.workforce is not None and spec.workforce.public is not None:
        public = spec.workforce.public
        human["PublicWorkforceTaskPrice"] = {"AmountInUsd": limits.price_to_amount(public.price_in_usd)}
        input_config["DataAttributes"] = {"ContentClassifiers": list(public.content_classifiers)}
    output_config: dict[str, Any] = {"S3OutputPath": settings.output_path}
    kms = spec.output_kms_key_id or settings.output_kms_key_id
    if kms:
        output_config["KmsKeyId"] = kms
    output_config.update(streaming_output)
    request: dict[str, Any] = {
        "LabelingJobName": spec.job_name,
        "LabelAttributeName": spec.effective_label_attribute_name,
        "InputConfig": input_config,
        "OutputConfig": output_config,
        "RoleArn": settings.ground_truth_role_arn,
        "LabelCategoryConfigS3Uri": settings.label_category_config_uri(spec.job_name),
        "HumanTaskConfig": human,
    }
    if spec.stopping_conditions is not None:
        stopping = {
            "MaxHumanLabeledObjectCount": spec.stopping_conditions.max_human_labeled_object_count,
            "MaxPercentageOfInputDatasetLabeled": spec.stopping_conditions.max_percentage_of_input_dataset_labeled,
        }
        stopping = {k: v for k, v in stopping.items() if v is not None}
        if stopping:
            request["StoppingConditions"] = stopping
    tags = [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
    tags.append({"Key": SPEC_HASH_TAG, "Value": spec.sha256()})
    tags.append({"Key": OBJECT_COUNT_TAG, "Value": str(object_count or 0)})
    if spec.gold is not None:
        tags.append({"Key": GOLD_COUNT_TAG, "Value": str(gold_count or 0)})
    request["Tags"] = tags
    return request


def check_request(request: Mapping[str, Any]) -> None:
    """Every service-model constraint; problems name the spec field or setting to change."""
    spec_problems: list[str] = []
    setting_problems: list[str] = []
    for path, problem in limits.request_problems(request) + limits.streaming_request_problems(request):
        source = _source_of(path)
        line = f"{source}: {problem} (CreateLabelingJob {path})"
        (setting_problems if source.isupper() else spec_problems).append(line)
    if setting_problems:
        raise LaunchConfigError("invalid launcher settings: " + "; ".join(setting_problems + spec_problems))
    if spec_problems:
        raise SpecError(spec_problems)


# --------------------------------------------------------------------------- inputs


def _is_image(uri: str) -> bool:
    return uri.lower().endswith(limits.IMAGE_EXTENSIONS)


def _source_problem(line: Mapping[str, Any]) -> str | None:
    source = line.get("source-ref")
    if not isinstance(source, str):
        return "has no 'source-ref' string"
    try:
        parse_s3_uri(source)
    except ValueError:
        return f"source-ref {source!r} is not an s3:// URI"
    if not _is_image(source):
        return f"source-ref {source!r} is not a .jpg/.jpeg/.png image"
    return None


def _line_problem(
    line: Mapping[str, Any], *, label_attribute_name: str, labels: set[str] | None = None
) -> str | None:
    problem = _source_problem(line)
    if problem:
        return problem
    if GOLD_KEY in line:
        # e.g. an earlier gtseg job's manifest: consolidation would score workers against it and
        # answer with that known mask, and an adjustment job would show workers the answer
        return f"is a gold object of an earlier job (it has {GOLD_KEY!r}); name gold objects in 'gold'"
    if label_attribute_name in line or metadata_key(label_attribute_name) in line:
        return f"already has this job's label attribute {label_attribute_name!r}"
    if len(dump_manifest_line(line).encode("utf-8")) > limits.MAX_MANIFEST_LINE_BYTES:
        return f"is over Ground Truth's {limits.MAX_MANIFEST_LINE_BYTES // 1024} KB manifest-line limit"
    if labels is not None:
        # The pre-annotation Lambda shows workers a line's own 'labels' instead of the job's, but
        # consolidation maps colours to classes by the job's labels: any other label would be lost.
        try:
            line_labels = labels_from_manifest_line(line)
        except LabelError as exc:
            return f"has an invalid 'labels' key: {exc}"
        unknown = sorted(set(line_labels or ()) - labels)
        if unknown:
            return f"has 'labels' that are not this job's labels: {', '.join(unknown)}"
    return None


def _read_manifest(store: S3Store, uri: str, field_name: str) -> list[ManifestLine | ManifestError]:
    """Each non-blank line: its data, or the error saying why it cannot be used."""
    try:
        text = store.get_bytes(uri)
    except (StorageError, ValueError) as exc:
        raise SpecError([f"{field_name}: {exc}"]) from None
    return list(parse_manifest(text.splitlines()))


def _label_config(spec: JobSpec, store: S3Store, prior_labels: tuple[str, ...] | None) -> LabelCategoryConfig:
    extra: dict[str, Any] = {}
    if spec.instructions is not None:
        instructions = spec.instructions.model_dump(by_alias=True, exclude_none=True)
        if instructions:
            extra["instructions"] = instructions
    if spec.labels is not None:
        return LabelCategoryConfig(labels=tuple(spec.labels), extra=extra or None)
    if spec.label_category_config_uri is not None:
        try:
            parsed = LabelCategoryConfig.parse(
                store.get_bytes(spec.label_category_config_uri), require_version=False
            )
        except (StorageError, LabelError, ValueError) as exc:
            raise SpecError([f"labelCategoryConfigUri: {exc}"]) from None
        merged = {**(parsed.extra or {}), **extra}
        return LabelCategoryConfig(labels=parsed.labels, extra=merged or None)
    if prior_labels:
        return LabelCategoryConfig(labels=prior_labels, extra=extra or None)
    raise SpecError(
        ["labels: give 'labels' or 'labelCategoryConfigUri' (the prior manifest has no colour map)"]
    )


def _images_from_prefix(store: S3Store, prefix: str) -> list[dict[str, Any]]:
    try:
        uris = store.list_keys(prefix)
    except (StorageError, ClientError, ValueError) as exc:
        raise SpecError([f"images.prefix: cannot list {prefix}: {exc}"]) from None
    return [{"source-ref": uri} for uri in uris if _is_image(uri)]


def _prior_manifest(spec: JobSpec, sagemaker: SageMakerClient, store: S3Store) -> tuple[str, str | None]:
    """The prior output manifest's URI and, when known from the job, its label attribute name:
    the job's finalized manifest (``gtseg finalize``, built-in form) when it exists."""
    prior = spec.prior
    assert prior is not None
    if prior.manifest_uri is not None:
        return prior.manifest_uri, prior.label_attribute_name
    assert prior.job_name is not None
    described = describe_labeling_job(sagemaker, prior.job_name)
    if described is None:
        raise SpecError([f"prior.jobName: no labeling job named {prior.job_name!r}"])
    uri = (described.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if not uri:
        status = described.get("LabelingJobStatus", "?")
        raise SpecError(
            [f"prior.jobName: job {prior.job_name!r} has no output manifest yet (status {status})"]
        )
    finalized = finalized_manifest_of(uri)
    try:
        if finalized is not None and store.exists(finalized):
            uri = finalized
    except (StorageError, ValueError):
        pass  # not readable: Ground Truth's manifest and the sidecars do
    return uri, prior.label_attribute_name or described.get("LabelAttributeName")


def _choose_mask_attribute(
    rows: list[ManifestLine | ManifestError], given: str | None, *, field_name: str = "prior"
) -> str:
    """The manifest's mask attribute: ``given``, or the only segmentation attribute on its lines."""
    if given is not None:
        return given
    found = Counter(
        attr for row in rows if isinstance(row, ManifestLine) for attr in mask_attributes(row.data)
    )
    if not found:
        raise SpecError(
            [
                f"{field_name}: the {field_name} manifest has no segmentation masks "
                "(no '<name>' + internal-color-map)"
            ]
        )
    if len(found) > 1:
        names = ", ".join(sorted(found))
        raise SpecError(
            [
                f"{field_name}.labelAttributeName: the {field_name} manifest has several mask attributes "
                f"({names}); say which"
            ]
        )
    return next(iter(found))


def _with_colour_maps(
    store: S3Store, rows: list[ManifestLine | ManifestError], attribute: str
) -> tuple[list[ManifestLine | ManifestError], dict[int, str]]:
    """``rows`` with ``<attribute>-metadata`` in the built-in form where Ground Truth replaced it
    (from each mask's gtseg sidecar), and why a line could not be completed (by line number)."""
    todo = [r for r in rows if isinstance(r, ManifestLine) and needs_sidecar(r.data, attribute)]
    if not todo:
        return rows, {}
    with ThreadPoolExecutor(max_workers=SIDECAR_READERS, thread_name_prefix="sidecars") as pool:
        done = dict(
            zip(
                (r.number for r in todo),
                pool.map(lambda r: with_builtin_metadata(store, r.data, attribute), todo),
                strict=True,
            )
        )
    out: list[ManifestLine | ManifestError] = []
    problems: dict[int, str] = {}
    for row in rows:
        if isinstance(row, ManifestLine) and row.number in done:
            data, problem = done[row.number]
            if problem:
                problems[row.number] = problem
            row = ManifestLine(row.number, data)
        out.append(row)
    return out, problems


def _mask_problem(
    line: Mapping[str, Any],
    attribute: str,
    labels: set[str] | None,
    *,
    noun: str = "prior",
    missing: str = " (unlabelled in the prior job)",
) -> str | None:
    """Why the line's ``<attribute>`` mask and its colour map cannot be used; None when they can."""
    if not isinstance(line.get(attribute), str):
        return f"has no {noun} mask {attribute!r}{missing}"
    meta = line.get(metadata_key(attribute))
    color_map = meta.get("internal-color-map") if isinstance(meta, Mapping) else None
    if not isinstance(color_map, Mapping):
        return f"has no {metadata_key(attribute)}.internal-color-map"
    try:
        classes = ClassMap.from_internal_color_map(color_map)
    except LabelError as exc:  # e.g. a pre-2019 manifest without hex colours
        return f"{noun} colour map unusable: {exc}"
    if labels is not None:
        unknown = sorted(set(classes.labels) - labels)
        if unknown:
            return f"{noun} mask uses labels not in this job's label categories: {', '.join(unknown)}"
    return None


def _prior_line_problem(line: Mapping[str, Any], prior_attr: str, labels: set[str] | None) -> str | None:
    return _mask_problem(line, prior_attr, labels)


def _first_prior_labels(rows: list[ManifestLine | ManifestError], prior_attr: str) -> tuple[str, ...] | None:
    for row in rows:
        if isinstance(row, ManifestLine) and _prior_line_problem(row.data, prior_attr, None) is None:
            color_map = row.data[metadata_key(prior_attr)]["internal-color-map"]
            return ClassMap.from_internal_color_map(color_map).labels
    return None


# --------------------------------------------------------------------------- gold objects


def _gold_reference_of(
    row: ManifestLine,
    attribute: str,
    labels: set[str],
    settings: LauncherSettings,
    taken: Mapping[str, str],
) -> str | GoldReference:
    """The gold line's known mask, or why the line cannot be a gold object (no S3 call)."""
    problem = _source_problem(row.data) or _mask_problem(
        row.data, attribute, labels, noun="known", missing=""
    )
    if problem:
        return problem
    source = row.data["source-ref"].strip()
    if source in taken:
        return f"source-ref {source} is {taken[source]}"
    meta = row.data[metadata_key(attribute)]
    try:
        reference = GoldReference.model_validate(
            {"mask": row.data[attribute], "internal-color-map": meta["internal-color-map"]}
        )
        gold_reference(gold_line(source, reference))  # exactly what consolidation will parse
    except (ValidationError, GoldError) as exc:
        if isinstance(exc, ValidationError):
            detail = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        else:
            detail = str(exc)
        return f"known mask unusable: {detail}"
    location = mask_location_problem(reference.mask, settings)
    if location:
        return location
    if len(dump_manifest_line(gold_line(source, reference)).encode("utf-8")) > limits.MAX_MANIFEST_LINE_BYTES:
        return f"would be over Ground Truth's {limits.MAX_MANIFEST_LINE_BYTES // 1024} KB manifest-line limit"
    return reference


def _mask_existence_problem(store: S3Store, uri: str) -> str | None:
    try:
        return None if store.exists(uri) else f"known mask {uri} does not exist"
    except StorageError as exc:
        return f"known mask {uri} cannot be read ({exc})"


def gold_objects(
    spec: JobSpec,
    store: S3Store,
    settings: LauncherSettings,
    labels: set[str],
    job_images: set[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The gold objects' manifest lines in gold-manifest order (the first ``gold.count`` usable
    lines, or all of them), and why the other lines read were skipped. S3 reads only."""
    gold = spec.gold
    assert gold is not None
    rows = _read_manifest(store, gold.manifest_uri, "gold.manifestUri")
    if not rows:
        raise SpecError([f"gold.manifestUri: {gold.manifest_uri} has no lines"])
    attribute = _choose_mask_attribute(rows, gold.label_attribute_name, field_name="gold")
    rows, _ = _with_colour_maps(store, rows, attribute)  # a finished gtseg job's manifest as it is
    taken = {source: "also one of this job's images" for source in job_images}
    lines: list[dict[str, Any]] = []
    skipped: list[str] = []
    for row in rows:
        if gold.count is not None and len(lines) == gold.count:
            break
        if isinstance(row, ManifestError):
            skipped.append(f"gold {row}")
            continue
        found = _gold_reference_of(row, attribute, labels, settings, taken)
        if isinstance(found, GoldReference):  # the only S3 call per line comes last
            found = _mask_existence_problem(store, found.mask) or found
        if isinstance(found, str):
            skipped.append(f"gold line {row.number}: {found}")
            continue
        source = row.data["source-ref"].strip()
        taken[source] = f"already a gold object (gold line {row.number})"
        lines.append(gold_line(source, found))
    first = f"; first skipped: {skipped[0]}" if skipped else ""
    if not lines:
        raise SpecError(
            [
                f"gold.manifestUri: no usable gold object in {gold.manifest_uri} ({len(skipped)} lines skipped{first})"
            ]
        )
    if gold.count is not None and len(lines) < gold.count:
        raise SpecError(
            [
                f"gold.count: {gold.count} gold objects asked for, but {gold.manifest_uri} has only "
                f"{len(lines)} usable lines ({len(skipped)} skipped{first})"
            ]
        )
    return lines, skipped


# --------------------------------------------------------------------------- what the job labels


def prepare_inputs(
    spec: JobSpec, store: S3Store, sagemaker: SageMakerClient, settings: LauncherSettings
) -> JobInputs:
    """Read what the job will label (S3 reads only); bad lines are skipped and reported."""
    lan = spec.effective_label_attribute_name
    skipped: list[str] = []
    lines: list[dict[str, Any]] = []
    if spec.streaming and spec.images is None:  # objects arrive on the input topic only
        return JobInputs([], _label_config(spec, store, None))
    if spec.prior is not None:
        manifest_uri, known_attr = _prior_manifest(spec, sagemaker, store)
        rows = _read_manifest(store, manifest_uri, "prior.manifestUri")
        prior_attr = _choose_mask_attribute(rows, known_attr)
        rows, colour_problems = _with_colour_maps(store, rows, prior_attr)
        problems = limits.label_attribute_problems(lan, prior=prior_attr)
        if problems:
            raise SpecError(["labelAttributeName " + "; ".join(problems)])
        label_config = _label_config(spec, store, _first_prior_labels(rows, prior_attr))
        labels = set(label_config.labels)
        for row in rows:
            if isinstance(row, ManifestError):
                skipped.append(str(row))
                continue
            problem = _line_problem(row.data, label_attribute_name=lan, labels=labels) or _prior_line_problem(
                row.data, prior_attr, labels
            )
            if problem and row.number in colour_problems:
                problem += f": {colour_problems[row.number]}"
            if problem:
                skipped.append(f"line {row.number}: {problem}")
            else:
                lines.append({**row.data, PRIOR_LABEL_ATTRIBUTE_KEY: prior_attr})
        source_field = "prior"
        inputs = JobInputs(lines, label_config, skipped, prior_label_attribute=prior_attr)
    else:
        assert spec.images is not None
        label_config = _label_config(spec, store, None)
        labels = set(label_config.labels)
        if spec.images.prefix is not None:
            lines = _images_from_prefix(store, spec.images.prefix)
            source_field = "images.prefix"
        else:
            assert spec.images.manifest_uri is not None
            for row in _read_manifest(store, spec.images.manifest_uri, "images.manifestUri"):
                if isinstance(row, ManifestError):
                    skipped.append(str(row))
                elif problem := _line_problem(row.data, label_attribute_name=lan, labels=labels):
                    skipped.append(f"line {row.number}: {problem}")
                else:
                    lines.append(row.data)
            source_field = "images.manifestUri"
        if spec.streaming:
            lines, streaming_skipped = streaming_lines(lines)
            skipped.extend(streaming_skipped)
        inputs = JobInputs(lines, label_config, skipped)
    problem = limits.object_count_problem(len(inputs.lines))
    if problem:
        detail = f" ({len(skipped)} lines skipped, first: {skipped[0]})" if skipped else ""
        if spec.streaming and not inputs.lines:
            detail += "; leave 'images' out to start a streaming job with no objects"
        raise SpecError([f"{source_field}: {problem}{detail}"])
    if spec.gold is not None:
        images = {line["source-ref"].strip() for line in inputs.lines}
        gold_lines, gold_skipped = gold_objects(spec, store, settings, labels, images)
        problem = limits.object_count_problem(len(inputs.lines) + len(gold_lines))
        if problem:  # Ground Truth's quota counts every data object, gold ones too
            raise SpecError(
                [
                    f"gold: {problem} ({len(inputs.lines)} images and {len(gold_lines)} gold objects; "
                    "set gold.count lower or split the images)"
                ]
            )
        inputs.lines = mix_gold(inputs.lines, gold_lines)
        inputs.gold_count = len(gold_lines)
        inputs.skipped.extend(gold_skipped)
    return inputs


# --------------------------------------------------------------------------- the launch


def _tag(description: Mapping[str, Any], key: str) -> str | None:
    for tag in description.get("Tags") or ():
        if tag.get("Key") == key:
            return tag.get("Value")
    return None


def _existing_result(spec: JobSpec, description: Mapping[str, Any]) -> LaunchResult:
    stored = _tag(description, SPEC_HASH_TAG)
    if stored != spec.sha256():
        why = "was not started by gtseg" if stored is None else "was started from a different spec"
        raise LaunchConflictError(
            f"jobName: a labeling job named {spec.job_name!r} already exists and {why} "
            f"(status {description.get('LabelingJobStatus', '?')}); job names are unique per account and "
            "region and cannot be reused: choose a new jobName"
        )
    count = _tag(description, OBJECT_COUNT_TAG)
    gold = _tag(description, GOLD_COUNT_TAG)
    if spec.gold is None:
        gold_count: int | None = 0
    else:
        gold_count = int(gold) if gold and gold.isdigit() else None
    return LaunchResult(
        job_name=description.get("LabelingJobName", spec.job_name),
        job_arn=description["LabelingJobArn"],
        manifest_uri=_manifest_of(description),
        object_count=int(count) if count and count.isdigit() else None,
        label_category_config_uri=description.get("LabelCategoryConfigS3Uri", ""),
        created=False,
        gold_count=gold_count,
        input_topic_arn=input_topic_of(description),
    )


def _manifest_of(job: Mapping[str, Any]) -> str | None:
    """The input manifest of a request or a described job (a streaming job may have none)."""
    return ((job.get("InputConfig") or {}).get("DataSource", {}).get("S3DataSource") or {}).get(
        "ManifestS3Uri"
    )


def plan_launch(
    spec: JobSpec | Mapping[str, Any] | str,
    settings: LauncherSettings,
    store: S3Store,
    sagemaker: SageMakerClient,
) -> LaunchPlan:
    """Validate, read the inputs and build the request; nothing is written or created."""
    if not isinstance(spec, JobSpec):
        spec = parse_job_spec(spec)
    check_request(build_request(spec, settings))
    inputs = prepare_inputs(spec, store, sagemaker, settings)
    request = build_request(spec, settings, object_count=len(inputs.lines), gold_count=inputs.gold_count)
    check_request(request)
    return LaunchPlan(
        spec=spec,
        request=request,
        manifest_uri=_manifest_of(request),
        manifest_text=inputs.manifest_text(),
        label_category_config_uri=settings.label_category_config_uri(spec.job_name),
        label_config_text=inputs.label_config.to_json(),
        object_count=len(inputs.lines),
        skipped=tuple(inputs.skipped),
        prior_label_attribute=inputs.prior_label_attribute,
        gold_count=inputs.gold_count,
    )


def launch(
    spec: JobSpec | Mapping[str, Any] | str,
    settings: LauncherSettings,
    store: S3Store,
    sagemaker: SageMakerClient,
) -> LaunchResult:
    """Start the job (or return the one already started from this spec). See the module docstring."""
    if not isinstance(spec, JobSpec):
        spec = parse_job_spec(spec)
    check_request(build_request(spec, settings))  # everything checkable before any AWS call
    existing = describe_labeling_job(sagemaker, spec.job_name)
    if existing is not None:
        return _existing_result(spec, existing)
    plan = plan_launch(spec, settings, store, sagemaker)
    store.put_bytes(
        plan.label_category_config_uri, plan.label_config_text.encode("utf-8"), "application/json"
    )
    if plan.manifest_uri is not None:
        store.put_bytes(plan.manifest_uri, plan.manifest_text.encode("utf-8"), "application/jsonl")
    try:
        response = sagemaker.create_labeling_job(**plan.request)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceInUse":
            # Started concurrently (a retried invoke): same spec -> that job, else a conflict.
            raced = describe_labeling_job(sagemaker, spec.job_name)
            if raced is not None:
                return _existing_result(spec, raced)
        raise
    return LaunchResult(
        job_name=spec.job_name,
        job_arn=response["LabelingJobArn"],
        manifest_uri=plan.manifest_uri,
        object_count=plan.object_count,
        label_category_config_uri=plan.label_category_config_uri,
        created=True,
        skipped_count=len(plan.skipped),
        skipped=plan.skipped[:MAX_REPORTED_SKIPS],
        gold_count=plan.gold_count,
        input_topic_arn=input_topic_of(plan.request),
    )
