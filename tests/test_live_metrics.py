"""The Prometheus endpoint and the live page of a running agent (real Mosquitto, a looping video).

The page is rendered by a real headless Chromium (Debian's ``chromium``): the screenshot must show
the page's background where the page has none of its own content and a frame that is a picture
(not blank, not the grey placeholder); the served HTML must show the counts.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.broker import free_port
from tests.mqtt_helpers import agent_config
from tests.test_agent import start_agent, stop_agent

pytestmark = [pytest.mark.shared, pytest.mark.slow]
BACKGROUND_BGR = (0x33, 0x27, 0x1D)  # edge.live_page.BACKGROUND, #1d2733


def get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data: bytes = resp.read()
        return data


def wait_get(url: str, agent: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> bytes:
    """The first answer of a server that is starting (the agent loads its model first)."""
    deadline = time.monotonic() + timeout
    while True:
        assert agent.poll() is None, log.read_text()[-3000:]
        try:
            return get(url)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed as Prometheus text: sample name -> {sorted labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(get(url).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(metrics: dict, name: str, **labels: str) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def test_metrics_and_live_page_of_a_running_agent(tmp_path, broker, bundle, video):
    metrics_port, live_port = free_port(), free_port()
    cfg = agent_config(
        tmp_path,
        broker.port,
        bundle,
        f'kind = "video"\npath = "{video}"\nloop = true\nfps = 15',
        inference={"max_fps": 15},
        metrics={"enabled": True, "port": metrics_port},
        live={"enabled": True, "port": live_port, "max_fps": 4},
    )
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    try:
        metrics_url, live = f"http://127.0.0.1:{metrics_port}/metrics", f"http://127.0.0.1:{live_port}"
        wait_get(metrics_url, agent, log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the first sightings are counted
            first = scrape(metrics_url)
            if sum(first.get("shelfscan_scan_count", {}).values()) >= 2:
                break
            time.sleep(0.5)
        time.sleep(2)
        second = scrape(metrics_url)
        assert second["shelfscan_frames_total"][()] > first["shelfscan_frames_total"][()] > 0
        assert second["shelfscan_fps"][()] > 1
        for stage in ("preprocess", "invoke", "post", "frame"):
            assert one(second, "shelfscan_stage_latency_seconds_count", stage=stage) > one(
                first, "shelfscan_stage_latency_seconds_count", stage=stage
            )
            assert one(second, "shelfscan_stage_latency_seconds_sum", stage=stage) > 0
        assert one(second, "shelfscan_mqtt_connected") == 1
        assert one(second, "shelfscan_source_state", state="ok") == 1
        assert one(second, "shelfscan_source_state", state="error") == 0
        assert one(second, "shelfscan_storage_state", state="ok") == 1
        assert one(second, "shelfscan_scan_active") == 1
        assert one(second, "shelfscan_scan_count", label="Egyptian cat") >= 1, second["shelfscan_scan_count"]
        assert "shelfscan_outbox_depth" in second and "shelfscan_outbox_dropped_total" in second
        info = second["shelfscan_model_info"]
        assert any(dict(k).get("name") == "imagenet-ref" and dict(k).get("version") == "1" for k in info), info

        page = get(live + "/").decode()
        assert "Egyptian cat" in page and "imagenet-ref" in page, page[:2000]
        check_frame(get(live + "/frame.jpg"))
        if shutil.which("chromium") is None:
            pytest.skip("chromium not installed (apt-get install chromium): the browser check did not run")
        shot = screenshot(live + "/", tmp_path)
        check_screenshot(shot)
        assert "Egyptian cat" in dump_dom(live + "/")
    finally:
        stop_agent(agent, log)


def check_frame(jpeg: bytes) -> None:
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None and frame.shape == (480, 640, 3), None if frame is None else frame.shape
    assert float(frame.std()) > 20, "the frame is blank or the placeholder"


def keep_watching(url: str, stop: threading.Event) -> None:
    """Another viewer: the agent keeps frames for the page only while someone looks (Chromium starts slowly)."""
    while not stop.wait(1.0):
        with contextlib.suppress(OSError):
            get(url, timeout=2)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def screenshot(url: str, tmp: Path) -> np.ndarray:
    stop = threading.Event()
    watcher = threading.Thread(target=keep_watching, args=(url + "state.json", stop), daemon=True)
    watcher.start()
    try:
        out = tmp / "live.png"
        proc = chromium(f"--screenshot={out}", "--window-size=900,900", "--virtual-time-budget=4000", url)
    finally:
        stop.set()
    assert out.is_file(), proc.stderr[-2000:]
    image = cv2.imread(str(out))
    assert image is not None
    return image


def dump_dom(url: str) -> str:
    proc = chromium("--dump-dom", "--virtual-time-budget=2000", url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def check_screenshot(shot: np.ndarray) -> None:
    """The page's background at the corners; the frame is the largest block of non-background pixels, about the
    frame's size, and a picture (its pixels vary), not a blank or grey placeholder."""
    h, w = shot.shape[:2]
    for y, x in ((2, 2), (2, w - 3), (h - 3, 2)):
        assert np.abs(shot[y, x].astype(int) - BACKGROUND_BGR).max() <= 6, (y, x, shot[y, x])
    content = (np.abs(shot.astype(int) - BACKGROUND_BGR).sum(axis=2) > 40).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(content)
    assert n > 1, "nothing but background"
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (int(v) for v in stats[biggest, :4])
    assert bw >= 600 and bh >= 440, f"no frame-sized block on the page ({bw}x{bh} at {x},{y})"
    inner = shot[y + 4 : y + bh - 4, x + 4 : x + bw - 4]
    assert float(inner.std()) > 20, "the frame on the page is blank or the placeholder"
