"""LiteRT's banner goes through logging: absent by default, shown with -v (a real subprocess)."""

from __future__ import annotations

from tests.conftest import run_cli

BANNER = "Created TensorFlow Lite XNNPACK delegate"


def _classify(reference, *flags: str):
    return run_cli(
        *flags,
        "classify",
        str(reference / "samples" / "coffee.png"),
        "--model",
        str(reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        check=True,
    )


def test_litert_banner_is_logged_not_printed(reference):
    quiet = _classify(reference)
    assert "espresso" in quiet.stdout
    assert BANNER not in quiet.stderr and BANNER not in quiet.stdout
    verbose = _classify(reference, "-v")
    assert any(BANNER in line and "edge.litert" in line for line in verbose.stderr.splitlines()), verbose.stderr
