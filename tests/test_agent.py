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
        kind = topic.split("/", 2)[-1]
        if "/" in kind:  # cmd/... published by the test itself
            continue
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


def publish(port: int, topic: str, payloads: list[bytes]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-commander")
    c.connect("127.0.0.1", port)
    c.loop_start()
    for p in payloads:
        c.publish(topic, p, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_scan_commands_and_malformed_payloads(tmp_path, broker, bundle, video):
    """A few hundred malformed commands (hypothesis) each get an error message; the agent carries on."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    cfg = agent_config(tmp_path, broker.port, bundle, looping(video), scan={"auto_start": False})
    agent = start_agent(cfg, log)
    assert sub.wait_for(lambda s: any(d.get("state") == "online" for d in s.of("status")), 20), log.read_text()
    time.sleep(1.5)
    assert sub.of("sighting") == []  # no scan yet: nothing is counted

    bad: list[tuple[str, bytes]] = []
    no_scan_id = st.dictionaries(st.text(max_size=10), st.integers() | st.none(), max_size=3)
    junk = st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        st.lists(st.integers(), max_size=5).map(lambda v: json.dumps(v).encode()),
        no_scan_id.map(lambda d: json.dumps(d).encode()),
    )

    @settings(max_examples=300, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(st.sampled_from(["scan/start", "scan/nope", "x/y/z"]), junk)
    def collect(name: str, payload: bytes) -> None:
        bad.append((name, payload))

    collect()
    bad += [("scan/start", b"[" * 5000), ("scan/start", b'{"a":' * 3000), ("scan/start", b" " * 60_000 + b"[")]
    for name in ("scan/start", "scan/nope", "x/y/z"):
        publish(broker.port, f"test/robot-1/cmd/{name}", [p for n, p in bad if n == name])
    assert sub.wait_for(lambda s: len(s.of("error")) >= len(bad), 60), (len(sub.of("error")), len(bad))
    assert agent.poll() is None, log.read_text()[-2000:]

    publish(broker.port, "test/robot-1/cmd/scan/start", [json.dumps({"scan_id": "aisle-7", "location": "A7"}).encode()])
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 3, 30)
    publish(broker.port, "test/robot-1/cmd/scan/stop", [b""])
    assert sub.wait_for(lambda s: any(d["final"] and d["scan_id"] == "aisle-7" for d in s.of("counts")), 10)
    final = [d for d in sub.of("counts") if d["final"]][-1]
    assert final["location"] == "A7" and set(final["counts"]) <= {"Egyptian cat", "espresso"}
    assert all(s["scan_id"] == "aisle-7" for s in sub.of("sighting"))
    stop_agent(agent, log)
    validate(sub.messages)
    sub.close()


def test_reload_refuses_tampered_bundle_and_accepts_good_one(tmp_path, broker, bundle, video, reference):
    import shutil

    releases = tmp_path / "releases"
    good, tampered = releases / "v1", releases / "v2-tampered"
    shutil.copytree(bundle, good)
    shutil.copytree(bundle, tampered)
    data = bytearray((tampered / "model.tflite").read_bytes())
    data[-200] ^= 0x55
    (tampered / "model.tflite").write_bytes(bytes(data))
    current = tmp_path / "current"
    current.symlink_to(good)
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(agent_config(tmp_path, broker.port, current, looping(video)), log)
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 1, 30), log.read_text()[-2000:]

    tmp_link = tmp_path / "current.new"
    tmp_link.symlink_to(tampered)
    tmp_link.replace(current)  # atomic swap, as an installer would do it
    assert sub.wait_for(lambda s: any("sha256 mismatch" in d["error"] for d in s.of("error")), 15), log.read_text()[
        -2000:
    ]
    n = len(sub.of("sighting"))
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= n + 2, 30)  # still running on the old model
    assert agent.poll() is None

    v3 = releases / "v3"
    spec = PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3)
    write_bundle(v3, reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite", read_labels(reference / "imagenet_labels.txt"),
                 spec, name="imagenet-ref", version="3", backbone="mobilenet_v2", variant="int8")  # fmt: skip
    tmp_link = tmp_path / "current.new"
    tmp_link.symlink_to(v3)
    tmp_link.replace(current)
    assert sub.wait_for(lambda s: any(d.get("reloaded_from") for d in s.of("status")), 15), log.read_text()[-2000:]
    assert sub.wait_for(lambda s: any(d["model"]["version"] == "3" for d in s.of("sighting")), 30)
    agent.send_signal(signal.SIGHUP)  # explicit reload of the same bundle also works
    assert sub.wait_for(lambda s: sum(1 for d in s.of("status") if d.get("reloaded_from")) >= 2, 15)
    stop_agent(agent, log)
    validate(sub.messages)
    sub.close()


def test_missing_camera_and_corrupt_images_do_not_stop_the_agent(tmp_path, broker, bundle, reference):
    import shutil

    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(agent_config(tmp_path, broker.port, bundle, 'kind = "camera"\ncamera = "/dev/video99"'), log)
    assert sub.wait_for(lambda s: any(d.get("source") == "error" for d in s.of("status")), 20), log.read_text()
    time.sleep(2)
    assert agent.poll() is None and "reopening" in log.read_text()
    stop_agent(agent, log)

    folder = tmp_path / "incoming"
    folder.mkdir()
    log2 = tmp_path / "agent2.log"
    cfg = agent_config(tmp_path, broker.port, bundle, f'kind = "folder"\npath = "{folder}"',
                       inference={"min_frames": 1, "smoothing_frames": 1})  # fmt: skip
    agent = start_agent(cfg, log2)
    (folder / "a-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    shutil.copy(reference / "samples" / "coffee.png", folder / "b-coffee.png")
    shutil.copy(reference / "samples" / "chelsea.png", folder / "c-cat.png")
    assert sub.wait_for(lambda s: any(d.get("counts", {}).get("espresso") for d in s.of("counts")), 20), (
        log2.read_text()
    )
    assert agent.poll() is None and "a-broken.jpg: corrupt or truncated JPEG" in log2.read_text()
    stop_agent(agent, log2)
    sub.close()


def test_configuration_reference_is_current():
    from edge.config import reference_markdown

    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed.strip() == reference_markdown().strip(), (
        "run: shelfscan-agent config --reference > docs/configuration.md"
    )


def test_trusted_keys_refuse_unsigned_bundles_at_start_and_on_reload(tmp_path, broker, bundle, video):
    import shutil

    from edge.signing import generate_key, sign_bundle
    from tests.conftest import run_cli

    key, pub = generate_key(tmp_path / "signing.pem")
    signed, unsigned = tmp_path / "signed", tmp_path / "unsigned"
    shutil.copytree(bundle, signed)
    shutil.copytree(bundle, unsigned)
    sign_bundle(signed, key)
    current = tmp_path / "current"
    current.symlink_to(unsigned)
    source = looping(video)
    cfg = agent_config(tmp_path, broker.port, current, source, model={"trusted_keys": [str(pub)]})
    proc = run_cli("run", "--config", str(cfg))
    assert proc.returncode == 2 and "unsigned bundle" in proc.stderr.strip().splitlines()[-1]

    current.unlink()
    current.symlink_to(signed)
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 1, 30), log.read_text()[-2000:]
    new = tmp_path / "current.new"
    new.symlink_to(unsigned)
    new.replace(current)
    assert sub.wait_for(lambda s: any("unsigned bundle" in d["error"] for d in s.of("error")), 15), log.read_text()[
        -2000:
    ]
    n = len(sub.of("sighting"))
    assert sub.wait_for(lambda s: len(s.of("sighting")) > n, 20) and agent.poll() is None
    stop_agent(agent, log)
    sub.close()
