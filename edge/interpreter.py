"""The TFLite interpreter packages and opening a ``.tflite``: the layer below bundles and models.

Order: ``ai_edge_litert`` (the maintained package), ``tflite_runtime`` (legacy devices that
cannot upgrade), then TensorFlow's ``tf.lite`` (workstations). ``SHELFSCAN_RUNTIME`` forces
one, which is how a user checks that a variant behaves the same on every runtime.

Apart from :mod:`edge.runtime` because :mod:`edge.bundle` needs to read a model's tensors
(:func:`inspect_model`) while the runtime needs bundles: both import this module, not each other.
The packages themselves are imported only when a model is opened (:func:`load_backend`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge.adapters import DetectorIO, ModelIO, describe_detector_io, describe_io
from edge.delegates import DelegateSpec, load_external_delegate
from edge.errors import BundleError, DelegateError, RuntimeUnavailableError
from edge.native_stderr import first_interpreter_output

# The logger keeps the name it had before this module was split from edge.runtime: log
# configurations and people reading `-v` output know the runtime's lines by it.
log = logging.getLogger("edge.runtime")
_IO = TypeVar("_IO")

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_MODULES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",
}


#: The compiled hot paths and what runs instead when one was not built (no compiler at install).
NATIVE_FALLBACKS = {"edge._resample": "resizing uses Pillow"}


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


def runtime_description(
    backend: Backend, threads: int, delegate: Any, external: Any, input_dtype: str, preprocessor: Any
) -> str:
    """How a model runs, for the line a classifier or detector logs when it loads: runtime, threads, which
    delegate and how many of its ops it took, input type, preprocessing and resize kernel."""
    return (
        f"runtime {backend.name} {backend.version}, {threads} threads, "
        f"{external.name if external else 'XNNPACK'} {'applied' if delegate.applied else 'not applied'} "
        f"({delegate.delegated_ops} of {delegate.total_ops} ops), input {input_dtype} via {preprocessor.mode}, "
        f"resize {preprocessor.resize_kernel}"
    )


def default_threads() -> int:
    """All cores up to four: beyond that TFLite CPU kernels rarely scale on edge boards."""
    return max(1, min(4, os.cpu_count() or 1))


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM and SIGINT while the runtime builds its native objects, when a Python handler would run.

    A stop signal's Python handler may raise (the agent's start does; SIGINT's default raises
    KeyboardInterrupt). Raised inside the runtime's own constructors, it leaves half-built objects
    whose finalisers then fail on stderr ("Exception ignored ... no attribute '_delegate_ptr'",
    seen with a delegate that takes seconds to start). Blocked here, the signal waits in the
    kernel and its handler runs in our frame instead. A signal left to the OS (SIGTERM's
    default: the process ends at once) is not held, so a hung delegate can still be stopped.
    The hold covers the calling thread and the threads the runtime starts meanwhile; the agent's
    start, where it matters, has no other thread yet.
    """
    held = {sig for sig in (signal.SIGTERM, signal.SIGINT) if callable(signal.getsignal(sig))}
    if not held or not hasattr(signal, "pthread_sigmask"):  # nothing to hold, or not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
    with signals_held():
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
        other = _other_kind(interpreter, describe_detector_io)
        if other is None:
            raise BundleError(f"{model}: {exc}") from None
        raise BundleError(
            f"{model}: is a detector ({other.format} outputs), not a classifier; use shelfscan-agent detect "
            "--model / edge.detector.Detector.from_file"
        ) from None


def inspect_detector(
    model: str | Path, threads: int | None = None, delegate: DelegateSpec | None = None
) -> tuple[Any, DetectorIO]:
    """Open a detector and identify its outputs by shape; a classifier is named as one."""
    interpreter = make_interpreter(model, threads, delegate=delegate)
    try:
        io = describe_detector_io(interpreter)
    except ValueError as exc:
        classifier = _other_kind(interpreter, describe_io) is not None
        hint = " (this is a classifier: use shelfscan-agent classify / edge.runtime.Classifier)" if classifier else ""
        raise BundleError(f"{model}: {exc}{hint}") from None
    return interpreter, io


def _other_kind(interpreter: Any, describe: Callable[[Any], _IO]) -> _IO | None:
    """What the model is when it is not what was asked for (so the error can say so), or None."""
    try:
        return describe(interpreter)
    except ValueError:
        return None
