"""One stable class map for many objects, reconciled by class name.

Colour maps may differ between objects (indices drift, colours change, built-in jobs list only the
classes an object uses), so they are reconciled **by class name**: the first map seen fixes the
order, a class that appears later is appended, a name seen with a different colour keeps its first
colour (names win, the difference is reported), and one colour used by two names within one
object is an error for that object only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gtseg.core.labels import (
    BACKGROUND,
    BACKGROUND_COLOR,
    ClassMap,
    LabelError,
    default_colors,
    normalize_hex,
)

MAX_CLASSES = 256  # 8-bit masks


@dataclass(frozen=True)
class ObjectClasses:
    """One object's own class map and how its indices map onto the export's class map."""

    class_map: ClassMap
    to_global: np.ndarray  # (256,) uint8: object class index -> export class index
    new_classes: tuple[tuple[str, str], ...]  # (name, colour) this object adds to the export


def parse_color_map(color_map: Any) -> ClassMap:
    """An ``internal-color-map`` -> ClassMap, with errors that say exactly what is wrong."""
    if not isinstance(color_map, Mapping) or not color_map:
        raise LabelError("internal-color-map is missing or empty")
    seen: dict[str, str] = {}
    for key, entry in color_map.items():
        if not isinstance(entry, Mapping):
            raise LabelError(f"internal-color-map[{key!r}] is not an object")
        name, color = entry.get("class-name"), entry.get("hex-color")
        if not isinstance(name, str):
            raise LabelError(f"internal-color-map[{key!r}] has no class-name")
        if not isinstance(color, str):
            raise LabelError(f"internal-color-map[{key!r}] ({name!r}) has no hex-color")
        hx = normalize_hex(color)
        if hx in seen and seen[hx] != name:
            raise LabelError(
                f"colour {hx} is used by both {seen[hx]!r} and {name!r} in this object's colour map"
            )
        seen[hx] = name
    return ClassMap.from_internal_color_map(color_map)


class ClassReconciler:
    """Builds one stable class map from many objects' colour maps, by class name."""

    def __init__(self, seed: ClassMap | None = None) -> None:
        base = seed or ClassMap(names=(BACKGROUND,), colors=(BACKGROUND_COLOR,))
        self.names: list[str] = list(base.names)
        self.colors: list[str] = list(base.colors)
        self._index = {name: i for i, name in enumerate(self.names)}
        # name -> every colour seen for it (only names seen with more than one are reported)
        self._colors_seen: dict[str, set[str]] = {
            n: {c} for n, c in zip(self.names, self.colors, strict=True)
        }

    def class_map(self) -> ClassMap:
        return ClassMap(names=tuple(self.names), colors=tuple(self.colors))

    def __len__(self) -> int:
        return len(self.names)

    def plan(self, object_map: ClassMap) -> ObjectClasses:
        """How ``object_map`` maps onto this export's classes (nothing changes until ``commit``)."""
        lut = np.zeros(256, dtype=np.uint8)
        used = set(self.colors)
        new: list[tuple[str, str]] = []
        for i, (name, color) in enumerate(zip(object_map.names, object_map.colors, strict=True)):
            if name in self._index:
                lut[i] = self._index[name]
                continue
            if len(self.names) + len(new) >= MAX_CLASSES:
                raise LabelError(
                    f"class {name!r} would be class {MAX_CLASSES}; 8-bit masks hold {MAX_CLASSES}"
                )
            if color in used:  # that colour already belongs to another class: pick a free one
                color = next(c for c in default_colors(len(used) + len(new) + 1) if c not in used)
            used.add(color)
            lut[i] = len(self.names) + len(new)
            new.append((name, color))
        return ObjectClasses(object_map, lut, tuple(new))

    def commit(self, planned: ObjectClasses) -> None:
        for name, color in planned.new_classes:
            if name not in self._index:
                self._index[name] = len(self.names)
                self.names.append(name)
                self.colors.append(color)
        for name, color in zip(planned.class_map.names, planned.class_map.colors, strict=True):
            self._colors_seen.setdefault(name, set()).add(color)

    def add(self, object_map: ClassMap) -> ObjectClasses:
        planned = self.plan(object_map)
        self.commit(planned)
        return planned

    def add_labels(self, label_colors: Mapping[str, Any]) -> None:
        """Append labels (name -> colour) not yet known, e.g. from workers' ``labelMappings``."""
        for name, color in label_colors.items():
            if name == BACKGROUND or name in self._index:
                continue
            try:
                hx = normalize_hex(color)
            except LabelError:
                hx = BACKGROUND_COLOR
            if hx == BACKGROUND_COLOR:  # no usable colour: take a free one
                hx = next(c for c in default_colors(len(self.colors) + 1) if c not in self.colors)
            self.add(ClassMap(names=(BACKGROUND, name), colors=(BACKGROUND_COLOR, hx)))

    def color_conflicts(self) -> dict[str, list[str]]:
        """Class names seen with more than one colour (the export keeps the first)."""
        return {n: sorted(c) for n, c in self._colors_seen.items() if len(c) > 1}


def load_class_map_file(text: str | bytes) -> ClassMap:
    """A ``labels.json`` written by a previous export, or a label-category file, -> ClassMap."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LabelError(f"class map file is not valid JSON: {exc}") from exc
    if isinstance(doc, Mapping) and isinstance(doc.get("classes"), list):
        try:
            classes = sorted(doc["classes"], key=lambda c: int(c["index"]))
            indices = [int(c["index"]) for c in classes]
            names, colors = tuple(str(c["name"]) for c in classes), tuple(str(c["color"]) for c in classes)
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelError(
                f"every entry of 'classes' needs an integer index, a name and a color ({exc!r})"
            ) from exc
        if indices != list(range(len(classes))):
            raise LabelError(f"'classes' indices must be 0..N without gaps, got {indices}")
        return ClassMap(names=names, colors=colors)
    if isinstance(doc, Mapping) and isinstance(doc.get("labels"), list):
        labels: list[Any] = [e.get("label") if isinstance(e, Mapping) else e for e in doc["labels"]]
        if not all(isinstance(name, str) for name in labels):
            raise LabelError("every entry of 'labels' needs a 'label' string")
        return ClassMap.from_labels(labels)
    raise LabelError("class map file needs 'classes' (gtseg labels.json) or 'labels' (label-category file)")
