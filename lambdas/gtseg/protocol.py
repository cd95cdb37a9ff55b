"""Pydantic models of every Ground Truth event, payload and response gtseg handles.

The wire protocol (protocol doc §1, §2) is partly unconfirmed, so the models accept every
plausible variant and normalise it: ``s3Uri``/``s3uri``, content as a JSON string or an object,
labels as strings or ``{"label": ...}`` objects, ids as strings or numbers, unknown keys kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from gtseg.core.layout import job_folder_of_output_config, job_root_of_payload, ref_basename
from gtseg.core.manifest import exact_job_name

__all__ = [
    "AnnotationData",
    "ConsolidationRequest",
    "PayloadItem",
    "PreAnnotationRequest",
    "PreAnnotationResponse",
    "ProtocolError",
    "SegmentationAnswer",
    "ValidationError",
    "WorkerAnnotation",
    "consolidation_entry",
    "find_segmentation_answer",
]

DEFAULT_ELEMENT_NAME = "crowd-semantic-segmentation"


class ProtocolError(ValueError):
    """Input that does not follow the Ground Truth protocol closely enough to be used."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


def _label_strings(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        # A JSON-encoded list is plausible from some SDKs; a bare string is one label.
        try:
            decoded = json.loads(value)
        except ValueError:
            return [value]
        return _label_strings(decoded) if isinstance(decoded, list) else [value]
    if not isinstance(value, list):
        raise ValueError("labelCategories must be a list")
    out: list[str] = []
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("label")
        if not isinstance(item, str):
            raise ValueError(f"labelCategories entry {item!r} is not a label string")
        out.append(item)
    return out


# --------------------------------------------------------------------------- pre-annotation


class PreAnnotationRequest(_Lenient):
    """``{"version", "labelingJobArn", "dataObject": <the whole manifest line>}`` (protocol §1.2)."""

    version: Any = None  # an internal constant: opaque, never validated
    labeling_job_arn: str | None = Field(default=None, alias="labelingJobArn")
    data_object: dict[str, Any] = Field(alias="dataObject")


class PreAnnotationResponse(BaseModel):
    """``{"taskInput": {...}, "isHumanAnnotationRequired": <JSON boolean>}`` (protocol §1.3)."""

    model_config = ConfigDict(populate_by_name=True)

    task_input: dict[str, Any] = Field(alias="taskInput")
    is_human_annotation_required: bool = Field(default=True, alias="isHumanAnnotationRequired")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


# --------------------------------------------------------------------------- consolidation


class PayloadRef(_Lenient):
    s3_uri: str = Field(validation_alias=AliasChoices("s3Uri", "s3uri", "S3Uri"))


class ConsolidationRequest(_Lenient):
    """The small event the post-annotation Lambda receives (protocol §2.2)."""

    version: str | None = None
    labeling_job_arn: str = Field(alias="labelingJobArn")
    label_categories: list[str] | None = Field(default=None, alias="labelCategories")
    label_attribute_name: str = Field(alias="labelAttributeName", min_length=1)
    role_arn: str | None = Field(default=None, alias="roleArn")
    payload: PayloadRef
    output_config: str | None = Field(default=None, alias="outputConfig")
    kms_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("kmsKeyId", "kmsKeyID", "KmsKeyId")
    )

    @field_validator("label_categories", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> list[str] | None:
        return _label_strings(value)

    @field_validator("output_config", mode="before")
    @classmethod
    def _output_prefix(cls, value: Any) -> Any:
        # Documented as an S3 prefix string; accept an object carrying one, and blank as absent.
        if isinstance(value, Mapping):
            for key in ("s3Uri", "s3uri", "S3OutputPath", "s3OutputPath"):
                if isinstance(value.get(key), str):
                    return value[key]
            return None
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def arn_job_name(self) -> str:
        """``arn:aws:sagemaker:r:a:labeling-job/NAME`` -> ``NAME`` (the whole value if no slash).
        Real events carry it lower-cased (docs/protocol.md)."""
        return self.labeling_job_arn.rsplit("/", 1)[-1] if self.labeling_job_arn else "unknown-job"

    @property
    def job_name(self) -> str:
        """The job's name in its own case, for DescribeLabelingJob and the output's ``job-name``:
        the job's folder in the payload path or in ``outputConfig``, or the label attribute name
        (``<job>-ref`` is the default), whichever is the ARN's name in another case."""
        job_root = job_root_of_payload(self.payload.s3_uri)
        lan = self.label_attribute_name
        return exact_job_name(
            self.arn_job_name,
            ref_basename(job_root) if job_root else None,
            job_folder_of_output_config(self.output_config) if self.output_config else None,
            lan.removesuffix("-ref"),
            lan,
        )


class AnnotationData(_Lenient):
    content: Any = None
    s3_uri: str | None = Field(default=None, validation_alias=AliasChoices("s3Uri", "s3uri", "S3Uri"))


class WorkerAnnotation(_Lenient):
    worker_id: str | None = Field(default=None, alias="workerId")
    annotation_data: AnnotationData = Field(alias="annotationData")

    @field_validator("worker_id", mode="before")
    @classmethod
    def _id_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class PayloadItem(_Lenient):
    """One data object in the consolidation payload file (protocol §2.3)."""

    dataset_object_id: str = Field(alias="datasetObjectId")
    data_object: dict[str, Any] | None = Field(default=None, alias="dataObject")
    annotations: list[Any] = Field(default_factory=list)

    @field_validator("dataset_object_id", mode="before")
    @classmethod
    def _id_str(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("datasetObjectId must be a string")
        return str(value) if isinstance(value, int) else value

    @field_validator("annotations", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def source_uri(self) -> str | None:
        obj = self.data_object or {}
        for key in ("s3Uri", "s3uri", "source-ref"):
            if isinstance(obj.get(key), str):
                return obj[key]
        return None


class SegmentationAnswer(BaseModel):
    """What one worker submitted from ``<crowd-semantic-segmentation>`` (protocol §3.2)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    element_name: str
    label_mappings: dict[str, Any] = Field(default_factory=dict, alias="labelMappings")
    png_image_data: str
    width: int | None = None
    height: int | None = None
    initial_value_modified: bool | None = Field(default=None, alias="initialValueModified")

    @property
    def expected_size(self) -> tuple[int, int] | None:
        if self.width and self.height:
            return (self.width, self.height)
        return None


def decode_content(content: Any) -> dict[str, Any]:
    """``annotationData.content`` is a JSON *string* in Ground Truth; accept an object too."""
    if isinstance(content, str | bytes | bytearray):
        try:
            content = json.loads(content)
        except ValueError as exc:
            raise ProtocolError(f"annotation content is not valid JSON: {exc}") from exc
    if isinstance(content, list) and len(content) == 1:
        content = content[0]  # the MTurk/standalone form output wraps answers in an array
    if not isinstance(content, Mapping):
        raise ProtocolError(f"annotation content must be a JSON object, got {type(content).__name__}")
    return dict(content)


def find_segmentation_answer(content: Any, element_name: str | None = None) -> SegmentationAnswer:
    """Find the semantic-segmentation answer in a worker's form output.

    The top-level key is the crowd element's ``name``: ``element_name`` if given and present,
    else ``crowd-semantic-segmentation``, else the one value that has ``labeledImage``.
    """
    data = decode_content(content)
    candidates: list[tuple[str, Mapping[str, Any]]] = []
    for preferred in (element_name, DEFAULT_ELEMENT_NAME):
        if preferred and isinstance(data.get(preferred), Mapping):
            candidates = [(preferred, data[preferred])]
            break
    if not candidates:
        candidates = [
            (k, v) for k, v in sorted(data.items()) if isinstance(v, Mapping) and "labeledImage" in v
        ]
        if not candidates and "labeledImage" in data:
            candidates = [("", data)]
    if not candidates:
        raise ProtocolError("no semantic-segmentation answer (no object with 'labeledImage') in the content")
    if len(candidates) > 1:
        names = ", ".join(k for k, _ in candidates)
        raise ProtocolError(f"several segmentation answers ({names}); set the element name to choose one")
    name, answer = candidates[0]
    labeled = answer.get("labeledImage")
    png = labeled.get("pngImageData") if isinstance(labeled, Mapping) else None
    if not isinstance(png, str) or not png:
        raise ProtocolError(f"{name or 'answer'}.labeledImage.pngImageData is missing or empty")
    mappings = answer.get("labelMappings") or {}
    if not isinstance(mappings, Mapping):
        raise ProtocolError(f"{name or 'answer'}.labelMappings must be an object")
    props = answer.get("inputImageProperties") or {}
    width = height = None
    if isinstance(props, Mapping):
        try:
            width = int(props["width"]) if props.get("width") is not None else None
            height = int(props["height"]) if props.get("height") is not None else None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"inputImageProperties is not numeric: {exc}") from exc
    return SegmentationAnswer(
        element_name=name,
        label_mappings=dict(mappings),
        png_image_data=png,
        width=width,
        height=height,
        initial_value_modified=answer.get("initialValueModified")
        if isinstance(answer.get("initialValueModified"), bool)
        else None,
    )


def consolidation_entry(dataset_object_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """One element of the consolidation response list (protocol §2.4)."""
    return {"datasetObjectId": dataset_object_id, "consolidatedAnnotation": {"content": dict(content)}}
