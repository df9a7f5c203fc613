"""Backbones from ``keras.applications`` and where their weights come from.

Each entry records the input size, the normalization the ImageNet weights expect (written into
the bundle as the edge :class:`~edge.preprocess.PreprocessSpec`), the Keras cache file name for
``--weights imagenet``, and the layer after which fine-tuning unfreezes (the top two blocks,
as in the Keras transfer-learning guide).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ShelfscanError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    name: str
    size: int
    app: str  # keras.applications constructor
    imagenet_file: str  # file name in ~/.keras/models for include_top=False
    fine_tune_after: str  # layers after this one are unfrozen in the fine-tune phase
    mean: float = 127.5  # x / 127.5 - 1, as keras.applications.{inception_v3,mobilenet_v2}.preprocess_input
    std: float = 127.5
    min_size: int = 32


BACKBONES: dict[str, Backbone] = {
    "inception_v3": Backbone(
        "inception_v3",
        299,
        "InceptionV3",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "mixed8",
        min_size=75,
    ),
    "mobilenet_v2": Backbone(
        "mobilenet_v2",
        224,
        "MobileNetV2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        "block_14_add",
    ),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ShelfscanError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def keras_cache_dir() -> Path:
    import os

    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def weights_id(weights: str) -> str:
    """A stable identity for the weights, part of every bottleneck cache key."""
    if weights in ("imagenet", "none"):
        return weights
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def calibrate_batchnorm(model: Any, images: np.ndarray) -> None:
    """Set every BatchNorm layer's moving statistics to those of ``images`` (random weights only).

    A randomly initialised InceptionV3 squeezes its activations layer after layer: pooled
    features vary by ~1e-4 between images, which float32 keeps but int8 quantization erases
    (the demo's int8 bundle fell to chance). With each BN normalizing its real input
    distribution -- a data-dependent initialisation -- the features are well scaled and
    survive quantization. One forward pass in training mode with momentum 0 does it.
    (Scaling without centring kept float accuracy but int8 still fell to chance: the
    information sits in small deviations from a large common mean.)
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(bns, saved, strict=True):
        layer.momentum = momentum
    log.info("random weights: BatchNorm statistics set from %d training images", len(images))


def build(backbone: Backbone, size: int | tuple[int, int], weights: str) -> Any:
    """Create the headless backbone with weights ``imagenet`` (Keras cache), a file path, or ``none``.

    ``size`` is a square side or ``(height, width)`` (the facing detector takes 4:3 frames).
    """
    import keras

    height, width = (size, size) if isinstance(size, int) else size
    if min(height, width) < backbone.min_size:
        raise ShelfscanError(f"{backbone.name} needs an input size of at least {backbone.min_size}, got {size}")
    shape = (height, width, 3)
    ctor = getattr(keras.applications, backbone.app)
    if weights == "none":
        log.warning("*** --weights none: %s starts from RANDOM weights; expect poor accuracy ***", backbone.name)
        return ctor(include_top=False, weights=None, input_shape=shape)
    if weights == "imagenet":
        cached = keras_cache_dir() / backbone.imagenet_file
        try:
            return ctor(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as exc:  # network errors surface as several exception types
            raise ShelfscanError(
                f"cannot get ImageNet weights for {backbone.name} ({type(exc).__name__}: {str(exc)[:120]}); "
                f"offline, place {backbone.imagenet_file} in {cached.parent}/, or pass --weights PATH "
                "(a backbone .h5 / .weights.h5 file) or --weights none"
            ) from None
    path = Path(weights)
    if not path.is_file():
        raise ShelfscanError(f"--weights {weights}: file not found (use imagenet, none, or a .h5/.weights.h5 path)")
    model = ctor(include_top=False, weights=None, input_shape=shape)
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise ShelfscanError(f"--weights {weights}: cannot load into {backbone.name} ({str(exc)[:160]})") from None
    return model
