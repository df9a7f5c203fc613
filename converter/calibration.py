"""Calibration data for full-integer quantization, prepared by the edge preprocessing.

Activations are calibrated on exactly the tensors the device will produce, so quantization
ranges match what the model will see in the field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ImageError, ShelfscanError
from edge.images import list_images
from edge.preprocess import Preprocessor, PreprocessSpec, read_image
from edge.progress import Progress

log = logging.getLogger(__name__)
MIN_RECOMMENDED = 100


def pick_images(source: str | Path | list[Path], count: int, seed: int = 0) -> list[Path]:
    """Up to ``count`` images from a folder (recursively) or a list, a seeded random subset across classes."""
    if isinstance(source, list):
        images = source
        if not images:
            raise ShelfscanError("no calibration images: the run's train split is empty")
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ShelfscanError(f"{folder}: calibration folder not found")
        images = list_images(folder)
        if not images:
            raise ShelfscanError(f"{folder}: calibration folder holds no images")
    if len(images) > count:
        idx = np.random.default_rng(seed).choice(len(images), count, replace=False)
        images = [images[i] for i in sorted(idx)]
    if len(images) < MIN_RECOMMENDED:
        log.warning(
            "only %d calibration images (at least %d recommended): int8 ranges may be off", len(images), MIN_RECOMMENDED
        )
    return images


def representative_dataset(images: list[Path], spec: PreprocessSpec) -> Any:
    """A generator factory for ``TFLiteConverter.representative_dataset``, with progress."""

    def generate() -> Iterator[list[np.ndarray]]:
        pre = Preprocessor(spec, "float32")
        with Progress(len(images), "int8 calibration") as bar:
            for path in images:
                try:
                    yield [pre.from_path(path).copy()]
                except ImageError as exc:
                    log.warning("calibration: skipping %s", exc)
                bar.update()

    return generate


def load_eval_arrays(paths: list[Path], spec: PreprocessSpec) -> np.ndarray:
    """Edge-preprocessed float inputs for the Keras reference predictions."""
    pre = Preprocessor(spec, "float32")
    out = np.empty((len(paths), spec.height, spec.width, 3), np.float32)
    for i, p in enumerate(paths):
        out[i] = pre.from_bgr(read_image(p))[0]
    return out
