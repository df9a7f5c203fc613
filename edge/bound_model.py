"""What a Classifier and a Detector share: a validated bundle bound to an interpreter.

Both open a bundle the same way (load and verify it, check its task before the interpreter
exists so that the error names the bundle, pick the runtime and threads), feed the interpreter
from one :class:`~edge.preprocess.Preprocessor`, log one load line and describe themselves
the same way. Keeping that here means a change to how models are opened reaches both stages
of the shelf pipeline at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from edge.adapters import DelegateSummary, DetectorIO, ModelIO, delegate_summary
from edge.bundle import Bundle, load_bundle, require_task
from edge.delegates import DelegateSpec
from edge.interpreter import Backend, default_threads, load_backend, make_interpreter, runtime_description
from edge.manifest import Task
from edge.preprocess import Preprocessor, PreprocessSpec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

IO = TypeVar("IO", ModelIO, DetectorIO)


class BoundModel(Generic[IO]):
    """A validated bundle, its interpreter and the preprocessor that fills the interpreter's input.

    Subclasses name their ``task`` (checked when opening and binding) and the ``noun`` their load
    line starts with; ``IO`` is what :mod:`edge.adapters` read from their interpreter.
    """

    task: ClassVar[Task]
    noun: ClassVar[str]

    bundle: Bundle
    interpreter: Any
    backend: Backend
    threads: int
    io: IO
    preprocessor: Preprocessor
    delegate: DelegateSummary
    external_delegate: DelegateSpec | None

    @classmethod
    def open_bundle(
        cls,
        bundle: str | Path | Bundle,
        threads: int | None,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None,
        delegate: DelegateSpec | None,
    ) -> tuple[Bundle, Any, Backend, int]:
        """Load (unless given) and verify ``bundle``, check its task, then make its interpreter."""
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, trusted_keys)
        require_task(bundle, cls.task)  # before the interpreter: the error names the bundle, not its tensors
        threads = threads or default_threads()
        backend = load_backend()
        return bundle, make_interpreter(bundle.model_path, threads, backend, delegate), backend, threads

    def bind(
        self,
        bundle: Bundle,
        interpreter: Any,
        backend: Backend,
        threads: int,
        io: IO,
        external_delegate: DelegateSpec | None,
        detail: str = "",
    ) -> None:
        """Keep what every bound model has, build its preprocessor and log the load line."""
        self.bundle, self.interpreter, self.backend, self.threads = bundle, interpreter, backend, threads
        self.labels = bundle.labels
        self.io = io
        self.preprocessor = self.make_preprocessor(bundle.spec)
        self._in = io.input.index
        self.delegate = delegate_summary(interpreter)
        self.external_delegate = external_delegate
        m = bundle.manifest
        log.info(
            "%s %s %s (%s%s): %s",
            self.noun,
            m.name,
            m.version,
            m.variant,
            detail,
            runtime_description(backend, threads, self.delegate, external_delegate, io.input.dtype, self.preprocessor),
        )

    def make_preprocessor(self, spec: PreprocessSpec) -> Preprocessor:
        """A preprocessor that writes ``spec``'s pixels in this model's input type and quantization."""
        info = self.io.input
        # arg-type: TensorInfo.dtype is the model's dtype name (str); nothing rejects float16/int16 inputs before
        # this, so narrowing to InputDType here would change behaviour.
        return Preprocessor(spec, info.dtype, info.scale, info.zero_point)  # type: ignore[arg-type]

    def run_model(self) -> None:
        """Hand the preprocessor's buffer to the interpreter and invoke it (no output read)."""
        self.interpreter.set_tensor(self._in, self.preprocessor.buffer)
        self.interpreter.invoke()

    def describe(self) -> dict[str, Any]:
        """What the model says about itself: model, runtime, delegate, input, preprocessing."""
        m = self.bundle.manifest
        return {
            "model": self.bundle.model_id | {"variant": m.variant, "backbone": m.backbone},
            "runtime": {"package": self.backend.name, "version": self.backend.version, "threads": self.threads},
            "delegate": {
                "xnnpack_applied": self.delegate.applied,
                "delegated_ops": self.delegate.delegated_ops,
                "total_ops": self.delegate.total_ops,
                "external": self.external_delegate.describe() if self.external_delegate else None,
            },
            "input": {
                "dtype": self.io.input.dtype,
                "shape": list(self.io.input.shape),
                "path": self.preprocessor.mode,
                "resize": self.preprocessor.resize_kernel,
            },
            "preprocessing": m.preprocessing.model_dump(),
        }
