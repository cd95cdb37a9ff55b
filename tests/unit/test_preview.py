"""``gtseg preview`` and ``gtseg simulate --human`` without a browser: the page the server makes,
what it serves, how answers are decoded and saved, the person-at-the-browser worker's protocol,
and the CLI's one-line failures."""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gtseg.cli import main
from gtseg.core.labels import ClassMap
from gtseg.core.masks import encode_index_png, read_class_mask
from gtseg.local.ground_truth import TemplateRenderer, inspect_rendered_task
from gtseg.local.preview.answers import AnswerError, decode_answer
from gtseg.local.preview.human import HumanWorker
from gtseg.local.preview.server import (
    CONTENT_SECURITY_POLICY,
    STANDIN_DIR,
    PageServer,
    with_standin,
)
from gtseg.local.preview.session import (
    TEMPLATE,
    TEMPLATES_DIR,
    PreviewError,
    PreviewImage,
    PreviewSession,
    PreviewTask,
    build_tasks,
    images_from,
    labels_from,
    next_answer_number,
    prior_indices,
)
from gtseg.local.simulated_job import SimulationOptions
from gtseg.local.simulation import worker_answer
from gtseg.pre_annotation.task import build_task_input

LABELS = ("road", "car", "pole")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def picture(width: int = 64, height: int = 48) -> PreviewImage:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[: height // 2] = (120, 160, 220)
    return PreviewImage("pic.png", png_bytes(array), "image/png", width, height)


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with NO_PROXY.open(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def post(url: str, payload: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with NO_PROXY.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --------------------------------------------------------------------------- the page


@pytest.mark.parametrize(
    "tag",
    [
        '<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>',
        "<SCRIPT type='text/javascript' src='https://assets.crowd.aws/crowd-html-elements.js' ></SCRIPT>",
        '<script src="//assets.crowd.aws/crowd-html-elements.js" defer></script>',
    ],
)
def test_the_remote_crowd_script_is_swapped_for_the_stand_in(tag):
    page = with_standin(f"{tag}\n<crowd-form></crowd-form>", mode="preview", submit="/api/answer/0")
    assert "assets.crowd.aws" not in page.html
    assert '<script src="/_gtseg/standin/crowd-html-elements.js" data-mode="preview"' in page.html
    assert 'data-submit="/api/answer/0"' in page.html
    assert page.notes == ()


def test_a_template_without_the_crowd_script_still_gets_the_stand_in_and_a_note():
    page = with_standin("<crowd-form></crowd-form>", next_task='/task/1"><x')
    assert "/_gtseg/standin/crowd-html-elements.js" in page.html
    assert 'data-next-task="/task/1&quot;&gt;&lt;x"' in page.html  # attribute values are escaped
    assert page.notes and "does not load https://assets.crowd.aws/crowd-html-elements.js" in page.notes[0]


def test_the_stand_in_ships_in_the_package_but_not_in_what_the_stack_uploads():
    assert {p.name for p in STANDIN_DIR.iterdir()} >= {
        "crowd-html-elements.js",
        "standin.css",
        "page.css",
        "icons.svg",
    }
    assert TEMPLATES_DIR not in STANDIN_DIR.parents  # infra/worker_ui.py deploys templates/ whole
    script = (STANDIN_DIR / "crowd-html-elements.js").read_text()
    for colour in ClassMap.from_labels([str(i) for i in range(20)]).colors[1:]:
        assert f'"{colour}"' in script  # GROUND_TRUTH_COLORS, in order, in the script
    assert "http://" not in script.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script.replace("https://assets.crowd.aws", "")


def session_for(tmp_path: Path, priors: list[bytes | None] | None = None, **kwargs) -> PreviewSession:
    images = [picture(), PreviewImage("b.png", picture().data, "image/png", 64, 48)]
    tasks = [PreviewTask(i, image, (priors or [None, None])[i]) for i, image in enumerate(images)]
    return PreviewSession(TEMPLATE.read_text(), tasks, LABELS, tmp_path / "out", **kwargs)


def test_the_page_is_the_template_rendered_as_the_emulator_renders_it(tmp_path):
    job = ClassMap.from_labels(LABELS)
    session = session_for(tmp_path, priors=[encode_index_png(np.zeros((48, 64), np.uint8), job), None])
    base = "http://127.0.0.1:9"
    presign = lambda uri: f"{base}/s3/{uri.removeprefix('s3://')}"  # noqa: E731
    task = session.tasks[0]
    expected_input = build_task_input(
        task.image_uri,
        LABELS,
        {"source-ref": task.image_uri},
        None,
    )
    expected_input["initialValue"] = {"labelMappings": job.label_mappings(), "src": task.prior_uri}
    assert session.task_input(task) == expected_input
    expected = TemplateRenderer(TEMPLATE.read_text(), presign).render(expected_input)
    assert session.render(task, base) == expected
    rendered = inspect_rendered_task(expected, LABELS)
    assert rendered.problems == ()
    assert rendered.src == f"{base}/s3/gtseg-preview/images/0/pic.png"
    assert json.loads(rendered.initial_value or "{}")["src"] == f"{base}/s3/gtseg-preview/priors/0/pic.png"
    assert session.check() == []
    assert "initial-value" not in session.render(session.tasks[1], base)


def test_a_template_that_does_not_render_is_refused_with_the_reason(tmp_path):
    images = [picture()]
    session = PreviewSession("{% if %}", [PreviewTask(0, images[0])], LABELS, tmp_path)
    with pytest.raises(PreviewError, match="the template does not render"):
        session.check()


# --------------------------------------------------------------------------- the server


def test_the_server_serves_pages_files_and_the_stand_in_on_this_machine_only(tmp_path):
    session = session_for(tmp_path)
    with PageServer(session, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, body, headers = get(server.url + "task/1")
        assert status == 200 and headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert b"/_gtseg/standin/crowd-html-elements.js" in body and b"assets.crowd.aws" not in body
        assert b"Image 2 of 2" in body and b'data-prev="/task/0"' in body
        status, body, headers = get(server.url + "s3/gtseg-preview/images/0/pic.png")
        assert status == 200 and body == session.tasks[0].image.data
        assert headers["Content-Type"] == "image/png" and headers["Access-Control-Allow-Origin"] == "*"
        status, body, headers = get(server.url + "_gtseg/standin/standin.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        for path in (
            "_gtseg/standin/../server.py",
            "_gtseg/standin/%2e%2e/server.py",
            "task/9",
            "s3/gtseg-preview/priors/0/pic.png",
            "s3/other-bucket/x",
        ):
            assert get(server.url + path)[0] == 404, path
        status, _, headers = get(server.url)
        assert status == 200  # redirected to the first task
    assert "default-src 'self' http://127.0.0.1:*" in CONTENT_SECURITY_POLICY


def test_each_answer_is_saved_decoded_and_numbered_after_the_ones_there(tmp_path):
    job = ClassMap.from_labels(LABELS)
    seen = []
    session = session_for(tmp_path, on_answer=seen.append)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "answer-4.json").write_text("{}")
    indices = np.zeros((48, 64), dtype=np.uint8)
    indices[10:20, 5:30] = job.index_of("car")
    content = worker_answer(indices, job, png_mode="RGBA", only_used_labels=True)
    with PageServer(session, port=0) as server:
        status, result = post(
            server.url + "api/answer/0", {"answerContent": content, "timeSpentInSeconds": 3}
        )
        assert status == 200, result
        assert result["answer"] == 5
        classes = {c["name"]: c["pixels"] for c in result["decoded"]["classes"]}
        assert classes == {"BACKGROUND": 48 * 64 - 250, "car": 250}
        assert result["decoded"]["unmatched"] == 0
        status, result = post(server.url + "api/answer/0", {"nothing": True})
        assert status == 400 and "answerContent" in result["error"]
    out = tmp_path / "out"
    assert json.loads((out / "answer-5.json").read_text()) == content
    assert (read_class_mask((out / "answer-5.png").read_bytes(), job) == indices).all()
    assert len(seen) == 1 and seen[0].number == 5
    text = "\n".join(seen[0].describe())
    assert "answer 5: pic.png (64x48)" in text and "unmatched pixels: 0" in text
    assert next_answer_number(out) == 6


def test_an_answer_the_consolidation_would_reject_is_kept_and_says_why(tmp_path):
    job = ClassMap.from_labels(LABELS)
    session = session_for(tmp_path)
    wrong_size = worker_answer(np.zeros((10, 10), np.uint8), job)
    saved = session.save(session.tasks[0], wrong_size)
    assert saved.decoded is None and saved.mask_path is None
    assert "inputImageProperties says 10x10 but the image is 64x48" in (saved.problem or "")
    assert saved.json_path.is_file()
    assert "would reject it" in "\n".join(saved.describe())


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "P"])
def test_answers_decode_like_the_consolidation_whatever_the_png_mode(mode):
    job = ClassMap.from_labels(LABELS)
    indices = np.random.default_rng(1).integers(0, 4, size=(30, 40)).astype(np.uint8)
    decoded = decode_answer(worker_answer(indices, job, png_mode=mode), job, image_size=(40, 30))
    assert (decoded.indices == indices).all()
    assert decoded.unmatched_pixels == 0
    assert [a.name for a in decoded.areas()] == ["BACKGROUND", *LABELS]
    with pytest.raises(AnswerError, match="no semantic-segmentation answer"):
        decode_answer({"other": 1}, job)


# --------------------------------------------------------------------------- inputs


def test_priors_are_read_as_class_indices_or_by_colour(tmp_path):
    job = ClassMap.from_labels(LABELS)
    indices = np.zeros((48, 64), dtype=np.uint8)
    indices[:, :20] = 1
    indices[30:, 40:] = 3
    grey = tmp_path / "grey.png"
    Image.fromarray(indices, mode="L").save(grey)
    palette = tmp_path / "palette.png"
    palette.write_bytes(encode_index_png(indices, job))
    colour = tmp_path / "colour.png"
    lut = np.array(job.palette(), dtype=np.uint8).reshape(256, 3)
    Image.fromarray(lut[indices]).save(colour)
    for path in (grey, palette, colour):
        assert (prior_indices(path, job, (64, 48)) == indices).all(), path.name
    with pytest.raises(PreviewError, match=r"is 64x48 but the image is 32x32"):
        prior_indices(grey, job, (32, 32))
    Image.fromarray(np.full((48, 64), 9, dtype=np.uint8), mode="L").save(grey)
    with pytest.raises(PreviewError, match=r"holds 9 and the job has classes 0\.\.3"):
        prior_indices(grey, job, (64, 48))
    (tmp_path / "not.png").write_text("no")
    with pytest.raises(PreviewError, match="not a readable image"):
        prior_indices(tmp_path / "not.png", job, (64, 48))


def test_a_folder_of_priors_is_matched_by_image_name(tmp_path):
    job = ClassMap.from_labels(LABELS)
    priors = tmp_path / "priors"
    priors.mkdir()
    (priors / "b.png").write_bytes(encode_index_png(np.ones((48, 64), np.uint8), job))
    images = [picture(), PreviewImage("b.jpg", picture().data, "image/png", 64, 48)]
    tasks = build_tasks(images, job, priors)
    assert [t.prior_png is not None for t in tasks] == [False, True]
    with pytest.raises(PreviewError, match=r"no <image name>\.png in the folder"):
        build_tasks(images[:1], job, priors)


def test_images_labels_and_their_problems(tmp_path):
    assert [i.name for i in images_from(None, LABELS)] == ["scene-000.png"]
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(picture().data)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("x")
    assert [(i.name, i.content_type) for i in images_from(folder, LABELS)] == [
        ("a.png", "image/png"),
        ("b.jpg", "image/jpeg"),
    ]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "c.gif")
    with pytest.raises(PreviewError, match="a GIF image; Ground Truth takes JPEG and PNG"):
        images_from(tmp_path / "c.gif", LABELS)
    with pytest.raises(PreviewError, match="no such file or folder"):
        images_from(tmp_path / "missing.png", LABELS)
    assert labels_from("a, b ,c", None) == ("a", "b", "c")
    assert labels_from(None, None)[:2] == ("road", "sidewalk")
    with pytest.raises(PreviewError, match="--labels: labels\\[0\\]: 'BACKGROUND' is reserved"):
        labels_from("BACKGROUND", None)
    bad = tmp_path / "labels.json"
    bad.write_text('{"labels": []}')
    with pytest.raises(PreviewError, match=r"--label-file .*document-version"):
        labels_from(None, bad)


# --------------------------------------------------------------------------- the CLI


def one_line_failure(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gtseg preview: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def test_preview_failures_are_one_line_and_exit_2(capsys, tmp_path):
    assert "--image" in one_line_failure(capsys, ["preview", "--image", str(tmp_path / "none.png")])
    assert "--labels" in one_line_failure(capsys, ["preview", "--labels", "a,a"])
    assert "--template" in one_line_failure(capsys, ["preview", "--template", str(tmp_path / "t.html")])
    assert "--port" in one_line_failure(capsys, ["preview", "--port", "70000"])
    assert "--exit-after" in one_line_failure(capsys, ["preview", "--exit-after", "0"])
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_failure(capsys, ["preview", "--out", str(tmp_path / "file")])
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(tmp_path / "small.png")
    assert "--prior" in one_line_failure(capsys, ["preview", "--prior", str(tmp_path / "small.png")])
    broken = tmp_path / "broken.liquid.html"
    broken.write_text("{% for %}")
    assert "does not render" in one_line_failure(capsys, ["preview", "--template", str(broken)])


def test_a_port_in_use_is_named(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_failure(capsys, ["preview", "--port", str(port), "--out", str(tmp_path)])
    assert f"port {port} on 127.0.0.1 is in use" in line


def test_simulate_human_options(capsys):
    options = SimulationOptions(human=True)
    assert options.worker_profiles() == ("human", "careful", "average", "average", "sloppy", "spammer")
    assert SimulationOptions(human=True, workers=3).worker_profiles() == ("human", "careful", "average")
    assert SimulationOptions(human=True, workers=1).worker_profiles() == ("human",)
    assert main(["simulate", "--human", "--human-port", "-1"]) == 2
    assert "--human-port" in capsys.readouterr().err
    assert main(["simulate", "--human", "--human-timeout", "0"]) == 2
    assert "--human-timeout" in capsys.readouterr().err


# --------------------------------------------------------------------------- the human worker


def test_the_human_worker_serves_each_task_and_waits_for_the_answer():
    job = ClassMap.from_labels(LABELS)
    content = worker_answer(np.ones((4, 6), np.uint8), job)
    got: dict = {}
    with HumanWorker(port=0) as human:
        assert b"Waiting for a task" in get(human.url)[1]
        assert json.loads(get(human.url + "api/next")[1]) == {"state": "waiting"}

        def job_side() -> None:
            got["answer"] = human.answer(
                '<script src="https://assets.crowd.aws/crowd-html-elements.js"></script><crowd-form></crowd-form>',
                title="Object 1 of 1",
                dataset_object_id="0",
                describe=lambda c: decode_answer(c, job).to_dict(),
            )

        thread = threading.Thread(target=job_side)
        thread.start()
        for _ in range(100):
            nxt = json.loads(get(human.url + "api/next")[1])
            if nxt["state"] == "task":
                break
            threading.Event().wait(0.05)
        assert nxt["state"] == "task"
        status, page, headers = get(human.url.rstrip("/") + nxt["url"])
        assert status == 200 and b'data-mode="human"' in page and b"assets.crowd.aws" not in page
        assert "Content-Security-Policy" in headers
        token = nxt["url"].rsplit("/", 1)[1]
        assert post(human.url + "api/answer/wrong", {"answerContent": content})[0] == 409
        status, result = post(human.url + f"api/answer/{token}", {"answerContent": content})
        assert status == 200 and result["decoded"]["classes"][1]["name"] == "road"
        thread.join(10)
        assert got["answer"].answer_content == content and human.answered == 1
        assert post(human.url + f"api/answer/{token}", {"answerContent": content})[0] == 409  # once only
        human.finish()
        assert json.loads(get(human.url + f"api/next?after={token}")[1])["state"] == "done"
        assert b"The job is over" in get(human.url)[1]


def test_a_human_who_does_not_answer_in_time_times_out():
    with HumanWorker(port=0) as human, pytest.raises(TimeoutError, match="no answer for Object 1"):
        human.answer("<p>x</p>", title="Object 1", dataset_object_id="0", timeout=0.2)
