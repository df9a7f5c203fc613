"""Real storage faults for tests: a small tmpfs that fills up, a read-only mount, a corrupt file.

Mounting needs root; without it the fixtures skip and say why (a plain ``chmod`` is no test as
root, and a ``LD_PRELOAD`` fake is not the kernel's ENOSPC).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (disk full / read-only state_dir); run the tests as root")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``, unmounted (lazily, if something still holds it) at the end."""
    require_root()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    """``ro`` or ``rw``: what a kernel does to a file system after an I/O error, and what an operator undoes."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(path: Path, leave: int = 0) -> Path:
    """Fill the file system under ``path`` until ENOSPC (``leave`` bytes short of it); returns the filler file."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def corrupt(path: Path) -> None:
    """Garbage where a SQLite database was (a half-written block after a power cut, a bad SD card)."""
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"not a database, after a power cut " * 256)
