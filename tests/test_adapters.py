"""Pure helpers over interpreter outputs: dequantization, top-k, softmax, delegate counting."""

from __future__ import annotations

import numpy as np
import pytest

from edge.adapters import delegate_summary, dequantize, softmax, top_k
from edge.runtime import make_interpreter


def test_dequantize_uint8_uses_wide_arithmetic():
    raw = np.array([0, 128, 255], np.uint8)
    # In uint8, 0 - 128 would wrap to 128 and the worst score would look like the best.
    np.testing.assert_allclose(dequantize(raw, 0.5, 128), [-64.0, 0.0, 63.5])


def test_dequantize_int8_uses_wide_arithmetic():
    raw = np.array([-128, 0, 127], np.int8)
    np.testing.assert_allclose(dequantize(raw, 0.25, 100), [-57.0, -25.0, 6.75])
    np.testing.assert_allclose(dequantize(raw, 1 / 256, -128), [0.0, 0.5, 255 / 256])


def test_dequantize_float_passthrough():
    raw = np.array([0.1, 0.9], np.float32)
    assert dequantize(raw, 0.0, 0) is raw


def test_top_k_order_and_bounds():
    scores = np.array([0.1, 0.5, 0.2, 0.5, 0.05], np.float32)
    assert [i for i, _ in top_k(scores, 3)] == [1, 3, 2]
    assert len(top_k(scores, 99)) == 5
    assert top_k(scores, 0) == [(1, 0.5)]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float32, np.float64])  # float64: the agent's smoother
def test_top_k_agrees_with_a_full_sort(dtype):
    """Quantized outputs are full of equal values (most classes are 0): ties must come out by index."""
    rng = np.random.default_rng(3)
    cases = [rng.integers(-3, 4, 1001).astype(dtype) for _ in range(50)]  # heavy ties
    cases += [rng.integers(-128, 128, 7).astype(dtype), np.zeros(5, dtype), np.arange(10, dtype=dtype)[::-1].copy()]
    for scores in cases:
        for k in (1, 3, 5, 10, scores.size):
            want = sorted(range(scores.size), key=lambda i: (-float(scores[i]), i))[:k]
            got = top_k(scores, k)
            assert [i for i, _ in got] == want and all(v == float(scores[i]) for i, v in got)
            if scores.dtype.kind != "f":  # ranked raw, the winners dequantized as dequantize() does
                real = dequantize(scores, 0.00390625 * 1.3, 7)
                assert top_k(scores, k, 0.00390625 * 1.3, 7) == [(i, float(real[i])) for i in want]
    assert top_k(np.array([[0.2, 0.7, 0.1]], np.float32), 2) == top_k(np.array([0.2, 0.7, 0.1], np.float32), 2)


def test_softmax_is_stable():
    out = softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(out, [0.5, 0.5, 0.0])


def test_delegate_summary_on_reference_model(reference):
    interp = make_interpreter(reference / "mobilenet_v2_1.0_224_quant.tflite", threads=1)
    summary = delegate_summary(interp)
    assert summary.applied and summary.delegate_nodes >= 1
    assert 0 < summary.delegated_ops <= summary.total_ops == 66
