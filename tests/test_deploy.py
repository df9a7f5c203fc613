"""Deployment: unit files (systemd-analyze), sd_notify READY/WATCHDOG, the installer in a scratch root."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import sdnotify
from tests.conftest import IN_CI, REPO
from tests.test_agent import bundle, video  # noqa: F401 - module fixtures reused here

UNITS = REPO / "systemd"


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if IN_CI:
            pytest.fail("systemd-analyze missing (make test installs the systemd package when root)")
        pytest.skip("systemd-analyze not installed")
    return exe


def unit_copy(tmp_path: Path, name: str, instance: str | None = None) -> Path:
    """The unit with ExecStart pointing at an executable that exists here, so verify can check it."""
    text = (
        (UNITS / name)
        .read_text()
        .replace("/opt/shelfscan/venv/bin/shelfscan-agent", shutil.which("true") or "/bin/true")
    )
    target = tmp_path / (name.replace("@.", f"@{instance}.") if instance else name)
    target.write_text(text)
    return target


@pytest.mark.parametrize(("name", "instance"), [("shelfscan-agent.service", None), ("shelfscan-agent@.service", "cam1"),
                                                ("shelfscan-bench.service", None)])  # fmt: skip
def test_units_verify(tmp_path, name, instance):
    proc = subprocess.run([systemd_analyze(), "verify", str(unit_copy(tmp_path, name, instance))],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_agent_unit_security_exposure(tmp_path):
    proc = subprocess.run([systemd_analyze(), "security", "--offline=yes", str(UNITS / "shelfscan-agent.service")],
                          capture_output=True, text=True)  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    assert match, proc.stdout[-2000:] + proc.stderr
    print(f"systemd-analyze security exposure: {match.group(1)}")
    assert float(match.group(1)) <= 2.5
    text = (UNITS / "shelfscan-agent.service").read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
        "SupplementaryGroups=video",
        "StateDirectory=shelfscan",
        "ConfigurationDirectory=shelfscan",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "MemoryMax=",
    ):
        assert key in text, key


def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def received(sock: socket.socket, seconds: float) -> list[str]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            out.append(sock.recv(4096).decode())
    return out


def test_watchdog_pings_only_while_the_loop_progresses(tmp_path, monkeypatch):
    sock, path = notify_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    progress = [time.monotonic()]
    dog = sdnotify.Watchdog(0.1, lambda: progress[0], stall_after=0.3)
    dog.start()
    alive = received(sock, 1.0)
    progress[0] -= 100  # the inference loop hangs
    time.sleep(0.15)
    stalled = received(sock, 0.6)
    progress[0] = time.monotonic() + 100  # and recovers
    recovered = received(sock, 0.4)
    dog.stop()
    assert alive.count("WATCHDOG=1") >= 2 and stalled == [] and "WATCHDOG=1" in recovered


def test_agent_sends_ready_and_watchdog(tmp_path, bundle, video):  # noqa: F811
    from tests.broker import Broker
    from tests.mqtt_helpers import agent_config

    broker = Broker(tmp_path / "broker").start()
    sock, path = notify_socket(tmp_path)
    cfg = agent_config(tmp_path, broker.port, bundle, f'kind = "video"\npath = "{video}"\nloop = true')
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    agent = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        messages = received(sock, 8)
        assert any(m.startswith("READY=1") for m in messages), messages
        assert messages.count("WATCHDOG=1") >= 5, messages
        agent.terminate()
        assert agent.wait(30) == 0
        assert "STOPPING=1" in received(sock, 1) + messages
    finally:
        agent.kill()
        broker.stop()


def test_installer_in_scratch_root(tmp_path):
    root = tmp_path / "root"
    env = {**os.environ, "DESTDIR": str(root), "PYTHON": sys.executable}
    for _ in range(2):  # idempotent
        proc = subprocess.run(["bash", str(REPO / "scripts" / "install-agent.sh"), "--no-enable"], env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    expected = ["opt/shelfscan/venv/bin/shelfscan-agent", "etc/shelfscan/agent.toml", "etc/shelfscan/agent.env",
                "etc/shelfscan/agent.toml.example", "var/lib/shelfscan/bundles"]  # fmt: skip
    expected += [f"etc/systemd/system/{u}" for u in ("shelfscan-agent.service", "shelfscan-agent@.service",
                                                     "shelfscan-bench.service")]  # fmt: skip
    for rel in expected:
        assert (root / rel).exists(), rel
    assert oct((root / "etc/shelfscan/agent.env").stat().st_mode)[-3:] == "600"
    venv_python = root / "opt/shelfscan/venv/bin/python"
    no_tf = subprocess.run([str(venv_python), "-c", "import importlib.util as u; print(u.find_spec('tensorflow'))"],
                           capture_output=True, text=True)  # fmt: skip
    assert no_tf.stdout.strip() == "None"  # the device venv has the edge extra only
    check = subprocess.run([str(root / "opt/shelfscan/venv/bin/shelfscan-agent"), "config", "--check",
                            str(root / "etc/shelfscan/agent.toml")], capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    (root / "etc/shelfscan/agent.toml").write_text((root / "etc/shelfscan/agent.toml").read_text() + "# edited\n")
    subprocess.run(["bash", str(REPO / "scripts" / "install-agent.sh"), "--no-enable"], env=env, check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    assert (root / "etc/shelfscan/agent.toml").read_text().endswith("# edited\n")  # config is never clobbered
    subprocess.run(["bash", str(REPO / "scripts" / "install-agent.sh"), "--uninstall"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    assert not (root / "opt/shelfscan").exists() and not (root / "etc/systemd/system/shelfscan-agent.service").exists()
    assert (root / "etc/shelfscan/agent.toml").exists()
