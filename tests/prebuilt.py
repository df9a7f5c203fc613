"""Models that take TensorFlow to build, built once on the host for a test session without TensorFlow.

The emulated aarch64 run (``scripts/arm64/check.py``) has no TensorFlow, by design, so the tests
that need the tiny TFLite models -- among them every test of the detect_classify pipeline the
agent runs -- would be left out there. ``python -m tests.prebuilt DIR SHARED`` (on the host, with
TensorFlow) builds them into ``DIR`` with an ``index.json``; with ``SHELFSCAN_PREBUILT=DIR`` the
fixtures load them from there instead of building them. A ``.tflite`` is the same file on every
CPU, so the device runs exactly the models the x86 session tests.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

INDEX = "index.json"


def _tiny_models(root: Path, shared: Path | None) -> dict[str, Path]:
    from tests.tiny_models import build_tiny_models

    return build_tiny_models(root)


def _tiny_detector(root: Path, shared: Path | None) -> dict[str, Path]:
    from tests.tiny_detectors import build_tiny_detector

    assert shared is not None, "the tiny detector trains on the shared MobileNetV2 weights"
    return build_tiny_detector(root, shared)


def _detectors(root: Path, shared: Path | None) -> dict[str, Path]:
    from tests.tiny_detectors import build_tiny_detectors

    return build_tiny_detectors(root)


# fixture name -> builder (each writes into an existing empty folder and returns its paths by name)
BUILDERS: dict[str, Callable[[Path, Path | None], dict[str, Path]]] = {
    "tiny_models": _tiny_models,
    "tiny_detector": _tiny_detector,
    "detectors": _detectors,
}


def prebuilt_dir() -> Path | None:
    where = os.environ.get("SHELFSCAN_PREBUILT")
    return Path(where) if where else None


def build_or_load(kind: str, root: Path, shared: Path | None = None) -> dict[str, Path]:
    """The ``kind`` fixture's paths: from ``$SHELFSCAN_PREBUILT`` when set, else built into ``root`` now."""
    where = prebuilt_dir()
    if where is not None:
        index = json.loads((where / INDEX).read_text())
        return {name: Path(path) for name, path in index[kind].items()}
    return BUILDERS[kind](root, shared)


def main(argv: list[str]) -> int:
    out, shared = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    index = {}
    for kind, build in BUILDERS.items():
        root = out / kind
        root.mkdir(parents=True, exist_ok=True)
        index[kind] = {name: str(path) for name, path in build(root, shared).items()}
    (out / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    print(f"prebuilt {', '.join(index)} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
