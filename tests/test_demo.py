"""The demo, shortened (fewer images, 128 px input, fewer products), end to end through the
embedded amqtt broker: generate -> shelfscan-train -> shelfscan-convert -> video -> agent ->
live subscriber. Its printed counts must match the video's truth.

CI uses the shared ImageNet MobileNetV2 weights: a 1-minute run on real features. The default
`make demo` (InceptionV3, random weights offline) takes minutes and is timed by hand."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from demo.live import counts_table
from demo.products import BACKGROUND, CATALOGUE, generate
from demo.run import random_weights_banner, resolve_weights
from demo.shelf_video import VideoSpec, pick_items, render

REPO = Path(__file__).resolve().parent.parent


def test_quick_demo_counts_match_the_truth(tmp_path, shared):
    weights = shared / "models/mobilenet_v2_1.0_224_imagenet/mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
    env = {k: v for k, v in os.environ.items() if k not in ("MQTT_URL", "DATA", "WEIGHTS", "BACKBONE", "INPUT_SIZE")}
    cmd = [sys.executable, "-m", "demo", "--quick", "--work", str(tmp_path / "demo"), "--backbone", "mobilenet_v2",
           "--weights", str(weights)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-4000:]}\n{proc.stderr[-3000:]}"
    truth = json.loads((tmp_path / "demo" / "video" / "shelf.json").read_text())
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["counts_match"] and summary["counted"] == truth["counts"]
    # the printed table says the same, class by class
    for label, n in truth["counts"].items():
        assert re.search(rf"^\s+{label}\s+{n}\s+{n}\s+ok$", out, re.M), out[-3000:]
    assert "counts match the truth: yes" in out
    assert "embedded amqtt broker on 127.0.0.1:" in out
    assert "RANDOM weights" not in out
    assert out.count("sighting #") == sum(truth["counts"].values())
    assert (tmp_path / "demo" / "run" / "report.html").is_file()
    assert (tmp_path / "demo" / "bundles" / "demo-int8" / "manifest.json").is_file()


def test_random_weights_banner_says_what_to_expect_and_how_to_fix_it():
    text = random_weights_banner("inception_v3", real_data=False)
    assert "RANDOM weights" in text and "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in text
    assert "WEIGHTS=" in text and "%" in text
    assert "chance" in random_weights_banner("inception_v3", real_data=True)
    assert resolve_weights("/some/file.h5", "inception_v3") == "/some/file.h5"


def test_counts_table_flags_mismatches():
    table, ok = counts_table({"milk": 2, "tea": 1}, {"milk": 2, "cola": 1})
    assert not ok
    assert re.search(r"tea\s+1\s+0\s+MISMATCH", table) and re.search(r"cola\s+0\s+1\s+MISMATCH", table)
    assert counts_table({"milk": 2}, {"milk": 2})[1]


def test_generated_data_and_video_truth(tmp_path):
    written = generate(tmp_path / "data", {"train": 2, "test": 2}, size=64, seed=3)
    n_classes = len(CATALOGUE) + 1
    assert written == {"test": 2 * n_classes, "train": 2 * n_classes}
    assert {d.name for d in (tmp_path / "data" / "train").iterdir()} == {p.name for p in CATALOGUE} | {BACKGROUND}
    held = {p.name: sorted((tmp_path / "data" / "test" / p.name).glob("*.jpg")) for p in CATALOGUE}
    items = pick_items(held, 10, seed=1)
    order = [c for c, _ in items]
    assert len(order) == 10 and set(order) == set(held)  # every class at least once
    assert any(a == b for a, b in itertools.pairwise(order))  # a same-class neighbour pair
    spec = VideoSpec(width=160, height=120, photo=100, gap=180, step=20, fps=10)
    truth = render(items, tmp_path / "v" / "shelf.mp4", spec)
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "v" / "shelf.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == truth["frames"] > 0
    assert sum(truth["counts"].values()) == 10
    assert json.loads((tmp_path / "v" / "shelf.json").read_text())["order"] == order
    # between two products the camera sees only shelf for at least one frame
    assert spec.gap - spec.width >= spec.step
    assert np.isfinite(truth["fps"])
