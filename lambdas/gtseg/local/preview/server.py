"""A web server on 127.0.0.1 for worker task pages, with gtseg's stand-in for the crowd elements.

Ground Truth's worker page loads ``https://assets.crowd.aws/crowd-html-elements.js``; the page
served here loads the stand-in shipped beside this module instead (``standin/``), so a rendered
template works in a browser with nothing from the network. Every page also carries a
Content-Security-Policy that only allows this machine (``'self'`` and ``127.0.0.1``): a template
that links a CDN shows what it would miss instead of fetching it.

What the server serves beyond the stand-in comes from a ``Site`` (the preview of
``gtseg preview``, or the person-at-the-browser worker of ``gtseg simulate --human``).
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

from gtseg.local.loopback import LocalService, ThreadedHttpServer

STANDIN_DIR = Path(__file__).resolve().with_name("standin")
STANDIN_PREFIX = "/_gtseg/standin/"
STANDIN_SCRIPT = "crowd-html-elements.js"
CROWD_SCRIPT_URL = "https://assets.crowd.aws/crowd-html-elements.js"
_CROWD_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*(['\"]?)(?:https?:)?//assets\.crowd\.aws/crowd-html-elements\.js\1[^>]*>"
    r"\s*</script\s*>",
    re.IGNORECASE,
)
_STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
}
# This machine only: the page itself, the stand-in, and servers on 127.0.0.1 (moto's S3 in
# simulate --human). Inline script and style stay allowed, as templates use them.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self' http://127.0.0.1:*",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' http://127.0.0.1:*",
        "style-src 'self' 'unsafe-inline' http://127.0.0.1:*",
        "img-src 'self' data: blob: http://127.0.0.1:*",
        "font-src 'self' data:",
        "connect-src 'self' http://127.0.0.1:*",
        "media-src 'self' blob: http://127.0.0.1:*",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    )
)
MAX_BODY_BYTES = 200 * 1024 * 1024  # a 100 MP answer's base64 PNG stays well under this


def content_type_for(name: str) -> str:
    return _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json")

    @classmethod
    def page(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"), "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(303, b"", "text/plain", {"Location": location})

    @classmethod
    def not_found(cls, what: str = "not found") -> Response:
        return cls(404, what.encode("utf-8"), "text/plain; charset=utf-8")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class Site(Protocol):
    """What a ``PageServer`` serves besides the stand-in's files."""

    def handle(self, request: Request, base_url: str) -> Response | None: ...


@dataclass(frozen=True)
class PreparedPage:
    html: str
    notes: tuple[str, ...] = ()


def standin_script_tag(**data: str | None) -> str:
    """The ``<script>`` that loads the stand-in, configured by ``data-*`` attributes."""
    attributes = "".join(
        f' data-{name.replace("_", "-")}="{html.escape(value, quote=True)}"'
        for name, value in data.items()
        if value is not None
    )
    return f'<script src="{STANDIN_PREFIX}{STANDIN_SCRIPT}"{attributes}></script>'


# First on every page: remembers what the Content-Security-Policy blocked before the stand-in
# loaded (a template's CDN links come first), so the tool can say so.
BLOCKED_RECORDER = (
    "<script>window.__gtsegBlocked=[];document.addEventListener('securitypolicyviolation',"
    "function(e){window.__gtsegBlocked.push(e.blockedURI||'a resource');});</script>"
)


def with_standin(page: str, **data: str | None) -> PreparedPage:
    """The rendered template with the stand-in in place of the remote crowd-html-elements.js.

    A template without that script would show workers no tool in Ground Truth either; the
    stand-in is added anyway (so the page can be tried) and the note says so.
    """
    tag = standin_script_tag(**data)
    replaced, count = _CROWD_SCRIPT.subn(lambda _match: tag, page, count=1)
    if count:
        return PreparedPage(BLOCKED_RECORDER + _CROWD_SCRIPT.sub("", replaced))
    note = (
        f"the template does not load {CROWD_SCRIPT_URL}: in Ground Truth its crowd elements would "
        "not work (the preview adds the stand-in anyway)"
    )
    return PreparedPage(BLOCKED_RECORDER + tag + "\n" + page, (note,))


def submitted_answer(body: bytes) -> dict[str, Any] | Response:
    """The ``answerContent`` of a crowd-form submission the stand-in posted, or the 400 reply saying
    what is wrong with it."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        return Response.json({"error": f"the submission is not JSON: {exc}"}, 400)
    content = payload.get("answerContent") if isinstance(payload, dict) else None
    if not isinstance(content, dict):
        return Response.json({"error": "the submission has no answerContent object"}, 400)
    return content


def read_standin(name: str) -> bytes | None:
    """A file of the stand-in (``standin/<name>``), or None for any other name."""
    if not _STATIC_NAME.fullmatch(name):
        return None
    path = STANDIN_DIR / name
    return path.read_bytes() if path.is_file() else None


class PageServer(LocalService):
    """``with PageServer(site, port=0) as server: server.url``: the site on 127.0.0.1."""

    def __init__(self, site: Site, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.site = site
        self.host = host
        self.port = port
        self._server: ThreadedHttpServer | None = None
        self.url: str = ""

    def start(self) -> str:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._server = ThreadedHttpServer(Handler, name="gtseg-preview", host=self.host, port=self.port)
        self.url = self._server.start() + "/"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def respond(self, request: Request) -> Response:
        if request.method == "GET" and request.path.startswith(STANDIN_PREFIX):
            data = read_standin(request.path[len(STANDIN_PREFIX) :])
            if data is None:
                return Response.not_found()
            return Response(200, data, content_type_for(request.path), {"Cache-Control": "no-cache"})
        if request.path == "/favicon.ico":
            return Response(204, b"", "image/x-icon")
        try:
            answer = self.site.handle(request, self.url.rstrip("/"))
        except Exception as exc:  # a page that fails says why, in the browser and the JSON
            message = f"{type(exc).__name__}: {exc}"
            if request.path.startswith("/api/"):
                return Response.json({"error": message}, 500)
            return Response.page(error_page("Something went wrong", message), 500)
        return answer or Response.not_found()


class _Handler(BaseHTTPRequestHandler):
    server_owner: PageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _request(self, method: str) -> Request:
        parsed = urllib.parse.urlsplit(self.path)
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise ValueError(f"request body of {length} bytes is over the limit")
            body = self.rfile.read(length) if length else b""
        return Request(method, urllib.parse.unquote(parsed.path), urllib.parse.parse_qs(parsed.query), body)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _serve(self, method: str) -> None:
        try:
            request = self._request(method)
        except ValueError as exc:
            self._send(Response.json({"error": str(exc)}, 413))
            return
        self._send(self.server_owner.respond(request))

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


def error_page(title: str, message: str) -> str:
    return info_page(title, f"<p class=problem>{html.escape(message)}</p>")


def info_page(title: str, body_html: str, *, poll: str | None = None) -> str:
    """A plain page in the stand-in's look (waiting for a task, the job is over, an error).

    ``poll``: a URL answering ``{"state": "task"|"done", "url"}``; the page goes there when it
    changes."""
    script = ""
    if poll:
        script = (
            "<script>(function poll(){fetch(" + json.dumps(poll) + ",{cache:'no-store'})"
            ".then(function(r){return r.json();}).then(function(n){"
            "if((n.state==='task'||n.state==='done')&&n.url){if(n.url!==location.pathname)"
            "location.assign(n.url);else location.reload();return;}setTimeout(poll,700);})"
            ".catch(function(){setTimeout(poll,1500);});})();</script>"
        )
    return f"""<!doctype html>
<html lang="en" class="gtseg-standin-page">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="stylesheet" href="{STANDIN_PREFIX}page.css">
<style>
  html.gtseg-standin-page body {{ display: grid; place-items: center; min-height: 100vh; }}
  .gtseg-info {{ max-width: 560px; margin: 24px; padding: 28px 32px; border-radius: 12px;
    background: #fff; box-shadow: 0 8px 30px rgba(0,0,0,.12); border: 1px solid #e1e4e8; }}
  .gtseg-info h1 {{ margin: 0 0 10px; font-size: 20px; }}
  .gtseg-info p {{ margin: 8px 0; color: #414d5c; line-height: 1.5; }}
  .gtseg-info .problem {{ color: #d91515; }}
  .gtseg-info .spinner {{ display: inline-block; width: 12px; height: 12px; margin-right: 8px;
    border: 2px solid #c6c6cd; border-top-color: #0972d3; border-radius: 50%;
    animation: gtseg-spin .8s linear infinite; vertical-align: -1px; }}
  @keyframes gtseg-spin {{ to {{ transform: rotate(360deg); }} }}
</style></head>
<body><main class="gtseg-info"><h1>{html.escape(title)}</h1>{body_html}</main>{script}</body>
</html>
"""
