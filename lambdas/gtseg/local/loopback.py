"""What every local service shares: ``with`` starts it and always stops it, and an HTTP server on
127.0.0.1 answering from a daemon thread (the SageMaker stand-in, the preview pages)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class LocalService:
    """A service with ``start()`` and ``stop()``; as a context manager it is stopped even on error."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ThreadedHttpServer:
    """``handler`` served on ``host:port`` (0: any free port) until :meth:`stop`."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, name: str, host: str = "127.0.0.1", port: int = 0
    ):
        self._handler = handler
        self._name = name
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        """Listen and serve; returns ``http://host:port`` (no trailing slash)."""
        server = ThreadingHTTPServer(self._address, self._handler)
        server.daemon_threads = True  # a browser's kept-alive connection must not hold the process
        self._server = server
        threading.Thread(target=server.serve_forever, name=self._name, daemon=True).start()
        host, port = str(server.server_address[0]), int(server.server_address[1])
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
