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


@pytest.mark.parametrize(
    ("name", "instance"),
    [("shelfscan-agent.service", None), ("shelfscan-agent@.service", "cam1"), ("shelfscan-bench.service", None)],
)
def test_units_verify(tmp_path, name, instance):
    proc = subprocess.run(
        [systemd_analyze(), "verify", str(unit_copy(tmp_path, name, instance))], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_agent_unit_security_exposure(tmp_path):
    proc = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(UNITS / "shelfscan-agent.service")],
        capture_output=True,
        text=True,
    )
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


@pytest.mark.parametrize("name", ["shelfscan-agent.service", "shelfscan-agent@.service"])
def test_agent_units_allow_the_camera_devices(name):
    """What libcamera opens for a Pi camera, besides V4L2; and /proc/cpuinfo, without which XNNPACK is off."""
    lines = (UNITS / name).read_text().splitlines()
    assert "DevicePolicy=closed" in lines
    for device in ("char-video4linux", "char-media", "char-dma_heap", "/dev/vchiq"):  # video*, media*, dma_heap/*
        assert f"DeviceAllow={device} rw" in lines, device
    assert not [line for line in lines if line.startswith("ProcSubset=")]


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


def test_agent_sends_ready_and_watchdog(tmp_path, bundle, video):
    from tests.broker import Broker
    from tests.mqtt_helpers import agent_config

    broker = Broker(tmp_path / "broker").start()
    sock, path = notify_socket(tmp_path)
    cfg = agent_config(tmp_path, broker.port, bundle, f'kind = "video"\npath = "{video}"\nloop = true')
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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


def test_installer_rejects_32_bit_arm(tmp_path):
    fake = tmp_path / "python3"  # what Raspberry Pi OS (32-bit) says, without an armv7l machine
    fake.write_text('#!/bin/sh\necho "armv7l 32"\n')
    fake.chmod(0o755)
    env = {**os.environ, "DESTDIR": str(tmp_path / "root"), "PYTHON": str(fake)}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-agent.sh"), "--no-enable"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "armv7l" in proc.stderr and "64-bit" in proc.stderr and "ai-edge-litert" in proc.stderr
    assert not (tmp_path / "root").exists()


def test_installer_in_scratch_root(tmp_path):
    root = tmp_path / "root"
    env = {**os.environ, "DESTDIR": str(root), "PYTHON": sys.executable}
    for extra in ([], ["--system-site-packages"]):  # idempotent; the second run turns system site packages on
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "install-agent.sh"), "--no-enable", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "include-system-site-packages = true" in (root / "opt/shelfscan/venv/pyvenv.cfg").read_text()
    pin = re.search(r"numpy pinned to the system's (\S+)", proc.stdout)
    if pin:  # the base interpreter has numpy: the venv's numpy is that version
        check = [str(root / "opt/shelfscan/venv/bin/python"), "-I", "-c", "import numpy; print(numpy.__version__)"]
        venv_numpy = subprocess.run(check, capture_output=True, text=True)
        assert venv_numpy.stdout.strip() == pin.group(1)
    expected = [
        "opt/shelfscan/venv/bin/shelfscan-agent",
        "etc/shelfscan/agent.toml",
        "etc/shelfscan/agent.env",
        "etc/shelfscan/agent.toml.example",
        "var/lib/shelfscan/bundles",
    ]
    expected += [
        f"etc/systemd/system/{u}"
        for u in ("shelfscan-agent.service", "shelfscan-agent@.service", "shelfscan-bench.service")
    ]
    for rel in expected:
        assert (root / rel).exists(), rel
    assert oct((root / "etc/shelfscan/agent.env").stat().st_mode)[-3:] == "600"
    venv_python = root / "opt/shelfscan/venv/bin/python"
    no_tf = subprocess.run(
        [str(venv_python), "-c", "import importlib.util as u; print(u.find_spec('tensorflow'))"],
        capture_output=True,
        text=True,
    )
    assert no_tf.stdout.strip() == "None"  # the device venv has the edge extra only
    check = subprocess.run(
        [
            str(root / "opt/shelfscan/venv/bin/shelfscan-agent"),
            "config",
            "--check",
            str(root / "etc/shelfscan/agent.toml"),
        ],
        capture_output=True,
        text=True,
    )
    # a valid file; what it names is not on this machine yet (no bundle installed, no camera), and is said so
    problems = check.stderr.strip().splitlines()
    assert check.returncode == 2 and problems, check.stderr
    assert all(": model: " in line or ": source (camera): " in line for line in problems), problems
    (root / "etc/shelfscan/agent.toml").write_text((root / "etc/shelfscan/agent.toml").read_text() + "# edited\n")
    subprocess.run(
        ["bash", str(REPO / "scripts" / "install-agent.sh"), "--no-enable"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (root / "etc/shelfscan/agent.toml").read_text().endswith("# edited\n")  # config is never clobbered
    assert "include-system-site-packages = true" in (root / "opt/shelfscan/venv/pyvenv.cfg").read_text()  # kept
    subprocess.run(
        ["bash", str(REPO / "scripts" / "install-agent.sh"), "--uninstall"], env=env, check=True, capture_output=True
    )
    assert not (root / "opt/shelfscan").exists() and not (root / "etc/systemd/system/shelfscan-agent.service").exists()
    assert (root / "etc/shelfscan/agent.toml").exists()


def test_missing_c_extension_is_one_warning_per_process(monkeypatch, caplog):
    """No compiler at install: the first model load says which fallback runs, once (the agent's start)."""
    from edge import runtime

    monkeypatch.setitem(sys.modules, "edge._resample", None)  # as if it had not been built
    runtime.report_native_fallbacks.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="edge.runtime"):
            assert "edge._resample (resizing uses Pillow)" in runtime.report_native_fallbacks()
            runtime.report_native_fallbacks()
    finally:
        runtime.report_native_fallbacks.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if "C extensions not built" in r.getMessage()]
    assert len(warnings) == 1 and "edge._resample (resizing uses Pillow)" in warnings[0] and "compiler" in warnings[0]
