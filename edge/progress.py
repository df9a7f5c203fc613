"""Progress for long work (evaluation, extraction, calibration, benchmarks).

On a terminal it redraws one line on stderr; elsewhere (CI logs, systemd journal) it logs a
line every tenth of the way, so logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("shelfscan.progress")


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "img", stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit = max(0, total), desc, unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._start = time.perf_counter()
        self._next_log = 0.1
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        frac = self.done / self.total if self.total else 1.0
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw > 0.1 or self.done >= self.total:
                self._last_draw = now
                self.stream.write(f"\r{self.line()}")
                self.stream.flush()
        elif frac >= self._next_log:
            self._next_log = (int(frac * 10) + 1) / 10
            log.info(self.line())

    def line(self) -> str:
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100 * self.done / self.total if self.total else 100.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = f", ETA {int(left // 60)}:{int(left % 60):02d}" if self.done < self.total and rate > 0 else ""
        return f"{self.desc}: {self.done}/{self.total} ({pct:.0f}%) {rate:.1f} {self.unit}/s{eta}"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
