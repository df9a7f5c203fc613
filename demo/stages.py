"""How the demo runs its stages: a numbered banner each, the real commands as subprocesses, one error type.

Shared by :mod:`demo.run` (data, video, broker, agent) and :mod:`demo.models` (training and conversion).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

STAGES = 8


class StageError(Exception):
    """A stage's command failed; its output is above, this says which."""


def stage(n: int, title: str) -> float:
    print(f"\n=== [{n}/{STAGES}] {title}", flush=True)
    return time.monotonic()


def run_cli(args: list[str], what: str, ok: tuple[int, ...] = (0,)) -> int:
    """Run one of our commands with this interpreter, its progress straight to the terminal; a status
    outside ``ok`` fails the stage."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    rc = subprocess.call([sys.executable, "-m", *args], env=env)
    if rc not in ok:
        raise StageError(f"{what} failed with status {rc} (see above)")
    return rc
