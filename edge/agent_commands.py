"""The agent's command handlers: ``cmd/<name>`` payloads, the robot's pose, rollout steps.

Every handler runs on the inference thread (the link only queues events) and answers bad input
with an ``error`` message, never an exception: a command must not end the agent. Kept apart
from the frame loop in :mod:`edge.agent`, which mixes this class in and provides what it uses
(``publish``, ``error``, ``publish_status``, ``start_scan``, the pipeline, evidence and rollout).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.agent_events import Command
from edge.messages import MessageKind

if TYPE_CHECKING:
    from edge.config import AgentConfig
    from edge.evidence import Evidence
    from edge.pipelines import FramePipeline
    from edge.rollout import Rollout

log = logging.getLogger("edge.agent")  # the agent's log lines keep their logger name


class AgentCommands:
    """Handlers for the command table (``Agent._commands``) and the pose and rollout events."""

    cfg: AgentConfig
    pipeline: FramePipeline
    evidence: Evidence | None
    rollout: Rollout | None
    scan: dict[str, Any] | None
    pose: dict[str, Any] | None
    _commands: dict[str, Callable[[dict[str, Any]], None]]
    _last_frame: Any

    if TYPE_CHECKING:  # provided by edge.agent.Agent

        def error(self, message: str, **context: Any) -> None: ...

        def publish(self, kind: MessageKind, retain: bool = False, qos: int | None = None, **body: Any) -> None: ...

        def publish_status(self, **extra: Any) -> None: ...

        def announce(self) -> None: ...

        def start_scan(self, scan_id: str, location: str = "") -> None: ...

        def _scan_fields(self) -> dict[str, Any]: ...

    def _command(self, name: str, payload: bytes) -> None:
        try:
            body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("payload must be a JSON object")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..." nested deep
            self.error(
                f"malformed command on cmd/{name[:100]}: {type(exc).__name__}: {str(exc)[:200]}", command=name[:100]
            )
            return
        handler = self._commands.get(name)
        if handler is None:
            self.error(f"unknown command cmd/{name[:100]}", command=name[:100])
            return
        try:
            handler(body)
        except Exception as exc:  # a command must never end the agent
            log.exception("command cmd/%s failed", name)
            self.error(f"command cmd/{name} failed: {type(exc).__name__}: {str(exc)[:200]}", command=name)

    def _cmd_scan_start(self, body: dict[str, Any]) -> None:
        scan_id, location = body.get("scan_id"), body.get("location", "")
        if not isinstance(scan_id, str) or not scan_id or not isinstance(location, str):
            self.error(
                "cmd/scan/start needs a non-empty string 'scan_id' (and optional string 'location')",
                command=Command.SCAN_START,
            )
            return
        self.start_scan(scan_id[:200], location[:200])

    def _cmd_snapshot(self, body: dict[str, Any]) -> None:
        """The current frame kept as evidence; an optional string ``request_id`` comes back in the message."""
        if self.evidence is None:
            self.error("cmd/snapshot: evidence is disabled (evidence.enabled)", command=Command.SNAPSHOT)
            return
        if self._last_frame is None:
            self.error("cmd/snapshot: no frame processed yet", command=Command.SNAPSHOT)
            return
        request = body.get("request_id")
        doc = self.evidence.snapshot(*self._last_frame)
        if doc is None:
            self.error("cmd/snapshot: evidence not written (see the agent's log)", command=Command.SNAPSHOT)
            return
        scan: dict[str, Any] = self._scan_fields() if self.scan is not None else {"scan_id": None, "location": ""}
        extra: dict[str, Any] = {"request_id": request[:200]} if isinstance(request, str) else {}
        self.publish(MessageKind.EVIDENCE, qos=max(self.cfg.mqtt.qos, 1), **scan, **doc, **extra)

    def _rollout_step(self, step: Callable[[Rollout], None]) -> None:
        """Run a rollout step; when it changed the running models, say so in the retained status."""
        if self.rollout is None:
            return
        before = self.pipeline.models()
        state = self.rollout.state
        step(self.rollout)
        if self.pipeline.models() != before:
            self.publish_status(reloaded_from=before["classifier"])
            self.announce()
        elif self.rollout.state != state:
            self.publish_status()

    def _pose(self, payload: bytes) -> None:
        """The robot's odometry (retained): ``x_m`` along the aisle, optional ``y_m``, ``aisle``, ``heading``."""
        try:
            body = json.loads(payload.decode("utf-8"))
            if not isinstance(body, dict) or not isinstance(body.get("x_m", 0.0), int | float):
                raise ValueError("expected a JSON object with a numeric x_m")
        except (ValueError, UnicodeDecodeError) as exc:
            self.error(f"malformed pose on {self.cfg.counting.pose_topic or 'pose'}: {str(exc)[:200]}")
            return
        self.pose = {k: v for k, v in body.items() if k in ("x_m", "y_m", "aisle", "heading", "ts")}
