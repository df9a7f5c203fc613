"""Per-tensor weights for the 1x1 convolutions of a per-channel int8 model.

Per-channel quantization costs a float32 scale for every output channel of every weight and
bias tensor. The depthwise convolutions need it (BatchNorm folded into them leaves channels
with ranges orders of magnitude apart: per-tensor everywhere costs MobileNetV2 60 points),
the pointwise ones much less. This rewrite requantizes each 1x1 ``CONV_2D`` weight to one
scale (the largest channel scale, so nothing clips) and its int32 bias to the matching scale;
the accuracy gate then decides whether the smaller file is good enough.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _requantize_conv(model: Any, graph: Any, op: Any) -> bool:
    from tensorflow.lite.python.schema_py_generated import TensorType

    if op.inputs is None or len(op.inputs) < 3 or op.inputs[2] < 0:
        return False
    inp, weight, bias = (int(i) for i in op.inputs[:3])
    w = graph.tensors[weight]
    constant = model.buffers[w.buffer].data is not None and model.buffers[graph.tensors[bias].buffer].data is not None
    if w.type != TensorType.INT8 or not constant:
        return False
    if w.shape is None or len(w.shape) != 4 or w.shape[1] != 1 or w.shape[2] != 1:
        return False
    scales = np.asarray(w.quantization.scale if w.quantization else [], np.float64)
    if scales.size <= 1:
        return False
    target = scales.max()
    ratio = scales / target
    q = np.frombuffer(bytes(model.buffers[w.buffer].data), np.int8).reshape(tuple(w.shape)).astype(np.float64)
    q = np.clip(np.rint(q * ratio[:, None, None, None]), -127, 127).astype(np.int8)
    model.buffers[w.buffer].data = np.frombuffer(q.tobytes(), np.uint8)
    w.quantization.scale = np.array([target], np.float32)
    w.quantization.zeroPoint = np.zeros(1, np.int64)
    w.quantization.quantizedDimension = 0
    b = graph.tensors[bias]
    values = np.frombuffer(bytes(model.buffers[b.buffer].data), np.int32).astype(np.float64)
    model.buffers[b.buffer].data = np.frombuffer(np.rint(values * ratio).astype(np.int32).tobytes(), np.uint8)
    input_scale = np.float32(graph.tensors[inp].quantization.scale[0])
    b.quantization.scale = np.array([input_scale * np.float32(target)], np.float32)
    b.quantization.zeroPoint = np.zeros(1, np.int64)
    b.quantization.quantizedDimension = 0
    return True


def per_tensor_pointwise(model: Any) -> None:
    """Give the 1x1 convolutions of ``model`` (an unpacked full-integer ``ModelT``) per-tensor weights."""
    from tensorflow.lite.python import schema_py_generated as schema

    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    done = 0
    for graph in model.subgraphs:
        for op in graph.operators:
            if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D:
                done += _requantize_conv(model, graph, op)
    log.info("per-tensor weights for %d 1x1 convolutions", done)
