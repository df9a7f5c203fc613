"""Configuration sections for running a fleet: Home Assistant, metrics, the live page, evidence, rollouts.

Part of the agent's one configuration model (:class:`edge.config.AgentConfig`, which imports them);
kept apart so that the core sections (device, model, source, inference, counting, MQTT) read on
their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from edge.bounds import Port, Share
from edge.config_base import Section as _Section


class HomeAssistantConfig(_Section):
    enabled: bool = Field(False, description="Announce one count sensor per label by Home Assistant MQTT discovery.")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery topic prefix.")
    status_topic: str = Field(
        "homeassistant/status", description="Announcements are repeated when this topic says 'online'."
    )


def _bind_address(note: str) -> Any:
    """The ``host`` field of an HTTP endpoint the agent serves: loopback unless the operator opens it."""
    return Field("127.0.0.1", description=f"Address the endpoint binds to (default loopback only); {note}.")


class MetricsConfig(_Section):
    """The optional Prometheus endpoint (docs/live.md): numbers only, no images."""

    enabled: bool = Field(False, description="Serve Prometheus metrics at http://host:port/metrics.")
    host: str = _bind_address("the robot's LAN address (or 0.0.0.0) when a Prometheus server elsewhere scrapes it")
    port: Port = Field(9108, description="Port of the metrics endpoint.")


class LiveConfig(_Section):
    """The optional live page for installers (docs/live.md): the camera frame with detections, counts, fps."""

    enabled: bool = Field(False, description="Serve the live page at http://host:port/.")
    host: str = _bind_address(
        "any address but loopback needs the password (password_env) set, or the agent refuses to start"
    )
    port: Port = Field(8088, description="Port of the live page.")
    password_env: str = Field(
        "SHELFSCAN_LIVE_PASSWORD",
        description="Environment variable holding the page's password; when set, the page "
        "asks for it (HTTP Basic auth, any user name).",
    )
    max_fps: float = Field(
        2.0,
        gt=0,
        le=30,
        description="At most this many frame images encoded per second, however many viewers "
        "(each costs a JPEG encode on a web thread, never on the frame loop).",
    )
    max_width: int = Field(960, ge=160, description="Frames wider than this are scaled down before encoding.")

    def password(self) -> str | None:
        return os.environ.get(self.password_env) or None


class EvidenceConfig(_Section):
    """Evidence images of doubtful counts, kept on the robot for audits (docs/agent.md, "Evidence")."""

    enabled: bool = Field(
        True,
        description="Keep a JPEG crop and its frame for every counted facing labelled 'unknown' "
        "or scored below min_score (detect_classify), and for cmd/snapshot; publish an "
        "'evidence' message naming the files.",
    )
    min_score: Share = Field(
        0.6,
        description="A counted facing whose score is below this gets evidence (unknown ones always do).",
    )
    max_files: int = Field(500, ge=2, description="Evidence files kept in state_dir/evidence; the oldest go first.")
    max_bytes: int = Field(
        50 * 10**6, ge=100_000, description="Evidence bytes kept in state_dir/evidence; oldest files go first."
    )
    min_free_bytes: int = Field(
        100 * 10**6,
        ge=0,
        description="Evidence is skipped (and counted as dropped) when its file system would "
        "have less than this free: it never fills the disk.",
    )
    crop_max_side: int = Field(
        160,
        ge=16,
        le=1024,
        description="Crops are scaled down to this longest side (pixels) when kept, so a live track holds a few kB.",
    )
    frame_max_side: int = Field(
        480,
        ge=64,
        le=4096,
        description="The frame a crop came from (and a snapshot) is scaled down to this longest side (pixels).",
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of evidence images.")


class RolloutConfig(_Section):
    enabled: bool = Field(
        True,
        description="Follow model rollouts published on the broker (shelfscan-convert "
        "publish). Only with model.trusted_keys set: without keys rollouts are ignored.",
    )
    canary_s: float = Field(60.0, gt=0, description="How long a new model is watched before it counts as active.")
    canary_min_frames: int = Field(
        30, ge=1, description="Frames the canary needs before it is judged (it waits up to 10 canary periods for them)."
    )
    fps_share: Share = Field(0.7, description="The new model must keep this share of the old frame rate.")
    confidence_share: Share = Field(
        0.6, description="The new model's mean top-1 confidence must keep this share of the old one's."
    )
    keep: int = Field(
        3,
        ge=2,
        le=50,
        description="Unpacked bundles kept under state_dir/bundles (the running and the previous one always are).",
    )
    max_archive_mb: float = Field(64.0, gt=0, description="Largest bundle archive accepted (packed and unpacked).")
    ca: Path | None = Field(
        None, description="CA certificate (PEM) for https:// archive URLs (publish --url); default: the system's CAs."
    )
