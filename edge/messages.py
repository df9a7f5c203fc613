"""Message envelopes and topics. Every message says what it is, who sent it, when, in which
order, and which model produced it, so an inventory system can trust and deduplicate it.

JSON Schemas for each type live in ``docs/schemas/`` and the tests validate real messages
against them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
TYPES = ("status", "sighting", "counts", "classification", "stats", "error", "bench")


def rfc3339(ts: float | None = None) -> str:
    dt = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Topics:
    def __init__(self, prefix: str, device_id: str) -> None:
        self.base = f"{prefix}/{device_id}"

    def __getattr__(self, name: str) -> str:
        if name in TYPES:
            return f"{self.base}/{name}"
        raise AttributeError(name)

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/#"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None


def envelope(kind: str, device_id: str, seq: int, model: dict[str, str] | None, **body: Any) -> bytes:
    """Serialize one message; ``kind`` is one of :data:`TYPES`."""
    doc = {
        "schema": f"shelfscan.{kind}",
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "seq": seq,
        "ts": rfc3339(),
        "model": model,
        **body,
    }
    return json.dumps(doc, separators=(",", ":")).encode()
