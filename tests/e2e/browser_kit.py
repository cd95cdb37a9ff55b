"""Browser tests' kit: Playwright (PyPI) driving Debian's chromium, never a downloaded browser.

The tests skip, saying what to install, only when chromium (or the playwright package) is
missing; ``make setup`` installs chromium where apt-get can.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gtseg.core.labels import ClassMap
from gtseg.local.preview.server import PageServer
from gtseg.local.preview.session import TEMPLATE, PreviewImage, PreviewSession, PreviewTask

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING_CHROMIUM = (
    "install Debian's chromium package for the browser tests (apt-get install -y chromium; "
    "make setup does it where it can)"
)
SCREENSHOTS = Path("/tmp/gtseg-preview-screenshots")


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium under Playwright (skips the test when either is missing)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install -r requirements.txt (playwright)"
    )
    path = chromium_path()
    if path is None:
        pytest.skip(MISSING_CHROMIUM)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser: Any) -> Iterator[Any]:
    """A fresh page (its own context); fails the test if the page raised a JavaScript error."""
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def png_image(array: Any, name: str = "picture.png") -> PreviewImage:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    height, width = array.shape[:2]
    return PreviewImage(name, buf.getvalue(), "image/png", width, height)


@contextmanager
def preview_site(
    out_dir: Path,
    images: Sequence[PreviewImage],
    labels: Sequence[str],
    priors: Sequence[bytes | None] | None = None,
    template: Path = TEMPLATE,
) -> Iterator[tuple[str, PreviewSession]]:
    """``gtseg preview``'s site on a free port: (url, session)."""
    tasks = [
        PreviewTask(
            i, image, (priors or [None] * len(images))[i], "prior.png" if priors and priors[i] else None
        )
        for i, image in enumerate(images)
    ]
    session = PreviewSession(template.read_text(), tasks, tuple(labels), out_dir)
    with PageServer(session, port=0) as server:
        yield server.url, session


class Tool:
    """The stand-in's segmentation tool on ``page``, driven in image coordinates."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.element = page.locator("crowd-semantic-segmentation")
        page.wait_for_function(
            "() => { const el = document.querySelector('crowd-semantic-segmentation');"
            " return el && el._buf != null; }"
        )
        self.width = int(page.evaluate("document.querySelector('crowd-semantic-segmentation')._W"))
        self.height = int(page.evaluate("document.querySelector('crowd-semantic-segmentation')._H"))

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Client coordinates of image pixel (x, y)'s centre, wherever zoom and pan put it."""
        box = self.page.locator("crowd-semantic-segmentation canvas.mask").bounding_box()
        return (
            box["x"] + (x + 0.5) * box["width"] / self.width,
            box["y"] + (y + 0.5) * box["height"] / self.height,
        )

    def button(self, name: str) -> Any:
        return self.page.get_by_role("button", name=name, exact=True)

    def choose(self, name: str) -> None:
        self.button(name).click()

    def stroke(self, points: Sequence[tuple[float, float]], steps: int = 6) -> None:
        mouse = self.page.mouse
        mouse.move(*self.at(*points[0]))
        mouse.down()
        for point in points[1:]:
            mouse.move(*self.at(*point), steps=steps)
        mouse.up()

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.at(x, y))

    def submit(self) -> None:
        self.button("Submit").click()
        self.page.get_by_role("dialog").wait_for()


def class_map(labels: Sequence[str]) -> ClassMap:
    return ClassMap.from_labels(labels)
