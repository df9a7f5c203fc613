"""What a Classifier and a Detector share: a validated bundle bound to an interpreter.

Both open a bundle the same way (load and verify it, check its task before the interpreter
exists so that the error names the bundle, pick the runtime and threads), feed the interpreter
from one :class:`~edge.preprocess.Preprocessor`, log one load line and describe themselves
the same way. Keeping that here means a change to how models are opened reaches both stages
of the shelf pipeline at once.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from edge.adapters import DelegateSummary, DetectorIO, ModelIO, delegate_summary
from edge.bundle import Bundle, check_model_io, load_bundle, require_task
from edge.delegates import DelegateSpec
from edge.interpreter import Backend, default_threads, load_backend, make_interpreter, runtime_description
from edge.manifest import Task
from edge.preprocess import Preprocessor, PreprocessSpec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

IO = TypeVar("IO", ModelIO, DetectorIO)
M = TypeVar("M", bound="BoundModel[Any]")


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

    def __init__(
        self,
        bundle: Bundle,
        interpreter: Any,
        backend: Backend,
        threads: int,
        external_delegate: DelegateSpec | None = None,
        **options: Any,
    ) -> None:
        """Check ``bundle`` against ``interpreter``'s tensors and bind them; ``options`` go to :meth:`configure`."""
        require_task(bundle, self.task)
        io = self.read_io(bundle, interpreter)
        check_model_io(bundle, io)
        self.bundle, self.interpreter, self.backend, self.threads = bundle, interpreter, backend, threads
        self.labels = bundle.labels
        self.io = io
        self.configure(**options)  # first: a bad setting is refused before anything else is built
        self.preprocessor = self.make_preprocessor(bundle.spec)
        self._in = io.input.index
        self.delegate = delegate_summary(interpreter)
        self.external_delegate = external_delegate
        m = bundle.manifest
        # logged under the subclass's module (edge.runtime, edge.detector), where the load lines always were
        logging.getLogger(type(self).__module__).info(
            "%s %s %s (%s%s): %s",
            self.noun,
            m.name,
            m.version,
            m.variant,
            self.load_detail(),
            runtime_description(backend, threads, self.delegate, external_delegate, io.input.dtype, self.preprocessor),
        )

    @classmethod
    def from_bundle(
        cls: type[M],
        bundle: str | Path | Bundle,
        threads: int | None = None,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
        delegate: DelegateSpec | None = None,
        **options: Any,
    ) -> M:
        """Load and fully validate a bundle directory (and its signature), then bind an interpreter.

        The task is checked before the interpreter exists, so the error names the bundle, not its
        tensors. ``delegate``: an external delegate (``model.delegate``) that runs the ops it
        supports; ``options``: the subclass's :meth:`configure` settings (a detector's thresholds).
        """
        try:  # a misspelt setting is a usage error now, not after the model and its delegate are loaded
            inspect.signature(cls.configure).bind(None, **options)
        except TypeError as exc:
            raise TypeError(f"{cls.__name__}.from_bundle: {exc}") from None
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, trusted_keys)
        require_task(bundle, cls.task)
        threads = threads or default_threads()
        backend = load_backend()
        interpreter = make_interpreter(bundle.model_path, threads, backend, delegate)
        return cls(bundle, interpreter, backend, threads, delegate, **options)

    # -- what a subclass says -----------------------------------------------------------------
    @classmethod
    def read_io(cls, bundle: Bundle, interpreter: Any) -> IO:
        """The model's input and output tensors, as :mod:`edge.adapters` reads them."""
        raise NotImplementedError

    def configure(self) -> None:
        """Subclass state derived from the bound model (output indices, settings); runs before the load line."""

    def load_detail(self) -> str:
        """Text after the variant in the load line."""
        return ""

    # -- shared -------------------------------------------------------------------------------
    def make_preprocessor(self, spec: PreprocessSpec) -> Preprocessor:
        """A preprocessor that writes ``spec``'s pixels in this model's input type and quantization; it resizes
        with as many threads as the interpreter has (they are idle while a frame is resized)."""
        info = self.io.input
        # arg-type: TensorInfo.dtype is the model's dtype name (str); nothing rejects float16/int16 inputs before
        # this, so narrowing to InputDType here would change behaviour.
        return Preprocessor(spec, info.dtype, info.scale, info.zero_point, self.threads)  # type: ignore[arg-type]

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
