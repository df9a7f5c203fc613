"""shelfscan-agent bench: statistics, the recommendation rule, report schema, --publish."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import jsonschema
import numpy as np
import pytest

from edge.bench import recommend, summarize
from edge.bundle import write_bundle
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec
from tests.broker import Broker
from tests.conftest import REPO
from tests.mqtt_helpers import SCHEMAS, Subscriber, agent_config


def test_summarize_known_samples():
    s = summarize([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (s["min"], s["max"], s["n"]) == (1.0, 100.0, 100)
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5) and s["std"] == pytest.approx(np.std(np.arange(1, 101)), rel=1e-4)
    assert summarize([0.002])["p99"] == 2.0
    with pytest.raises(ValueError):
        summarize([])


def row(name: str, p50: float, top1: float | None) -> dict:
    return {"bundle": name, "variant": name, "threads": 1, "top1": top1, "stages": {"total": {"p50": p50}}}


def test_recommendation_rule():
    rows = [row("fp32", 30, 0.90), row("int8", 10, 0.895), row("broken", 5, 0.70), row("fp16", 25, 0.90)]
    assert recommend(rows, 1.0)["bundle"] == "int8"  # fastest within one point of the best
    assert recommend(rows, 0.1)["bundle"] == "fp16"  # int8 lost 0.5 points: too much at 0.1
    assert recommend(rows, 30)["bundle"] == "broken"
    assert recommend([row("a", 3, None), row("b", 2, None)], 1.0)["bundle"] == "b"  # speed alone
    assert recommend([], 1.0) is None


@pytest.fixture(scope="module")
def bundles(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("benchbundles")
    labels = read_labels(tiny_models["labels"])
    for name in ("float_softmax", "int8"):
        write_bundle(
            root / name,
            tiny_models[name],
            labels,
            PreprocessSpec(height=16, width=16),
            name="tiny",
            version="1",
            backbone="tiny",
            variant=name,
        )
    evaluation = root.parent / "eval"
    rng = np.random.default_rng(0)
    for label in labels:
        (evaluation / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(evaluation / label / f"{i}.png"), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    return root, evaluation


def test_report_structure_and_schema(bundles):
    root, evaluation = bundles
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "bench",
            str(root),
            "--threads",
            "1,2",
            "--runs",
            "5",
            "--warmup",
            "1",
            "--eval",
            str(evaluation),
            "--compare-raw",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "bench.schema.json").read_text()))
    assert len(doc["results"]) == 4 and {r["threads"] for r in doc["results"]} == {1, 2}
    for r in doc["results"]:
        assert all(r["stages"][s]["n"] == 5 for s in r["stages"])
        assert r["stages"]["total"]["p50"] >= r["stages"]["invoke"]["p50"] > 0
        assert 0 <= r["top1"] <= 1 and r["invoke_vs_raw"] > 0 and r["runtime"]["package"] == "ai_edge_litert"
    rec = doc["recommendation"]
    assert rec["variant"] in {"float_softmax", "int8"} and rec["threads"] in (1, 2)
    table = subprocess.run(
        [sys.executable, "-m", "edge.cli", "bench", str(root / "int8"), "--runs", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    ).stdout
    assert "recommendation: int8" in table and "p99" in table


def test_publish_to_broker(bundles, tmp_path):
    root, _ = bundles
    broker = Broker(tmp_path / "broker").start()
    try:
        sub = Subscriber(broker.port, "test/robot-1/bench", persistent=False)
        cfg = agent_config(tmp_path, broker.port, root / "int8", 'kind = "camera"\ncamera = 0')
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge.cli",
                "bench",
                str(root / "int8"),
                "--runs",
                "3",
                "--publish",
                "--config",
                str(cfg),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert sub.wait_for(lambda s: len(s.of("bench")) == 1, 10)
        doc = sub.of("bench")[0]
        assert doc["schema"] == "shelfscan.bench" and doc["device_id"] == "robot-1"
        jsonschema.validate(doc, json.loads((SCHEMAS / "bench.schema.json").read_text()))
        sub.close()
    finally:
        broker.stop()


def test_unwritable_report_is_refused_before_benchmarking(bundles, tmp_path):
    from tests.conftest import run_cli

    root, _ = bundles
    proc = run_cli("bench", str(root / "int8"), "--runs", "100000", "--out", str(tmp_path / "no" / "r.json"))
    assert proc.returncode == 2  # at once: --runs 100000 would take minutes
    assert proc.stderr.strip().splitlines() == [
        f"shelfscan-agent bench: error: --out {tmp_path}/no/r.json: folder {tmp_path}/no does not exist"
    ]


def test_a_bundle_behind_the_current_link_is_benchmarked_once(bundles, tmp_path):
    from edge.bench import bundles_in

    root, _ = bundles
    (root / "current").symlink_to(root / "int8")
    try:
        assert bundles_in([str(root)]) == [root / "float_softmax", root / "int8"]
        assert bundles_in([str(root / "current"), str(root)]) == [root / "current", root / "float_softmax"]
    finally:
        (root / "current").unlink()


def test_top_k_accuracy_counts_ties_by_rank_and_empty_sets():
    from trainer.metrics import top_k_accuracy

    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    y = np.array([2, 0, 1])
    assert top_k_accuracy(probs, y, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(probs, y, 2) == pytest.approx(2 / 3)  # row 3: the tie at 0.2 goes to class 0
    assert top_k_accuracy(probs, y, 5) == 1.0  # k beyond the classes: all of them
    assert top_k_accuracy(probs[:0], y[:0], 5) == 0.0
