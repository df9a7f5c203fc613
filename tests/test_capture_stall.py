"""The capture thread says when an open source stops sending frames, and when a looping video is deleted."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.sources import CaptureThread, CvSource, Source
from tests.mqtt_helpers import write_shelf_video


class Gate(Source):
    """A live source that sends frames only while its gate is open (a stream that stalls without an error)."""

    name = "gate camera"

    def __init__(self) -> None:
        self.open_gate = threading.Event()
        self.open_gate.set()

    def read(self) -> np.ndarray | None:
        self.open_gate.wait()
        time.sleep(0.01)
        return np.zeros((8, 8, 3), np.uint8)


def test_stall_is_reported_and_cleared():
    states: list[tuple[str, str]] = []
    source = Gate()
    cap = CaptureThread(source, lambda s, d: states.append((s, d)), stall_timeout=0.3)
    cap.start()
    try:
        assert cap.get(1.0) is not None and cap.state == "ok"
        source.open_gate.clear()
        deadline = time.monotonic() + 3
        while cap.state != "stalled" and time.monotonic() < deadline:
            cap.get(0.1)
        assert cap.state == "stalled" and "gate camera: no frame for" in cap.detail
        source.open_gate.set()
        assert cap.get(1.0) is not None or cap.get(1.0) is not None
        assert cap.state == "ok"
        assert [s for s, _ in states] == ["ok", "stalled", "ok"]
    finally:
        source.open_gate.set()
        cap.stop()


def test_deleted_looping_video_is_an_error_not_a_ghost(reference, tmp_path):
    video = tmp_path / "pass.avi"
    write_shelf_video(video, [reference / "samples" / "coffee.png"], [0], frames_per_run=3)
    source = CvSource(str(video), "video", loop=True, is_file=True)
    source.open()
    for _ in range(3):
        assert source.read() is not None
    video.unlink()
    try:
        source.read()
    except Exception as exc:
        assert f"{video}: video file deleted" in str(exc)
    else:
        raise AssertionError("a deleted looping video kept playing")
    finally:
        source.close()


def test_reopen_on_request_closes_and_opens_the_source():
    class Counting(Gate):
        opens = closes = 0

        def open(self) -> None:
            self.opens += 1

        def close(self) -> None:
            self.closes += 1

    source = Counting()
    cap = CaptureThread(source, lambda s, d: None)
    cap.start()
    try:
        assert cap.get(1.0) is not None and source.opens == 1
        cap.request_reopen("20 frames in a row failed")
        deadline = time.monotonic() + 3
        while source.opens < 2 and time.monotonic() < deadline:
            cap.get(0.1)
        assert (source.opens, source.closes) == (2, 1) and cap.state == "ok"
    finally:
        cap.stop()
