"""The demo's subscriber: prints sightings as they arrive, keeps the fleet table, and reports
the final counts against the truth.

It is an ordinary MQTT client of the agent's topics -- what an inventory system would run --
built on the same :class:`edge.watch.Fleet` as ``shelfscan-agent watch``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from edge.watch import BrokerURL, Fleet, connect


class LiveView:
    def __init__(self, url: BrokerURL, prefix: str, device_id: str) -> None:
        self.fleet = Fleet(prefix)
        self.device_id = device_id
        self.started = time.monotonic()
        self.wall_start = time.time()
        self.final: dict[str, Any] | None = None
        self.sightings = 0
        self.errors: list[str] = []
        self._final = threading.Event()
        self._last_status: tuple[Any, Any] = (None, None)
        self.client = connect(url, f"shelfscan-demo-view-{device_id}", [f"{prefix}/{device_id}/+"], self._on_message)

    def _on_message(self, topic: str, payload: bytes) -> None:
        got = self.fleet.update(topic, payload)
        if got is None:
            return
        _, kind, doc = got
        t = time.monotonic() - self.started
        if kind == "sighting":
            self.sightings += 1
            print(f"  [{t:6.1f} s] sighting #{self.sightings:<3} {doc['label']:<22} "
                  f"{doc['frames']:>3} frames  mean score {doc['mean_score']:.2f}", flush=True)  # fmt: skip
        elif kind == "error":
            self.errors.append(str(doc.get("error")))
            print(f"  [{t:6.1f} s] agent error: {doc.get('error')}", flush=True)
        elif kind == "status" and (doc.get("state"), doc.get("source")) != self._last_status:
            self._last_status = (doc.get("state"), doc.get("source"))
            print(f"  [{t:6.1f} s] agent {doc.get('state')} (source: {doc.get('source', '-')})", flush=True)
        elif kind == "counts" and doc.get("final") and not self._stale(doc):
            self.final = doc
            self._final.set()

    def _stale(self, doc: dict[str, Any]) -> bool:
        """A retained final count from an earlier run (MQTT_URL with a persistent broker)."""
        try:
            return datetime.fromisoformat(str(doc.get("started"))).timestamp() < self.wall_start - 1.0
        except ValueError:
            return False

    def wait_final(self, timeout: float) -> dict[str, Any] | None:
        self._final.wait(timeout)
        return self.final

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def counts_table(truth: dict[str, int], counted: dict[str, int]) -> tuple[str, bool]:
    """A per-class truth vs counted table and whether every class matches."""
    names = sorted(set(truth) | set(counted))
    width = max([len(n) for n in names] + [5])
    lines = [f"  {'class':<{width}}  truth  counted", f"  {'-' * width}  -----  -------"]
    ok = True
    for n in names:
        t, c = truth.get(n, 0), counted.get(n, 0)
        ok &= t == c
        lines.append(f"  {n:<{width}}  {t:>5}  {c:>7}  {'ok' if t == c else 'MISMATCH'}")
    lines.append(f"  {'total':<{width}}  {sum(truth.values()):>5}  {sum(counted.values()):>7}")
    return "\n".join(lines), ok
