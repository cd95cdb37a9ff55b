"""The person at the browser as one of a simulated job's workers (``gtseg simulate --human``).

The job engine hands each task to its workforce in turn; for the human worker slot the task's
rendered page (the very HTML the emulator rendered and checked, its image a presigned URL of the
local S3) is served here with the stand-in for the crowd elements, and the job waits until the
browser submits. Between tasks the page waits; when the job is over it says so.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gtseg.local.loopback import LocalService
from gtseg.local.preview.server import (
    PageServer,
    Request,
    Response,
    info_page,
    submitted_answer,
    with_standin,
)

HUMAN_PROFILE = "human"


@dataclass(frozen=True)
class HumanTask:
    """What the person is asked to label: one rendered worker page."""

    token: str
    html: str
    title: str  # e.g. "Object 2 of 3"
    dataset_object_id: str
    # how the job reads an answer: the decode shown after Submit (raises ValueError to refuse)
    describe: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class HumanAnswer:
    answer_content: dict[str, Any]
    seconds: float


class HumanStopped(Exception):
    """The human worker was stopped while the job waited for an answer."""


class HumanWorker(LocalService):
    """``with HumanWorker() as human: human.url``; ``human.answer(...)`` blocks until they submit."""

    def __init__(
        self,
        *,
        port: int = 0,
        on_ready: Callable[[str], None] | None = None,
        on_answer: Callable[[HumanTask, HumanAnswer], None] | None = None,
    ) -> None:
        self._server = PageServer(self, port=port)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._task: HumanTask | None = None
        self._answer: HumanAnswer | None = None
        self._shown_at = 0.0
        self._done = False
        self._stopped = False
        self._on_ready = on_ready
        self._on_answer = on_answer
        self.answered = 0
        self.url = ""

    # -------------------------------------------------------------- lifecycle

    def start(self) -> str:
        self.url = self._server.start()
        if self._on_ready is not None:
            self._on_ready(self.url)
        return self.url

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._server.stop()

    def finish(self) -> None:
        """The job needs no more answers: the page says the job is over."""
        with self._changed:
            self._done = True
            self._task = None
            self._changed.notify_all()

    # -------------------------------------------------------------- the job's side

    def answer(
        self,
        html: str,
        *,
        title: str,
        dataset_object_id: str,
        describe: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        timeout: float | None = None,
    ) -> HumanAnswer:
        """Show ``html`` (a rendered worker page) and wait for the submission.

        ``describe`` turns an answer into the decode the page shows (a ``ValueError`` becomes a
        problem shown with it). Raises ``HumanStopped`` when stopped, ``TimeoutError`` after
        ``timeout`` seconds."""
        task = HumanTask(secrets.token_hex(8), html, title, dataset_object_id, describe)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._task, self._answer, self._shown_at = task, None, time.monotonic()
            self._changed.notify_all()
            while self._answer is None:
                if self._stopped:
                    raise HumanStopped("the human worker was stopped")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._task = None
                    raise TimeoutError(f"no answer for {title} within {timeout:.0f} s")
                # short waits: Ctrl+C reaches the main thread between them
                self._changed.wait(0.25 if remaining is None else min(0.25, remaining))
            answer = self._answer
            self._task, self._answer = None, None
            self.answered += 1
        if self._on_answer is not None:
            self._on_answer(task, answer)
        return answer

    # -------------------------------------------------------------- the browser's side

    def handle(self, request: Request, base_url: str) -> Response | None:
        path = request.path
        if request.method == "GET" and path in ("/", "/index.html"):
            with self._lock:
                task, done = self._task, self._done
            if task is not None:
                return Response.redirect(f"/task/{task.token}")
            return Response.page(self._idle_page(done))
        if request.method == "GET" and path.startswith("/task/"):
            with self._lock:
                task = self._task
            if task is None or path.removeprefix("/task/") != task.token:
                return Response.redirect("/")
            prepared = with_standin(
                task.html,
                mode="human",
                submit=f"/api/answer/{task.token}",
                next=f"/api/next?after={task.token}",
                task=f"{task.title} · you are one of the job's workers",
            )
            return Response.page(prepared.html)
        if request.method == "GET" and path == "/api/next":
            return Response.json(self._next(request.param("after")))
        if request.method == "POST" and path.startswith("/api/answer/"):
            return self._submit(path.removeprefix("/api/answer/"), request.body)
        return None

    def _next(self, after: str | None) -> Mapping[str, Any]:
        with self._lock:
            if self._task is not None and self._task.token != after:
                return {"state": "task", "url": f"/task/{self._task.token}"}
            if self._done:
                return {"state": "done", "url": "/"}
        return {"state": "waiting"}

    def _submit(self, token: str, body: bytes) -> Response:
        content = submitted_answer(body)
        if isinstance(content, Response):
            return content
        with self._lock:
            task = self._task
        if task is None or task.token != token:
            return Response.json({"error": "this task is no longer open (the job moved on)"}, 409)
        decoded: Mapping[str, Any] | None = None
        problems: list[str] = []
        if task.describe is not None:
            try:
                decoded = task.describe(content)
            except ValueError as exc:
                problems.append(f"gtseg's consolidation will reject this answer: {exc}")
        with self._changed:
            if self._task is not task or self._answer is not None:
                return Response.json({"error": "this task is no longer open (the job moved on)"}, 409)
            self._answer = HumanAnswer(dict(content), max(0.0, time.monotonic() - self._shown_at))
            self._changed.notify_all()
            number = self.answered + 1
        return Response.json({"answer": number, "files": [], "problems": problems, "decoded": decoded})

    def _idle_page(self, done: bool) -> str:
        if done:
            return info_page(
                "The job is over",
                "<p>Every task that needed you is answered. The job's summary, with your score next to "
                "the simulated workers', is in your terminal.</p>",
            )
        return info_page(
            "Waiting for a task",
            "<p><span class=spinner></span>The labeling job is preparing your next task; this page "
            "opens it as soon as it is ready.</p>",
            poll="/api/next",
        )
