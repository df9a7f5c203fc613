"""The agent against a real Mosquitto: counts, outages, restarts, bad input, hot reload."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import jsonschema

from edge.bundle import write_bundle
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec
from tests.mqtt_helpers import SCHEMAS, Subscriber, agent_config

REPO = Path(__file__).resolve().parent.parent
DURABLE = ("status", "sighting", "counts", "error", "model")


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "-v", "run", "--config", str(config)],
        cwd=REPO,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def validate(messages: list[tuple[str, dict, bool]]) -> None:
    for topic, doc, _ in messages:
        kind = topic.split("/", 2)[-1]
        if "/" in kind:  # cmd/... published by the test itself
            continue
        jsonschema.validate(doc, json.loads((SCHEMAS / f"{kind}.schema.json").read_text()))


def durable_seqs(sub: Subscriber) -> list[int]:
    """seqs of durable messages sent by the agent itself, in arrival order, duplicates kept (retained replays and
    copies of the broker's will excluded: a will repeats the seq of a message sent before it, which may be the
    previous run's own ``offline``; the agent's ``offline`` at shutdown takes a seq of its own and counts)."""
    with sub.lock:
        live = [(t, d) for t, d, retained in sub.messages if t.rsplit("/", 1)[-1] in DURABLE and not retained]
    others = {d["seq"] for t, d in live if not is_offline(t, d)}
    seqs, offline_seen = [], set()
    for t, d in live:
        if is_offline(t, d):
            if d["seq"] in others or d["seq"] in offline_seen:
                continue  # a will copy
            offline_seen.add(d["seq"])
        seqs.append(d["seq"])
    return seqs


def is_offline(topic: str, doc: dict) -> bool:
    """An ``offline`` status: the broker's copy of the last will, or the agent's own at shutdown."""
    return topic.endswith("/status") and doc.get("state") == "offline"


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
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # in order, no gap, no duplicate
    sub.close()


def looping(video: Path) -> str:
    return f'kind = "video"\npath = "{video}"\nloop = true'


def assert_no_gap(sub: Subscriber, max_duplicates: int = 0) -> list[int]:
    """No gap in the durable seqs; duplicates only up to ``max_duplicates`` (0 where the broker stayed up: a
    duplicate there is a message handed to paho twice). Returns the distinct seqs in order."""
    arrived = durable_seqs(sub)
    assert arrived, "no durable messages received"
    seqs = sorted(set(arrived))
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), (
        f"gap in seq: {sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))}"
    )
    twice = {seq: n for seq, n in Counter(arrived).items() if n > 1}
    assert sum(n - 1 for n in twice.values()) <= max_duplicates, f"duplicated seq (seq: times): {twice}"
    return seqs


def stop_agent(agent: subprocess.Popen[bytes], log: Path) -> None:
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0, log.read_text()[-3000:]


def test_broker_sigkill_loses_nothing_logs_once_and_refreshes_the_will(tmp_path, broker, bundle, video):
    """Mosquitto SIGKILLed for 11 s and restarted on the same port: no gap; the outage is one warning line with
    the reason and the next retry; the will rebuilt at the reconnect carries the seq of that time."""
    sub = Subscriber(broker.port, "test/robot-1/#", client_id="inventory")
    log = tmp_path / "agent.log"
    agent = start_agent(agent_config(tmp_path, broker.port, bundle, looping(video)), log)
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 30), log.read_text()[-2000:]
    broker.stop(signal.SIGKILL)
    seq_before = max(durable_seqs(sub))
    time.sleep(11)  # the agent keeps scanning into its outbox
    broker.start()
    before = len(sub.of("sighting"))
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= before + 6, 40), log.read_text()[-2000:]
    agent.kill()  # no clean disconnect: the broker sends the will
    agent.wait(10)
    assert sub.wait_for(lambda s: any(is_offline(t, d) for t, d, _ in s.messages), 15)
    will = next(d for t, d, _ in sub.messages if is_offline(t, d))
    # built at the reconnect, after the sightings taken during the outage (the old will said seq 0)
    assert will["seq"] > seq_before, (will, seq_before)
    outage = [line for line in log.read_text().splitlines() if "unreachable" in line]
    assert len(outage) == 1 and "ConnectionRefusedError" in outage[0] and "next retry in" in outage[0], outage
    # the status after the reconnect says what the outage was (the agent could not while it lasted) ...
    reported = [d["mqtt_last_outage"] for d in sub.of("status") if d.get("mqtt_last_outage")]
    assert reported and "ConnectionRefusedError" in reported[-1]["reason"] and reported[-1]["down_s"] >= 5, reported
    # ... and `watch` shows it
    from edge.watch import Fleet

    fleet = Fleet("test")
    for t, d, _ in sub.messages:
        fleet.update(t, json.dumps(d).encode())
    assert "robot-1: last MQTT outage: ConnectionRefusedError" in fleet.table(), fleet.table()
    # in flight at the kill (paho's window is 20) may come twice; a gap never
    seqs = assert_no_gap(sub, max_duplicates=20)
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
    assert_no_gap(sub, max_duplicates=20)  # the rows in flight at the SIGKILL are handed over again
    sub.close()


def storage_states(sub: Subscriber) -> list[str]:
    """The outbox storage state of every online status, in order."""
    return [d["storage"]["state"] for d in sub.of("status") if "storage" in d]


def warnings_about(log: Path, text: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if "WARNING" in line and text in line]


def test_disk_full_while_running_degrades_then_drains(tmp_path, broker, bundle, video):
    """state_dir on a 1 MiB tmpfs that fills up: the agent goes on publishing from memory (storage degraded), and
    writes everything in order when space returns; the broker stayed up, so no gap and no duplicate."""
    from tests.storage import fill, small_tmpfs

    with small_tmpfs(tmp_path / "state", "1m") as state:
        sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
        log = tmp_path / "agent.log"
        agent = start_agent(agent_config(tmp_path, broker.port, bundle, looping(video)), log)
        assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 30), log.read_text()[-2000:]
        filler = fill(state)
        assert sub.wait_for(lambda s: "degraded" in storage_states(s), 60), log.read_text()[-2000:]
        assert sub.wait_for(lambda s: any(d["storage"]["state"] == "degraded" for d in s.of("stats")), 10)
        n = len(sub.of("sighting"))
        assert sub.wait_for(lambda s: len(s.of("sighting")) >= n + 2, 30)  # still publishing, from memory
        assert agent.poll() is None, log.read_text()[-2000:]
        filler.unlink()
        assert sub.wait_for(lambda s: storage_states(s)[-1] == "ok", 30), log.read_text()[-2000:]
        stop_agent(agent, log)
    assert len(warnings_about(log, "outbox storage degraded")) == 1, log.read_text()[-3000:]
    assert "database or disk is full" in warnings_about(log, "outbox storage degraded")[0]
    assert "now on disk" in log.read_text()
    assert_no_gap(sub)
    validate(sub.messages)
    sub.close()


def test_read_only_state_dir_at_start(tmp_path, broker, bundle, video):
    """A read-only state_dir: the agent runs with messages in memory (one warning line, storage degraded in
    status), and writes them when the file system is writable again."""
    from tests.storage import remount, small_tmpfs

    with small_tmpfs(tmp_path / "state", "4m") as state:
        remount(state, "ro")
        sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
        log = tmp_path / "agent.log"
        agent = start_agent(agent_config(tmp_path, broker.port, bundle, looping(video)), log)
        assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 30), log.read_text()[-2000:]
        status = next(d for d in sub.of("status") if "storage" in d)
        assert status["storage"]["state"] == "degraded" and "not writable" in status["storage"]["detail"], status
        remount(state, "rw")
        assert sub.wait_for(lambda s: storage_states(s)[-1] == "ok", 30), log.read_text()[-2000:]
        stop_agent(agent, log)
        assert (state / "outbox-robot-1.sqlite").exists()
    assert len(warnings_about(log, "not writable")) == 1, log.read_text()[-3000:]
    assert_no_gap(sub)
    validate(sub.messages)
    sub.close()


def test_corrupt_outbox_at_start_is_moved_aside(tmp_path, broker, bundle, video):
    """Garbage in the outbox file: moved aside (kept), a fresh one started, an error message says so, and seq
    goes on above every seq the old file had taken."""
    from edge.outbox import Outbox
    from tests.storage import corrupt

    path = tmp_path / "state" / "outbox-robot-1.sqlite"
    old = Outbox(path)
    last = max(old.add("test/robot-1/error", lambda s: b"{}", 1, False) for _ in range(5))
    old.close()
    corrupt(path)
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(agent_config(tmp_path, broker.port, bundle, looping(video)), log)
    assert sub.wait_for(lambda s: any("was corrupt" in d["error"] for d in s.of("error")), 30), log.read_text()[-2000:]
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 30), log.read_text()[-2000:]
    stop_agent(agent, log)
    kept = list(path.parent.glob("outbox-robot-1.sqlite.corrupt-*"))
    assert [p.read_bytes()[:14] for p in kept] == [b"not a database"]
    seqs = assert_no_gap(sub)
    assert seqs[0] > last
    validate(sub.messages)
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


def test_retained_poison_commands_do_not_crash_loop(tmp_path, broker, bundle, video):
    """Poison left *retained* on command topics before the agent starts (deep nesting, 1 MB of brackets,
    not UTF-8): each start reports them as errors and runs on; a restart does not crash-loop on them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    poison = {
        "scan/start": b"[" * 1_000_000,
        "scan/stop": b'{"a":' * 50_000,
        "reload": b"\xff\xfe" * 1000,
        "x/y": b"{}",
    }
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-poisoner")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for name, payload in poison.items():
        c.publish(f"test/robot-1/cmd/{name}", payload, qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    cfg = agent_config(tmp_path, broker.port, bundle, looping(video))
    for start in (1, 2):
        errors_before = len(sub.of("error"))
        agent = start_agent(cfg, log)
        assert sub.wait_for(lambda s, n=errors_before: len(s.of("error")) >= n + len(poison), 30), log.read_text()[
            -2000:
        ]
        sightings = len(sub.of("sighting"))
        assert sub.wait_for(lambda s, n=sightings: len(s.of("sighting")) >= n + 2, 30), f"start {start}"
        assert agent.poll() is None, log.read_text()[-2000:]
        stop_agent(agent, log)
    assert "Traceback" not in log.read_text()
    assert_no_gap(sub)
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
    write_bundle(
        v3,
        reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        read_labels(reference / "imagenet_labels.txt"),
        spec,
        name="imagenet-ref",
        version="3",
        backbone="mobilenet_v2",
        variant="int8",
    )
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
    cfg = agent_config(
        tmp_path,
        broker.port,
        bundle,
        f'kind = "folder"\npath = "{folder}"',
        inference={"min_frames": 1, "smoothing_frames": 1},
    )
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


def test_run_in_a_terminal_prints_status_lines(tmp_path, broker, bundle, video):
    """`run` in the foreground on a terminal: a status line per stats interval (on a pipe: none, as before)."""
    import pty

    cfg = agent_config(tmp_path, broker.port, bundle, looping(video))
    main, side = pty.openpty()
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)],
        cwd=REPO,
        stdout=side,
        stderr=side,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(side)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and seen.count(b" fps ") < 2:
            ready, _, _ = select.select([main], [], [], 1.0)
            if ready:
                seen += os.read(main, 4096)
    finally:
        agent.terminate()
        agent.wait(30)
        os.close(main)
    lines = [ln for ln in seen.decode(errors="replace").splitlines() if " fps " in ln]
    assert len(lines) >= 2, seen[-2000:]
    assert " ok " in lines[-1] and "mqtt up" in lines[-1] and "scan auto-" in lines[-1], lines[-1]
