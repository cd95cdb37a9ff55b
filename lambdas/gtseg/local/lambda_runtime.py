"""Run a Lambda handler through the real Lambda runtime client, locally and without Docker.

A small Lambda Runtime API server (``http.server`` on 127.0.0.1, ephemeral port) feeds events to
``python -m awslambdaric <handler>`` running as a subprocess, the way the Lambda service feeds a
function's sandbox. The subprocess stays up between invocations (a warm container), so module-level
state (caches, clients) behaves as in Lambda; a crash or a timeout ends it and the next invocation
starts a cold one. What this exercises: handler resolution, bootstrap, JSON (de)serialisation of the
event and response, and the error shape. What it does not: the arm64 / Lambda-Python packaging.

toolchain.md §7: the ``/next`` response must carry ``Content-Type`` or awslambdaric's native client
segfaults.
"""

from __future__ import annotations

import json
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

RUNTIME_PREFIX = "/2018-06-01/runtime"
ACCOUNT_ID = "123456789012"
# The Lambda service caps a synchronous response at 6 MB (protocol doc §1.3, §2.4).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_LAMBDAS_DIR = Path(__file__).resolve().parents[2]  # .../lambdas (holds the gtseg package)


def function_arn(name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invoke: ``payload`` on success, else ``error`` (Lambda's error shape)."""

    request_id: str
    payload: Any = None
    error: dict[str, Any] | None = None  # {errorMessage, errorType, stackTrace?, requestId?}
    cold_start: bool = False
    seconds: float = 0.0
    response_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe_error(self) -> str:
        if self.error is None:
            return ""
        return f"{self.error.get('errorType', 'Error')}: {self.error.get('errorMessage', '')}".strip()


@dataclass
class _Pending:
    request_id: str
    body: bytes
    deadline_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    payload: bytes | None = None
    error: dict[str, Any] | None = None


class _RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, function_arn_: str) -> None:
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)
        self.function_arn = function_arn_
        self.waiting: queue.Queue[_Pending] = queue.Queue()
        self.in_flight: dict[str, _Pending] = {}
        self.init_error: dict[str, Any] | None = None
        self.init_error_seen = threading.Event()
        self.closing = threading.Event()
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sandbox that exits or is stopped drops its long-poll connection: expected, not news.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    server: _RuntimeApi
    protocol_version = "HTTP/1.1"
    _ROUTES: ClassVar[tuple[str, ...]] = ("response", "error")

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the runtime polls constantly
        return

    def _reply(self, status: int, body: bytes = b"{}", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path != f"{RUNTIME_PREFIX}/invocation/next":
            self._reply(404, b'{"errorMessage":"unknown path"}')
            return
        # Long poll, as the real Runtime API does; wake periodically to notice shutdown.
        while not self.server.closing.is_set():
            try:
                pending = self.server.waiting.get(timeout=0.2)
            except queue.Empty:
                continue
            if _peer_closed(self.connection):
                # This poll belongs to a sandbox that has gone: keep the event for the next one.
                self.server.waiting.put(pending)
                return
            with self.server.lock:
                self.server.in_flight[pending.request_id] = pending
            try:
                self._send_event(pending)
            except OSError:
                # The sandbox went away while polling: hand the event to the next one.
                with self.server.lock:
                    self.server.in_flight.pop(pending.request_id, None)
                self.server.waiting.put(pending)
            return
        self._reply(503, b'{"errorMessage":"runtime API shutting down"}')

    def _send_event(self, pending: _Pending) -> None:
        self._reply(
            200,
            pending.body,
            {
                "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self.server.function_arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
            },
        )

    def do_POST(self) -> None:
        body = self._body()
        if self.path == f"{RUNTIME_PREFIX}/init/error":
            self.server.init_error = _error_from(body)
            self.server.init_error_seen.set()
            self._reply(202)
            return
        parts = self.path.removeprefix(f"{RUNTIME_PREFIX}/invocation/").split("/")
        if len(parts) != 2 or parts[1] not in self._ROUTES:
            self._reply(404, b'{"errorMessage":"unknown path"}')
            return
        request_id, outcome = parts
        with self.server.lock:
            pending = self.server.in_flight.pop(request_id, None)
        if pending is None:
            self._reply(400, b'{"errorMessage":"unknown or finished request id"}')
            return
        if outcome == "response":
            pending.payload = body
        else:
            pending.error = _error_from(body)
        pending.done.set()
        self._reply(202)


def _peer_closed(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _error_from(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {"errorType": "Runtime.InvalidError", "errorMessage": body.decode("utf-8", "replace")[:2000]}
    if not isinstance(value, dict):
        return {"errorType": "Runtime.InvalidError", "errorMessage": str(value)[:2000]}
    return value


class LocalLambda:
    """One function: ``invoke(event)`` runs ``handler`` in a warm awslambdaric subprocess.

    ``handler`` is Lambda's handler string (``gtseg.handlers.consolidation.handler``). The
    subprocess inherits this process's environment (so moto's endpoint and fake credentials reach
    it) plus ``environment`` and the variables the Lambda service sets. Its stdout/stderr (the
    function's logs) go to ``log_path`` when given, else are discarded.
    """

    def __init__(
        self,
        handler: str,
        *,
        function_name: str,
        environment: Mapping[str, str] | None = None,
        task_root: Path | str = _LAMBDAS_DIR,
        timeout_seconds: float = 300.0,
        memory_mb: int = 1024,
        log_path: Path | str | None = None,
        region: str | None = None,
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self.arn = function_arn(function_name, self.region)
        self.environment = dict(environment or {})
        self.task_root = Path(task_root)
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.log_path = Path(log_path) if log_path else None
        self._api: _RuntimeApi | None = None
        self._api_thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.invocations = 0
        self.cold_starts = 0

    # ------------------------------------------------------------------ lifecycle

    def _ensure_api(self) -> _RuntimeApi:
        if self._api is None:
            api = _RuntimeApi(self.arn)
            thread = threading.Thread(
                target=api.serve_forever, name=f"runtime-api-{self.function_name}", daemon=True
            )
            thread.start()
            self._api, self._api_thread = api, thread
        return self._api

    def _process_environment(self, api: _RuntimeApi) -> dict[str, str]:
        host, port = str(api.server_address[0]), int(api.server_address[1])
        env = dict(os.environ)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"{host}:{port}",
                "LAMBDA_TASK_ROOT": str(self.task_root),
                "LAMBDA_RUNTIME_DIR": str(self.task_root),
                "_HANDLER": self.handler,
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{uuid.uuid4().hex}",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python_local",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "PYTHONUNBUFFERED": "1",
            }
        )
        # The task root first, as in Lambda, so the handler's package resolves from there.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.task_root), env.get("PYTHONPATH", "")) if p)
        env.update(self.environment)
        return env

    def _start_process(self, api: _RuntimeApi) -> None:
        if self.log_path is not None and self._log_file is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the function
        sink = self._log_file if self._log_file is not None else subprocess.DEVNULL
        api.init_error = None
        api.init_error_seen.clear()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", self.handler],
            cwd=str(self.task_root),
            env=self._process_environment(api),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        self.cold_starts += 1

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def close(self) -> None:
        self._stop_process()
        if self._api is not None:
            self._api.closing.set()
            self._api.shutdown()
            self._api.server_close()
            self._api = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LocalLambda:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The current sandbox process (changes after a cold start), or None before the first invoke."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    # ------------------------------------------------------------------ invoke

    def invoke(self, event: Any) -> Invocation:
        """Synchronous invoke (RequestResponse). Never raises for a function failure: see ``error``."""
        api = self._ensure_api()
        cold = self._process is None or self._process.poll() is not None
        if cold:
            self._stop_process()
            self._start_process(api)
        self.invocations += 1
        request_id = f"{uuid.uuid4()}"
        started = time.monotonic()
        deadline_ms = int((time.time() + self.timeout_seconds) * 1000)
        pending = _Pending(request_id, json.dumps(event).encode("utf-8"), deadline_ms)
        api.waiting.put(pending)
        process = self._process
        assert process is not None
        while not pending.done.wait(timeout=0.05):
            if process.poll() is not None:
                self._drop(api, pending)
                error = api.init_error or {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited with exit code {process.returncode}",
                }
                return Invocation(
                    request_id, error=error, cold_start=cold, seconds=time.monotonic() - started
                )
            if time.monotonic() - started > self.timeout_seconds:
                # Lambda ends the sandbox on a timeout; the next invoke is a cold start.
                self._drop(api, pending)
                self._stop_process()
                error = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after {self.timeout_seconds:.2f} seconds",
                }
                return Invocation(
                    request_id, error=error, cold_start=cold, seconds=time.monotonic() - started
                )
        seconds = time.monotonic() - started
        if pending.error is not None:
            return Invocation(request_id, error=pending.error, cold_start=cold, seconds=seconds)
        raw = pending.payload or b"null"
        if len(raw) > MAX_RESPONSE_BYTES:
            error = {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": f"Response payload size ({len(raw)} bytes) exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes).",
            }
            return Invocation(
                request_id, error=error, cold_start=cold, seconds=seconds, response_bytes=len(raw)
            )
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            error = {"errorType": "Runtime.InvalidResponse", "errorMessage": f"response is not JSON: {exc}"}
            return Invocation(
                request_id, error=error, cold_start=cold, seconds=seconds, response_bytes=len(raw)
            )
        return Invocation(
            request_id, payload=payload, cold_start=cold, seconds=seconds, response_bytes=len(raw)
        )

    @staticmethod
    def _drop(api: _RuntimeApi, pending: _Pending) -> None:
        """Forget an invocation that will never be answered (so a later sandbox cannot pick it up)."""
        with api.lock:
            api.in_flight.pop(pending.request_id, None)
        kept = []
        while True:
            try:
                item = api.waiting.get_nowait()
            except queue.Empty:
                break
            if item is not pending:
                kept.append(item)
        for item in kept:
            api.waiting.put(item)
