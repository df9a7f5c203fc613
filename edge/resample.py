"""Antialiased bilinear resizing with Pillow's ``Image.resize(..., BILINEAR)`` arithmetic.

Pixel-identical to Pillow for windows scaled alike on both axes (every centre crop); when the
two axes scale very differently, Pillow 13 sometimes differs by one level in some pixels
(its pass order), which is why tests compare square and same-ratio cases.

Quantized models are sensitive to resampling: the reference MobileNet's espresso score moves
from 0.82 (Pillow's antialiased bilinear, how it was evaluated) to 0.94 with OpenCV's plain
bilinear. The compiled ``edge._resample`` does Pillow's exact arithmetic in portable C that the
compiler vectorises (NEON on aarch64, AVX2 on most x86), several times faster than Pillow
(docs/benchmarks/runtime.md). Without the module (no compiler on the device) Pillow itself is
used, with identical output.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class _CompiledResample(Protocol):
    """What ``edge._resample`` (typed by ``edge/_resample.pyi``) offers; the name holds it or None."""

    def resize(
        self,
        src: np.ndarray,
        y0: int,
        y1: int,
        x0: int,
        x1: int,
        dst: np.ndarray,
        swap: bool = False,
        threads: int = 1,
        /,
    ) -> None: ...

    def kernel(self) -> str: ...


_resample: _CompiledResample | None
try:
    from edge import _resample
except ImportError:  # pragma: no cover - exercised on devices without a compiler
    _resample = None


def backend() -> str:
    return "c" if _resample is not None else "pillow"


def kernel() -> str:
    """Which resize code runs here: ``c-neon``, ``c-avx2``, ``c-sse2`` (the compiled C, by the vector
    instructions it runs with on this CPU), ``c`` (other machines) or ``pillow`` (not built).
    """
    return _resample.kernel() if _resample is not None else "pillow"


def resize_antialias(
    image: np.ndarray, box: tuple[int, int, int, int], out: np.ndarray, swap: bool = False, threads: int = 1
) -> np.ndarray:
    """Resize ``image[y0:y1, x0:x1]`` (``box = (y0, y1, x0, x1)``) into ``out`` of shape ``(h, w, 3)``.

    ``swap`` reverses the channel order on the way (BGR frame, RGB model): the compiled
    resampler does it while gathering pixels, saving a pass over the output. ``threads`` > 1 splits the
    output rows into strips resized in parallel (compiled resampler only; the pixels are the same).
    """
    y0, y1, x0, x1 = box
    if _resample is not None:
        try:
            _resample.resize(image, y0, y1, x0, x1, out, swap, threads)
        except (ValueError, BufferError):  # a strided view (a frame slice): copy once, then resize
            _resample.resize(np.ascontiguousarray(image), y0, y1, x0, x1, out, swap, threads)
        return out
    from PIL import Image

    window = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    resized = np.asarray(window.resize((out.shape[1], out.shape[0]), Image.Resampling.BILINEAR))
    np.copyto(out, resized[..., ::-1] if swap else resized)
    return out
