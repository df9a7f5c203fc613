"""The trainer's run directory as the converter's input, checked before any conversion starts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ShelfscanError
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec


@dataclass
class TrainedRun:
    root: Path
    model: Any
    labels: list[str]
    spec: PreprocessSpec
    config: dict[str, Any]
    metrics: dict[str, Any]
    model_sha256: str

    @property
    def task(self) -> str:
        """classify, or detect for a facing-detector run (``shelfscan-train --task detect``)."""
        return str(self.config.get("task", "classify"))

    @property
    def backbone(self) -> str:
        return str(self.config.get("backbone", "unknown"))


def read_json(root: Path, name: str) -> dict[str, Any]:
    p = root / name
    return json.loads(p.read_text()) if p.is_file() else {}


def load_run(run_dir: str | Path) -> TrainedRun:
    import keras

    root = Path(run_dir)
    if not root.is_dir():
        raise ShelfscanError(f"{root}: run directory not found")
    path = root / "model.keras"
    if not path.is_file():
        raise ShelfscanError(f"{root}: missing model.keras (is this a shelfscan-train run directory?)")
    for name in ("labels.txt", "preprocessing.json"):
        if not (root / name).is_file():
            raise ShelfscanError(f"{root}: missing {name}")
    try:
        model = keras.models.load_model(path, compile=False)  # the converter needs the graph, not the losses
    except Exception as exc:
        raise ShelfscanError(f"{path}: corrupt or unreadable Keras model ({str(exc).splitlines()[0][:160]})") from None
    labels = read_labels(root / "labels.txt")
    config = read_json(root, "config.json")
    if config.get("task", "classify") == "detect":
        if len(model.outputs) != 2 or "detection" not in config:
            raise ShelfscanError(f"{root}: config.json says task detect but model.keras is not a facing detector")
    elif int(model.output_shape[-1]) != len(labels):
        raise ShelfscanError(
            f"{root}: labels.txt has {len(labels)} labels but model.keras outputs {int(model.output_shape[-1])} classes"
        )
    try:
        spec = PreprocessSpec.model_validate_json((root / "preprocessing.json").read_text())
    except ValueError as exc:
        raise ShelfscanError(f"{root}/preprocessing.json: invalid ({str(exc).splitlines()[0]})") from None
    if tuple(model.input_shape[1:3]) != (spec.height, spec.width):
        raise ShelfscanError(
            f"{root}: model input {model.input_shape[1:3]} != preprocessing {spec.height}x{spec.width}"
        )

    return TrainedRun(
        root,
        model,
        labels,
        spec,
        config,
        read_json(root, "metrics.json"),
        hashlib.sha256(path.read_bytes()).hexdigest(),
    )
