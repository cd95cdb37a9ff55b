"""A worker's answer as gtseg's consolidation Lambda reads it: the element's answer found in the
form output (``gtseg.protocol.find_segmentation_answer``), its PNG decoded against the job's class
map (``gtseg.core.masks.decode_worker_mask``), and what came out: the area of every class and the
pixels that matched no label colour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gtseg.core.labels import ClassMap
from gtseg.core.masks import MaskError, b64decode_png, decode_worker_mask, open_png
from gtseg.protocol import ProtocolError, find_segmentation_answer


class AnswerError(ValueError):
    """An answer gtseg's consolidation would reject; the message says why."""


@dataclass(frozen=True)
class ClassArea:
    index: int
    name: str
    color: str
    pixels: int
    share: float


@dataclass(frozen=True)
class DecodedAnswer:
    element_name: str
    width: int
    height: int
    indices: np.ndarray  # (height, width) uint8 class indices of ``class_map``
    class_map: ClassMap
    label_mappings: Mapping[str, Any]
    matched_pixels: int
    snapped_pixels: int
    unmatched_pixels: int
    unknown_labels: tuple[str, ...] = ()
    initial_value_modified: bool | None = None

    def areas(self) -> list[ClassArea]:
        """Every class the mask holds (BACKGROUND first), with its pixels and share of the image."""
        counts = np.bincount(self.indices.ravel(), minlength=len(self.class_map))
        total = max(1, int(self.indices.size))
        return [
            ClassArea(i, name, self.class_map.colors[i], int(counts[i]), int(counts[i]) / total)
            for i, name in enumerate(self.class_map.names)
            if counts[i] or i == 0
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "elementName": self.element_name,
            "width": self.width,
            "height": self.height,
            "classes": [
                {"index": a.index, "name": a.name, "color": a.color, "pixels": a.pixels, "share": a.share}
                for a in self.areas()
            ],
            "labelMappings": dict(self.label_mappings),
            "matched": self.matched_pixels,
            "snapped": self.snapped_pixels,
            "unmatched": self.unmatched_pixels,
            "unknownLabels": list(self.unknown_labels),
            "initialValueModified": self.initial_value_modified,
        }

    def describe(self, indent: str = "  ") -> list[str]:
        """The decode as a few lines for the terminal."""
        areas = self.areas()
        width = max([len("class"), *(len(a.name) for a in areas)])
        lines = [f"{indent}{'class':<{width}}  {'pixels':>11}  {'share':>7}"]
        lines.extend(f"{indent}{a.name:<{width}}  {a.pixels:>11,}  {a.share:>7.2%}" for a in areas)
        tail = (
            f"{indent}unmatched pixels: {self.unmatched_pixels:,} "
            f"(exact colour: {self.matched_pixels:,}, snapped to a label: {self.snapped_pixels:,})"
        )
        if self.initial_value_modified is not None:
            tail += f"; initialValueModified: {str(self.initial_value_modified).lower()}"
        lines.append(tail)
        if self.unknown_labels:
            lines.append(
                f"{indent}labels the job does not have (read as background): {list(self.unknown_labels)}"
            )
        return lines


def decode_answer(
    answer_content: Any,
    class_map: ClassMap,
    *,
    image_size: tuple[int, int] | None = None,
    element_name: str | None = None,
) -> DecodedAnswer:
    """Decode one worker's form output; ``image_size`` is the image's (width, height).

    Raises ``AnswerError`` for anything the consolidation would reject (no answer, a PNG that does
    not decode, a mask of another size than the image)."""
    try:
        answer = find_segmentation_answer(answer_content, element_name)
        png = open_png(b64decode_png(answer.png_image_data))
    except (ProtocolError, MaskError) as exc:
        raise AnswerError(str(exc)) from exc
    size = image_size or answer.expected_size
    claimed = answer.expected_size
    if image_size is not None and claimed is not None and tuple(claimed) != tuple(image_size):
        raise AnswerError(
            f"inputImageProperties says {claimed[0]}x{claimed[1]} but the image is {image_size[0]}x{image_size[1]}"
        )
    try:
        mask = decode_worker_mask(png, answer.label_mappings, class_map, expected_size=size)
    except MaskError as exc:
        raise AnswerError(str(exc)) from exc
    height, width = mask.indices.shape
    return DecodedAnswer(
        element_name=answer.element_name,
        width=int(width),
        height=int(height),
        indices=mask.indices,
        class_map=class_map,
        label_mappings=dict(answer.label_mappings),
        matched_pixels=int(mask.matched_pixels),
        snapped_pixels=int(mask.snapped_pixels),
        unmatched_pixels=int(mask.unmatched_pixels),
        unknown_labels=tuple(mask.unknown_labels),
        initial_value_modified=answer.initial_value_modified,
    )
