"""Compare what the agent computes on x86 with what it computes on aarch64 (under QEMU).

classify: ``shelfscan-agent classify --json`` documents. Same model hash and preprocessing, same
images, the same top-k labels in the same order, each score within ``SCORE_TOLERANCE``.

Why a tolerance at all: the inputs are bit-identical (the preprocess step proves it), but LiteRT runs
the quantized models with XNNPACK, whose int8/uint8 kernels differ per ISA (NEON on the Cortex-A72,
AVX2/AVX-512 on x86) and requantize with different rounding. Measured (ai-edge-litert 2.3.0): the TF2
per-channel int8 model gives identical scores; the TF1 per-tensor uint8 model differs by up to 4 output
steps (4/256 = 0.0156) on chelsea.png (tiger cat 0.543 on x86, 0.531 on aarch64), softmax amplifying
one-step differences in the last layers. The tolerance is 0.03, the one the reference README and
tests/test_reference_models.py allow against the documented answers: a real bug (wrong channel order,
resize or dequantization) moves the top scores by tenths. Labels must be identical, in order.

preprocess: arrays from ``dump_preprocess.py``; bit for bit, no tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCORE_TOLERANCE = 0.03  # as tests/test_reference_models.py; measured worst case 0.0156 (see above)


def _by_image(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).name: r for r in doc.get("results", [])}


def compare_classify(x86: dict[str, Any], arm: dict[str, Any], tolerance: float = SCORE_TOLERANCE) -> list[str]:
    """Every difference between two ``classify --json`` documents that matters; empty when they agree."""
    problems: list[str] = []
    for key in ("model", "preprocessing", "output_kind"):
        if x86.get(key) != arm.get(key):
            problems.append(f"{key} differs: x86 {x86.get(key)!r}, aarch64 {arm.get(key)!r}")
    xr, ar = _by_image(x86), _by_image(arm)
    if set(xr) != set(ar):
        problems.append(f"images differ: x86 {sorted(xr)}, aarch64 {sorted(ar)}")
    if not xr:
        problems.append("no results to compare")
    for name in sorted(set(xr) & set(ar)):
        x, a = xr[name], ar[name]
        if "error" in x or "error" in a:
            problems.append(f"{name}: error: x86 {x.get('error')!r}, aarch64 {a.get('error')!r}")
            continue
        xl = [p["label"] for p in x["top_k"]]
        al = [p["label"] for p in a["top_k"]]
        if xl != al:
            problems.append(f"{name}: top-{len(xl)} labels differ: x86 {xl}, aarch64 {al}")
            continue
        for p, q in zip(x["top_k"], a["top_k"], strict=True):
            if abs(p["score"] - q["score"]) > tolerance:
                problems.append(
                    f"{name}: {p['label']!r} score x86 {p['score']:.6f}, aarch64 {q['score']:.6f} "
                    f"(|diff| {abs(p['score'] - q['score']):.6f} > {tolerance:.6f})"
                )
    return problems


def max_score_diff(x86: dict[str, Any], arm: dict[str, Any]) -> float:
    """The largest score difference over images and ranks (labels assumed equal)."""
    diffs = [
        abs(p["score"] - q["score"])
        for name, x in _by_image(x86).items()
        if name in _by_image(arm) and "top_k" in x
        for p, q in zip(x["top_k"], _by_image(arm)[name].get("top_k", []), strict=False)
    ]
    return max(diffs, default=0.0)


def compare_arrays(x86: dict[str, Any], arm: dict[str, Any]) -> list[str]:
    """Arrays by name (``np.load`` of two .npz files, or dicts): same names, shapes, dtypes, every bit."""
    import numpy as np

    problems: list[str] = []
    if set(x86) != set(arm):
        missing, extra = sorted(set(x86) - set(arm)), sorted(set(arm) - set(x86))
        problems.append(f"array names differ: only on x86 {missing[:5]}, only on aarch64 {extra[:5]}")
    for name in sorted(set(x86) & set(arm)):
        x, a = np.asarray(x86[name]), np.asarray(arm[name])
        if x.shape != a.shape or x.dtype != a.dtype:
            problems.append(f"{name}: x86 {x.dtype}{x.shape}, aarch64 {a.dtype}{a.shape}")
        elif x.tobytes() != a.tobytes():
            diff = np.abs(x.astype(np.float64) - a.astype(np.float64))
            problems.append(f"{name}: {int((diff > 0).sum())} of {x.size} values differ (max |diff| {diff.max():g})")
    return problems
