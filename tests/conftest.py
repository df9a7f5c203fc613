"""Shared fixtures: the ../shared data (required in CI), tiny real TFLite models, helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker

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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, for one test."""
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``shelfscan-agent`` as a user would (a separate process)."""
    cmd = [sys.executable, "-m", "edge.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real (tiny) TFLite classifiers in several I/O flavours, converted with TensorFlow once (or prebuilt)."""
    from tests.prebuilt import build_or_load

    return build_or_load("tiny_models", tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory, shared) -> dict[str, Path]:
    """A tiny real detector: 96x128 input, a few shelves, two epochs; then fp32 and int8 bundles (or prebuilt)."""
    from tests.prebuilt import build_or_load

    return build_or_load("tiny_detector", tmp_path_factory.mktemp("det"), shared)


# The agent's reference bundle and video, shared by the agent, deploy, TLS, live-page and config tests.
@pytest.fixture(scope="module")
def bundle(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uint8 reference MobileNetV2 as a bundle: what the agent tests run."""
    from edge.bundle import write_bundle
    from edge.labels import read_labels
    from edge.preprocess import PreprocessSpec

    out = tmp_path_factory.mktemp("bundles") / "imagenet-v1"
    spec = PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3)
    write_bundle(
        out,
        reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        read_labels(reference / "imagenet_labels.txt"),
        spec,
        name="imagenet-ref",
        version="1",
        backbone="mobilenet_v2",
        variant="int8",
    )
    return out


@pytest.fixture(scope="module")
def video(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cat, coffee, cat, coffee: truth = 2 cat sightings and 2 espresso sightings."""
    from tests.mqtt_helpers import write_shelf_video

    path = tmp_path_factory.mktemp("video") / "shelf.avi"
    photos = [reference / "samples" / "chelsea.png", reference / "samples" / "coffee.png"]
    write_shelf_video(path, photos, [0, 1, 0, 1], frames_per_run=20)
    return path


@pytest.fixture(scope="session")
def facing_models(tiny_detector, tiny_models, tmp_path_factory) -> dict[str, Path]:
    """The tiny int8 detector with a low threshold (it must find boxes), a tiny int8 classifier and a shelf
    pass from toy photos: what the detect_classify agent tests run."""
    from edge.bundle import load_bundle, write_bundle
    from edge.labels import read_labels
    from edge.preprocess import PreprocessSpec
    from tests.toydata import flat_photos
    from trainer.shelf_composer import PhotoLibrary
    from trainer.shelf_video import PassSpec, render_pass

    root = tmp_path_factory.mktemp("facing-models")
    det = load_bundle(tiny_detector["bundles"] / "run-int8")
    detector = root / "detector"
    write_bundle(
        detector,
        det.model_path,
        det.labels,
        det.spec,
        name="tiny-facings",
        version="1",
        backbone="mobilenet_v2",
        variant="int8",
        task="detect",
        detection={"score_threshold": 0.05, "max_detections": 30},
    )
    classifier = root / "classifier"
    labels = read_labels(tiny_models["labels"])
    write_bundle(
        classifier,
        tiny_models["int8"],
        labels,
        PreprocessSpec(height=16, width=16),
        name="tiny",
        version="1",
        backbone="tiny",
        variant="int8",
    )
    video = root / "pass" / "pass.mp4"
    spec = PassSpec(width=320, height=240, seconds=20, stop_seconds=2, seed=3)
    truth = render_pass(PhotoLibrary.from_tree(flat_photos(root / "photos")), video, spec)
    return {"detector": detector, "classifier": classifier, "video": video, "truth": truth}
