"""edge/ runs on devices without TensorFlow: proven in subprocesses where it cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def blocked_env(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment where importing ``modules`` raises ImportError, like a device without them."""
    for name in modules:
        pkg = tmp_path / "blockers" / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    env = {k: v for k, v in os.environ.items() if k != "SHELFSCAN_RUNTIME"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "blockers"), str(REPO)])
    return env


def test_import_edge_without_tensorflow(tmp_path):
    code = (
        "import sys, importlib\n"
        "try:\n    import tensorflow\n    raise SystemExit('tensorflow imported')\nexcept ImportError: pass\n"
        "for m in ['edge', 'edge.bundle', 'edge.manifest', 'edge.preprocess', 'edge.runtime', 'edge.adapters',\n"
        "          'edge.evaluate', 'edge.cli', 'edge.classify_cli', 'edge.resample', 'edge.sysinfo',\n"
        "          'edge.detections', 'edge.detect_decode', 'edge.detector', 'edge.detection_metrics',\n"
        "          'edge.detect_cli', 'edge.motion', 'edge.tracking', 'edge.shelf_counter', 'edge.pipelines',\n"
        "          'edge.facing_pipeline', 'edge.agent', 'edge.agent_setup', 'edge.shelfmap_cli',\n"
        "          'edge.interpreter', 'edge.images', 'edge.cli_args']:\n"
        "    importlib.import_module(m)\n"
        "assert 'tensorflow' not in sys.modules or sys.modules['tensorflow'] is None\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=blocked_env(tmp_path, "tensorflow"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_agent_help_and_classify_without_tensorflow(tmp_path, reference):
    env = blocked_env(tmp_path, "tensorflow")
    agent = [sys.executable, "-m", "edge.cli"]
    help_ = subprocess.run([*agent, "--help"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert help_.returncode == 0 and "classify" in help_.stdout, help_.stderr
    proc = subprocess.run(
        [
            *agent,
            "classify",
            str(reference / "samples" / "coffee.png"),
            "--model",
            str(reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
            "--labels",
            str(reference / "imagenet_labels.txt"),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runtime"]["package"] == "ai_edge_litert"
    assert doc["results"][0]["top_k"][0]["label"] == "espresso"


def test_console_script_help_without_tensorflow(tmp_path):
    script = Path(sys.executable).parent / "shelfscan-agent"
    proc = subprocess.run(
        [str(script), "--help"], env=blocked_env(tmp_path, "tensorflow"), capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0 and "shelfscan-agent" in proc.stdout, proc.stderr


def test_runtime_falls_back_to_tf_lite_when_litert_missing(tmp_path, reference):
    """Order: ai_edge_litert, then tflite_runtime (absent here), then tf.lite; same answers."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "classify",
            str(reference / "samples" / "coffee.png"),
            "--model",
            str(reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
            "--labels",
            str(reference / "imagenet_labels.txt"),
            "--json",
        ],
        env=blocked_env(tmp_path, "ai_edge_litert", "tflite_runtime"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runtime"]["package"] == "tensorflow"
    top = doc["results"][0]["top_k"][0]
    assert top["label"] == "espresso" and abs(top["score"] - 0.82) <= 0.03


def test_no_runtime_at_all_is_one_clear_error(tmp_path, reference):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "classify",
            str(reference / "samples" / "coffee.png"),
            "--model",
            str(reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
            "--labels",
            str(reference / "imagenet_labels.txt"),
        ],
        env=blocked_env(tmp_path, "ai_edge_litert", "tflite_runtime", "tensorflow"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "no TFLite runtime could be imported" in lines[0]
        and "pip install ai-edge-litert" in lines[0]
    )
