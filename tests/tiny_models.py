"""Tiny real TFLite classifiers for tests: float32 softmax, float32 logits, int8 and uint8 I/O.

Built with TensorFlow (a test-only dependency here; ``edge`` never imports it). A 16x16
input keeps conversion to a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 16
CLASSES = 3


def _keras_model(softmax: bool):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax" if softmax else None)(x)
    return keras.Model(inputs, outputs)


def _convert(model, quantize: str | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(16):
                yield [rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, quantize)
        converter.inference_output_type = getattr(tf, quantize)
    return converter.convert()


def build_tiny_models(out: Path) -> dict[str, Path]:
    softmax, logits = _keras_model(True), _keras_model(False)
    flavours = {
        "float_softmax": (softmax, None),
        "float_logits": (logits, None),
        "int8": (softmax, "int8"),
        "uint8": (softmax, "uint8"),
    }
    paths = {}
    for name, (model, quantize) in flavours.items():
        path = out / f"{name}.tflite"
        path.write_bytes(_convert(model, quantize))
        paths[name] = path
    labels = out / "labels.txt"
    labels.write_text("apple\nbanana\ncherry\n")
    paths["labels"] = labels
    return paths


def build_uniform_model(out: Path, classes: int = 10) -> Path:
    """A classifier that is never sure: zero weights, so every frame scores 1/``classes`` for each label
    (a model whose confidence collapses, for the rollout's canary)."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer="zeros")(x)
    out.write_bytes(_convert(keras.Model(inputs, outputs), None))
    return out


def build_slow_model(out: Path, size: int = 448) -> Path:
    """A classifier that is deliberately slow: three wide convolutions at ``size`` x ``size`` (tens of GFLOPs a
    frame), for the rollout's canary frame-rate rule."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for _ in range(3):
        x = keras.layers.Conv2D(48, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out.write_bytes(_convert(keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x)), None))
    return out
