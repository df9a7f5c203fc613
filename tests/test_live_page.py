"""The live page's parts in-process: password rule and Basic auth, the drawn frame, encoding at most N fps, and
what the frame loop keeps (only while someone watches). The page of a running agent in a real browser:
tests/test_live_metrics.py."""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from edge.config_fleet import LiveConfig
from edge.errors import ShelfscanError
from edge.live_frame_image import UNKNOWN_COLOUR, draw
from edge.live_page import FrameEncoder, LivePage, check_exposure, is_loopback
from edge.live_state import Box, LiveFrame, LiveState
from edge.shelfmap_cli import colour
from tests.broker import free_port
from tests.conftest import run_cli


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class StandInPipeline:
    """What LiveState reads of a detect_classify pipeline, with fixed boxes (no model needed here)."""

    mode = "detect_classify"

    def __init__(self) -> None:
        self.last_boxes = (np.array([[10.0, 20.0, 60.0, 90.0]]), [("cola", 0.9)])

    def models(self) -> dict[str, dict[str, str]]:
        return {"classifier": {"name": "tiny", "version": "7", "sha256": "ab"}}

    def counts(self) -> dict[str, Any]:
        return {"counts": {"cola": 3, "<water>": 1}, "facings": 4, "gaps": 1, "unknown": 0}

    def shelfmap(self) -> dict[str, Any]:
        return {"rows": [{"row": 0, "items": [{"type": "facing", "label": "cola", "x0": 0.0, "x1": 50.0}]}]}


def live_state(clock: Clock) -> LiveState:
    agent = SimpleNamespace(pipeline=StandInPipeline(), frames_done=0, scan={"scan_id": "s-1"})
    return LiveState(cast(Any, agent), clock=clock)


def test_only_loopback_goes_without_a_password(monkeypatch):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("robot.local")
    monkeypatch.delenv("SHELFSCAN_LIVE_PASSWORD", raising=False)
    check_exposure(LiveConfig(enabled=True))  # loopback: fine
    with pytest.raises(ShelfscanError, match="SHELFSCAN_LIVE_PASSWORD"):
        check_exposure(LiveConfig(enabled=True, host="0.0.0.0"))
    monkeypatch.setenv("SHELFSCAN_LIVE_PASSWORD", "s3cret")
    check_exposure(LiveConfig(enabled=True, host="0.0.0.0"))


def test_agent_refuses_to_start_an_exposed_page_without_password(tmp_path, monkeypatch):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[device]\nstate_dir = "{tmp_path}"\n[model]\nbundle = "{tmp_path}/none"\n[source]\n'
        f'kind = "folder"\npath = "{tmp_path}"\n[live]\nenabled = true\nhost = "0.0.0.0"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "SHELFSCAN_LIVE_PASSWORD"}
    proc = run_cli("run", "--config", str(cfg), env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SHELFSCAN_LIVE_PASSWORD" in lines[0] and "0.0.0.0" in lines[0], proc.stderr
    check = run_cli("config", "--check", str(cfg), env=env)
    assert check.returncode == 2 and "SHELFSCAN_LIVE_PASSWORD" in check.stderr, check.stderr


def get(url: str, password: str | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url)
    if password is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"installer:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("WWW-Authenticate", "")


def test_exposed_page_asks_for_the_password(monkeypatch):
    monkeypatch.setenv("SHELFSCAN_LIVE_TEST_PW", "s3cret")
    state = live_state(Clock())
    state.refresh()
    page = LivePage(
        state,
        LiveConfig(enabled=True, host="0.0.0.0", port=free_port(), password_env="SHELFSCAN_LIVE_TEST_PW"),
        "robot-9",
    )
    try:
        base = f"http://127.0.0.1:{page.port}"
        status, _, auth = get(base + "/")
        assert status == 401 and auth.startswith("Basic"), (status, auth)
        assert get(base + "/state.json", "wrong")[0] == 401
        status, body, kind = get(base + "/", "s3cret")
        text = body.decode()
        assert status == 200 and kind.startswith("text/html")
        assert "robot-9" in text and "cola</td><td class='n'>3" in text and "&lt;water&gt;" in text, text
        assert "tiny 7" in text and "facings 4" in text and "gaps 1" in text
        assert get(base + "/nothing", "s3cret")[0] == 404
    finally:
        page.close()


def test_page_serves_frame_state_and_shelfmap_on_loopback():
    clock = Clock()
    state = live_state(clock)
    page = LivePage(state, LiveConfig(enabled=True, port=free_port()), "robot-9")
    try:
        base = f"http://127.0.0.1:{page.port}"
        assert get(base + "/shelfmap")[0] == 404  # nobody watched yet: no map copied
        assert get(base + "/")[0] == 200  # watching from now on
        state.frame_done(np.full((120, 160, 3), 30, np.uint8), 1.0)
        status, jpeg, kind = get(base + "/frame.jpg")
        assert status == 200 and kind == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        status, body, _ = get(base + "/state.json")
        assert status == 200 and b'"has_shelfmap": true' in body, body
        status, body, _ = get(base + "/shelfmap")
        assert status == 200 and b"<svg" in body and b"cola" in body
    finally:
        page.close()


def test_frame_loop_keeps_frames_only_while_watched():
    clock = Clock()
    state = live_state(clock)
    image = np.zeros((50, 50, 3), np.uint8)
    state.frame_done(image, 1.0)
    assert state.frame is None  # nobody watching: nothing kept but the time
    assert state.snapshot.counts["facings"] == 4 and state.snapshot.shelfmap is None
    state.watch()
    clock.now += 1
    state.frame_done(image, 2.0)
    assert state.frame is not None and state.frame.image is image  # a reference, not a copy
    assert state.frame.boxes == (Box(10, 20, 60, 90, "cola", 0.9),)
    assert state.snapshot.shelfmap is not None and state.snapshot.scan_id == "s-1"
    clock.now += 10  # the viewer left
    state.frame_done(np.ones((50, 50, 3), np.uint8), 3.0)
    assert state.frame.image is image
    state.watch()  # a new visit never starts on the old picture
    assert state.frame is None


def test_fps_is_windowed():
    clock = Clock()
    state = live_state(clock)
    for _ in range(21):  # 20 frames a second for a second
        state.frame_done(np.zeros((4, 4, 3), np.uint8), 0.0)
        clock.now += 0.05
    assert state.fps() == pytest.approx(20, rel=0.01)
    clock.now += 30
    assert state.fps() == 0.0


def test_boxes_and_labels_are_drawn_in_the_label_colour():
    image = np.zeros((200, 400, 3), np.uint8)
    frame = LiveFrame(image, 0.0, 1, boxes=(Box(20, 50, 120, 180, "cola", 0.9), Box(200, 50, 300, 180, None, 0.0)))
    out = draw(frame, max_width=400)
    assert image.max() == 0, "the agent's frame was written to"
    assert tuple(out[120, 20]) == colour("cola") and tuple(out[120, 200]) == UNKNOWN_COLOUR
    assert out[120, 70].max() == 0  # inside the box: the picture
    half = draw(frame, max_width=200)
    assert half.shape == (100, 200, 3) and tuple(half[60, 10]) == colour("cola")
    top = draw(LiveFrame(image, 0.0, 1, top=(("espresso", 0.8),)), 400)
    assert tuple(top[9, 7]) == colour("espresso")


def test_frames_are_encoded_at_most_max_fps():
    clock = Clock()
    state = live_state(clock)
    state.watch()
    encoder = FrameEncoder(state, max_fps=1000, max_width=100)
    for i in range(3):
        state.frame = LiveFrame(np.full((40, 40, 3), i * 50, np.uint8), 0.0, i)
        encoder.jpeg()
        encoder.jpeg()  # the same frame: not encoded again
        clock.now += 0.01
    assert encoder.encodes == 3
    slow = FrameEncoder(state, max_fps=0.001, max_width=100)
    first = slow.jpeg()
    state.frame = LiveFrame(np.full((40, 40, 3), 200, np.uint8), 0.0, 99)
    assert slow.jpeg() == first and slow.encodes == 1
