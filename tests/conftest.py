"""Shared fixtures: the ../shared data (required in CI), tiny real TFLite models, helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_dir() -> Path:
    return Path(os.environ.get("SHELFSCAN_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared, or a skip with the reason outside CI; in CI its absence is a failure."""
    root = shared_dir()
    if not (root / "models" / "tflite_reference").is_dir():
        msg = f"shared data not found at {root} (set SHELFSCAN_SHARED)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def reference(shared: Path) -> Path:
    return shared / "models" / "tflite_reference"


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``shelfscan-agent`` as a user would (a separate process)."""
    cmd = [sys.executable, "-m", "edge.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real (tiny) TFLite classifiers in several I/O flavours, converted with TensorFlow once."""
    from tests.tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))
