"""gtseg's consolidation sidecars read from S3, for consumers of a prior job's output lines.

Ground Truth replaces the metadata a custom consolidation Lambda returns (docs/protocol.md §2.4),
so a prior job's colour map, confidence, adjustment status and failure reason are in the sidecar
next to each mask (``<mask>.json``, ``core.layout.sidecar_ref``); ``core.builtin_output`` puts
them back on the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.core.builtin_output import builtin_line, needs_sidecar
from gtseg.core.layout import sidecar_ref
from gtseg.core.uris import parse_s3_uri

if TYPE_CHECKING:
    from gtseg.core.sidecar import ConsolidationSidecar


def read_sidecar(store: S3Store, mask_uri: str) -> tuple[ConsolidationSidecar | None, str | None]:
    """The sidecar of the mask at ``mask_uri``, or (None, why not)."""
    # Imported here: the sidecar model loads numpy, which the launcher's cold start must not.
    from gtseg.core.sidecar import ConsolidationSidecar

    try:
        parse_s3_uri(mask_uri)
        data = store.get_bytes(sidecar_ref(mask_uri))
    except (StorageError, ValueError) as exc:
        return None, f"its gtseg sidecar cannot be read ({exc})"
    sidecar = ConsolidationSidecar.parse(data)
    return (sidecar, None) if sidecar is not None else (None, "its gtseg sidecar is not a gtseg sidecar")


def with_builtin_metadata(
    store: S3Store, line: Mapping[str, Any], attribute: str
) -> tuple[dict[str, Any], str | None]:
    """``line`` with ``<attribute>-metadata`` in the built-in form, from its sidecar when the
    metadata lacks what the built-in form has; the line unchanged, and why, when it cannot be."""
    if not needs_sidecar(line, attribute):
        return dict(line), None
    mask = line.get(attribute)
    sidecar, problem = read_sidecar(store, mask) if isinstance(mask, str) else (None, None)
    try:
        return builtin_line(line, attribute, sidecar=sidecar), None
    except ValueError as exc:  # LabelError: no colour map anywhere
        return dict(line), problem or str(exc)
