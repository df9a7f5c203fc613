"""The int8-pw rewrite, on weights and biases directly: per-tensor 1x1 weights that dequantize to the float ones."""

from __future__ import annotations

from types import SimpleNamespace as Ns

import numpy as np
from tensorflow.lite.python.schema_py_generated import TensorType

from converter.requantize import _requantize_conv


def _tensor(buffer: int, shape: list[int], scale: list[float], type_: int = TensorType.INT8) -> Ns:
    q = Ns(scale=np.array(scale, np.float32), zeroPoint=np.zeros(len(scale), np.int64), quantizedDimension=0)
    return Ns(buffer=buffer, shape=np.array(shape), type=type_, quantization=q)


def test_pointwise_weights_and_biases_keep_their_real_values():
    rng = np.random.default_rng(0)
    out_ch, in_ch = 6, 4
    real_w = rng.normal(0, 1, (out_ch, 1, 1, in_ch)) * np.array([1, 0.5, 0.1, 2, 0.01, 1])[:, None, None, None]
    w_scales = np.abs(real_w).reshape(out_ch, -1).max(axis=1) / 127  # per channel, as the converter makes them
    q_w = np.clip(np.rint(real_w / w_scales[:, None, None, None]), -127, 127).astype(np.int8)
    in_scale = 0.02
    real_b = rng.normal(0, 0.5, out_ch)
    q_b = np.rint(real_b / (in_scale * w_scales)).astype(np.int32)
    buffers = [
        Ns(data=None),
        Ns(data=np.frombuffer(q_w.tobytes(), np.uint8)),
        Ns(data=np.frombuffer(q_b.tobytes(), np.uint8)),
    ]
    graph = Ns(
        tensors=[
            _tensor(0, [1, 8, 8, in_ch], [in_scale]),
            _tensor(1, [out_ch, 1, 1, in_ch], list(w_scales)),
            _tensor(2, [out_ch], list(in_scale * w_scales), type_=TensorType.INT32),
        ]
    )
    model = Ns(buffers=buffers)
    assert _requantize_conv(model, graph, Ns(inputs=np.array([0, 1, 2])))

    w, b = graph.tensors[1], graph.tensors[2]
    target = float(w.quantization.scale[0])
    assert w.quantization.scale.size == 1 and target == np.float32(w_scales.max())
    new_w = np.frombuffer(bytes(buffers[1].data), np.int8).reshape(real_w.shape) * target
    # every weight within half a step of the new (coarser) scale of its float value, nothing clipped
    assert np.abs(new_w - real_w).max() <= 0.5 * target + np.abs(q_w * w_scales[:, None, None, None] - real_w).max()
    assert np.abs(np.frombuffer(bytes(buffers[1].data), np.int8)).max() <= 127
    new_b = np.frombuffer(bytes(buffers[2].data), np.int32) * float(b.quantization.scale[0])
    assert b.quantization.scale.size == 1 and np.isclose(b.quantization.scale[0], in_scale * target)
    np.testing.assert_allclose(new_b, real_b, atol=in_scale * target)  # within one bias step


def test_depthwise_and_per_tensor_weights_are_left_alone():
    graph = Ns(
        tensors=[
            _tensor(0, [1, 8, 8, 4], [0.1]),
            _tensor(1, [1, 3, 3, 4], [0.1, 0.2, 0.3, 0.4]),
            _tensor(2, [4], [0.01] * 4, type_=TensorType.INT32),
        ]
    )
    model = Ns(buffers=[Ns(data=None), Ns(data=np.zeros(36, np.uint8)), Ns(data=np.zeros(16, np.uint8))])
    assert not _requantize_conv(model, graph, Ns(inputs=np.array([0, 1, 2])))  # 3x3: not pointwise
    graph.tensors[1] = _tensor(1, [4, 1, 1, 4], [0.1])
    assert not _requantize_conv(model, graph, Ns(inputs=np.array([0, 1, 2])))  # already one scale
