"""Home Assistant MQTT discovery: one count sensor per label, read from the retained counts.

The sensors point at the agent's own ``counts`` and ``status`` topics, so nothing extra is
published per frame; Home Assistant only needs the (retained) config messages, which are sent
on every connect, after a model reload (labels may change), and whenever Home Assistant
announces ``online`` on its status topic (it forgets non-retained state on restart).
"""

from __future__ import annotations

import json
import re

from edge import __version__
from edge.messages import Topics


def object_id(device_id: str, label: str) -> str:
    """Discovery ids allow ``[a-zA-Z0-9_-]`` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{device_id}_{label}")


def config_topic(discovery_prefix: str, device_id: str, label: str) -> str:
    return f"{discovery_prefix}/sensor/{object_id(device_id, label)}/config"


def discovery_messages(
    discovery_prefix: str, device_id: str, topics: Topics, labels: list[str], model: dict[str, str]
) -> list[tuple[str, bytes]]:
    """``(topic, payload)`` for every label's sensor config."""
    device = {
        "identifiers": [f"shelfscan_{device_id}"],
        "name": f"shelfscan {device_id}",
        "manufacturer": "shelfscan",
        "model": f"{model.get('name', '')} {model.get('version', '')}".strip(),
        "sw_version": __version__,
    }
    out = []
    for label in labels:
        oid = object_id(device_id, label)
        doc = {
            "name": label.replace("_", " "),
            "unique_id": f"shelfscan_{oid}",
            "object_id": f"shelfscan_{oid}",
            "state_topic": topics.counts,
            "value_template": f"{{{{ value_json.counts.get({json.dumps(label)}, 0) }}}}",
            "json_attributes_topic": topics.counts,
            "json_attributes_template": '{{ {"scan_id": value_json.scan_id, "final": value_json.final} | tojson }}',
            "unit_of_measurement": "items",
            "state_class": "measurement",
            "icon": "mdi:package-variant-closed",
            "availability_topic": topics.status,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        out.append((config_topic(discovery_prefix, device_id, label), json.dumps(doc).encode()))
    return out
