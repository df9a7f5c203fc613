"""systemd notifications (READY, WATCHDOG, STOPPING, STATUS) without a libsystemd dependency.

The watchdog is pinged only while the inference loop makes progress: a hung interpreter or a
deadlock stops the pings and systemd restarts the service (``WatchdogSec=``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send ``message`` to ``$NOTIFY_SOCKET``; False when not running under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, if systemd asked for watchdog pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


class Watchdog(threading.Thread):
    """Pings WATCHDOG=1 every interval, but only if ``last_progress()`` is recent enough."""

    def __init__(self, interval: float, last_progress: Callable[[], float], stall_after: float) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.interval, self.last_progress, self.stall_after = interval, last_progress, stall_after
        self._stop = threading.Event()
        self.stalled = False

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            age = time.monotonic() - self.last_progress()
            if age <= self.stall_after:
                notify("WATCHDOG=1")
                self.stalled = False
            elif not self.stalled:
                self.stalled = True
                log.error("inference loop stalled for %.0f s: watchdog pings stopped", age)

    def stop(self) -> None:
        self._stop.set()
