"""The worker task in a real browser (issue 14): gtseg's stand-in for crowd-form and
crowd-semantic-segmentation, served by ``gtseg preview``, driven with Playwright on Debian's
chromium. The answers are read back the way gtseg's consolidation reads them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from browser_kit import Tool, chromium, new_page, png_image, preview_site, screenshot

from gtseg.core.labels import ClassMap
from gtseg.core.masks import b64decode_png, decode_worker_mask, encode_index_png, read_class_mask
from gtseg.local.preview.human import HumanWorker
from gtseg.local.simulated_job import SimulationOptions, run_simulation
from gtseg.local.simulation import make_scene

LABELS = ("road", "car", "pole")


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    with new_page(browser) as page:
        yield page


def scene_image(width: int = 320, height: int = 240):
    scene = make_scene(3, width, height, LABELS)
    return png_image(scene.image, "street.png")


def read_answer(out_dir: Path, number: int) -> dict:
    return json.loads((out_dir / f"answer-{number}.json").read_text())


def decode(answer: dict, labels=LABELS):
    seg = answer["crowd-semantic-segmentation"]
    png = b64decode_png(seg["labeledImage"]["pngImageData"])
    size = (seg["inputImageProperties"]["width"], seg["inputImageProperties"]["height"])
    return decode_worker_mask(png, seg["labelMappings"], ClassMap.from_labels(labels), expected_size=size)


def test_paint_fill_undo_and_submit_decodes_to_the_painted_classes(page, tmp_path):
    out = tmp_path / "answers"
    with preview_site(out, [scene_image()], LABELS) as (url, session):
        page.goto(url)
        tool = Tool(page)
        assert (tool.width, tool.height) == (320, 240)
        tool.choose("car")
        tool.choose("Size 4 px")
        tool.stroke([(60, 60), (160, 60), (160, 140), (60, 140), (60, 60)])  # an outline...
        tool.choose("Fill")
        tool.click(110, 100)  # ...filled inside
        tool.choose("Brush")
        tool.choose("road")
        tool.choose("Size 12 px")
        tool.stroke([(200, 200), (300, 200)])
        tool.choose("pole")
        tool.stroke([(250, 20), (250, 120)])
        tool.choose("Undo")  # the pole stroke goes
        page.mouse.move(*tool.at(230, 170))
        screenshot(page, "painted")
        tool.submit()
        screenshot(page, "submitted")
        assert page.get_by_role("dialog").get_by_text("Answer 1 saved").is_visible()

    answer = read_answer(out, 1)
    assert list(answer) == ["crowd-semantic-segmentation"]
    seg = answer["crowd-semantic-segmentation"]
    assert list(seg) == ["inputImageProperties", "labelMappings", "labeledImage"]  # no initialValueModified
    assert seg["inputImageProperties"] == {"height": 240, "width": 320}
    job = ClassMap.from_labels(LABELS)
    # only the labels used, in the colours Ground Truth's order gives them
    assert seg["labelMappings"] == {"road": {"color": job.colors[1]}, "car": {"color": job.colors[2]}}
    assert not seg["labeledImage"]["pngImageData"].startswith("data:")

    decoded = decode(answer)
    road, car, pole = (job.index_of(n) for n in LABELS)
    indices = decoded.indices
    assert decoded.unmatched_pixels == 0 and decoded.snapped_pixels == 0
    assert set(np.unique(indices).tolist()) == {0, road, car}
    assert (indices[64:137, 64:157] == car).all()  # the filled inside
    assert (indices[200, 205:296] == road).all()
    assert not (indices == pole).any()  # undone
    assert indices[20, 20] == 0 and indices[230, 10] == 0
    # what the server wrote and printed is the same decode
    saved = session.answers[0]
    assert saved.decoded is not None and (saved.decoded.indices == indices).all()
    assert (read_class_mask((out / "answer-1.png").read_bytes(), job) == indices).all()


def test_redo_brings_the_stroke_back_and_the_eraser_removes_paint(page, tmp_path):
    with preview_site(tmp_path, [scene_image()], LABELS) as (url, _session):
        page.goto(url)
        tool = Tool(page)
        tool.choose("pole")
        tool.stroke([(40, 40), (40, 200)])
        tool.choose("Undo")
        tool.choose("Redo")
        tool.choose("Eraser")
        tool.stroke([(20, 120), (60, 120)])
        tool.submit()
    indices = decode(read_answer(tmp_path, 1)).indices
    pole = ClassMap.from_labels(LABELS).index_of("pole")
    assert (indices[50:100, 40] == pole).all()
    assert (indices[118:123, 40] == 0).all()


def test_an_adjustment_task_starts_from_its_prior_mask(page, tmp_path):
    job = ClassMap.from_labels(LABELS)
    prior = np.zeros((240, 320), dtype=np.uint8)
    prior[:, :160] = job.index_of("road")
    prior[40:100, 200:280] = job.index_of("car")
    with preview_site(tmp_path, [scene_image()], LABELS, priors=[encode_index_png(prior, job)]) as (url, _s):
        page.goto(url)
        tool = Tool(page)
        page.wait_for_function(
            "document.querySelector('crowd-semantic-segmentation').dataset.prior === 'loaded'"
        )
        initial = json.loads(page.locator("crowd-semantic-segmentation").get_attribute("initial-value"))
        assert initial["src"].startswith(url) and set(initial["labelMappings"]) == set(LABELS)
        screenshot(page, "adjustment")
        tool.submit()  # untouched
        page.keyboard.press("Escape")  # closes the answer's dialog
        tool.choose("Eraser")
        tool.choose("Size 12 px")
        tool.stroke([(210, 70), (270, 70)])
        tool.submit()

    untouched = read_answer(tmp_path, 1)["crowd-semantic-segmentation"]
    assert untouched["initialValueModified"] is False
    assert list(untouched)[-1] == "initialValueModified"
    assert set(untouched["labelMappings"]) == {"road", "car"}
    assert (decode({"crowd-semantic-segmentation": untouched}).indices == prior).all()

    edited = read_answer(tmp_path, 2)["crowd-semantic-segmentation"]
    assert edited["initialValueModified"] is True
    indices = decode({"crowd-semantic-segmentation": edited}).indices
    assert (indices[66:75, 212:269] == 0).all()
    assert (indices[40:60, 200:280] == job.index_of("car")).all()
    assert (indices[:, :160] == job.index_of("road")).all()


def test_buttons_are_named_for_tools_and_screen_readers(page, tmp_path):
    with preview_site(tmp_path, [scene_image()], LABELS) as (url, _session):
        page.goto(url)
        tool = Tool(page)
        labels = page.get_by_role("group", name="Labels")
        for name in LABELS:
            assert labels.get_by_role("button", name=name, exact=True).count() == 1
        assert page.get_by_role("button", name="Submit", exact=True).count() == 1
        for name in ("Brush", "Polygon", "Eraser", "Fill", "Move", "Undo", "Redo", "Zoom in", "Zoom out"):
            assert tool.button(name).count() == 1, name
        assert page.get_by_role("slider", name="Brush size").count() == 1
        assert page.get_by_role("slider", name="Mask opacity").count() == 1
        tool.button("Hide mask").click()
        assert tool.button("Hide mask").get_attribute("aria-pressed") == "true"
        assert page.locator("crowd-semantic-segmentation canvas.mask").evaluate("c => c.style.opacity") == "0"
        page.keyboard.press("h")
        assert tool.button("Hide mask").get_attribute("aria-pressed") == "false"
        tool.choose("car")
        assert tool.button("car").get_attribute("aria-pressed") == "true"
        assert tool.button("road").get_attribute("aria-pressed") == "false"
        page.keyboard.press("1")  # the first label's shortcut
        assert tool.button("road").get_attribute("aria-pressed") == "true"
        tool.button("Instructions").click()
        assert page.get_by_role("dialog", name="Segmentation instructions").is_visible()
        assert page.get_by_text("Follow edges closely.").is_visible()  # the template's own words
        screenshot(page, "instructions")


def test_the_label_colours_are_gtseg_s_class_map(page, tmp_path):
    many = [f"class {i}" for i in range(30)]
    with preview_site(tmp_path, [scene_image()], LABELS) as (url, _session):
        page.goto(url)
        Tool(page)
        colors = page.evaluate("labels => window.gtsegStandin.labelColors(labels, null)", many)
        assert colors == list(ClassMap.from_labels(many).colors[1:])
        wanted = {
            "class 3": {"color": "#2CA02C"},
            "class 5": {"color": "#123456"},
            "class 7": {"color": "nope"},
        }
        colors = page.evaluate("([l, w]) => window.gtsegStandin.labelColors(l, w)", [many, wanted])
        flat = {k: v["color"] for k, v in wanted.items()}
        assert colors == list(ClassMap.from_labels(many, flat).colors[1:])


def test_zoomed_in_a_polygon_lands_on_the_pixels_clicked(page, tmp_path):
    with preview_site(tmp_path, [scene_image()], LABELS) as (url, _session):
        page.goto(url)
        tool = Tool(page)
        page.mouse.move(*tool.at(100, 100))
        page.mouse.wheel(0, -400)  # zoom in at the pointer
        zoom = page.evaluate("document.querySelector('crowd-semantic-segmentation')._view.scale")
        assert zoom > 3
        tool.choose("car")
        tool.choose("Polygon")
        for corner in ((80, 80), (120, 80), (120, 120), (80, 120)):
            tool.click(*corner)
        page.keyboard.press("Enter")
        screenshot(page, "zoomed-polygon")
        tool.submit()
    indices = decode(read_answer(tmp_path, 1)).indices
    car = ClassMap.from_labels(LABELS).index_of("car")
    assert (indices[81:120, 81:120] == car).all()
    assert (indices[76:78, 100] == 0).all() and (indices[100, 122:126] == 0).all()
    assert int((indices == car).sum()) == 40 * 40


def test_nothing_reaches_the_network(page, tmp_path):
    template = tmp_path / "cdn-template.liquid.html"
    template.write_text(
        '<link rel="stylesheet" href="https://cdn.example.com/theme.css">\n'
        '<script src="https://cdn.example.com/helpers.js"></script>\n'
        + Path("lambdas/gtseg/templates/semantic-segmentation.liquid.html").read_text()
    )
    elsewhere: list[str] = []

    def guard(route):
        elsewhere.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), guard)
    answered: list[str] = []
    page.on("response", lambda response: answered.append(response.url))
    with preview_site(tmp_path / "out", [scene_image()], LABELS, template=template) as (url, _session):
        page.goto(url)
        Tool(page)
        # the page's Content-Security-Policy stopped the CDN links before any request left
        page.get_by_text("the preview loads nothing from the network").first.wait_for()
        screenshot(page, "blocked")
    assert elsewhere == []
    assert answered and all(r.startswith(url) for r in answered), answered
    assert any(r.endswith("/_gtseg/standin/crowd-html-elements.js") for r in answered)
    assert not any("assets.crowd.aws" in r for r in answered)


def test_gtseg_preview_prints_the_url_and_how_each_answer_decodes(page, tmp_path):
    out = tmp_path / "answers"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "gtseg.cli",
        "preview",
        "--port",
        "0",
        "--exit-after",
        "1",
        "--out",
        str(out),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            first = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+/", first)
            assert match, first
            page.goto(match.group(0))
            tool = Tool(page)
            tool.choose("car")
            tool.stroke([(300, 300), (340, 300)])
            tool.submit()
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert stderr == ""
    assert "answer 1: scene-000.png (640x480)" in stdout
    assert re.search(r"\n\s+car\s+[\d,]+\s+[\d.]+%", stdout)
    assert "unmatched pixels: 0" in stdout
    assert (out / "answer-1.json").is_file() and (out / "answer-1.png").is_file()


def test_simulate_human_waits_for_the_person_and_scores_them(page, tmp_path):
    options = SimulationOptions(
        objects=2, workers=2, profiles=("careful",), seed=5, size=(160, 120), out_dir=tmp_path, human=True
    )
    outcome: dict = {}
    with HumanWorker(port=0) as human:

        def job() -> None:
            try:
                outcome["result"] = run_simulation(options, human=human)
            except BaseException as exc:  # reported by the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=job, daemon=True)
        thread.start()
        page.goto(human.url)
        done_url = ""
        for n in range(2):
            # the next task is a new page: wait until the one just submitted has been left, or the
            # tool would be read while the browser navigates away from it
            page.wait_for_url(lambda url, left=done_url: "/task/" in url and url != left, timeout=60_000)
            page.wait_for_load_state()
            tool = Tool(page)
            tool.choose("road")
            tool.choose("Size 32 px")
            tool.stroke([(20, 110), (140, 110)])
            if n == 0:
                screenshot(page, "human-task")
            done_url = page.url
            tool.submit()
        page.get_by_role("heading", name="The job is over").wait_for(timeout=60_000)
        thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.worker_profiles == ("human", "careful")
    assert result.report.status == "Completed" and result.report.count("labeled") == 2
    rows = {row["profile"]: row for row in result.profile_summary()}
    assert rows["human"]["mean_iou"] is not None and rows["human"]["mean_iou"] < rows["careful"]["mean_iou"]
    responses = sorted((result.job_dir / "annotations" / "worker-response" / "iteration-1").glob("*/*.json"))
    answers = [json.loads(p.read_text())["answers"] for p in responses]
    assert all(a[0]["workerId"].endswith("-human") for a in answers)
    assert all("crowd-semantic-segmentation" in a[0]["answerContent"] for a in answers)


AWS_STYLE_TEMPLATE = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-semantic-segmentation name="annotatedResult" header="Label the animals"
      src="{{ task.input.taskObject | grant_read_access }}" labels="['Cat', 'Dog']">
    <full-instructions header="How to label"><p>Paint each animal.</p></full-instructions>
    <short-instructions><p>Paint the animals.</p></short-instructions>
  </crowd-semantic-segmentation>
  <input type="hidden" name="templateVersion" value="7">
  <label><input type="checkbox" name="blurry"> The picture is blurry</label>
</crowd-form>
<script>
  let attempts = 0;
  document.querySelector("crowd-form").onsubmit = (event) => {
    if (attempts++ === 0) event.preventDefault();  // a template's own check says "not yet"
  };
</script>
"""


def test_a_template_in_aws_s_style_names_its_answer_and_can_refuse_a_submit(page, tmp_path):
    template = tmp_path / "animals.liquid.html"
    template.write_text(AWS_STYLE_TEMPLATE)
    out = tmp_path / "answers"
    with preview_site(out, [scene_image()], ("Cat", "Dog"), template=template) as (url, _session):
        page.goto(url)
        tool = Tool(page)
        # labels='[...]' in single quotes, as AWS's own examples write it, still offers the labels
        assert tool.button("Cat").count() == 1 and tool.button("Dog").count() == 1
        tool.choose("Dog")
        tool.stroke([(100, 100), (140, 100)])
        tool.button("Submit").click()
        page.wait_for_timeout(300)
        assert not out.exists()  # the template's onsubmit prevented it
        page.get_by_role("checkbox", name="The picture is blurry").check()
        tool.submit()
    answer = read_answer(out, 1)
    assert list(answer) == ["annotatedResult", "templateVersion", "blurry"]
    assert answer["templateVersion"] == "7" and answer["blurry"] is True
    assert list(answer["annotatedResult"]["labelMappings"]) == ["Dog"]
    decoded = decode({"crowd-semantic-segmentation": answer["annotatedResult"]}, ("Cat", "Dog"))
    assert decoded.indices[100, 120] == 2
