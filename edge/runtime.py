"""The on-device inference runtime: a bundle bound to a TFLite interpreter, classifying frames.

Which interpreter package runs (``ai_edge_litert``, ``tflite_runtime``, ``tf.lite``; ``SHELFSCAN_RUNTIME``
forces one) is decided in :mod:`edge.interpreter`; its names are re-exported here, where callers
have always imported them from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from edge.adapters import ModelIO, dequantize, describe_io, softmax, top_k
from edge.bare_model import open_bare
from edge.bound_model import BoundModel
from edge.bundle import Bundle
from edge.delegates import DelegateSpec
from edge.interpreter import BACKENDS as BACKENDS
from edge.interpreter import NATIVE_FALLBACKS as NATIVE_FALLBACKS
from edge.interpreter import Backend as Backend
from edge.interpreter import default_threads as default_threads
from edge.interpreter import inspect_detector as inspect_detector
from edge.interpreter import inspect_model as inspect_model
from edge.interpreter import load_backend as load_backend
from edge.interpreter import make_interpreter as make_interpreter
from edge.interpreter import report_native_fallbacks as report_native_fallbacks
from edge.manifest import Task
from edge.preprocess import Preprocessor, read_image


class Prediction(NamedTuple):
    label: str
    # The field shadows tuple.index(); kept because callers unpack and read `.index` (public API).
    index: int  # type: ignore[assignment]
    score: float


class Classifier(BoundModel[ModelIO]):
    """A validated classify bundle bound to an interpreter; turns images into scored labels.

    Not thread-safe: one classifier per inference thread (interpreters are not re-entrant).
    """

    task: ClassVar[Task] = "classify"
    noun = "model"

    @classmethod
    def read_io(cls, bundle: Bundle, interpreter: Any) -> ModelIO:
        return describe_io(interpreter)

    def configure(self) -> None:
        out = self.io.output
        self.output_kind = self.io.output_kind
        self._out = out.index
        self._out_q = (out.scale, out.zero_point) if out.quantized else (0.0, 0)

    @classmethod
    def from_files(
        cls,
        model: str | Path,
        labels: str | Path,
        threads: int | None = None,
        delegate: DelegateSpec | None = None,
        **spec_overrides: Any,
    ) -> Classifier:
        """Open a bare ``.tflite`` + labels; preprocessing from ``spec_overrides`` or inferred."""
        threads = threads or default_threads()
        bundle, interpreter = open_bare(model, labels, threads=threads, delegate=delegate, **spec_overrides)
        return cls(bundle, interpreter, load_backend(), threads, delegate)

    # -- inference --------------------------------------------------------------------------
    def crop_preprocessor(self, resize: str) -> Preprocessor:
        """A second preprocessor for facing crops: this bundle's preprocessing, another resize policy.

        The detect_classify pipeline feeds it each detected facing; the detect bundle's manifest
        says which policy (``detection.crop_resize``), so the crop rule is recorded, not guessed.
        """
        return self.make_preprocessor(self.bundle.spec.model_copy(update={"resize": resize}))

    def classify_prepared(self, buffer: np.ndarray, k: int = 1) -> list[Prediction]:
        """Top-``k`` for an input tensor another preprocessor filled (a facing crop)."""
        self.interpreter.set_tensor(self._in, buffer)
        self.interpreter.invoke()
        return self.top_predictions(k)

    def scores_prepared(self, buffer: np.ndarray) -> np.ndarray:
        """The score vector (a copy) for an input tensor another preprocessor filled: for averaging views."""
        self.interpreter.set_tensor(self._in, buffer)
        self.interpreter.invoke()
        scores: np.ndarray = self.output_scores().copy()
        return scores

    def output_scores(self) -> np.ndarray:
        """Dequantized output of the last invoke, as probabilities unless the model gives sigmoid scores."""
        raw = self.interpreter.get_tensor(self._out)[0]
        scores = dequantize(raw, *self._out_q)
        return softmax(scores) if self.output_kind == "logits" else scores

    def predictions(self, scores: np.ndarray, k: int = 5) -> list[Prediction]:
        return [Prediction(self.labels[i], i, s) for i, s in top_k(scores, k)]

    def top_predictions(self, k: int = 5) -> list[Prediction]:
        """Top-``k`` of the last invoke, the same as ``predictions(output_scores(), k)``.

        Quantized probabilities are ranked raw and only the ``k`` winners are dequantized
        (dequantization is monotonic), which keeps the work after an invoke to a few calls.
        """
        scale, zero_point = self._out_q
        if self.output_kind == "logits" or scale <= 0:
            return self.predictions(self.output_scores(), k)
        raw = self.interpreter.get_tensor(self._out)  # (1, classes): top_k reads it flat
        return [Prediction(self.labels[i], i, score) for i, score in top_k(raw, k, scale, zero_point)]

    def classify_bgr(self, frame: np.ndarray, k: int = 5) -> list[Prediction]:
        """Top-``k`` for an OpenCV BGR frame: the agent's hot path."""
        self.preprocessor.from_bgr(frame)
        self.run_model()
        return self.top_predictions(k)

    def classify_path(self, path: str | Path, k: int = 5) -> list[Prediction]:
        return self.classify_bgr(read_image(path), k)

    def describe(self) -> dict[str, Any]:
        """Model and runtime facts for logs, ``--json`` output and benchmark reports."""
        return super().describe() | {"output_kind": self.output_kind}
