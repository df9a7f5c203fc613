"""Broker security with the documented example configuration: TLS with client certificates,
passwords, and the per-device ACL, against a real Mosquitto."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker import Broker, free_port, run_as
from tests.conftest import REPO
from tests.mqtt_helpers import agent_config


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(out: Path) -> dict[str, Path]:
    """A CA, a broker certificate for localhost/127.0.0.1 and client certificates."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("shelfscan test CA"))
        .issuer_name(_name("shelfscan test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": out / "ca.crt"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, san in (("broker", True), ("robot-1", False), ("inventory", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        paths[f"{name}.crt"] = out / f"{name}.crt"
        paths[f"{name}.key"] = out / f"{name}.key"
        paths[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return paths


@pytest.fixture
def secure_broker(tmp_path):
    if shutil.which("mosquitto_passwd") is None and not Path("/usr/bin/mosquitto_passwd").exists():
        pytest.fail("mosquitto_passwd missing (package mosquitto)")
    pki = make_pki(tmp_path)
    passwd = tmp_path / "shelfscan.passwd"
    for i, (user, password) in enumerate((("robot-1", "r1-secret"), ("inventory", "inv-secret"))):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, password], check=True)
    port = free_port()
    example = (REPO / "deploy" / "mosquitto" / "shelfscan.conf").read_text()
    conf = (
        example.replace("/etc/mosquitto/shelfscan.passwd", str(passwd))
        .replace("/etc/mosquitto/shelfscan.acl", str(REPO / "deploy" / "mosquitto" / "shelfscan.acl"))
        .replace("/etc/mosquitto/certs/ca.crt", str(pki["ca"]))
        .replace("/etc/mosquitto/certs/broker.crt", str(pki["broker.crt"]))
        .replace("/etc/mosquitto/certs/broker.key", str(pki["broker.key"]))
        .replace("listener 8883", f"listener {port} 127.0.0.1")
        .replace("persistence true", "persistence false")
    )
    broker = Broker(tmp_path / "b", port=port, extra_conf="")
    broker.conf.write_text(conf + f"log_dest file {tmp_path}/b/mosquitto.log\n{run_as()}")
    broker.start()
    yield broker, pki
    broker.stop()


def tls_client(pki: dict[str, Path], user: str, password: str, port: int, client_id: str) -> tuple[mqtt.Client, list]:
    got: list[tuple[str, dict]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(user, password)
    c.tls_set(
        ca_certs=str(pki["ca"]),
        certfile=str(pki[f"{user}.crt"]),
        keyfile=str(pki[f"{user}.key"]),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    c.on_message = lambda cl, u, m: got.append((m.topic, json.loads(m.payload) if m.payload.startswith(b"{") else {}))
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, got


def wait(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def start(cfg: Path, password: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "-v", "run", "--config", str(cfg)],
            cwd=REPO,
            env={**os.environ, "SHELFSCAN_MQTT_PASSWORD": password},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def secure_config(tmp_path: Path, port: int, bundle: Path, video: Path, pki: dict[str, Path]) -> Path:
    return agent_config(
        tmp_path,
        port,
        bundle,
        f'kind = "video"\npath = "{video}"\nloop = true',
        device={"id": "robot-1", "prefix": "shelfscan"},
        mqtt={
            "username": "robot-1",
            "tls": {"ca": str(pki["ca"]), "cert": str(pki["robot-1.crt"]), "key": str(pki["robot-1.key"])},
        },
    )


def test_agent_over_tls_with_client_certificate(tmp_path, secure_broker, bundle, video):
    broker, pki = secure_broker
    inventory, got = tls_client(pki, "inventory", "inv-secret", broker.port, "inventory")
    inventory.subscribe("shelfscan/#", qos=1)
    cfg = secure_config(tmp_path, broker.port, bundle, video, pki)
    log = tmp_path / "a.log"
    agent = start(cfg, "r1-secret", log)
    try:
        assert wait(lambda: any(t == "shelfscan/robot-1/sighting" for t, _ in got), 40), log.read_text()[-2000:]
        # `watch` reaches the same broker with the CA and a client certificate (it had a bare tls_set())
        from tests.conftest import run_cli

        env = {**os.environ, "SHELFSCAN_MQTT_PASSWORD": "inv-secret"}
        tls = ["--ca", str(pki["ca"]), "--cert", str(pki["inventory.crt"]), "--key", str(pki["inventory.key"])]
        seen = run_cli("watch", "--broker", f"mqtts://inventory@127.0.0.1:{broker.port}", *tls, "--json", env=env)
        assert seen.returncode == 0, seen.stderr
        assert "robot-1" in {d["device_id"] for d in json.loads(seen.stdout)}, seen.stdout
    finally:
        agent.terminate()
        assert agent.wait(30) == 0
        inventory.loop_stop()


def test_wrong_password_is_a_clear_error_and_retried(tmp_path, secure_broker, bundle, video):
    broker, pki = secure_broker
    cfg = secure_config(tmp_path, broker.port, bundle, video, pki)
    log = tmp_path / "a.log"
    agent = start(cfg, "wrong", log)
    try:
        refusals = broker.workdir / "mosquitto.log"  # the broker logs every attempt it turns away
        assert wait(lambda: refusals.read_text().count("not authorised") >= 2, 30), refusals.read_text()[-2000:]
        assert agent.poll() is None  # still running, still retrying
        lines = [x for x in log.read_text().splitlines() if "broker refused" in x]
        assert len(lines) == 1, lines  # one warning per outage (then at most one a minute), not one per attempt
        assert "Not authorized" in lines[0] or "Bad user name or password" in lines[0], lines
        assert "next retry in" in lines[0], lines
    finally:
        agent.terminate()
        agent.wait(30)


def test_acl_keeps_devices_in_their_own_topics(tmp_path, secure_broker):
    broker, pki = secure_broker
    inventory, got = tls_client(pki, "inventory", "inv-secret", broker.port, "inventory")
    inventory.subscribe("shelfscan/#", qos=1)
    time.sleep(0.5)
    robot, robot_got = tls_client(pki, "robot-1", "r1-secret", broker.port, "robot-1")
    robot.subscribe("shelfscan/robot-2/cmd/#", qos=1)  # another device's commands: not readable
    robot.publish("shelfscan/robot-2/sighting", b'{"forged": true}', qos=1).wait_for_publish(5)
    robot.publish("shelfscan/robot-1/sighting", b'{"own": true}', qos=1).wait_for_publish(5)
    inventory.publish("shelfscan/robot-2/cmd/reload", b"{}", qos=1).wait_for_publish(5)
    assert wait(lambda: any(t == "shelfscan/robot-1/sighting" for t, _ in got), 10)
    time.sleep(1)
    assert not any(t.startswith("shelfscan/robot-2/sighting") for t, _ in got)
    assert robot_got == []
    robot.loop_stop()
    inventory.loop_stop()
