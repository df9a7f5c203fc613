"""The table of TFLite export variants and the one wrapper that times and logs each export.

Adding a variant means adding a row: a name, what it is, whether it needs calibration data,
and how to configure ``tf.lite.TFLiteConverter`` for it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from converter.compact import compact_tflite
from converter.requantize import per_tensor_pointwise
from edge.errors import ShelfscanError

log = logging.getLogger(__name__)

Representative = Callable[[], Iterator[list[Any]]]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    calibrated: bool
    configure: Callable[[Any, Any, Representative | None, str], None]  # (converter, tf, data, io)
    rewrite: Callable[[Any], None] | None = None  # edits the converter's unpacked model in place


def _fp16(c: Any, tf: Any, _data: Representative | None, _io: str) -> None:
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_types = [tf.float16]


def _dynamic(c: Any, tf: Any, _data: Representative | None, _io: str) -> None:
    c.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(c: Any, tf: Any, data: Representative | None, io: str) -> None:
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = data
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = getattr(tf, io)
    c.inference_output_type = getattr(tf, io)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("fp32", "float32 weights and activations", False, lambda *a: None),
        Variant("fp16", "float16 weights, float32 compute", False, _fp16),
        Variant("dynamic", "int8 weights, float activations (dynamic range)", False, _dynamic),
        Variant("int8", "int8 weights and activations, calibrated; --io sets the input/output type", True, _int8),
        Variant(
            "int8-pw",
            "int8 with per-tensor 1x1 convolution weights (depthwise stay per-channel): smaller file, the gate decides",
            True,
            _int8,
            per_tensor_pointwise,
        ),
    )
}


def parse_variants(text: str) -> list[Variant]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise ShelfscanError(f"unknown variant(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]


def export(variant: Variant, model: Any, data: Representative | None, io_type: str) -> tuple[bytes, float]:
    """Convert ``model`` for ``variant``; returns the flatbuffer and the seconds it took."""
    import tensorflow as tf

    log.info("export %s: %s ...", variant.name, variant.description)
    start = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    variant.configure(converter, tf, data, io_type)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as chatter:  # Keras prints its SavedModel signature
            flatbuffer = converter.convert()
        log.debug("converter output: %s", chatter.getvalue())
    except Exception as exc:
        raise ShelfscanError(f"export {variant.name} failed: {str(exc).splitlines()[0][:200]}") from None
    raw = len(flatbuffer)
    flatbuffer = compact_tflite(flatbuffer, variant.rewrite)
    seconds = time.perf_counter() - start
    log.info(
        "export %s: %.2f MB (%.1f %% smaller compacted) in %.1f s",
        variant.name,
        len(flatbuffer) / 1e6,
        100 * (1 - len(flatbuffer) / raw),
        seconds,
    )
    return flatbuffer, seconds
