"""Model rollout over MQTT: two real agents, a real Mosquitto, signed bundles, canary and rollback."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from converter.cli import main as convert
from edge.bundle import write_bundle
from edge.bundle_archive import pack_bundle, sha256_hex, unpack_bundle
from edge.config_fleet import RolloutConfig
from edge.errors import BundleError
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec
from edge.rollout import Desired, judge
from edge.signing import generate_key, sign_bundle
from tests.mqtt_helpers import Subscriber, agent_config
from tests.test_agent import assert_no_gap, looping, start_agent, stop_agent, validate

SPEC = PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3)


def release(reference: Path, root: Path, version: str, key: Path) -> Path:
    """The reference MobileNetV2 as signed bundle ``version``."""
    out = root / f"imagenet-ref-{version}"
    write_bundle(
        out,
        reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        read_labels(reference / "imagenet_labels.txt"),
        SPEC,
        name="imagenet-ref",
        version=version,
        backbone="mobilenet_v2",
        variant="int8",
    )
    sign_bundle(out, key)
    return out


def publish(port: int, bundle: Path | None, *target: str) -> None:
    args = [
        "publish",
        *([str(bundle)] if bundle else []),
        *target,
        "--prefix",
        "test",
        "--broker",
        f"mqtt://127.0.0.1:{port}",
    ]
    assert convert(args) == 0


def raw_publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-raw")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def steps(sub: Subscriber, version: str) -> list[str]:
    return [d["step"] for d in sub.of("model") if d["version"] == version]


def reason(sub: Subscriber, version: str) -> str:
    return next(
        d["reason"] for d in sub.of("model") if d["version"] == version and d["step"] in ("refused", "rolled_back")
    )


def running(sub: Subscriber) -> str | None:
    status = [d for d in sub.of("status") if d.get("state") == "online"]
    return status[-1]["model"]["version"] if status else None


def test_rollout_to_two_agents_refusals_canary_rollback_and_an_offline_robot(tmp_path, broker, reference, video):
    from tests.tiny_models import build_uniform_model

    key, pub = generate_key(tmp_path / "fleet.pem")
    stranger, _ = generate_key(tmp_path / "stranger.pem")
    rel = tmp_path / "releases"
    v1 = release(reference, rel, "1", key)
    rollout = {"canary_s": 2.0, "canary_min_frames": 5, "fps_share": 0.2, "keep": 2}
    robots = {}
    for name in ("robot-1", "robot-2"):
        home = tmp_path / name
        home.mkdir()
        cfg = agent_config(
            home,
            broker.port,
            v1,
            looping(video),
            model={"trusted_keys": [str(pub)]},
            device={"id": name, "groups": ["aisle-3"]},
            rollout=rollout,
        )
        sub = Subscriber(broker.port, f"test/{name}/#", client_id=f"sub-{name}", persistent=False)
        robots[name] = {"cfg": cfg, "log": home / "agent.log", "sub": sub, "state": home / "state"}
        robots[name]["proc"] = start_agent(cfg, robots[name]["log"])
    for r in robots.values():
        assert r["sub"].wait_for(lambda s: len(s.of("sighting")) >= 1, 60), r["log"].read_text()[-3000:]

    # 1. a group rollout: both robots download, verify, canary, then run version 2
    publish(broker.port, release(reference, rel, "2", key), "--group", "aisle-3")
    for r in robots.values():
        assert r["sub"].wait_for(lambda s: "active" in steps(s, "2"), 60), r["log"].read_text()[-3000:]
        assert steps(r["sub"], "2") == ["downloaded", "verified", "canary", "active"], r["sub"].of("model")
        assert r["sub"].wait_for(lambda s: running(s) == "2", 10), r["sub"].of("status")[-3:]
        assert (r["state"] / "bundles" / "current-classifier").resolve().name == "imagenet-ref-2"
    one, two = robots["robot-1"], robots["robot-2"]
    stop_agent(two["proc"], two["log"])  # robot 2 goes offline

    # 2. signed with a key the fleet does not trust: refused, version 2 keeps serving
    publish(broker.port, release(reference, rel / "stranger", "3", stranger), "--device", "robot-1")
    assert one["sub"].wait_for(lambda s: "refused" in steps(s, "3"), 30), one["log"].read_text()[-3000:]
    assert "not among the trusted keys" in reason(one["sub"], "3")

    # 3. an archive corrupted on the broker: its sha256 is not the one the desired model names
    v4 = release(reference, rel, "4", key)
    archive = pack_bundle(v4)
    desired = {
        "name": "imagenet-ref",
        "version": "4",
        "archive_sha256": sha256_hex(archive),
        "archive_bytes": len(archive),
        "archive_topic": "test/_bundles/imagenet-ref/4",
    }
    raw_publish(
        broker.port,
        [
            ("test/_bundles/imagenet-ref/4", archive[: len(archive) // 2]),
            ("test/robot-1/desired/classifier", json.dumps(desired).encode()),
        ],
    )
    assert one["sub"].wait_for(lambda s: "refused" in steps(s, "4"), 30), one["log"].read_text()[-3000:]
    assert "sha256 mismatch" in reason(one["sub"], "4")

    # 4. a signed model that loads but whose confidence collapses: the canary rolls it back to version 2
    uniform = rel / "collapsed-5"
    write_bundle(
        uniform,
        build_uniform_model(tmp_path / "uniform.tflite"),
        [f"thing{i}" for i in range(10)],
        PreprocessSpec(height=16, width=16),
        name="imagenet-ref",
        version="5",
        backbone="tiny",
        variant="fp32",
    )
    sign_bundle(uniform, key)
    n = len(one["sub"].of("sighting"))
    publish(broker.port, uniform, "--device", "robot-1")
    assert one["sub"].wait_for(lambda s: "rolled_back" in steps(s, "5"), 60), one["log"].read_text()[-3000:]
    assert steps(one["sub"], "5") == ["downloaded", "verified", "canary", "rolled_back"], one["sub"].of("model")
    back = next(d for d in one["sub"].of("model") if d["step"] == "rolled_back")
    assert "confidence" in back["reason"] and back["confidence"] == pytest.approx(0.1, abs=0.01)
    assert one["sub"].wait_for(lambda s: running(s) == "2", 10)
    assert one["sub"].wait_for(lambda s: any(d["model"]["version"] == "2" for d in s.of("sighting")[n:]), 30)
    assert one["proc"].poll() is None

    # 5. the next group release while robot 2 is offline; robot 1 follows the group again once its own
    # desired model is cleared; robot 2 comes back on version 2 (its rolled-out model) and picks it up
    publish(broker.port, None, "--device", "robot-1", "--clear")
    publish(broker.port, release(reference, rel, "6", key), "--group", "aisle-3")
    assert one["sub"].wait_for(lambda s: "active" in steps(s, "6"), 60), one["log"].read_text()[-3000:]
    two["sub"].messages.clear()
    two["proc"] = start_agent(two["cfg"], two["log"])
    assert two["sub"].wait_for(lambda s: "active" in steps(s, "6"), 60), two["log"].read_text()[-3000:]
    first = next(d for d in two["sub"].of("status") if d.get("state") == "online")
    assert first["model"]["version"] == "2"  # restarted on what it was rolled to, not on model.bundle (1)
    kept = sorted(p.name for p in (two["state"] / "bundles").iterdir() if p.is_dir() and not p.is_symlink())
    assert kept == ["imagenet-ref-2", "imagenet-ref-6"]  # rollout.keep = 2

    for r in robots.values():
        stop_agent(r["proc"], r["log"])
        validate(r["sub"].messages)
    assert_no_gap(one["sub"])
    for r in robots.values():
        r["sub"].close()


def test_archive_round_trip_and_hostile_archives(tmp_path, bundle):
    data = pack_bundle(bundle)
    assert pack_bundle(bundle) == data  # the same bundle, the same bytes and sha256
    out = unpack_bundle(data, tmp_path / "b", 10**8)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in bundle.iterdir() if p.is_file())
    assert (out / "model.tflite").read_bytes() == (bundle / "model.tflite").read_bytes()
    with pytest.raises(BundleError, match="over the"):
        unpack_bundle(data, tmp_path / "c", 1000)
    with pytest.raises(BundleError, match="not a gzip file"):
        unpack_bundle(b"not an archive", tmp_path / "d", 10**8)
    import gzip
    import io
    import tarfile

    for name, kind in (("../evil", tarfile.REGTYPE), ("link", tarfile.SYMTYPE), ("sub/x", tarfile.REGTYPE)):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        with pytest.raises(BundleError, match="not a plain file name"):
            unpack_bundle(gzip.compress(raw.getvalue()), tmp_path / "e", 10**8)
        assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".e.*"))  # nothing left behind


def test_desired_documents_and_the_canary_rule():
    good = {"name": "n", "version": "2", "archive_sha256": "ab" * 32, "archive_bytes": 10, "archive_topic": "t"}
    assert Desired.parse(json.dumps(good).encode(), "classifier").topic == "t"
    for bad in (
        b"[[[",
        b"[]",
        json.dumps({**good, "version": "../x"}).encode(),
        json.dumps({**good, "archive_topic": None}).encode(),
        json.dumps({**good, "archive_topic": None, "url": "http://plain"}).encode(),
    ):
        with pytest.raises(Exception, match="desired model"):
            Desired.parse(bad, "classifier")
    cfg = RolloutConfig(fps_share=0.7, confidence_share=0.6)
    assert judge(cfg, 20.0, 15.0, 0.8, [0.7, 0.75]) is None
    assert "frame rate" in judge(cfg, 20.0, 13.0, 0.8, [0.8])
    assert "confidence" in judge(cfg, 20.0, 20.0, 0.8, [0.4, 0.5])
    assert judge(cfg, 0.0, 1.0, None, []) is None  # nothing to compare with: no reason to fail


def test_without_trusted_keys_rollouts_are_ignored(tmp_path, broker, bundle, video):
    key, _ = generate_key(tmp_path / "k.pem")
    signed = tmp_path / "signed"
    shutil.copytree(bundle, signed)
    sign_bundle(signed, key)
    cfg = agent_config(tmp_path, broker.port, bundle, looping(video))
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= 1, 60), log.read_text()[-2000:]
    publish(broker.port, signed, "--device", "robot-1")
    n = len(sub.of("sighting"))
    assert sub.wait_for(lambda s: len(s.of("sighting")) >= n + 2, 30)
    assert not sub.of("model") and "rollouts over MQTT are ignored" in log.read_text()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    sub.close()


def test_watch_shows_each_devices_version_and_rollout_step():
    from edge.watch import Fleet

    fleet = Fleet("test")
    model = {"name": "imagenet-ref", "version": "2", "sha256": "0" * 64}
    status = {"state": "online", "model": model, "rollout": {"state": "canary", "version": "5"}}
    fleet.update("test/robot-1/status", json.dumps(status).encode())
    assert "robot-1: rollout: 5 canary" in fleet.table() and "imagenet-ref 2" in fleet.table()
    step = {"step": "rolled_back", "version": "5", "model": model, "reason": "mean top-1 confidence 0.100 is below"}
    fleet.update("test/robot-1/model", json.dumps(step).encode())
    assert "robot-1: rollout: 5 rolled_back: mean top-1 confidence 0.100" in fleet.table()


def test_rollout_from_an_https_url(tmp_path, broker, reference, video):
    """A large model from a web server instead of the broker: fetched over TLS (the configured CA), verified the
    same way; a URL whose server answers with other bytes is refused."""
    import http.server
    import ssl
    import threading

    from tests.test_tls_acl import make_pki

    pki = make_pki(tmp_path)
    key, pub = generate_key(tmp_path / "fleet.pem")
    v1, v2 = release(reference, tmp_path, "1", key), release(reference, tmp_path, "2", key)
    site = tmp_path / "site"
    site.mkdir()
    (site / "evil.tar.gz").write_bytes(b"not the archive")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(site), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["broker.crt"], pki["broker.key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{server.server_address[1]}"
    rollout = {"canary_s": 1.0, "canary_min_frames": 3, "fps_share": 0.2, "ca": str(pki["ca"])}
    cfg = agent_config(tmp_path, broker.port, v1, looping(video), model={"trusted_keys": [str(pub)]}, rollout=rollout)
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    try:
        assert sub.wait_for(lambda s: len(s.of("sighting")) >= 1, 60), log.read_text()[-2000:]
        publish(
            broker.port, v2, "--device", "robot-1", "--url", f"{base}/v2.tar.gz", "--archive", str(site / "v2.tar.gz")
        )
        assert sub.wait_for(lambda s: "active" in steps(s, "2"), 60), log.read_text()[-3000:]
        assert sub.wait_for(lambda s: running(s) == "2", 10)
        v3 = release(reference, tmp_path, "3", key)
        publish(broker.port, v3, "--device", "robot-1", "--url", f"{base}/evil.tar.gz")
        assert sub.wait_for(lambda s: "refused" in steps(s, "3"), 30), log.read_text()[-3000:]
        assert "sha256 mismatch" in reason(sub, "3")
        # a download that fails (not there yet) is the network's fault, not the bundle's: tried again
        v4 = release(reference, tmp_path, "4", key)
        late = ["--device", "robot-1", "--url", f"{base}/v4.tar.gz", "--archive", str(tmp_path / "v4.tar.gz")]
        publish(broker.port, v4, *late)
        assert sub.wait_for(lambda s: "refused" in steps(s, "4"), 30), log.read_text()[-3000:]
        assert "download failed" in reason(sub, "4")
        shutil.copy(tmp_path / "v4.tar.gz", site / "v4.tar.gz")
        publish(broker.port, v4, *late)
        assert sub.wait_for(lambda s: "active" in steps(s, "4"), 60), log.read_text()[-3000:]
    finally:
        server.shutdown()
        stop_agent(agent, log)
        sub.close()


def test_a_slow_model_is_rolled_back_by_its_frame_rate(tmp_path, broker, reference, video):
    from tests.tiny_models import build_slow_model

    key, pub = generate_key(tmp_path / "fleet.pem")
    v1 = release(reference, tmp_path, "1", key)
    slow = tmp_path / "slow-2"
    write_bundle(
        slow,
        build_slow_model(tmp_path / "slow.tflite"),
        ["a", "b", "c"],
        PreprocessSpec(height=448, width=448),
        name="imagenet-ref",
        version="2",
        backbone="tiny",
        variant="fp32",
    )
    sign_bundle(slow, key)
    rollout = {"canary_s": 3.0, "canary_min_frames": 3, "fps_share": 0.5}
    cfg = agent_config(tmp_path, broker.port, v1, looping(video), model={"trusted_keys": [str(pub)]}, rollout=rollout)
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    try:
        assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 60), log.read_text()[-2000:]
        publish(broker.port, slow, "--device", "robot-1")
        assert sub.wait_for(lambda s: "rolled_back" in steps(s, "2"), 60), log.read_text()[-3000:]
        back = next(d for d in sub.of("model") if d["step"] == "rolled_back")
        canary = next(d for d in sub.of("model") if d["step"] == "canary")
        assert "frame rate" in back["reason"] and back["fps"] < 0.5 * canary["baseline_fps"], (back, canary)
        assert sub.wait_for(lambda s: running(s) == "1", 10)
    finally:
        stop_agent(agent, log)
        sub.close()
