"""Reading and writing a finished job's files, in a local folder or in S3, through one interface.

The after-the-job tools (``gtseg export``, ``report``, ``reconsolidate``) see three kinds of
references: ``s3://bucket/key`` URIs (what manifests contain), local paths, and S3 URIs of a job
that was copied to a local folder (``aws s3 sync``). ``JobData`` reads and writes all three: S3
through ``gtseg.aws.s3.S3Store``, local paths directly, and S3 URIs under a *mapped* prefix
from the local copy. It also knows Ground Truth's output layout (protocol doc §4.2):

    <job>/manifests/output/output.manifest
    <job>/annotations/worker-response/iteration-<n>/<datasetObjectId>/<timestamp>.json
    <job>/annotations/consolidated-annotation/output/...
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.core.layout import WORKER_RESPONSE_DIR, iteration_number, ref_basename, sidecar_ref
from gtseg.core.manifest import safe_filename
from gtseg.core.sidecar import ConsolidationSidecar
from gtseg.core.uris import join_uri, parse_s3_prefix, parse_s3_uri

# What an S3 call can raise besides gtseg's StorageError: botocore's own errors (no credentials,
# endpoint unreachable, ...) and ValueError for a URI that is not s3://<valid-bucket>/<key>.
_S3_FAILURES = (StorageError, BotoCoreError, ValueError)

# (done, total or None when unknown) -> None; the CLI draws a progress bar from it.
ProgressCallback = Callable[[int, int | None], None]


class JobDataError(RuntimeError):
    """A job file that could not be read or written; the message names it."""


def _s3_problem(verb: str, ref: str, exc: Exception) -> str:
    """One line for a failed S3 call; StorageError already names the object."""
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, StorageError) else f"cannot {verb} {ref}: {text}"


def is_s3(ref: str) -> bool:
    return ref.startswith("s3://")


def _posix_path(*pieces: str) -> str:
    """``str(Path(pieces[0]).joinpath(*pieces[1:]))`` for relative pieces, without pathlib: pathlib
    interns every path component it parses, so a run over 100,000 files would keep a table of
    every name it touched (the finalize memory test measures this)."""
    names = [part for piece in pieces for part in piece.split("/") if part and part != "."]
    joined = ("/" if pieces and pieces[0].startswith("/") else "") + "/".join(names)
    return joined or "."


def join_ref(prefix: str, *parts: str) -> str:
    """Join path parts onto an S3 URI or a local path."""
    if is_s3(prefix):
        return join_uri(prefix, *parts)
    if os.sep != "/":
        return str(Path(prefix).joinpath(*[p.strip("/") for p in parts]))
    return _posix_path(prefix, *[p.strip("/") for p in parts])


def parent_ref(ref: str, levels: int = 1) -> str:
    """The folder ``levels`` up from ``ref`` (works for URIs and paths)."""
    if is_s3(ref):
        head, _, key = ref[5:].partition("/")
        parts = key.rstrip("/").split("/")
        return "s3://" + "/".join([head, *parts[: max(len(parts) - levels, 0)]]).rstrip("/")
    path = Path(ref)
    for _ in range(levels):
        path = path.parent
    return str(path)


@dataclass
class JobData:
    """One small interface over local folders and S3 for job outputs.

    ``mappings`` are (s3-prefix, local-folder) pairs: an S3 URI under a mapped prefix is read
    from (and written to) the local folder instead, so a synced-down job works offline.
    """

    store: S3Store | None = None
    mappings: list[tuple[str, Path]] = field(default_factory=list)

    def _s3(self) -> S3Store:
        if self.store is None:
            self.store = S3Store()  # created lazily: purely local work never builds a boto3 client
        return self.store

    def map_prefix(self, uri_prefix: str, local_dir: str | Path) -> None:
        parse_s3_prefix(uri_prefix)  # validates
        self.mappings.append((uri_prefix.rstrip("/") + "/", Path(local_dir)))

    def resolve(self, ref: str, base: str | None = None) -> str:
        """Where ``ref`` really lives: mapped S3 URIs become local paths; relative paths are
        taken relative to ``base`` (a folder reference), e.g. a manifest's own folder."""
        if not isinstance(ref, str) or not ref.strip():
            raise JobDataError(f"not a file reference: {ref!r}")
        ref = ref.strip()
        if ref.startswith("file://"):
            return ref[7:]
        if is_s3(ref):
            for prefix, local in self.mappings:
                if ref.startswith(prefix):
                    parts = ref[len(prefix) :].split("/")
                    path = join_ref(str(local), *parts)
                    if not os.path.exists(path):
                        # copies made file-safe (':' -> '_', as gtseg simulate and Windows tools do)
                        safe = join_ref(str(local), *[safe_filename(p) for p in parts if p])
                        path = safe if os.path.exists(safe) else path
                    return path
            return ref
        if base is not None and not os.path.isabs(ref):
            return join_ref(base, ref)
        return ref

    def read_bytes(self, ref: str) -> bytes:
        where = self.resolve(ref)
        if is_s3(where):
            try:
                return self._s3().get_bytes(where)
            except _S3_FAILURES as exc:
                raise JobDataError(_s3_problem("read", ref, exc)) from exc
        try:
            with open(where, "rb") as handle:  # not pathlib: see _posix_path
                return handle.read()
        except FileNotFoundError:
            raise JobDataError(f"cannot read {ref}: no such file ({where})") from None
        except OSError as exc:
            raise JobDataError(f"cannot read {ref}: {exc.strerror or exc}") from exc

    def read_json(self, ref: str) -> Any:
        data = self.read_bytes(ref)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise JobDataError(f"{ref} is not valid JSON: {exc}") from exc

    def iter_lines(self, ref: str) -> Iterator[str]:
        """Stream a text file line by line (a manifest of thousands of lines is never held whole)."""
        where = self.resolve(ref)
        if is_s3(where):
            try:
                bucket, key = parse_s3_uri(where)
                body = self._s3().client.get_object(Bucket=bucket, Key=key)["Body"]
            except Exception as exc:  # botocore ClientError and connection errors alike
                raise JobDataError(f"cannot read {ref}: {exc}") from exc
            for n, raw in enumerate(body.iter_lines(keepends=True)):
                # utf-8-sig: a byte-order mark (a manifest saved by a Windows editor) is not line 1's JSON
                yield raw.decode("utf-8-sig" if n == 0 else "utf-8", errors="replace")
            return
        try:
            with open(where, encoding="utf-8-sig", errors="replace") as handle:
                yield from handle
        except FileNotFoundError:
            raise JobDataError(f"cannot read {ref}: no such file ({where})") from None
        except OSError as exc:
            raise JobDataError(f"cannot read {ref}: {exc.strerror or exc}") from exc

    def count_lines(self, ref: str) -> int | None:
        """Line count for a progress total, local files only (None for S3: not worth a 2nd read)."""
        where = self.resolve(ref)
        if is_s3(where):
            return None
        try:
            with open(where, "rb") as handle:
                return sum(1 for line in handle if line.strip())
        except OSError:
            return None

    def exists(self, ref: str) -> bool:
        where = self.resolve(ref)
        if is_s3(where):
            try:
                return self._s3().exists(where)
            except StorageError:
                return False
            except (BotoCoreError, ValueError) as exc:  # no credentials, unreachable, bad bucket name
                raise JobDataError(_s3_problem("read", ref, exc)) from exc
        return os.path.isfile(where)

    def write_bytes(self, ref: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        where = self.resolve(ref)
        if is_s3(where):
            try:
                self._s3().put_bytes(where, data, content_type)
            except _S3_FAILURES as exc:
                raise JobDataError(_s3_problem("write", ref, exc)) from exc
            return
        try:
            os.makedirs(os.path.dirname(where) or ".", exist_ok=True)
            with open(where, "wb") as handle:  # not pathlib: see _posix_path
                handle.write(data)
        except OSError as exc:
            raise JobDataError(f"cannot write {ref}: {exc.strerror or exc}") from exc

    def write_text(self, ref: str, text: str, content_type: str = "text/plain") -> None:
        self.write_bytes(ref, text.encode("utf-8"), content_type)

    def write_file(self, ref: str, path: str | Path, content_type: str = "application/octet-stream") -> None:
        """A local file to ``ref``, streamed (a manifest of 100,000 lines is never held whole)."""
        where = self.resolve(ref)
        if is_s3(where):
            try:
                self._s3().upload_file(str(path), where, content_type)
            except _S3_FAILURES as exc:
                raise JobDataError(_s3_problem("write", ref, exc)) from exc
            return
        target = Path(where)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if Path(path).resolve() != target.resolve():
                shutil.copyfile(path, target)
        except OSError as exc:
            raise JobDataError(f"cannot write {ref}: {exc.strerror or exc}") from exc

    def list_folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under a folder reference, sorted ([] when none)."""
        where = self.resolve(prefix)
        if is_s3(where):
            try:
                found = self._s3().list_folders(where.rstrip("/") + "/")
            except Exception as exc:
                raise JobDataError(f"cannot list {prefix}: {exc}") from exc
            return sorted(uri.rstrip("/").rsplit("/", 1)[-1] for uri in found)
        root = Path(where)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def list_files(self, prefix: str) -> list[str]:
        """Every file under a folder reference, recursively, sorted; [] when it does not exist.

        Returned references are in the same form as ``prefix`` (URIs stay URIs even if mapped).
        """
        where = self.resolve(prefix)
        if is_s3(where):
            try:
                return self._s3().list_keys(where.rstrip("/") + "/")
            except Exception as exc:
                raise JobDataError(f"cannot list {prefix}: {exc}") from exc
        root = Path(where)
        if not root.is_dir():
            return []
        found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return [join_ref(prefix, rel) if is_s3(prefix) else str(root / rel) for rel in found]


# --------------------------------------------------------------------------- job layout


def job_prefix_from_manifest(manifest_ref: str) -> str | None:
    """``<job>/manifests/output/output.manifest`` -> ``<job>``; None for any other location."""
    normalized = manifest_ref.replace("\\", "/")
    if normalized.rstrip("/").endswith("/manifests/output/" + ref_basename(manifest_ref)):
        return parent_ref(manifest_ref, 3)
    return None


def worker_response_files(data: JobData, job_prefix: str) -> dict[str, list[str]]:
    """datasetObjectId -> the worker-response files of that object's latest iteration."""
    root = join_ref(job_prefix, WORKER_RESPONSE_DIR)
    by_object: dict[str, tuple[int, list[str]]] = {}
    for ref in data.list_files(root):
        rel = ref[len(root) :].replace("\\", "/").strip("/").split("/")
        if len(rel) < 3 or not rel[-1].endswith(".json"):
            continue
        iteration = iteration_number(rel[0])
        if iteration is None:
            continue
        object_id = rel[1]
        current = by_object.get(object_id)
        if current is None or iteration > current[0]:
            by_object[object_id] = (iteration, [ref])
        elif iteration == current[0]:
            current[1].append(ref)
    return {object_id: sorted(files) for object_id, (_, files) in by_object.items()}


@dataclass(frozen=True)
class WorkerResponse:
    """One worker's answer to one object, from ``annotations/worker-response/`` (protocol §4.2)."""

    worker_id: str
    content: Any  # answerContent: the form output (object, or JSON string)
    time_spent_seconds: float | None
    submission_time: str | None
    source: str  # the file it came from


def read_worker_responses(data: JobData, files: Sequence[str]) -> tuple[list[WorkerResponse], list[str]]:
    """Every answer in ``files``; problems (unreadable file, malformed answer) are returned as
    messages naming the file, never raised, so one bad file never stops a report."""
    responses: list[WorkerResponse] = []
    problems: list[str] = []
    for ref in files:
        try:
            doc = data.read_json(ref)
        except JobDataError as exc:
            problems.append(str(exc))
            continue
        answers = doc.get("answers") if isinstance(doc, Mapping) else None
        if not isinstance(answers, list):
            problems.append(f"{ref}: no 'answers' list")
            continue
        for i, answer in enumerate(answers):
            if not isinstance(answer, Mapping) or "answerContent" not in answer:
                problems.append(f"{ref}: answers[{i}] has no answerContent")
                continue
            spent = answer.get("timeSpentInSeconds")
            responses.append(
                WorkerResponse(
                    worker_id=str(answer.get("workerId") or f"unknown-worker-{i}"),
                    content=answer["answerContent"],
                    time_spent_seconds=float(spent) if isinstance(spent, int | float) else None,
                    submission_time=answer.get("submissionTime")
                    if isinstance(answer.get("submissionTime"), str)
                    else None,
                    source=ref,
                )
            )
    return responses, problems


def read_sidecar(data: JobData, mask_ref: str) -> ConsolidationSidecar | None:
    """The gtseg consolidation sidecar of a mask, or None (built-in jobs have none; an unreadable or
    malformed file counts as none)."""
    try:
        return ConsolidationSidecar.parse(data.read_bytes(sidecar_ref(mask_ref)))
    except JobDataError:
        return None
