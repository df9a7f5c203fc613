"""External TFLite delegates: hand (part of) a model to an accelerator such as Coral's Edge TPU.

A delegate is a shared library (``libedgetpu.so.1``) that every interpreter package loads
the same way (``load_delegate(library, options)``, then ``experimental_delegates=[...]``).
The runtime's own loader reports a missing library as an ``OSError`` and a library without
the delegate entry points with tracebacks printed from a finaliser, so the library is
checked here first: a device misconfiguration must read as one line, not as a crash.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import DelegateError

#: The symbol every TFLite external delegate library exports (external_delegate_interface.h).
ENTRY_POINT = "tflite_plugin_create_delegate"


@dataclass(frozen=True)
class DelegateSpec:
    """Which delegate library to load and the options it takes (all strings, as the loader passes them)."""

    library: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The library's file name: what tables and logs show."""
        return Path(self.library).name

    def describe(self) -> dict[str, Any]:
        return {"library": self.library, "options": dict(self.options)}


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` command-line pairs as a delegate options dict."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DelegateError(f"--delegate-option: expected KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    return options


def load_external_delegate(spec: DelegateSpec, loader: Any) -> Any:
    """Load ``spec`` with the interpreter package's ``load_delegate``; every failure is a :class:`DelegateError`."""
    where = f"delegate {spec.library}"
    if loader is None:
        raise DelegateError(f"{where}: this TFLite runtime cannot load external delegates")
    try:
        library = ctypes.CDLL(spec.library)
    except OSError as exc:
        raise DelegateError(
            f"{where}: cannot load the library ({_first_line(exc)}); install it or give its full path"
        ) from None
    if not hasattr(library, ENTRY_POINT):
        raise DelegateError(f"{where}: not a TFLite delegate library (it has no {ENTRY_POINT})")
    try:
        return loader(spec.library, dict(spec.options))
    except (ValueError, RuntimeError, OSError, AttributeError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DelegateError(f"{where}: failed to create the delegate ({detail}); is its device connected?") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
