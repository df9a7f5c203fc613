"""Message envelopes and topics. Every message says what it is, who sent it, when, in which
order, and which model produced it, so an inventory system can trust and deduplicate it.

JSON Schemas for each type live in ``docs/schemas/`` and the tests validate real messages
against them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from edge.compat import StrEnum

#: 2: ``facing``, ``gap`` and ``shelfmap`` messages; ``counts`` gained ``pipeline``, ``reason`` and, in the
#: detect_classify pipeline, ``facings``, ``gaps``, ``unknown`` and ``rows`` (docs/agent.md, "Schema version 2").
SCHEMA_VERSION = 2


class MessageKind(StrEnum):
    """Every message type; each is the last topic level and has a schema in docs/schemas/."""

    STATUS = "status"
    SIGHTING = "sighting"
    FACING = "facing"
    GAP = "gap"
    COUNTS = "counts"
    SHELFMAP = "shelfmap"
    CLASSIFICATION = "classification"
    STATS = "stats"
    ERROR = "error"
    BENCH = "bench"
    EVIDENCE = "evidence"
    MODEL = "model"  # a model rollout step (edge.rollout)


_KINDS = frozenset(k.value for k in MessageKind)


def rfc3339(ts: float | None = None) -> str:
    dt = datetime.now(timezone.utc) if ts is None else datetime.fromtimestamp(ts, timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Topics:
    def __init__(self, prefix: str, device_id: str) -> None:
        self.base = f"{prefix}/{device_id}"

    def __getattr__(self, name: str) -> str:
        if name in _KINDS:
            return f"{self.base}/{name}"
        raise AttributeError(name)

    @property
    def pose(self) -> str:
        """The robot's odometry, published (retained) by the robot, read by the agent."""
        return f"{self.base}/pose"

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/#"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/cmd/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None


def envelope(kind: str, device_id: str, seq: int, model: dict[str, str] | None, **body: Any) -> bytes:
    """Serialize one message of ``kind`` (a :class:`MessageKind`)."""
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
