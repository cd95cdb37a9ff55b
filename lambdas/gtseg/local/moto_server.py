"""moto's server on 127.0.0.1 (ephemeral port) with boto3 pointed at it, for this process only.

boto3 honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``), so every client created
while the server runs, in this process and in subprocesses that inherit the environment (the local
Lambda runtimes), talks to moto. The fake credentials and endpoints are set on ``os.environ`` on
start and the previous values restored on stop: nothing outlives the run, nothing reaches AWS.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Mapping
from typing import Any

from gtseg.local.loopback import LocalService

FAKE_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # no instance-metadata lookups (they would time out off EC2)
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Variables that would make boto3 look elsewhere for credentials, config or endpoints; hidden while
# we run (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true would send every call past moto, to AWS).
_SHADOWED = (
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
_SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"  # e.g. AWS_ENDPOINT_URL_S3 set for LocalStack


class ScopedEnvironment:
    """Set environment variables now, restore the previous values (or absence) on ``restore()``."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


class LocalMotoServer(LocalService):
    """``with LocalMotoServer() as moto: ...``: moto on 127.0.0.1:<free port>, boto3 pointed at it."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self._server: Any = None  # moto.server.ThreadedMotoServer, imported on start
        self._env = ScopedEnvironment()
        self.endpoint_url: str | None = None

    def start(self) -> str:
        # Imported here: moto is a development dependency and slow-ish to import.
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO to stderr otherwise; the demo has its own progress.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        # moto keeps its state in module globals: a new server must not see an earlier one's buckets.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(
            urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"), timeout=10
        ).close()
        for name, value in FAKE_CREDENTIALS.items():
            self._env.set(name, value)
        self._env.set("AWS_DEFAULT_REGION", self.region)
        self._env.set("AWS_REGION", self.region)
        for name in _SHADOWED:
            self._env.set(name, None)
        for name in [n for n in os.environ if n.upper().startswith(_SERVICE_ENDPOINT_PREFIX)]:
            self._env.set(name, None)  # a user's per-service endpoint would win over moto's
        self._env.set("AWS_ENDPOINT_URL", self.endpoint_url)
        # Loopback must never go through a proxy someone configured for the internet.
        for name in ("NO_PROXY", "no_proxy"):
            current = [p for p in (os.environ.get(name) or "").split(",") if p]
            self._env.set(name, ",".join([*current, "127.0.0.1", "localhost"]))
        return self.endpoint_url

    def set_service_endpoint(self, service_env_name: str, url: str) -> None:
        """Point one service elsewhere, e.g. ``("SAGEMAKER", standin_url)``; undone on stop."""
        self._env.set(f"AWS_ENDPOINT_URL_{service_env_name.upper()}", url)

    def stop(self) -> None:
        self._env.restore()
        if self._server is not None:
            self._server.stop()
            self._server = None
