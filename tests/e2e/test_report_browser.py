"""`gtseg report`'s page in a real browser (Playwright driving Debian's chromium, browser_kit.py):
a simulated job (one spammer, whom the consolidation excludes) -> the report opened from disk ->
layers, colours, sorting, filtering, the worker view and the review selection, whose downloaded
manifest and spec `gtseg launch --dry-run` accepts offline.

Screenshots of each step go to /tmp/gtseg-report-screenshots/.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from browser_kit import chromium, new_page
from PIL import Image

from gtseg.cli import main
from gtseg.local.simulated_job import DATA_BUCKET, SimulationOptions, run_simulation

SCREENSHOTS = Path("/tmp/gtseg-report-screenshots")
PROFILES = ("careful", "average", "sloppy", "spammer")
OBJECTS = 5


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-browser")
    result = run_simulation(
        SimulationOptions(objects=OBJECTS, profiles=PROFILES, size=(320, 240), out_dir=root / "sim", seed=4)
    )
    job = result.job_dir
    out = root / "report" / "report.html"
    code = main(
        ["report", str(job / "manifests" / "output" / "output.manifest"), "--out", str(out), "--quiet",
         "--map", f"{result.report.job_prefix}={job}", "--map", f"s3://{DATA_BUCKET}={result.input_dir}"]
    )  # fmt: skip
    assert code == 0
    return out


def rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#object-table tbody tr",
        "trs => trs.map(tr => ({id: tr.dataset.objectId, hidden: tr.hidden, confidence: tr.dataset.confidence,"
        " picked: tr.querySelector('input.pick').checked}))",
    )


def legend_colors(page) -> set[tuple[int, int, int]]:
    styles = page.eval_on_selector_all(
        "#viewer-legend .swatch", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    return {tuple(int(v) for v in s[s.index("(") + 1 : -1].split(",")[:3]) for s in styles}


def test_the_report_page_in_a_browser(report, tmp_path):
    with chromium() as browser, new_page(browser) as page:
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.context.set_offline(True)  # the page needs no network
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        shot(page, "01-summary")
        assert page.locator("#summary").is_visible()
        assert len(rows(page)) == OBJECTS

        # ---------------------------------------------------------------- the viewer and its layers
        # an object on which the consolidation excluded a worker (the spammer, on most objects)
        target, excluded_k = page.evaluate(
            "() => { const data = JSON.parse(document.getElementById('report-data').textContent);"
            " for (const o of data.objects) { const k = o.workers.findIndex(w => w.excluded);"
            " if (k >= 0) return [o.id, k + 1]; } return [null, 0]; }"
        )
        assert target is not None, "the consolidation excluded nobody, not even the spammer"
        page.locator(f"#object-{target}").click()
        viewer = page.locator("#viewer")
        assert viewer.is_visible()
        layer = page.locator("#viewer-layer")
        page.wait_for_function("() => document.getElementById('viewer-layer').complete")
        assert layer.get_attribute("src").endswith("-mask.png")
        assert page.get_by_role("button", name="Consolidated").get_attribute("aria-pressed") == "true"
        shot(page, "02-viewer-consolidated")
        # what the user sees is the legend's colours: most painted pixels are exactly a class colour
        picture = np.asarray(Image.open(io.BytesIO(layer.screenshot())).convert("RGB")).reshape(-1, 3)
        colors = legend_colors(page)
        assert len(colors) >= 4
        exact = np.zeros(len(picture), dtype=bool)
        for color in colors:
            exact |= (picture == np.array(color)).all(axis=1)
        assert exact.mean() > 0.4, f"only {exact.mean():.0%} of the pixels show a legend colour"

        page.get_by_role("button", name="Worker 1", exact=True).click()
        assert layer.get_attribute("src").endswith("-worker-1.png")
        assert "painted" in page.locator("#viewer-caption").inner_text()
        excluded = page.get_by_role("button", name=f"Worker {excluded_k} (excluded)")
        assert excluded.count() == 1  # an excluded worker's own mask can be looked at
        excluded.click()
        assert "excluded from the consensus" in page.locator("#viewer-caption").inner_text()
        shot(page, "03-viewer-spammer")
        page.get_by_role("button", name="Disagreement", exact=True).click()
        assert layer.get_attribute("src").endswith("-disagreement.png")
        assert page.locator("#viewer-legend .scale").is_visible()
        assert "trusted workers" in page.locator("#viewer-caption").inner_text()
        shot(page, "04-viewer-disagreement")
        first = page.locator("#viewer-title").inner_text()
        page.keyboard.press("ArrowRight")
        assert page.locator("#viewer-title").inner_text() != first
        assert (
            page.get_by_role("button", name="Disagreement", exact=True).get_attribute("aria-pressed")
            == "true"
        )
        page.keyboard.press("Escape")
        assert not viewer.is_visible()

        # ---------------------------------------------------------------- sorting and filtering
        page.locator("th[data-sort=confidence] button").click()
        values = [float(r["confidence"]) for r in rows(page) if r["confidence"]]
        assert values == sorted(values) and len(values) == OBJECTS
        page.locator("th[data-sort=confidence] button").click()
        values = [float(r["confidence"]) for r in rows(page) if r["confidence"]]
        assert values == sorted(values, reverse=True)
        assert page.locator("th[data-sort=confidence]").get_attribute("aria-sort") == "descending"
        page.fill("#filter-text", "scene-002")
        assert [r["id"] for r in rows(page) if not r["hidden"]] == ["2"]
        assert page.locator("#shown-count").inner_text() == f"1 of {OBJECTS} objects shown"
        page.fill("#filter-text", "")
        page.fill("#threshold", "0")
        page.check("#filter-below")
        assert all(r["hidden"] for r in rows(page))  # nothing is below a confidence of 0
        page.uncheck("#filter-below")
        assert not any(r["hidden"] for r in rows(page))
        shot(page, "05-objects-sorted")

        # ---------------------------------------------------------------- one worker's masks
        page.locator("tr[data-worker-id$=spammer] button.show-worker").click()
        tiles = page.locator("#worker-view .tile")
        assert tiles.count() == OBJECTS
        assert "excluded from the consensus on" in page.locator("#worker-view-summary").inner_text()
        shot(page, "06-worker-view")

        # ---------------------------------------------------------------- the review selection
        page.fill("#threshold", "1")
        page.get_by_role("button", name="Select objects below the threshold").click()
        assert sum(r["picked"] for r in rows(page)) == OBJECTS
        page.locator("#object-table tbody tr input.pick").first.uncheck()
        assert page.locator("#selected-count").inner_text() == f"{OBJECTS - 1} objects selected"
        page.fill("#spec-job-name", "street-review-1")
        page.locator("#review").scroll_into_view_if_needed()
        shot(page, "07-review")
        with page.expect_download() as got:
            page.get_by_role("button", name="Download manifest").click()
        manifest = tmp_path / "s3-copy" / got.value.suggested_filename
        manifest.parent.mkdir()
        got.value.save_as(manifest)
        with page.expect_download() as got:
            page.get_by_role("button", name="Download job spec").click()
        spec_path = tmp_path / got.value.suggested_filename
        got.value.save_as(spec_path)
        assert console_errors == []

    assert manifest.name == "street-review-1.manifest" and spec_path.name == "street-review-1.json"
    lines = [json.loads(t) for t in manifest.read_text().splitlines()]
    assert len(lines) == OBJECTS - 1 and all("source-ref" in line for line in lines)
    spec = json.loads(spec_path.read_text())
    assert spec["jobName"] == "street-review-1" and spec["labelAttributeName"] == "street-review-1-ref"
    uri = spec["prior"]["manifestUri"]
    assert uri.endswith("/review/street-review-1.manifest")
    folder = uri.rsplit("/", 1)[0]
    assert main(["launch", str(spec_path), "--dry-run", "--map", f"{folder}={manifest.parent}"]) == 0
