"""The agent in the detect_classify pipeline against a real Mosquitto, on a shelf pass from the composer.

The models are the session's tiny detector and tiny classifier: what is tested here is the agent
(pipeline wiring, messages, schemas, durability through a broker outage and a SIGKILL, the pose
topic, final counts and the shelf map), not the models' accuracy (benchmarks/facing_bench.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt_helpers import Subscriber, agent_config
from tests.test_agent import DURABLE, start_agent, validate

pytestmark = [pytest.mark.shared, pytest.mark.slow]
FACING_DURABLE = (*DURABLE, "facing", "gap", "shelfmap", "evidence")


def config(tmp_path: Path, port: int, models: dict) -> Path:
    """The video read as fast as the agent goes (recorded: backpressure, no frame dropped)."""
    source = f'kind = "video"\npath = "{models["video"]}"\nfps = 1000'
    return agent_config(
        tmp_path,
        port,
        models["classifier"],
        source,
        model={"detector": str(models["detector"])},
        inference={"pipeline": "detect_classify", "max_fps": 1000},
        counting={"min_hits": 2},
    )


def publish_pose(port: int, x_m: float) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="robot-odometry")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish("test/robot-1/pose", json.dumps({"x_m": x_m, "aisle": "7"}), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def durable(sub: Subscriber) -> list[int]:
    with sub.lock:
        return [d["seq"] for t, d, retained in sub.messages if t.rsplit("/", 1)[-1] in FACING_DURABLE and not retained]


def test_facings_counts_and_shelf_map_through_mosquitto(tmp_path, broker, facing_models):
    publish_pose(broker.port, 12.5)
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(config(tmp_path, broker.port, facing_models), log)
    assert agent.wait(120) == 0, log.read_text()[-3000:]
    assert sub.wait_for(lambda s: any(d.get("final") for d in s.of("counts")) and s.of("shelfmap"), 15)
    validate([m for m in sub.messages if not m[0].endswith("/pose")])  # the robot's pose is not ours
    final = [d for d in sub.of("counts") if d.get("final")][-1]
    assert final["pipeline"] == "detect_classify" and final["reason"] == "end_of_source"
    facings = sub.of("facing")
    assert facings, log.read_text()[-2000:]
    assert final["facings"] == len(facings) == sum(final["counts"].values())
    assert final["gaps"] == len(sub.of("gap"))
    assert all(f["pose"] == {"x_m": 12.5, "aisle": "7"} for f in facings)  # the retained pose reached every facing
    assert len({f["track_id"] for f in facings}) == len(facings)  # one message per counted facing
    shelfmap = sub.of("shelfmap")[-1]
    assert shelfmap["facings"] == len(facings) and shelfmap["scan_id"] == final["scan_id"]
    status = [d for d in sub.of("status") if d.get("pipeline")][-1]
    assert status["detector"]["name"] == "tiny-facings"
    seqs = sorted(durable(sub))
    assert seqs == list(range(seqs[0], seqs[-1] + 1)) and len(seqs) == len(set(seqs))  # no gap, no duplicate
    sub.close()


def test_broker_outage_and_sigkill_lose_no_facing(tmp_path, broker, facing_models):
    sub = Subscriber(broker.port, "test/robot-1/#", client_id="inventory")
    log = tmp_path / "agent.log"
    cfg = config(tmp_path, broker.port, facing_models)
    agent = start_agent(cfg, log)
    assert sub.wait_for(lambda s: len(s.of("facing")) >= 2, 60), log.read_text()[-2000:]
    broker.stop()
    time.sleep(3)  # facings pile up in the outbox ...
    agent.kill()  # ... and the agent dies without a chance to flush
    agent.wait(10)
    broker.start()
    agent = start_agent(cfg, log)  # the folder plays again: a new scan
    assert agent.wait(120) == 0, log.read_text()[-3000:]
    assert sub.wait_for(lambda s: sum(bool(d.get("final")) for d in s.of("counts")) >= 1, 20)
    arrived = durable(sub)
    seqs = sorted(set(arrived))
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"gap in seq: {set(range(seqs[0], seqs[-1])) - set(seqs)}"
    # the rows in flight at the SIGKILL are handed over again after the restart (paho's window is 20); no more
    twice = {seq: n for seq, n in Counter(arrived).items() if n > 1}
    assert sum(n - 1 for n in twice.values()) <= 20, f"duplicated seq (seq: times): {twice}"
    assert len(sub.of("facing")) >= 2
    validate(sub.messages)
    sub.close()
