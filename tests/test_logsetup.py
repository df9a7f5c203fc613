"""-v/-q anywhere on the command line, the same meaning in every command."""

from __future__ import annotations

import logging

import pytest

from edge.logsetup import configure_logging, pop_verbosity
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("argv", "change", "rest"),
    [
        (["run", "-v"], 1, ["run"]),
        (["-vv", "bench", "--json"], 2, ["bench", "--json"]),
        (["classify", "--verbose", "x.png", "-q"], 0, ["classify", "x.png"]),
        (["classify", "-x", "--", "-v"], 0, ["classify", "-x", "--", "-v"]),  # after --: an argument
        (["detect", "-vq", "--value", "-3"], 0, ["detect", "--value", "-3"]),
    ],
)
def test_verbosity_flags_are_taken_out_anywhere(argv, change, rest):
    assert pop_verbosity(argv) == (change, rest)


def test_levels_move_from_the_command_default_and_stop_at_the_ends():
    root = logging.getLogger()
    saved = root.level
    try:
        assert configure_logging(1, logging.WARNING) == logging.INFO == root.level
        assert configure_logging(5, logging.INFO) == logging.DEBUG
        assert configure_logging(-9, logging.WARNING) == logging.ERROR
    finally:
        root.setLevel(saved)


def test_agent_accepts_v_after_the_subcommand(reference):
    proc = run_cli(
        "classify",
        str(reference / "samples" / "coffee.png"),
        "-v",
        "--model",
        str(reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        check=True,
    )
    assert "espresso" in proc.stdout and "INFO edge.runtime" in proc.stderr
