"""Optional fine-tuning: unfreeze the top blocks, BatchNorm frozen, augmentation in the graph.

Follows the Keras transfer-learning guide: the backbone is called with ``training=False`` so
BatchNorm stays in inference mode, every BatchNormalization layer stays non-trainable (the
shared MobileNetV2 weights have BN folded: batch statistics would wreck them), and the
learning rate is low.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.progress import Progress
from trainer.augment import AugmentConfig, view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 0  # 0 = no fine-tuning phase
    learning_rate: float = 1e-4  # Freiburg, camera views + 6 epochs: 1e-5 test 72.8 %, 1e-4 74.1 % (docs/trainer.md)
    batch_size: int = 32
    after_layer: str | None = None  # default: the backbone's top two blocks
    patience: int = 3
    label_smoothing: float = 0.1


def unfreeze_top(backbone: Any, after_layer: str) -> int:
    """Make layers after ``after_layer`` trainable, except BatchNorm; returns how many."""
    import keras

    names = [layer.name for layer in backbone.layers]
    if after_layer not in names:
        raise ValueError(f"layer {after_layer!r} not in {backbone.name}")
    cut = names.index(after_layer)
    backbone.trainable = True
    count = 0
    for i, layer in enumerate(backbone.layers):
        trainable = i > cut and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        count += trainable and bool(layer.weights)
    return count


def augmentation_layers(seed: int) -> Any:
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
        ],
        name="augment",
    )


def preprocess_all(
    paths: list[str],
    pre: Any,
    desc: str,
    dtype: Any = np.float32,
    augment: AugmentConfig | None = None,
    views: tuple[int, ...] = (0,),
) -> np.ndarray:
    """Edge-preprocess images once (normalized model input); float16 halves training memory.

    ``views``: which augmentation views of each image (``augment``), image-major: the fine-tune
    set adds each photo's shelf-camera view, the same pixels its cached feature came from.
    """
    import hashlib

    from edge.preprocess import read_image

    out = np.empty((len(paths) * len(views), pre.spec.height, pre.spec.width, 3), dtype)
    with Progress(len(out), desc) as bar:
        for i, p in enumerate(paths):
            image = read_image(p)
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest() if views != (0,) else ""
            for j, v in enumerate(views):
                shown = view(image, digest, v, augment) if v and augment is not None else image
                out[i * len(views) + j] = pre.from_bgr(shown)[0]
                bar.update()
    return out


def fine_tune(
    model: Any,
    backbone: Any,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    n_classes: int,
    cfg: FineTuneConfig,
    after_layer: str,
    seed: int,
    class_weight: dict[int, float] | None,
    callbacks: list[Any],
) -> dict[str, list[float]]:
    import keras

    unfrozen = unfreeze_top(backbone, cfg.after_layer or after_layer)
    log.info(
        "fine-tune: %d layers unfrozen after %s, lr %g", unfrozen, cfg.after_layer or after_layer, cfg.learning_rate
    )
    inputs = keras.Input(model.input_shape[1:])
    trainer_model = keras.Model(inputs, model(augmentation_layers(seed)(inputs)))
    trainer_model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(k=min(5, n_classes), name="top5")],
    )
    # Accuracy, not loss: with label smoothing the loss keeps drifting after accuracy peaks.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=cfg.patience, restore_best_weights=True
    )
    history = trainer_model.fit(
        train_x,
        keras.utils.to_categorical(train_y, n_classes),
        validation_data=(val_x, keras.utils.to_categorical(val_y, n_classes)),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        verbose=2,
        class_weight=class_weight,
        callbacks=[stop, *callbacks],
    )
    backbone.trainable = False
    return {f"ft_{k}": [float(v) for v in vs] for k, vs in history.history.items()}
