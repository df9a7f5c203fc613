"""Test-side MQTT subscriber (a real paho client) and reference-model fixtures for the agent."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "docs" / "schemas"


class Subscriber:
    """Collects every message under a topic filter; a persistent session survives broker restarts."""

    def __init__(self, port: int, topic: str, client_id: str = "test-sub", persistent: bool = True) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent, protocol=mqtt.MQTTv311
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except (ValueError, RecursionError):  # the tests publish poison commands on the same topics
            doc = {"raw": msg.payload.decode(errors="replace")}
        with self.lock:
            self.messages.append((msg.topic, doc, bool(msg.retain)))

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [d for t, d, _ in self.messages if t.endswith("/" + kind)]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_shelf_video(path: Path, photos: list[Path], pattern: list[int], frames_per_run: int, fps: float = 30) -> None:
    """A 640x480 video of runs of photos (pattern = photo indices), each run ``frames_per_run`` long."""
    images = [cv2.resize(cv2.imread(str(p)), (640, 480), interpolation=cv2.INTER_AREA) for p in photos]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    rng = np.random.default_rng(0)
    for idx in pattern:
        for _ in range(frames_per_run):
            jitter = rng.integers(-3, 4, (480, 640, 3))
            writer.write(np.clip(images[idx].astype(np.int16) + jitter, 0, 255).astype(np.uint8))
    writer.release()


def toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def agent_config(tmp: Path, port: int, bundle: Path, source: str, **sections: dict[str, Any]) -> Path:
    """Write an agent TOML for tests."""
    parts = {
        "device": {"id": "robot-1", "prefix": "test", "state_dir": str(tmp / "state")},
        "model": {"bundle": str(bundle), "threads": 1, "watch_interval_s": 0.5},
        "source": {},
        "inference": {"max_fps": 200, "score_threshold": 0.3, "smoothing_frames": 3, "min_frames": 4},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_backoff_s": [1.0, 2.0], "keepalive_s": 5},
        "publish": {"stats_interval_s": 1.0},
    }
    for name, values in sections.items():
        parts.setdefault(name, {}).update(values)
    lines = []
    for name, values in parts.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {toml_value(v)}")
    lines.insert(0, "")
    text = "\n".join(lines).replace("[source]", f"[source]\n{source}")
    path = tmp / "agent.toml"
    path.write_text(text + "\n")
    return path
