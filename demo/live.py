"""The demo's subscriber: prints each counted facing and out-of-stock gap as it arrives, keeps
the fleet table, the shelf map and the final counts.

It is an ordinary MQTT client of the agent's topics -- what an inventory system would run --
built on the same :class:`edge.watch.Fleet` as ``shelfscan-agent watch`` (which folds status,
counts and stats; the facing, gap and shelfmap messages are this view's own).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

from edge.watch import BrokerURL, Fleet, connect

SCAN_MESSAGES = ("facing", "gap", "shelfmap", "evidence")


def facing_line(n: int, doc: dict[str, Any]) -> str:
    """One counted facing, as the live view prints it."""
    how = {"line": "crossed the line", "edge": "behind the line", "end": "at scan end"}.get(doc.get("how"), "")
    return f"facing #{n:<3} row {doc['row']}  {doc['label']:<16} score {doc['score']:.2f}  {how}"


def gap_line(n: int, doc: dict[str, Any]) -> str:
    """One out-of-stock gap, as the live view prints it."""
    return (
        f"gap    #{n:<3} row {doc['row']}  {doc['width_facings']:.1f} facings wide, between "
        f"{doc['left_label']} and {doc['right_label']}"
    )


class LiveView:
    def __init__(self, url: BrokerURL, prefix: str, device_id: str) -> None:
        self.fleet = Fleet(prefix)
        self.prefix, self.device_id = prefix, device_id
        self.started = time.monotonic()
        self.wall_start = time.time()
        self.final: dict[str, Any] | None = None
        self.facings: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.evidence: list[dict[str, Any]] = []
        self.shelfmap: dict[str, Any] | None = None
        self.errors: list[str] = []
        self._final = threading.Event()
        self._last_status: tuple[Any, Any] = (None, None)
        self.client = connect(url, f"shelfscan-demo-view-{device_id}", [f"{prefix}/{device_id}/+"], self._on_message)

    def _print(self, text: str) -> None:
        print(f"  [{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def _on_message(self, topic: str, payload: bytes) -> None:
        kind = topic.rsplit("/", 1)[-1]
        if kind in SCAN_MESSAGES:
            self._scan_message(kind, payload)
            return
        got = self.fleet.update(topic, payload)
        if got is None:
            return
        _, kind, doc = got
        if kind == "error":
            self.errors.append(str(doc.get("error")))
            self._print(f"agent error: {doc.get('error')}")
        elif kind == "status" and (doc.get("state"), doc.get("source")) != self._last_status:
            self._last_status = (doc.get("state"), doc.get("source"))
            self._print(
                f"agent {doc.get('state')} (source: {doc.get('source', '-')}, pipeline: {doc.get('pipeline', '-')})"
            )
        elif kind == "counts" and doc.get("final") and not self._stale(doc):
            self.final = doc
            self._final.set()

    def _scan_message(self, kind: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        if kind == "facing":
            self.facings.append(doc)
            self._print(facing_line(len(self.facings), doc))
        elif kind == "gap":
            self.gaps.append(doc)
            self._print(gap_line(len(self.gaps), doc))
        elif kind == "evidence":
            self.evidence.append(doc)
        elif not self._stale(doc):  # shelfmap, retained: not one of an earlier run
            self.shelfmap = doc

    def _stale(self, doc: dict[str, Any]) -> bool:
        """A retained message of an earlier run (MQTT_URL with a persistent broker): older than this view."""
        try:
            ts = doc.get("started") or doc.get("ts")
            return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp() < self.wall_start - 1.0
        except ValueError:
            return False

    def wait_final(self, timeout: float) -> dict[str, Any] | None:
        """The final counts; the shelf map, published just before them, is then in too (or soon is)."""
        self._final.wait(timeout)
        deadline = time.monotonic() + 2.0
        while self.final is not None and self.shelfmap is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.final

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
