"""Speed and memory of one 1920x1080 object.

Speed: the consolidation handler end to end (in-process, S3 via moto) as a ratio over the floor
measured in the same run: Pillow decoding the K worker PNGs plus encoding one output PNG (palette,
Pillow's default compression). Best of N for both.

Memory: peak resident memory of decoding + consolidating + encoding that object, above the resident
memory just before (inputs loaded, imports done), in a fresh subprocess, per pixel per worker. The
kernel's peak mark is reset first (/proc/self/clear_refs), so loading the inputs does not count.

Scenarios: the objects the error models paint (clean crowds of K), so a speed-up that relies on
one simulator's few distinct label tuples shows up as a worse ratio on another.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from bench import gtseg_adapter, models, scenes
from bench.crowds import crowd

WIDTH, HEIGHT = 1920, 1080
SCENARIOS: tuple[tuple[str, str], ...] = (
    ("polygon", "sim-streets"),
    ("object", "streets13"),
    ("boundary", "streets13"),
)


@dataclass(frozen=True)
class BigObject:
    model: str
    family: str
    k: int
    labels: tuple[str, ...]
    masks: list[np.ndarray]
    contents: list[dict[str, Any]]
    pngs: list[bytes]


def big_object(model: str, family: str, k: int) -> BigObject:
    scene = scenes.make(family, 7, (WIDTH, HEIGHT))
    masks = []
    for slot, profile in enumerate(crowd(k, 0).profiles):
        rng = np.random.default_rng(scenes.stable_seed("perf", model, family, slot, profile))
        masks.append(models.make_worker(model, profile, rng).paint(scene, rng))
    contents = [gtseg_adapter.worker_answer_content(m, scene.labels) for m in masks]
    return BigObject(
        model, family, k, scene.labels, masks, contents, [gtseg_adapter.png_of(c) for c in contents]
    )


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def floor_fn(obj: BigObject) -> Callable[[], None]:
    palette = np.random.default_rng(0).integers(0, 256, 768).tolist()

    def floor() -> None:
        for png in obj.pngs:
            Image.open(io.BytesIO(png)).load()
        image = Image.fromarray(obj.masks[0])
        image.putpalette(palette)
        image.save(io.BytesIO(), format="PNG")

    return floor


def speed(ks: Sequence[int], repeats: int, scenarios: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = []
    for model, family in scenarios:
        for k in ks:
            obj = big_object(model, family, k)
            run, close = gtseg_adapter.handler_runner(obj.labels, obj.contents)
            try:
                run()  # warm: imports, clients, moto
                t_handler = best_of(run, repeats)
            finally:
                close()
            t_floor = best_of(floor_fn(obj), repeats)
            rows.append(
                {
                    "model": model,
                    "family": family,
                    "k": k,
                    "floor_s": t_floor,
                    "handler_s": t_handler,
                    "ratio": t_handler / t_floor,
                    "png_mb": sum(len(p) for p in obj.pngs) / 1e6,
                }
            )
    return rows


def memory(ks: Sequence[int], scenarios: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = []
    for model, family in scenarios:
        for k in ks:
            obj = big_object(model, family, k)
            answers = []
            for content in obj.contents:
                (element,) = content.values()
                answers.append(
                    {"png": element["labeledImage"]["pngImageData"], "mappings": element["labelMappings"]}
                )
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
                json.dump({"labels": list(obj.labels), "size": [WIDTH, HEIGHT], "answers": answers}, fh)
                spec_path = fh.name
            try:
                child = subprocess.run(
                    [sys.executable, "-c", gtseg_adapter.MEMORY_CHILD, gtseg_adapter.gtseg_path(), spec_path],
                    capture_output=True,
                    text=True,
                )
            finally:
                os.unlink(spec_path)
            if child.returncode != 0:
                raise RuntimeError(f"memory subprocess failed: {child.stderr.strip().splitlines()[-1:]}")
            out = child.stdout
            figures = json.loads(out.strip().splitlines()[-1])
            used = figures["peak"] - max(figures["baseline"], 0)
            rows.append(
                {
                    "model": model,
                    "family": family,
                    "k": k,
                    "peak_above_baseline_mb": used / 1e6,
                    "bytes_per_pixel_per_worker": used / (WIDTH * HEIGHT * k),
                    "peak_reset": bool(figures.get("peak_reset")),
                }
            )
    return rows


def speed_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        f"\n== Speed: one {WIDTH}x{HEIGHT} object, handler end to end (S3 via moto) over the decode/encode floor"
    ]
    out.append(
        f"  {'model/family':22s} {'K':>2s} {'floor ms':>9s} {'handler ms':>11s} {'ratio':>7s}  worker PNGs"
    )
    for r in rows:
        out.append(
            f"  {r['model'] + '/' + r['family']:22s} {r['k']:2d} {r['floor_s'] * 1000:9.1f} "
            f"{r['handler_s'] * 1000:11.1f} {r['ratio']:6.2f}x  {r['png_mb']:.2f} MB"
        )
    return out


def memory_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        f"\n== Memory: peak above the resident memory before, fresh subprocess, one {WIDTH}x{HEIGHT} object"
    ]
    for r in rows:
        out.append(
            f"  {r['model'] + '/' + r['family']:22s} K={r['k']}: {r['peak_above_baseline_mb']:7.1f} MB = "
            f"{r['bytes_per_pixel_per_worker']:5.1f} bytes/pixel/worker"
            + ("" if r.get("peak_reset") else "  (peak since process start: no /proc/self/clear_refs)")
        )
    return out
