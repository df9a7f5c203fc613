"""The agent against a real Mosquitto: counts, outages, restarts, bad input, hot reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from edge.bundle import write_bundle
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec
from tests.broker import Broker
from tests.mqtt_helpers import SCHEMAS, Subscriber, agent_config, write_shelf_video

REPO = Path(__file__).resolve().parent.parent
DURABLE = ("status", "sighting", "counts", "error")


@pytest.fixture(scope="module")
def bundle(reference, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "imagenet-v1"
    spec = PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3)
    write_bundle(out, reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite", read_labels(reference / "imagenet_labels.txt"),
                 spec, name="imagenet-ref", version="1", backbone="mobilenet_v2", variant="int8")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def video(reference, tmp_path_factory) -> Path:
    """cat, coffee, cat, coffee: truth = 2 cat sightings and 2 espresso sightings."""
    path = tmp_path_factory.mktemp("video") / "shelf.avi"
    photos = [reference / "samples" / "chelsea.png", reference / "samples" / "coffee.png"]
    write_shelf_video(path, photos, [0, 1, 0, 1], frames_per_run=20)
    return path


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "-v", "run", "--config", str(config)], cwd=REPO,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)  # fmt: skip


def validate(messages: list[tuple[str, dict, bool]]) -> None:
    for topic, doc, _ in messages:
        kind = topic.rsplit("/", 1)[-1]
        jsonschema.validate(doc, json.loads((SCHEMAS / f"{kind}.schema.json").read_text()))


def durable_seqs(sub: Subscriber) -> list[int]:
    """seqs of durable messages sent by the agent itself (retained replays and the broker's will excluded)."""
    with sub.lock:
        return sorted({d["seq"] for t, d, retained in sub.messages
                       if t.rsplit("/", 1)[-1] in DURABLE and not retained})  # fmt: skip


def test_video_counts_match_truth_and_messages_are_schema_valid(tmp_path, broker, bundle, video):
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    cfg = agent_config(tmp_path, broker.port, bundle, f'kind = "video"\npath = "{video}"')
    agent = start_agent(cfg, tmp_path / "agent.log")
    assert agent.wait(60) == 0, (tmp_path / "agent.log").read_text()[-3000:]
    assert sub.wait_for(lambda s: any(d.get("final") for d in s.of("counts")), 10)
    final = [d for d in sub.of("counts") if d["final"]][-1]
    assert final["counts"] == {"Egyptian cat": 2, "espresso": 2}, final
    sightings = sub.of("sighting")
    assert [s["label"] for s in sightings] == ["Egyptian cat", "espresso", "Egyptian cat", "espresso"]
    assert all(s["frames"] >= 4 and s["scan_id"] == final["scan_id"] for s in sightings)
    assert sub.wait_for(lambda s: any(d.get("state") == "offline" for d in s.of("status")), 5)
    validate(sub.messages)
    assert {d["model"]["sha256"] for d in sightings} == {
        json.loads((bundle / "manifest.json").read_text())["model"]["sha256"]
    }
    seqs = [d["seq"] for t, d, _ in sub.messages if t.rsplit("/", 1)[-1] in DURABLE]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    sub.close()


def looping(video: Path) -> str:
    return f'kind = "video"\npath = "{video}"\nloop = true'


def assert_no_gap(sub: Subscriber) -> list[int]:
    seqs = durable_seqs(sub)
    assert seqs, "no durable messages received"
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), (
        f"gap in seq: {sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))}"
    )
    return seqs


def stop_agent(agent: subprocess.Popen[bytes], log: Path) -> None:
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0, log.read_text()[-3000:]


def test_broker_outage_loses_nothing(tmp_path, broker, bundle, video):
    sub = Subscriber(broker.port, "test/robot-1/#", client_id="inventory")
    log = tmp_path / "agent.log"
    agent = start_agent(agent_config(tmp_path, broker.port, bundle, looping(video)), log)
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 30), log.read_text()[-2000:]
    broker.stop()
    time.sleep(11)  # the agent keeps scanning into its outbox
    broker.start()
    before = len(sub.of("sighting"))
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= before + 6, 40), log.read_text()[-2000:]
    stop_agent(agent, log)
    assert sub.wait_for(lambda s: any(d.get("state") == "offline" for d in s.of("status")), 10)
    seqs = assert_no_gap(sub)
    assert len(seqs) > 10
    validate(sub.messages)
    sub.close()


def test_sigkill_while_broker_down_loses_nothing(tmp_path, broker, bundle, video):
    sub = Subscriber(broker.port, "test/robot-1/#", client_id="inventory")
    log = tmp_path / "agent.log"
    cfg = agent_config(tmp_path, broker.port, bundle, looping(video))
    agent = start_agent(cfg, log)
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 30), log.read_text()[-2000:]
    broker.stop()
    time.sleep(5)  # sightings pile up in the outbox ...
    agent.kill()  # ... and the agent dies without any chance to flush
    agent.wait(10)
    broker.start()
    agent = start_agent(cfg, log)
    before = len(sub.of("sighting"))
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= before + 6, 40), log.read_text()[-2000:]
    stop_agent(agent, log)
    assert sub.wait_for(lambda s: any(d.get("state") == "offline" and d["seq"] > 1 for d in s.of("status")), 10)
    assert_no_gap(sub)
    sub.close()
