"""``shelfscan-agent watch``: a live table of every device under a topic prefix.

The fleet state is a pure function of the messages seen (:class:`Fleet`), so the terminal
table, ``--json`` and the demo's live view all read the same thing. Retained ``status`` and
``counts`` arrive on subscribe, so even a one-shot ``--once`` shows every known device.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from edge.errors import ShelfscanError

WATCHED = ("status", "counts", "stats", "sighting", "error", "model")


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    ca: Path | None = None  # CA certificate for mqtts:// (default: the system's)
    cert: Path | None = None  # client certificate and key, for brokers that require one
    key: Path | None = None


def parse_broker_url(
    url: str,
    protocol: Literal["3.1.1", "5"] = "3.1.1",
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
) -> BrokerURL:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` (TLS, port 8883 by default)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ShelfscanError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ShelfscanError(f"broker URL {url!r}: bad port") from None
    if not parts.hostname:
        raise ShelfscanError(f"broker URL {url!r}: no host")
    password = unquote(parts.password) if parts.password else os.environ.get("SHELFSCAN_MQTT_PASSWORD")
    files = {"--ca": ca, "--cert": cert, "--key": key}
    for option, name in files.items():
        if name is not None and not tls:
            raise ShelfscanError(f"{option} {name}: only for an mqtts:// broker URL")
        if name is not None and not Path(name).is_file():
            raise ShelfscanError(f"{option} {name}: file not found")
    if (cert is None) != (key is None):
        raise ShelfscanError("--cert and --key go together (the client certificate and its key)")
    user = unquote(parts.username) if parts.username else None
    paths = [Path(n) if n else None for n in (ca, cert, key)]
    return BrokerURL(parts.hostname, port, tls, user, password, protocol, *paths)


@dataclass
class Device:
    device_id: str
    state: str = "?"
    source: str | None = None
    model: str = ""
    scan_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    final: bool = False
    fps: float | None = None
    latency_ms: float | None = None
    outbox_depth: int | None = None
    last_error: str | None = None
    last_outage: str | None = None
    rollout: str | None = None  # the rollout state (status) or the last rollout step (model messages)
    last_seen: float = 0.0


class Fleet:
    """Per-device state folded from messages under ``<prefix>/<device>/<type>``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.devices: dict[str, Device] = {}
        self.lock = threading.Lock()

    def update(self, topic: str, payload: bytes) -> tuple[str, str, dict[str, Any]] | None:
        """Fold one message in; returns ``(device, type, document)`` or None when it is not ours."""
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else None
        if rest is None or rest.count("/") != 1:
            return None
        device_id, kind = rest.split("/")
        if kind not in WATCHED:
            return None
        try:
            doc = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        with self.lock:
            d = self.devices.setdefault(device_id, Device(device_id))
            d.last_seen = time.time()
            model = doc.get("model")
            if isinstance(model, dict) and model.get("name"):
                d.model = f"{model.get('name')} {model.get('version', '')}".strip()
            if kind == "status":
                d.state = str(doc.get("state", "?"))
                d.source = doc.get("source", d.source)
                outage = doc.get("mqtt_last_outage")
                if isinstance(outage, dict):
                    d.last_outage = (
                        f"{str(outage.get('reason', '?'))[:80]}, {outage.get('attempts', '?')} failed "
                        f"attempts, down {outage.get('down_s', '?')} s, until {outage.get('ended', '?')}"
                    )
            elif kind == "counts":
                d.scan_id, d.final = doc.get("scan_id"), bool(doc.get("final"))
                d.counts = {str(k): int(v) for k, v in (doc.get("counts") or {}).items()}
            elif kind == "stats":
                d.fps, d.outbox_depth = doc.get("fps"), doc.get("outbox_depth")
                d.latency_ms = ((doc.get("latency_ms") or {}).get("frame") or {}).get("p50")
            elif kind == "error":
                d.last_error = str(doc.get("error", ""))[:120]
            elif kind == "model":  # a rollout step: what an operator rolling out wants to see per device
                why = f": {str(doc['reason'])[:80]}" if doc.get("reason") else ""
                d.rollout = f"{doc.get('version', '?')} {doc.get('step', '?')}{why}"
            if kind == "status" and isinstance(doc.get("rollout"), dict) and doc["rollout"].get("state") != "idle":
                d.rollout = f"{doc['rollout'].get('version', '?')} {doc['rollout'].get('state')}"
        return device_id, kind, doc

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(d) for _, d in sorted(self.devices.items())]

    def table(self) -> str:
        rows = self.snapshot()
        if not rows:
            return f"no devices under {self.prefix}/ yet"
        head = ("device", "status", "source", "model", "fps", "p50 ms", "outbox", "scan", "counts")
        body = []
        for d in rows:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(d["counts"].items(), key=lambda kv: -kv[1])) or "-"
            scan = (d["scan_id"] or "-") + (" (final)" if d["final"] else "")
            body.append(
                (
                    d["device_id"],
                    d["state"],
                    d["source"] or "-",
                    d["model"] or "-",
                    _num(d["fps"]),
                    _num(d["latency_ms"]),
                    _num(d["outbox_depth"]),
                    scan,
                    counts,
                )
            )
        widths = [max(len(str(r[i])) for r in (head, *body)) for i in range(len(head) - 1)]
        lines = ["  ".join(f"{h:<{w}}" for h, w in zip(head, widths, strict=False)) + "  " + head[-1]]
        for r in body:
            lines.append("  ".join(f"{c!s:<{w}}" for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
        errors = [f"  {d['device_id']}: last error: {d['last_error']}" for d in rows if d["last_error"]]
        outages = [f"  {d['device_id']}: last MQTT outage: {d['last_outage']}" for d in rows if d["last_outage"]]
        rollouts = [f"  {d['device_id']}: rollout: {d['rollout']}" for d in rows if d["rollout"]]
        return "\n".join(lines + rollouts + errors + outages)


def _num(v: Any) -> str:
    return "-" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))


def connect(url: BrokerURL, client_id: str, topics: list[str], on_message: Any) -> Any:
    """A paho (VERSION2 callbacks) client that subscribes again on every connect."""
    from edge.config import TLSConfig
    from edge.mqtt_client import new_client

    tls = TLSConfig(ca=url.ca, cert=url.cert, key=url.key) if url.tls else None
    client = new_client(client_id, protocol=url.protocol, username=url.username, password=url.password, tls=tls)

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        for t in topics:
            c.subscribe(t, qos=1)

    client.on_connect = on_connect
    client.on_message = lambda c, u, msg: on_message(msg.topic, msg.payload)
    client.reconnect_delay_set(1, 10)
    try:
        client.connect(url.host, url.port, keepalive=30)
    except OSError as exc:
        raise ShelfscanError(f"cannot reach broker {url.host}:{url.port}: {exc.strerror or exc}") from None
    client.loop_start()
    return client
