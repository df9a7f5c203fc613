"""Frame sources and the capture thread.

Capture runs in its own thread into a one-slot buffer: for live sources the newest frame wins
and overwritten frames are counted as drops, so a slow model never builds a backlog of stale
frames; recorded media (video files, folders) wait for the consumer instead. A source
that fails is reopened with exponential backoff and its state reported; a lost camera never
ends the service. A video file without ``loop`` ends, which is how tests and the demo finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import SourceConfig
from edge.errors import ImageError, ShelfscanError
from edge.images import is_image
from edge.preprocess import read_image

log = logging.getLogger(__name__)


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8
    ts: float  # wall-clock seconds
    index: int


class SourceEndedError(Exception):
    """The source has no more frames and will not have any (a video file without loop)."""


class Source:
    name = "source"
    #: Recorded media (video files, image folders) are read with backpressure: every frame is
    #: classified and none is decoded only to be dropped. Live sources keep the newest frame.
    recorded = False

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None:
        """Next BGR frame; None means "failed, reopen me"; raises SourceEndedError at a final end."""
        raise NotImplementedError

    def close(self) -> None: ...


class CvSource(Source):
    """Camera index or device, RTSP/HTTP URL, or video file through OpenCV."""

    def __init__(
        self,
        target: int | str,
        name: str,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        is_file: bool = False,
    ) -> None:
        self.target, self.name, self.loop, self.is_file = target, name, loop, is_file
        self.recorded = is_file
        self.width, self.height = width, height
        self.cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self.is_file and not Path(str(self.target)).is_file():
            raise ShelfscanError(f"{self.target}: video file not found")
        self.cap = cv2.VideoCapture(self.target)
        if not self.cap.isOpened():
            raise ShelfscanError(f"{self.name}: cannot open")
        self.native_fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0) if self.is_file else 0.0
        if self.width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)

    def read(self) -> np.ndarray | None:
        assert self.cap is not None
        ok, frame = self.cap.read()
        if ok:
            return frame
        if self.is_file:
            if not self.loop:
                raise SourceEndedError
            if not Path(str(self.target)).is_file():  # deleted while playing: do not loop on a ghost forever
                raise ShelfscanError(f"{self.target}: video file deleted")
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
            return frame if ok else None
        return None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FolderSource(Source):
    """Images in a folder, oldest name first; files that appear later are picked up too."""

    recorded = True

    def __init__(self, path: Path) -> None:
        self.path, self.name = path, f"folder {path}"
        self.seen: set[str] = set()

    def open(self) -> None:
        if not self.path.is_dir():
            raise ShelfscanError(f"{self.path}: image folder not found")

    def read(self) -> np.ndarray | None:
        while True:
            new = sorted(p for p in self.path.iterdir() if is_image(p) and p.name not in self.seen)
            if not new:
                time.sleep(0.2)
                return np.empty((0, 0, 3), np.uint8)  # nothing yet: not a failure
            path = new[0]
            self.seen.add(path.name)
            try:
                return read_image(path)
            except ImageError as exc:
                log.error("skipping %s", exc)


#: Where each colour lies in the arrays Picamera2's ``capture_array`` returns, per pixel format, as the
#: Picamera2 manual documents it ("RGB888 - 24 bits per pixel, ordered [B, G, R]. BGR888 - as above, but
#: ordered [R, G, B]", section 4.2, and its Appendix A table). The names are libcamera's (DRM fourcc, little
#: endian), so they read backwards as numpy arrays: "RGB888" is already OpenCV's BGR.
PICAMERA2_LAYOUTS = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}


def picamera2_to_bgr(array: np.ndarray, fmt: str) -> np.ndarray:
    """A ``capture_array`` result in format ``fmt`` as a BGR uint8 frame (no copy when it already is one)."""
    layout = PICAMERA2_LAYOUTS[fmt]
    order = [layout.index(c) for c in "BGR"]
    if order == [0, 1, 2] and array.shape[-1] == 3:
        return array
    return np.ascontiguousarray(array[..., order])


class Picamera2Source(Source):
    """A Raspberry Pi camera through libcamera's Python binding (Debian's ``python3-picamera2``).

    Frames are requested in ``RGB888``, whose documented byte order is B, G, R: the BGR the
    preprocessing expects, with no per-frame conversion.
    """

    name = "picamera2"
    #: The format asked of the ISP; see PICAMERA2_LAYOUTS for why it is the BGR one.
    FORMAT = "RGB888"
    DEFAULT_SIZE = (640, 480)

    def __init__(self, width: int | None = None, height: int | None = None, camera: int = 0) -> None:
        self.size = (width, height) if width and height else self.DEFAULT_SIZE
        self.camera_num = camera
        self.name = f"picamera2 {camera}"
        self.cam: Any = None  # a picamera2.Picamera2 while open

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except Exception as exc:  # a numpy ABI mismatch raises more than ImportError
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ShelfscanError(
                f"source kind 'picamera2' cannot import picamera2 ({detail}): apt install python3-picamera2 and "
                "install the agent with scripts/install-agent.sh --system-site-packages"
            ) from None
        cam = Picamera2(self.camera_num)
        self.cam = cam
        cam.configure(cam.create_preview_configuration(main={"format": self.FORMAT, "size": self.size}))
        got = tuple(cam.camera_configuration()["main"]["size"])
        if got != self.size:
            log.warning("picamera2 delivers %dx%d (asked for %dx%d: the ISP's nearest)", *got, *self.size)
        cam.start()

    def read(self) -> np.ndarray | None:
        assert self.cam is not None
        return picamera2_to_bgr(self.cam.capture_array("main"), self.FORMAT)

    def close(self) -> None:
        """Stop and release the camera: libcamera refuses a second open while this one holds it."""
        cam, self.cam = self.cam, None
        if cam is not None:
            for step in ("stop", "close"):
                try:
                    getattr(cam, step)()
                except Exception as exc:  # a vanished camera fails to stop; the reopen must still happen
                    log.debug("picamera2 %s: %s", step, exc)


def make_source(cfg: SourceConfig) -> Source:
    if cfg.kind == "camera":
        cam = cfg.camera
        assert cam is not None  # SourceConfig's validator requires camera for kind camera
        target = int(cam) if isinstance(cam, str) and cam.isdigit() else cam
        return CvSource(target, f"camera {cam}", width=cfg.width, height=cfg.height)
    if cfg.kind == "url":
        return CvSource(str(cfg.url), f"stream {cfg.url}")
    if cfg.kind == "video":
        return CvSource(str(cfg.path), f"video {cfg.path}", loop=cfg.loop, is_file=True)
    if cfg.kind == "folder":
        return FolderSource(Path(str(cfg.path)))
    return Picamera2Source(cfg.width, cfg.height, int(cfg.camera or 0))


class CaptureThread(threading.Thread):
    """Reads frames into a one-slot buffer; reopens failed sources with backoff; says when frames stop coming.

    A stream can stall without an error (an RTSP camera that stops sending, a read that blocks):
    the consumer's :meth:`get` notices that no frame came for ``stall_timeout`` seconds and the
    state becomes ``stalled`` (with how long), back to ``ok`` with the next frame.
    """

    def __init__(
        self,
        source: Source,
        on_state: Callable[[str, str], None],
        fps: float | None = None,
        backoff: tuple[float, float] = (1.0, 30.0),
        stall_timeout: float = 10.0,
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.source, self.on_state, self.fps, self.backoff = source, on_state, fps, backoff
        self.stall_timeout = stall_timeout
        self.detail = ""  # why the state is what it is (kept for status messages sent later, e.g. on reconnect)
        self._reopen = threading.Event()
        self._last_frame = time.monotonic()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stop = threading.Event()
        self.ended = threading.Event()
        self.frames = 0
        self.dropped = 0
        self.state = "starting"

    def _set_state(self, state: str, detail: str = "") -> None:
        if state != self.state:
            self.state, self.detail = state, detail
            self.on_state(state, detail)

    def run(self) -> None:
        delay = self.backoff[0]
        opened = False
        while not self._stop.is_set():
            if self._reopen.is_set() and opened:
                self._reopen.clear()
                self.source.close()
                opened = False
            try:
                if not opened:
                    self.source.open()
                    opened = True
                    delay = self.backoff[0]
                    self._last_frame = time.monotonic()  # a stall is counted from the (re)open
                    self._set_state("ok", self.source.name)
                image = self.source.read()
                if image is None:
                    raise ShelfscanError(f"{self.source.name}: read failed")
                if image.size == 0:
                    continue
            except SourceEndedError:
                self._set_state("ended", self.source.name)
                break
            except Exception as exc:  # a vanished camera must never end the service
                self._set_state("error", str(exc))
                log.error("source error: %s (reopening in %.0f s)", exc, delay)
                self.source.close()
                opened = False
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            self._put(Frame(image, time.time(), self.frames))
            fps = self.fps or getattr(self.source, "native_fps", 0.0)
            if fps:
                self._stop.wait(1.0 / fps)
        self.source.close()
        self.ended.set()
        with self._cond:
            self._cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            while self.source.recorded and self._slot is not None and not self._stop.is_set():
                self._cond.wait(0.1)  # backpressure: wait for the consumer
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.frames += 1
            self._last_frame = time.monotonic()
            self._cond.notify_all()
        if self.state == "stalled":
            self._set_state("ok", self.source.name)

    def get(self, timeout: float) -> Frame | None:
        """The newest frame, waiting up to ``timeout``; None if none came (or the source ended)."""
        with self._cond:
            if self._slot is None and not self.ended.is_set():
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
        if frame is None:
            quiet = time.monotonic() - self._last_frame
            if self.state == "ok" and quiet > self.stall_timeout:
                log.warning("source stalled: %s sent no frame for %.0f s", self.source.name, quiet)
                self._set_state("stalled", f"{self.source.name}: no frame for {quiet:.0f} s")
        return frame

    def exhausted(self) -> bool:
        """The source ended and its last frame has been taken."""
        with self._cond:
            return self.ended.is_set() and self._slot is None

    def request_reopen(self, why: str) -> None:
        """Close and open the source again before the next read (frames it sends keep failing)."""
        log.warning("reopening %s: %s", self.source.name, why)
        self._reopen.set()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
