"""Label categories: the label-category file, the job's stable class-index map and its colours.

Pure Python: no boto3, no Lambda types. Class index 0 is always ``BACKGROUND`` (``#ffffff``) and
1..N are the job's labels in label-category order; every other module relies on that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DOCUMENT_VERSION = "2018-11-28"
BACKGROUND = "BACKGROUND"
BACKGROUND_COLOR = "#ffffff"
MAX_LABEL_LENGTH = 256
# 8-bit palette masks: index 0 is background, so at most 255 labels.
MAX_LABELS = 255
# A manifest line may carry its own label list under this key (docs/worker-template.md).
LABELS_KEY = "labels"

# The order Ground Truth's worker UI has been seen to assign colours in (protocol doc §3.4):
# d3 category10, then the lighter category20 companions.
GROUND_TRUTH_COLORS: tuple[str, ...] = (
    "#2ca02c", "#1f77b4", "#ff7f0e", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#ff9896", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip

_HEX_RE = re.compile(r"#?([0-9a-fA-F]{6})")


class LabelError(ValueError):
    """A label list or label-category file that Ground Truth would reject."""


def normalize_hex(color: str) -> str:
    """``'#2CA02C'`` / ``'2ca02c'`` -> ``'#2ca02c'``; anything else raises ``LabelError``."""
    match = _HEX_RE.fullmatch(str(color).strip())
    if not match:
        raise LabelError(f"not a #rrggbb colour: {color!r}")
    return "#" + match.group(1).lower()


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    value = int(normalize_hex(color)[1:], 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def rgb_to_hex(rgb: Sequence[int]) -> str:
    r, g, b = (int(v) for v in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def default_colors(count: int) -> list[str]:
    """``count`` distinct label colours: Ground Truth's order first, then a deterministic spread.

    Never white (the background colour) and never a repeat, so colour <-> class stays a bijection.
    """
    colors = list(GROUND_TRUTH_COLORS[:count])
    used = {BACKGROUND_COLOR, *colors}
    step = 0
    while len(colors) < count:
        step += 1
        # golden-ratio hue walk at two lightness levels; deterministic and well spread
        hue = (step * 0.618033988749895) % 1.0
        light = 0.45 if step % 2 else 0.65
        rgb = _hls_to_rgb(hue, light, 0.75)
        hx = rgb_to_hex(rgb)
        if hx not in used:
            used.add(hx)
            colors.append(hx)
    return colors


def _hls_to_rgb(h: float, lightness: float, s: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(h, lightness, s)
    return round(r * 255), round(g * 255), round(b * 255)


def validate_labels(labels: Iterable[Any]) -> tuple[str, ...]:
    """Ground Truth's rules for semantic segmentation: >=1 label, unique, 1..256 chars each."""
    if isinstance(labels, str | bytes) or not isinstance(labels, Iterable):
        raise LabelError("labels must be a list of strings")
    out: list[str] = []
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise LabelError(f"labels[{i}] must be a string, got {type(label).__name__}")
        if not label.strip():
            raise LabelError(f"labels[{i}] is empty")
        if len(label) > MAX_LABEL_LENGTH:
            raise LabelError(f"labels[{i}] is {len(label)} characters; the limit is {MAX_LABEL_LENGTH}")
        if label == BACKGROUND:
            raise LabelError(f"labels[{i}]: {BACKGROUND!r} is reserved for class 0")
        if label in seen:
            raise LabelError(f"labels[{i}]: duplicate label {label!r}")
        seen.add(label)
        out.append(label)
    if not out:
        raise LabelError("at least one label is required")
    if len(out) > MAX_LABELS:
        raise LabelError(f"{len(out)} labels; 8-bit masks hold at most {MAX_LABELS}")
    return tuple(out)


@dataclass(frozen=True)
class LabelCategoryConfig:
    """The label-category file (``LabelCategoryConfigS3Uri``) for a semantic-segmentation job."""

    labels: tuple[str, ...]
    document_version: str = DOCUMENT_VERSION
    extra: Mapping[str, Any] | None = None  # other top-level keys (instructions etc.), kept as-is

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", validate_labels(self.labels))

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelCategoryConfig:
        return cls(labels=tuple(labels))

    @classmethod
    def parse(
        cls, data: str | bytes | Mapping[str, Any], *, require_version: bool = True
    ) -> LabelCategoryConfig:
        """Parse a label-category file; every problem is a ``LabelError`` that says what is wrong."""
        if isinstance(data, bytes | str):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise LabelError(f"label-category file is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise LabelError("label-category file must be a JSON object with a 'labels' list")
        version = data.get("document-version")
        if version is None and require_version:
            raise LabelError("label-category file has no 'document-version' (expected '2018-11-28')")
        if version is not None and version != DOCUMENT_VERSION:
            raise LabelError(f"unsupported document-version {version!r} (expected {DOCUMENT_VERSION!r})")
        raw = data.get("labels")
        if not isinstance(raw, list):
            raise LabelError("label-category file needs a 'labels' list")
        labels: list[str] = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping) or "label" not in entry:
                raise LabelError(f"labels[{i}] must be an object with a 'label' key")
            labels.append(entry["label"])
        extra = {k: v for k, v in data.items() if k not in ("document-version", "labels")}
        return cls(labels=tuple(labels), document_version=DOCUMENT_VERSION, extra=extra or None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"document-version": self.document_version}
        if self.extra:
            out.update(self.extra)
        out["labels"] = [{"label": label} for label in self.labels]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def class_map(self) -> ClassMap:
        return ClassMap.from_labels(self.labels)


@dataclass(frozen=True)
class ClassMap:
    """Stable class indices and colours for a job: index 0 = BACKGROUND, 1..N = labels in order."""

    names: tuple[str, ...]  # names[0] == BACKGROUND
    colors: tuple[str, ...]  # colors[0] == #ffffff, all distinct

    def __post_init__(self) -> None:
        if not self.names or self.names[0] != BACKGROUND:
            raise LabelError("class 0 must be BACKGROUND")
        if len(self.names) != len(self.colors):
            raise LabelError("one colour per class is required")
        colors = tuple(normalize_hex(c) for c in self.colors)
        if len(set(colors)) != len(colors):
            raise LabelError("class colours must be distinct")
        if len(set(self.names)) != len(self.names):
            raise LabelError("class names must be distinct")
        object.__setattr__(self, "colors", colors)

    @classmethod
    def from_labels(cls, labels: Iterable[str], colors: Mapping[str, str] | None = None) -> ClassMap:
        """Labels in order; colours from ``colors`` where given (and unique), else the defaults."""
        names = validate_labels(labels)
        chosen: dict[str, str] = {}
        used = {BACKGROUND_COLOR}
        for name in names:
            wanted = (colors or {}).get(name)
            if wanted is not None:
                try:
                    hx = normalize_hex(wanted)
                except LabelError:
                    hx = None
                if hx is not None and hx not in used:
                    chosen[name] = hx
                    used.add(hx)
        spare = iter(c for c in default_colors(len(names) + len(used)) if c not in used)
        final = [chosen.get(name) or next(spare) for name in names]
        return cls(names=(BACKGROUND, *names), colors=(BACKGROUND_COLOR, *final))

    @classmethod
    def from_internal_color_map(cls, color_map: Mapping[str, Any]) -> ClassMap:
        """Rebuild a class map from an output manifest's ``internal-color-map``.

        Index gaps (a map listing only the classes an object uses, under their job indices) are
        closed up in index order: masks are then read by colour (``masks.read_class_mask``),
        never by the original indices."""
        try:
            items = sorted(((int(k), v) for k, v in color_map.items()), key=lambda kv: kv[0])
        except (TypeError, ValueError) as exc:
            raise LabelError(f"internal-color-map keys must be integers: {exc}") from exc
        if not items or items[0][0] != 0:
            raise LabelError("internal-color-map needs index 0 (BACKGROUND)")
        if len({k for k, _ in items}) != len(items):
            raise LabelError("internal-color-map repeats an index")
        names, colors = [], []
        for _, entry in items:
            if not isinstance(entry, Mapping) or "class-name" not in entry:
                raise LabelError("internal-color-map entries need 'class-name'")
            if "hex-color" not in entry:
                raise LabelError(f"internal-color-map entry {entry['class-name']!r} has no 'hex-color'")
            names.append(str(entry["class-name"]))
            colors.append(str(entry["hex-color"]))
        return cls(names=tuple(names), colors=tuple(colors))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.names[1:]

    def __len__(self) -> int:
        return len(self.names)

    def index_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise LabelError(f"unknown label {name!r}") from None

    def rgb(self, index: int) -> tuple[int, int, int]:
        return hex_to_rgb(self.colors[index])

    def palette(self) -> list[int]:
        """A 256-entry RGB palette (768 ints): class colours, padded with white."""
        flat: list[int] = []
        for color in self.colors:
            flat.extend(hex_to_rgb(color))
        flat.extend([255] * (768 - len(flat)))
        return flat

    def internal_color_map(self, confidences: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
        """The built-in task's ``internal-color-map`` (index -> class-name, hex-color, confidence)."""
        out: dict[str, dict[str, Any]] = {}
        for i, (name, color) in enumerate(zip(self.names, self.colors, strict=True)):
            conf = 0.0 if confidences is None else float(confidences[i])
            out[str(i)] = {"class-name": name, "hex-color": color, "confidence": round(conf, 4)}
        return out

    def label_mappings(self) -> dict[str, dict[str, str]]:
        """The worker UI's ``labelMappings`` for these classes (no BACKGROUND), e.g. for initial-value."""
        return {name: {"color": color} for name, color in zip(self.labels, self.colors[1:], strict=True)}


def labels_from_manifest_line(data_object: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A ``labels`` key on the line: a list of strings or of ``{"label": ...}``, or a whole
    label-category object. ``None`` when absent; ``LabelError`` when present but invalid."""
    if LABELS_KEY not in data_object:
        return None
    raw = data_object[LABELS_KEY]
    if isinstance(raw, Mapping):
        return LabelCategoryConfig.parse(raw, require_version=False).labels
    if not isinstance(raw, list):
        raise LabelError(f"the manifest line's 'labels' must be a list, got {type(raw).__name__}")
    # validate_labels (inside) names any entry that is not a label string
    labels: list[Any] = [item.get("label") if isinstance(item, Mapping) else item for item in raw]
    return LabelCategoryConfig.from_labels(labels).labels


LABELS_SCHEMA = "gtseg/labels@1"  # a dataset's labels.json: export, finalize, the streaming dataset


def labels_json(
    class_map: ClassMap,
    label_attribute: str | None,
    *,
    pixels: Sequence[int] | None = None,
    source_manifest: str | None = None,
    color_conflicts: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """A dataset's ``labels.json`` (what :func:`load_class_map_file` reads back): each class's index,
    name and colour, with its pixel count when the dataset is complete (``pixels``). A streaming
    dataset, which never is, has no pixel counts and no source manifest."""
    classes: list[dict[str, Any]] = [
        {"index": i, "name": name, "color": color}
        for i, (name, color) in enumerate(zip(class_map.names, class_map.colors, strict=True))
    ]
    if pixels is not None:
        for entry, count in zip(classes, pixels, strict=False):
            entry["pixels"] = int(count)
    doc: dict[str, Any] = {"schema": LABELS_SCHEMA, "label-attribute": label_attribute}
    if source_manifest is not None:
        doc["source-manifest"] = source_manifest
    doc["classes"] = classes
    if pixels is not None:
        doc["color-conflicts"] = {k: list(v) for k, v in (color_conflicts or {}).items()}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
