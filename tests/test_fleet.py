"""What a fleet operator sees: ``shelfscan-agent watch`` and Home Assistant discovery, against a
real Mosquitto and a real agent."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.bundle import write_bundle
from edge.errors import ShelfscanError
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec
from edge.watch import Fleet, parse_broker_url
from tests.conftest import run_cli
from tests.mqtt_helpers import Subscriber, agent_config, write_shelf_video
from tests.test_agent import start_agent


def publish(port: int, messages: list[tuple[str, dict | bytes, bool]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, doc, retain in messages:
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_parse_broker_url():
    assert parse_broker_url("mqtt://broker.local") == parse_broker_url("broker.local:1883")
    u = parse_broker_url("mqtts://ops:s%40cret@broker:9883")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("broker", 9883, True, "ops", "s@cret")
    assert parse_broker_url("mqtts://broker").port == 8883
    with pytest.raises(ShelfscanError, match="scheme"):
        parse_broker_url("http://broker")


def test_fleet_folds_messages_and_ignores_foreign_or_malformed_ones():
    fleet = Fleet("shelfscan")
    model = {"name": "freiburg", "version": "3", "sha256": "x"}
    assert fleet.update(
        "shelfscan/pi-1/status", json.dumps({"state": "online", "source": "ok", "model": model}).encode()
    )
    fleet.update("shelfscan/pi-1/counts", json.dumps({"scan_id": "s1", "final": True, "counts": {"milk": 3}}).encode())
    fleet.update(
        "shelfscan/pi-1/stats",
        json.dumps({"fps": 9.5, "outbox_depth": 4, "latency_ms": {"frame": {"p50": 31.2}}}).encode(),
    )
    assert fleet.update("shelfscan/pi-2/status", b"{not json") is None
    assert fleet.update("other/pi-3/status", b'{"state": "online"}') is None
    assert fleet.update("shelfscan/pi-1/cmd/scan/start", b"{}") is None
    (d,) = fleet.snapshot()
    assert (d["device_id"], d["state"], d["model"], d["counts"], d["fps"], d["latency_ms"], d["outbox_depth"]) == (
        "pi-1",
        "online",
        "freiburg 3",
        {"milk": 3},
        9.5,
        31.2,
        4,
    )
    assert "milk 3" in fleet.table() and "s1 (final)" in fleet.table()


def test_watch_shows_every_device_from_retained_state(broker):
    model = {"name": "freiburg", "version": "7", "sha256": "x"}
    publish(
        broker.port,
        [
            ("shop/pi-1/status", {"state": "online", "source": "ok", "model": model}, True),
            (
                "shop/pi-1/counts",
                {"scan_id": "aisle-4", "final": False, "counts": {"milk": 2, "tea": 1}, "model": model},
                True,
            ),
            ("shop/pi-2/status", {"state": "offline", "model": model}, True),
            ("elsewhere/pi-9/status", {"state": "online"}, True),
        ],
    )
    url = f"mqtt://127.0.0.1:{broker.port}"
    proc = run_cli("watch", "--broker", url, "--prefix", "shop", "--json", "--once", "1.5")
    assert proc.returncode == 0, proc.stderr
    devices = {d["device_id"]: d for d in json.loads(proc.stdout)}
    assert set(devices) == {"pi-1", "pi-2"}
    assert devices["pi-1"]["counts"] == {"milk": 2, "tea": 1} and devices["pi-1"]["scan_id"] == "aisle-4"
    assert devices["pi-2"]["state"] == "offline" and devices["pi-1"]["model"] == "freiburg 7"
    table = run_cli("watch", "--broker", url, "--prefix", "shop", "--once", "1").stdout
    assert "pi-1" in table and "milk 2, tea 1" in table and "offline" in table


def test_watch_unreachable_broker_is_one_line():
    proc = run_cli("watch", "--broker", "mqtt://127.0.0.1:1", "--once", "0.1")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot reach broker 127.0.0.1:1" in proc.stderr


@pytest.fixture
def tiny_bundle(tiny_models, tmp_path) -> Path:
    out = tmp_path / "tiny-bundle"
    spec = PreprocessSpec(height=16, width=16, mean=(127.5,) * 3, std=(127.5,) * 3)
    write_bundle(
        out,
        tiny_models["float_softmax"],
        read_labels(tiny_models["labels"]),
        spec,
        name="tiny",
        version="1",
        backbone="tiny",
        variant="fp32",
    )
    return out


def test_home_assistant_discovery_and_reannounce(tmp_path, broker, tiny_bundle, reference):
    video = tmp_path / "loop.avi"
    write_shelf_video(video, [reference / "samples" / "coffee.png"], [0], frames_per_run=10)
    sub = Subscriber(broker.port, "homeassistant/#", client_id="ha", persistent=False)
    cfg = agent_config(
        tmp_path,
        broker.port,
        tiny_bundle,
        f'kind = "video"\npath = "{video}"\nloop = true',
        inference={"ignore_labels": ["cherry"]},
        homeassistant={"enabled": True},
    )
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        configs = lambda s: [(t, d) for t, d, _ in s.messages if t.endswith("/config")]  # noqa: E731
        assert sub.wait_for(lambda s: len(configs(s)) >= 2, 30), (tmp_path / "agent.log").read_text()[-2000:]
        time.sleep(0.5)
        first = configs(sub)
        assert sorted(t for t, _ in first) == [
            "homeassistant/sensor/robot-1_apple/config",
            "homeassistant/sensor/robot-1_banana/config",
        ]
        doc = dict(first)["homeassistant/sensor/robot-1_apple/config"]
        assert doc["state_topic"] == "test/robot-1/counts" and doc["availability_topic"] == "test/robot-1/status"
        assert doc["value_template"] == '{{ value_json.counts.get("apple", 0) }}'
        assert doc["unique_id"] == "shelfscan_robot-1_apple" and doc["device"]["model"] == "tiny 1"
        publish(broker.port, [("homeassistant/status", b"online", False)])
        assert sub.wait_for(lambda s: len(configs(s)) >= 4, 15), "no re-announcement after homeassistant/status online"
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        sub.close()
