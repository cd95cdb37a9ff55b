"""The part file one map batch writes: every record of its lines, tagged, in line order.

One line per record, ``<kind>\\t<payload>``; payloads are compact JSON (or, for a manifest line
that is not JSON, its text), never containing a newline. The reduce routes each record by its
kind to the output it belongs to without parsing the payload, so COCO's run-length encodings and
the manifest lines are copied, not decoded again.

A part is named by the batch's first line index and its line count, written once when the
batch is done (a batch that died left no part), and rewritten byte for byte by a retry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MANIFEST = "M"  # the line in the built-in form (or as it was)
INDEX_ROW = "I"  # dataset/index.jsonl
SPLIT = {"train": "ST", "val": "SV"}  # dataset/splits/<split>.txt
COCO_IMAGE = {"train": "CIT", "val": "CIV"}  # dataset/annotations/<split>.json "images"
COCO_ANNOTATION = {"train": "CAT", "val": "CAV"}  # ... "annotations"
FIGURES = "F"  # the object's figures (models.ObjectFigures)
KINDS = frozenset(
    {MANIFEST, INDEX_ROW, FIGURES, *SPLIT.values(), *COCO_IMAGE.values(), *COCO_ANNOTATION.values()}
)

PARTS_DIR = "work/parts"
_NAME = re.compile(r"(\d{9})-(\d{6})\.tsv")


@dataclass(frozen=True)
class PartName:
    first: int
    count: int

    @property
    def file_name(self) -> str:
        return f"{self.first:09d}-{self.count:06d}.tsv"

    @classmethod
    def parse(cls, name: str) -> PartName | None:
        match = _NAME.fullmatch(name)
        return cls(int(match.group(1)), int(match.group(2))) if match else None


def record(kind: str, payload: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown part record kind {kind!r}")
    if "\n" in payload or "\r" in payload:
        raise ValueError("a part record payload must be one line")
    return f"{kind}\t{payload}\n"


def records(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(kind, payload) per record line of a part file."""
    for line in lines:
        text = line.rstrip("\n")
        if not text:
            continue
        kind, sep, payload = text.partition("\t")
        if not sep or kind not in KINDS:
            raise ValueError(f"not a finalize part record: {text[:60]!r}")
        yield kind, payload
