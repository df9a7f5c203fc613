"""LiteRT's one-time banner (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``) into logging.

The C++ runtime writes it straight to file descriptor 2 the first time a process creates an
interpreter, so Python's logging never sees it and every command's output starts with it.
Around that first creation only, fd 2 points at a temporary file; what landed there is then
logged: ``INFO:`` lines at INFO (shown with ``-v``), anything else at WARNING, so a real
native error is never swallowed. Later interpreters print nothing and are not wrapped (fd 2 is
process-wide: other threads' stderr would be caught too, which matters once the agent runs).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("edge.litert")
_first = True


@contextmanager
def first_interpreter_output() -> Iterator[None]:
    """Capture fd 2 while the process's first interpreter is created; log it afterwards."""
    global _first
    if not _first:
        yield
        return
    _first = False
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (a daemon with closed stdio): nothing to tidy
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.log(logging.INFO if line.startswith("INFO: ") else logging.WARNING, "%s", line)
