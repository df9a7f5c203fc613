"""The demo, shortened (fewer images and shelves, 160 px classifier, a 25 s pass), end to end through the
embedded amqtt broker: generate -> shelfscan-train (classifier, facing detector) -> shelfscan-convert (both
int8) -> dense shelf pass -> agent in detect_classify -> live subscriber -> facings and gaps vs the truth.

CI uses the shared ImageNet MobileNetV2 weights for both models: about 3 minutes on 2 cores. The default
`make demo` (InceptionV3, random weights offline) takes longer and is timed by hand (docs/demo.md)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo import weights as demo_weights
from demo.data import held_out, product_tree
from demo.live import facing_line, gap_line
from demo.products import BACKGROUND, CATALOGUE, generate
from demo.run import agent_config
from demo.score import match_gaps, problems, score, table
from demo.weights import SHARED_MOBILENET, random_weights_banner, resolve_weights
from edge.config import load_config

REPO = Path(__file__).resolve().parent.parent


def test_quick_demo_counts_facings_and_gaps_against_the_truth(tmp_path, shared):
    weights = shared / SHARED_MOBILENET
    work = tmp_path / "demo"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MQTT_URL", "DATA", "WEIGHTS", "DETECTOR_WEIGHTS", "BACKBONE", "INPUT_SIZE")
    }
    cmd = [
        sys.executable,
        "-m",
        "demo",
        "--quick",
        "--work",
        str(work),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(weights),
        "--detector-weights",
        str(weights),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=540, env=env)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-4000:]}\n{proc.stderr[-3000:]}"
    truth = json.loads((work / "video" / "shelf.json").read_text())
    summary = json.loads((work / "summary.json").read_text())
    # a dense shelf: two rows, runs of touching identical facings, empty slots
    assert truth["totals"]["rows"] == 2 and sum(truth["totals"]["facings"].values()) >= 20
    assert summary["ok"] and not summary["problems"]
    assert summary["counts"]["error_share"] <= 0.05
    assert summary["gaps"]["found_share"] >= 0.9 and summary["gaps"]["false"] <= 1
    assert summary["truth"] == truth["totals"]
    assert summary["detector_ap50"] > 0.8, summary["detector_ap50"]
    ev = summary["evidence"]  # every unknown facing has its crop and frame on the robot
    assert ev["unknown_facings"] == summary["counted"].get("unknown", 0) and ev["missing_tracks"] == []
    # the printed table says the same, label by label
    for label, v in summary["counts"]["per_label"].items():
        mark = "ok" if v["counted"] == v["truth"] else f"{v['counted'] - v['truth']:+d}"
        assert re.search(rf"^\s+{label}\s+{v['truth']}\s+{v['counted']}\s+{re.escape(mark)}$", out, re.M), out[-3000:]
    g = summary["gaps"]
    assert re.search(rf"gaps: truth {g['truth']}, reported {g['reported']}, found {g['found']} = .*: ok$", out, re.M)
    assert "counts and gaps meet the bar: yes" in out
    assert "embedded amqtt broker on 127.0.0.1:" in out
    assert "RANDOM weights" not in out
    # every facing and gap was printed live as it arrived
    assert len(re.findall(r"\] facing #", out)) == sum(summary["counted"].values())
    assert len(re.findall(r"\] gap +#", out)) == g["reported"] == summary["agent_gaps"]
    assert 'pipeline = "detect_classify"' in (work / "agent.toml").read_text()
    outputs = [
        "run/report.html",
        "detector-run/report.html",
        "bundles/demo-int8/manifest.json",
        "scan.json",
        "detector-bundles/demo-facings-int8/manifest.json",
        "shelfmap.png",
        "shelfmap.json",
    ]
    assert [p for p in outputs if not (work / p).is_file()] == []


def test_random_weights_banner_says_what_to_expect_and_how_to_fix_it():
    text = random_weights_banner("inception_v3", real_data=False)
    assert "RANDOM weights" in text and "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in text
    assert "WEIGHTS=" in text and "%" in text
    assert "chance" in random_weights_banner("inception_v3", real_data=True)
    detector = random_weights_banner("mobilenet_v2", real_data=False, role="detector")
    assert "detector" in detector and "DETECTOR_WEIGHTS=" in detector and str(SHARED_MOBILENET) in detector


def test_weights_imagenet_then_the_shared_file_then_none(tmp_path, monkeypatch):
    assert resolve_weights("/some/file.h5", "inception_v3") == "/some/file.h5"
    monkeypatch.setattr(demo_weights, "download_host_answers", lambda: False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("SHELFSCAN_SHARED", str(tmp_path / "shared"))
    assert resolve_weights(None, "mobilenet_v2") == "none"
    shared = tmp_path / "shared" / SHARED_MOBILENET
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"weights")
    assert resolve_weights(None, "mobilenet_v2") == str(shared.resolve())
    assert resolve_weights(None, "inception_v3") == "none"  # the shared file is a MobileNetV2
    cache = tmp_path / "keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"weights")
    assert resolve_weights(None, "mobilenet_v2") == "imagenet"


def test_products_for_the_detector_and_the_pass_leave_out_background(tmp_path):
    written = generate(tmp_path / "data", {"train": 2, "test": 2}, size=64, seed=3)
    n_classes = len(CATALOGUE) + 1
    assert written == {"test": 2 * n_classes, "train": 2 * n_classes}
    assert {d.name for d in (tmp_path / "data" / "train").iterdir()} == {p.name for p in CATALOGUE} | {BACKGROUND}
    tree = product_tree(tmp_path / "data", tmp_path / "facings")
    for split in ("train", "test"):
        assert {d.name for d in (tree / split).iterdir()} == {p.name for p in CATALOGUE}
        assert len(list((tree / split / CATALOGUE[0].name).glob("*.jpg"))) == 2
    assert not (tree / "val").exists()
    assert set(held_out(tmp_path / "data")) == {p.name for p in CATALOGUE}


def test_agent_config_is_a_valid_detect_classify_config(tmp_path):
    path = tmp_path / "agent.toml"
    agent_config(
        path, tmp_path / "clf", tmp_path / "det", tmp_path / "v.mp4", tmp_path / "state", "127.0.0.1", 1883, 10.0
    )
    cfg = load_config(path)
    assert cfg.inference.pipeline == "detect_classify" and cfg.model.detector == tmp_path / "det"
    assert cfg.inference.ignore_labels == [BACKGROUND] and cfg.source.fps == 10.0


# A shelf pass's truth, reduced to what scoring reads: two frames (the second zoomed 2x), two rows with a gap each.
TRUTH = {
    "width": 640,
    "height": 480,
    "camera": [{"x": 100.0, "y": 0.0, "zoom": 1.0}, {"x": 300.0, "y": 0.0, "zoom": 2.0}],
    "rows": [
        {"row": 0, "facings": [], "gaps": [{"box": [200.0, 0.0, 260.0, 100.0]}]},
        {"row": 1, "facings": [], "gaps": [{"box": [400.0, 100.0, 470.0, 200.0]}]},
    ],
    "totals": {"facings": {"milk": 10, "tea": 10}, "gaps": 2, "rows": 2},
}
# Counted facings in frame pixels: 1 and 2 flank row 0's gap (frame 0), 3 and 4 row 1's (frame 1, zoom 2).
FACINGS = [
    {"track_id": 1, "frame_index": 0, "box": [40, 10, 100, 90]},  # canvas 140..200
    {"track_id": 2, "frame_index": 0, "box": [160, 10, 220, 90]},  # canvas 260..320
    {"track_id": 3, "frame_index": 1, "box": [100, 210, 200, 390]},  # canvas 350..400, y 105..195
    {"track_id": 4, "frame_index": 1, "box": [340, 210, 440, 390]},  # canvas 470..520
]


def gap(left: int, right: int) -> dict:
    return {"left_track": left, "right_track": right}


def test_gaps_are_found_by_their_place_on_the_shelf():
    assert match_gaps(TRUTH, [gap(1, 2), gap(3, 4)], FACINGS) == {
        "truth": 2,
        "reported": 2,
        "found": 2,
        "false": 0,
        "found_share": 1.0,
    }
    # reported twice, a neighbour never counted, or between the wrong facings: false
    got = match_gaps(TRUTH, [gap(1, 2), gap(1, 2), gap(1, 99), gap(2, 3)], FACINGS)
    assert (got["found"], got["false"], got["found_share"]) == (1, 3, 0.5)


def test_score_table_and_problems():
    result = score(TRUTH, {"milk": 10, "tea": 9, "unknown": 1}, FACINGS, [gap(1, 2), gap(3, 4)])
    assert result["ok"] and result["counts"]["abs_error"] == 1  # 5 % of 20 facings: just within the bar
    text = table(result)
    assert re.search(r"^\s+milk\s+10\s+10\s+ok$", text, re.M) and re.search(r"^\s+tea\s+10\s+9\s+-1$", text, re.M)
    assert re.search(r"^\s+unknown\s+1\s", text, re.M) and re.search(r"^\s+total\s+20\s+20$", text, re.M)
    assert "5.0 % of the true facings (at most 5 %): ok" in text
    assert "found 2 = 100 % (at least 90 %), false 0 (at most 1): ok" in text
    bad = score(TRUTH, {"milk": 12, "tea": 9}, FACINGS, [gap(1, 2), gap(1, 2), gap(2, 3)])
    assert not bad["ok"] and bad["problems"] == problems(bad)
    assert [p.split(" ")[0] for p in bad["problems"]] == ["count", "1", "2"]
    assert "milk 12 of 10, tea 9 of 10" in bad["problems"][0]
    assert "TOO MANY" in table(bad) and "OFF" in table(bad)


def test_evidence_check_finds_unknown_facings_without_their_images(tmp_path):
    from demo.score import check_evidence

    (tmp_path / "t3-crop.jpg").write_bytes(b"jpeg bytes")
    good = {"name": "t3-crop.jpg", "sha256": hashlib.sha256(b"jpeg bytes").hexdigest()}
    tracks = ((3, "unknown"), (4, "unknown"), (5, "milk"), (6, "unknown"))
    facings = [{"scan_id": "s", "track_id": t, "label": label} for t, label in tracks]
    evidence = [
        {"scan_id": "s", "track_id": 3, "files": [good]},
        {"scan_id": "s", "track_id": 6, "files": [{**good, "sha256": "0" * 64}]},
    ]
    ev = check_evidence(facings, evidence, tmp_path)
    assert ev == {"unknown_facings": 3, "with_evidence": 1, "missing_tracks": [4, 6]}
    result = score(TRUTH, {"milk": 10, "tea": 10}, FACINGS, [gap(1, 2), gap(3, 4)], ev)
    assert not result["ok"] and "2 of 3 unknown facings have no evidence image" in result["problems"][0]
    assert "evidence: 1 of 3 unknown facings have their crop and frame on the robot: MISSING" in table(result)


def test_live_lines():
    facing = {"row": 1, "label": "milk_carton", "score": 0.87, "how": "line"}
    assert re.fullmatch(r"facing #3 +row 1  milk_carton +score 0\.87  crossed the line", facing_line(3, facing))
    g = {"row": 0, "width_facings": 1.23, "left_label": "cola_can", "right_label": "tea_box"}
    assert gap_line(2, g) == "gap    #2   row 0  1.2 facings wide, between cola_can and tea_box"


@pytest.mark.parametrize("how", ["edge", "end"])
def test_live_facing_line_says_how_it_counted(how):
    assert facing_line(1, {"row": 0, "label": "x", "score": 0.5, "how": how}).endswith(
        {"edge": "behind the line", "end": "at scan end"}[how]
    )
