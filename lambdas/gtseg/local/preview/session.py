"""``gtseg preview``: the worker task template, rendered as Ground Truth renders it, in a browser.

Each image becomes one task. Its ``task.input`` is what gtseg's pre-annotation Lambda builds
(``gtseg.pre_annotation.task.build_task_input``: ``taskObject``, ``labels``, ``manifestLine``, and
``initialValue`` when a prior mask is given), the template is rendered by the emulator's
``TemplateRenderer`` (python-liquid with Ground Truth's filters, auto-escaping on), and
``grant_read_access`` turns the S3 URIs into URLs of this server, which serves the image and
the prior mask itself. Every submission is written to the output folder as ``answer-<n>.json``
(the crowd-form output, as a worker's ``answerContent``) and ``answer-<n>.png`` (the mask as
gtseg's consolidation decodes it, a palette PNG of the job's classes).
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gtseg.core.labels import ClassMap, LabelCategoryConfig, LabelError
from gtseg.core.masks import MaskError, encode_index_png, open_png, read_class_mask
from gtseg.local.ground_truth import TemplateRenderer, inspect_rendered_task
from gtseg.local.preview.answers import AnswerError, DecodedAnswer, decode_answer
from gtseg.local.preview.server import Request, Response, error_page, submitted_answer, with_standin
from gtseg.pre_annotation.task import build_task_input, prelabel_initial_value
from gtseg.protocol import DEFAULT_ELEMENT_NAME

PREVIEW_BUCKET = "gtseg-preview"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TEMPLATE = TEMPLATES_DIR / "semantic-segmentation.liquid.html"
LABEL_FILE = TEMPLATES_DIR / "label-categories.json"
_ANSWER_FILE = re.compile(r"answer-(\d+)\.json")


class PreviewError(ValueError):
    """Inputs the preview cannot use; the message names the option and what is wrong."""


@dataclass(frozen=True)
class PreviewImage:
    name: str
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class PreviewTask:
    index: int
    image: PreviewImage
    prior_png: bytes | None = None  # the prior as a palette PNG of the job's class colours
    prior_name: str | None = None

    @property
    def image_uri(self) -> str:
        return f"s3://{PREVIEW_BUCKET}/images/{self.index}/{self.image.name}"

    @property
    def prior_uri(self) -> str:
        return f"s3://{PREVIEW_BUCKET}/priors/{self.index}/{Path(self.image.name).stem}.png"


@dataclass(frozen=True)
class SavedAnswer:
    number: int
    task: PreviewTask
    json_path: Path
    mask_path: Path | None
    decoded: DecodedAnswer | None
    problem: str | None = None

    def describe(self) -> list[str]:
        image = self.task.image
        written = str(self.json_path) + (f", {self.mask_path}" if self.mask_path else "")
        lines = [f"answer {self.number}: {image.name} ({image.width}x{image.height}) -> {written}"]
        if self.decoded is not None:
            lines.append("  how gtseg's consolidation decodes it:")
            lines.extend(self.decoded.describe("    "))
        if self.problem:
            lines.append(f"  gtseg's consolidation would reject it: {self.problem}")
        return lines


# --------------------------------------------------------------------------- inputs


def read_image(path: Path) -> PreviewImage:
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            kind = image.format
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PreviewError(f"--image {path}: not a readable image ({exc})") from exc
    if kind not in ("JPEG", "PNG"):
        raise PreviewError(f"--image {path}: a {kind} image; Ground Truth takes JPEG and PNG")
    return PreviewImage(path.name, data, "image/png" if kind == "PNG" else "image/jpeg", width, height)


def images_from(path: Path | None, labels: Sequence[str]) -> list[PreviewImage]:
    """The images of ``--image`` (a file or a folder), or one synthetic street scene."""
    if path is None:
        from gtseg.local.simulation import make_scene

        scene = make_scene(0, 640, 480, labels)
        return [PreviewImage("scene-000.png", scene.image_png(), "image/png", 640, 480)]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PreviewError(f"--image {path}: no .jpg, .jpeg or .png files in the folder")
        return [read_image(p) for p in files]
    if not path.is_file():
        raise PreviewError(f"--image {path}: no such file or folder")
    return [read_image(path)]


def labels_from(labels: str | None, label_file: Path | None) -> tuple[str, ...]:
    """``--labels a,b,c`` or ``--label-file FILE`` (a label-category file); default: gtseg's file."""
    try:
        if labels is not None:
            return LabelCategoryConfig.from_labels([x.strip() for x in labels.split(",") if x.strip()]).labels
        path = label_file or LABEL_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PreviewError(f"--label-file {path}: {exc.strerror or exc}") from exc
        return LabelCategoryConfig.parse(data).labels
    except LabelError as exc:
        option = "--labels" if labels is not None else f"--label-file {label_file or LABEL_FILE}"
        raise PreviewError(f"{option}: {exc}") from exc


def prior_indices(path: Path, class_map: ClassMap, size: tuple[int, int]) -> np.ndarray:
    """A prior mask as class indices: an 8-bit mask of class indices (a model pre-label, the
    pre-annotation contract), or a colour mask (a consolidated mask, a worker's PNG) read by the
    class colours."""
    try:
        image = open_png(path.read_bytes())
    except MaskError as exc:
        raise PreviewError(f"--prior {path}: {exc}") from exc
    except OSError as exc:
        raise PreviewError(f"--prior {path}: {exc.strerror or exc}") from exc
    if image.size != size:
        raise PreviewError(
            f"--prior {path} is {image.size[0]}x{image.size[1]} but the image is {size[0]}x{size[1]}"
        )
    if image.mode in ("L", "I", "I;16"):
        indices = np.asarray(image)
        top = int(indices.max()) if indices.size else 0
        if top >= len(class_map):
            raise PreviewError(
                f"--prior {path}: a grey mask is read as class indices, but it holds {top} and the job "
                f"has classes 0..{len(class_map) - 1}"
            )
        return indices.astype(np.uint8)
    try:
        return read_class_mask(image, class_map)
    except MaskError as exc:
        raise PreviewError(f"--prior {path}: {exc}") from exc


def build_tasks(images: Sequence[PreviewImage], class_map: ClassMap, prior: Path | None) -> list[PreviewTask]:
    """One task per image; ``prior`` is a mask for every image, or a folder of ``<image stem>.png``."""
    tasks = []
    for index, image in enumerate(images):
        path: Path | None = None
        if prior is not None and prior.is_dir():
            candidate = prior / f"{Path(image.name).stem}.png"
            path = candidate if candidate.is_file() else None
        elif prior is not None:
            if not prior.is_file():
                raise PreviewError(f"--prior {prior}: no such file or folder")
            path = prior
        png = None
        if path is not None:
            png = encode_index_png(prior_indices(path, class_map, (image.width, image.height)), class_map)
        tasks.append(PreviewTask(index, image, png, path.name if path else None))
    if prior is not None and prior.is_dir() and not any(t.prior_png for t in tasks):
        raise PreviewError(f"--prior {prior}: no <image name>.png in the folder matches an image")
    return tasks


def next_answer_number(out_dir: Path) -> int:
    """1, or one more than the highest ``answer-<n>.json`` already in ``out_dir``."""
    if not out_dir.is_dir():
        return 1
    numbers = [int(m.group(1)) for p in out_dir.iterdir() if (m := _ANSWER_FILE.fullmatch(p.name))]
    return max(numbers, default=0) + 1


# --------------------------------------------------------------------------- the site


@dataclass
class PreviewSession:
    """The ``Site`` of ``gtseg preview``: one page per task, the files, the answers."""

    template_source: str
    tasks: Sequence[PreviewTask]
    labels: tuple[str, ...]
    out_dir: Path
    on_answer: Callable[[SavedAnswer], None] | None = None
    on_error: Callable[[str], None] | None = None  # an answer that could not be written
    answers: list[SavedAnswer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.class_map = ClassMap.from_labels(self.labels)
        self._lock = threading.Lock()
        self._base_url = "http://127.0.0.1"

    # -------------------------------------------------------------- rendering

    def task_input(self, task: PreviewTask) -> dict[str, Any]:
        initial = prelabel_initial_value(task.prior_uri, self.labels) if task.prior_png else None
        return build_task_input(task.image_uri, self.labels, {"source-ref": task.image_uri}, initial)

    def _presign(self, uri: str) -> str:
        return f"{self._base_url}/s3/{uri.removeprefix('s3://')}"

    def render(self, task: PreviewTask, base_url: str | None = None) -> str:
        """The template rendered for ``task``, exactly as the emulator renders it for a worker."""
        if base_url:
            self._base_url = base_url.rstrip("/")
        renderer = TemplateRenderer(self.template_source, self._presign)
        return renderer.render(self.task_input(task))

    def check(self) -> list[str]:
        """What a worker's browser would get wrong on the first task's page (empty: fine)."""
        try:
            html = self.render(self.tasks[0])
        except Exception as exc:  # any Liquid error: the page would not render at all
            # Liquid's message, then where: "-> '{% for %}' 1:3" (the drawing below is left out)
            where = " ".join(line.strip() for line in str(exc).splitlines()[:2])
            raise PreviewError(f"the template does not render: {where}") from exc
        problems = list(inspect_rendered_task(html, self.labels).problems)
        problems.extend(with_standin(html).notes)
        return problems

    def page(self, task: PreviewTask, base_url: str) -> str:
        html = self.render(task, base_url)
        count = len(self.tasks)
        prepared = with_standin(
            html,
            mode="preview",
            submit=f"/api/answer/{task.index}",
            task=f"Image {task.index + 1} of {count} · {task.image.name}",
            prev=f"/task/{task.index - 1}" if task.index > 0 else None,
            next_task=f"/task/{task.index + 1}" if task.index + 1 < count else None,
        )
        return prepared.html

    # -------------------------------------------------------------- requests

    def handle(self, request: Request, base_url: str) -> Response | None:
        path = request.path
        if request.method == "GET" and path in ("/", "/index.html"):
            return Response.redirect("/task/0")
        if request.method == "GET" and path.startswith("/task/"):
            task = self._task(path.removeprefix("/task/"))
            if task is None:
                return Response.page(error_page("No such task", f"There are {len(self.tasks)} tasks."), 404)
            return Response.page(self.page(task, base_url))
        if request.method == "GET" and path.startswith(f"/s3/{PREVIEW_BUCKET}/"):
            return self._object(path.removeprefix(f"/s3/{PREVIEW_BUCKET}/"))
        if request.method == "POST" and path.startswith("/api/answer/"):
            task = self._task(path.removeprefix("/api/answer/"))
            if task is None:
                return Response.json({"error": "no such task"}, 404)
            return self._answer(task, request.body)
        return None

    def _task(self, text: str) -> PreviewTask | None:
        if not text.isdigit() or int(text) >= len(self.tasks):
            return None
        return self.tasks[int(text)]

    def _object(self, key: str) -> Response:
        kind, _, rest = key.partition("/")
        index, _, _name = rest.partition("/")
        task = self._task(index)
        if task is None:
            return Response.not_found()
        headers = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"}
        if kind == "images":
            return Response(200, task.image.data, task.image.content_type, headers)
        if kind == "priors" and task.prior_png is not None:
            return Response(200, task.prior_png, "image/png", headers)
        return Response.not_found()

    def _answer(self, task: PreviewTask, body: bytes) -> Response:
        content = submitted_answer(body)
        if isinstance(content, Response):
            return content
        try:
            saved = self.save(task, content)
        except OSError as exc:
            message = f"cannot write the answer to {self.out_dir}: {exc.strerror or exc}"
            if self.on_error is not None:
                self.on_error(message)
            return Response.json({"error": message}, 500)
        result: dict[str, Any] = {
            "answer": saved.number,
            "files": [str(p) for p in (saved.json_path, saved.mask_path) if p is not None],
            "decoded": saved.decoded.to_dict() if saved.decoded else None,
            "problems": [saved.problem] if saved.problem else [],
        }
        return Response.json(result)

    def save(self, task: PreviewTask, content: dict[str, Any]) -> SavedAnswer:
        """Write the answer and its decoded mask; tell ``on_answer``."""
        try:
            decoded: DecodedAnswer | None = decode_answer(
                content,
                self.class_map,
                image_size=(task.image.width, task.image.height),
                element_name=DEFAULT_ELEMENT_NAME,
            )
            problem = None
        except AnswerError as exc:
            decoded, problem = None, str(exc)
        with self._lock:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            number = next_answer_number(self.out_dir)
            json_path = self.out_dir / f"answer-{number}.json"
            json_path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
            mask_path = None
            if decoded is not None:
                mask_path = self.out_dir / f"answer-{number}.png"
                mask_path.write_bytes(encode_index_png(decoded.indices, self.class_map))
            saved = SavedAnswer(number, task, json_path, mask_path, decoded, problem)
            self.answers.append(saved)
        if self.on_answer is not None:
            self.on_answer(saved)
        return saved
