"""The on-device inference runtime: pick a TFLite interpreter package and classify frames.

Order: ``ai_edge_litert`` (the maintained package), ``tflite_runtime`` (legacy devices that
cannot upgrade), then TensorFlow's ``tf.lite`` (workstations). ``SHELFSCAN_RUNTIME`` forces
one, which is how a user checks that a variant behaves the same on every runtime.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge.adapters import (
    DelegateSummary,
    DetectorIO,
    ModelIO,
    delegate_summary,
    dequantize,
    describe_detector_io,
    describe_io,
    softmax,
    top_k,
)
from edge.bundle import Bundle, check_model_io, load_bundle, open_bare, require_task
from edge.delegates import DelegateSpec, load_external_delegate
from edge.errors import BundleError, DelegateError, RuntimeUnavailableError
from edge.native_stderr import first_interpreter_output
from edge.preprocess import Preprocessor, read_image

log = logging.getLogger(__name__)

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_MODULES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",
}


#: The compiled hot paths and what runs instead when one was not built (no compiler at install).
NATIVE_FALLBACKS = {"edge._resample": "resizing uses Pillow", "edge._topk": "top-k uses numpy"}


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    interpreter_cls: Any
    #: The package's ``load_delegate(library, options)`` (external delegates such as the Edge TPU's).
    delegate_loader: Any = None


@functools.cache
def report_native_fallbacks() -> list[str]:
    """Warn once per process when a C extension is missing, so a slow device says why.

    setup.py's warning scrolls past in pip's build output (or is hidden by ``pip -q``); this
    line lands in the journal the first time a model is loaded, i.e. at agent start.
    """
    missing = []
    for module, fallback in NATIVE_FALLBACKS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(f"{module} ({fallback})")
    if missing:
        log.warning(
            "C extensions not built: %s; results are identical but slower. Install a C compiler "
            "(apt install gcc python3-dev) and reinstall shelfscan to build them.",
            ", ".join(missing),
        )
    return missing


@functools.cache
def load_backend(preferred: str | None = None) -> Backend:
    """Import the first available interpreter package (or ``preferred`` / ``$SHELFSCAN_RUNTIME``)."""
    preferred = preferred or os.environ.get("SHELFSCAN_RUNTIME") or None
    if preferred and preferred not in BACKENDS:
        raise RuntimeUnavailableError(f"unknown runtime {preferred!r}; choose one of {', '.join(BACKENDS)}")
    tried = []
    for name in [preferred] if preferred else BACKENDS:
        try:
            module = importlib.import_module(_MODULES[name])
        except Exception as exc:  # a broken install (numpy ABI) raises more than ImportError
            tried.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        cls = module.lite.Interpreter if name == "tensorflow" else module.Interpreter
        loader = module.lite.experimental.load_delegate if name == "tensorflow" else module.load_delegate
        top = importlib.import_module(name.split(".")[0])
        version = str(getattr(top, "__version__", "unknown"))
        log.info("TFLite runtime: %s %s", name, version)
        report_native_fallbacks()
        return Backend(name, version, cls, loader)
    raise RuntimeUnavailableError(
        "no TFLite runtime could be imported (" + "; ".join(tried) + "); install one with: pip install ai-edge-litert"
    )


def default_threads() -> int:
    """All cores up to four: beyond that TFLite CPU kernels rarely scale on edge boards."""
    return max(1, min(4, os.cpu_count() or 1))


def make_interpreter(
    model: str | Path | bytes,
    threads: int | None = None,
    backend: Backend | None = None,
    delegate: DelegateSpec | None = None,
) -> Any:
    """Create and allocate an interpreter; a file that is not a TFLite model is a :class:`BundleError`.

    With ``delegate`` the external delegate library is loaded first (a missing one is a
    :class:`DelegateError`) and the ops it supports run on its accelerator.
    """
    backend = backend or load_backend()
    threads = threads or default_threads()
    source: dict[str, Any] = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    if delegate is not None:
        source["experimental_delegates"] = [load_external_delegate(delegate, backend.delegate_loader)]
    where = "model bytes" if isinstance(model, bytes) else str(model)
    try:
        with first_interpreter_output():
            interpreter = backend.interpreter_cls(num_threads=threads, **source)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if delegate is not None and "delegate" in str(exc).lower():
            raise DelegateError(f"delegate {delegate.library}: cannot run {where} ({first})") from None
        if isinstance(exc, RuntimeError):
            raise
        raise BundleError(f"{where}: not a loadable TFLite model ({first})") from None
    return interpreter


def inspect_model(
    model: str | Path, threads: int | None = None, delegate: DelegateSpec | None = None
) -> tuple[Any, ModelIO]:
    """Open a classifier and describe its input/output tensors; a detector is named as one."""
    interpreter = make_interpreter(model, threads, delegate=delegate)
    try:
        return interpreter, describe_io(interpreter)
    except ValueError as exc:
        try:
            fmt = describe_detector_io(interpreter).format
        except ValueError:
            raise BundleError(f"{model}: {exc}") from None
        raise BundleError(
            f"{model}: is a detector ({fmt} outputs), not a classifier; use shelfscan-agent detect --model "
            "/ edge.detector.Detector.from_file"
        ) from None


def inspect_detector(
    model: str | Path, threads: int | None = None, delegate: DelegateSpec | None = None
) -> tuple[Any, DetectorIO]:
    """Open a detector and identify its outputs by shape; a classifier is named as one."""
    interpreter = make_interpreter(model, threads, delegate=delegate)
    try:
        return interpreter, describe_detector_io(interpreter)
    except ValueError as exc:
        try:
            describe_io(interpreter)
        except ValueError:
            raise BundleError(f"{model}: {exc}") from None
        raise BundleError(
            f"{model}: {exc} (this is a classifier: use shelfscan-agent classify / edge.runtime.Classifier)"
        ) from None


def describe_model(model: Any) -> dict[str, Any]:
    """What a ``Classifier`` or ``Detector`` says about itself: model, runtime, delegate, input, preprocessing."""
    m = model.bundle.manifest
    return {
        "model": model.bundle.model_id | {"variant": m.variant, "backbone": m.backbone},
        "runtime": {"package": model.backend.name, "version": model.backend.version, "threads": model.threads},
        "delegate": {
            "xnnpack_applied": model.delegate.applied,
            "delegated_ops": model.delegate.delegated_ops,
            "total_ops": model.delegate.total_ops,
            "external": model.external_delegate.describe() if model.external_delegate else None,
        },
        "input": {
            "dtype": model.io.input.dtype,
            "shape": list(model.io.input.shape),
            "path": model.preprocessor.mode,
            "resize": model.preprocessor.resize_kernel,
        },
        "preprocessing": m.preprocessing.model_dump(),
    }


class Prediction(NamedTuple):
    label: str
    index: int
    score: float


class Classifier:
    """A validated bundle bound to an interpreter; turns images into scored labels.

    Not thread-safe: one classifier per inference thread (interpreters are not re-entrant).
    """

    def __init__(
        self,
        bundle: Bundle,
        interpreter: Any,
        backend: Backend,
        threads: int,
        external_delegate: DelegateSpec | None = None,
    ) -> None:
        require_task(bundle, "classify")
        io = describe_io(interpreter)
        check_model_io(bundle, io)
        self.bundle, self.interpreter, self.backend, self.threads = bundle, interpreter, backend, threads
        self.labels = bundle.labels
        self.io = io
        self.output_kind = io.output_kind
        self.preprocessor = Preprocessor(bundle.spec, io.input.dtype, io.input.scale, io.input.zero_point)  # type: ignore[arg-type]
        self._in, self._out = io.input.index, io.output.index
        self._out_q = (io.output.scale, io.output.zero_point) if io.output.quantized else (0.0, 0)
        self.delegate: DelegateSummary = delegate_summary(interpreter)
        self.external_delegate = external_delegate
        log.info(
            "model %s %s (%s): runtime %s %s, %d threads, %s %s (%d of %d ops), input %s via %s, resize %s",
            bundle.manifest.name, bundle.manifest.version, bundle.manifest.variant, backend.name, backend.version,
            threads, external_delegate.name if external_delegate else "XNNPACK",
            "applied" if self.delegate.applied else "not applied", self.delegate.delegated_ops,
            self.delegate.total_ops, io.input.dtype, self.preprocessor.mode, self.preprocessor.resize_kernel,
        )  # fmt: skip

    @classmethod
    def from_bundle(
        cls,
        bundle: str | Path | Bundle,
        threads: int | None = None,
        trusted_keys: dict[str, object] | None = None,
        delegate: DelegateSpec | None = None,
    ) -> Classifier:
        """Load and fully validate a bundle directory (and its signature), then bind an interpreter.

        ``delegate``: an external delegate (``model.delegate``) that runs the ops it supports.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, trusted_keys)
        threads = threads or default_threads()
        backend = load_backend()
        interpreter = make_interpreter(bundle.model_path, threads, backend, delegate)
        return cls(bundle, interpreter, backend, threads, delegate)

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
    def run_model(self) -> None:
        """Hand the preprocessor's buffer to the interpreter and invoke it (no output read)."""
        self.interpreter.set_tensor(self._in, self.preprocessor.buffer)
        self.interpreter.invoke()

    def crop_preprocessor(self, resize: str) -> Preprocessor:
        """A second preprocessor for facing crops: this bundle's preprocessing, another resize policy.

        The detect_classify pipeline feeds it each detected facing; the detect bundle's manifest
        says which policy (``detection.crop_resize``), so the crop rule is recorded, not guessed.
        """
        spec = self.bundle.spec.model_copy(update={"resize": resize})
        return Preprocessor(spec, self.io.input.dtype, self.io.input.scale, self.io.input.zero_point)  # type: ignore[arg-type]

    def classify_prepared(self, buffer: np.ndarray, k: int = 1) -> list[Prediction]:
        """Top-``k`` for an input tensor another preprocessor filled (a facing crop)."""
        self.interpreter.set_tensor(self._in, buffer)
        self.interpreter.invoke()
        return self.top_predictions(k)

    def invoke(self) -> np.ndarray:
        """Run the model on the preprocessor's buffer; returns scores (probabilities if softmax)."""
        self.run_model()
        return self.output_scores()

    def output_scores(self) -> np.ndarray:
        """Dequantized output of the last invoke, as probabilities unless the model gives sigmoid scores."""
        raw = self.interpreter.get_tensor(self._out)[0]
        scores = dequantize(raw, *self._out_q)
        return softmax(scores) if self.output_kind == "logits" else scores

    def scores_bgr(self, frame: np.ndarray) -> np.ndarray:
        self.preprocessor.from_bgr(frame)
        return self.invoke()

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

    def classify_rgb(self, image: np.ndarray, k: int = 5) -> list[Prediction]:
        self.preprocessor.from_rgb(image)
        self.run_model()
        return self.top_predictions(k)

    def classify_pil(self, image: Any, k: int = 5) -> list[Prediction]:
        self.preprocessor.from_pil(image)
        self.run_model()
        return self.top_predictions(k)

    def classify_path(self, path: str | Path, k: int = 5) -> list[Prediction]:
        return self.classify_bgr(read_image(path), k)

    def describe(self) -> dict[str, Any]:
        """Model and runtime facts for logs, ``--json`` output and benchmark reports."""
        return describe_model(self) | {"output_kind": self.output_kind}
