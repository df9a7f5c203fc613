"""The picamera2 source against the documented Picamera2 array layout (no camera here, so a fake module).

The fake encodes what the Picamera2 manual says ``capture_array`` returns, written down here
independently of ``edge.sources``: "RGB888 - 24 bits per pixel, ordered [B, G, R]. BGR888 - as
above, but ordered [R, G, B]." and "XBGR8888 - ... a pixel would look like [R, G, B, 255]",
"XRGB8888 - as above, with a pixel looking like [B, G, R, 255]" (The Picamera2 Library, section
4.2, "Image formats"; the same in its Appendix A table, and in picamera2's own ``request.py``,
which hands BGR888 to PIL as mode "RGB"). The source must turn that into the BGR frames the rest
of the code reads.
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import numpy as np
import pytest

from edge.config import SourceConfig, parse_config
from edge.errors import ShelfscanError
from edge.sources import Picamera2Source, make_source, picamera2_to_bgr

#: Channel order per pixel of each main-stream format, as the manual documents it.
DOCUMENTED = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}


def scene_rgb(height: int, width: int) -> np.ndarray:
    """A frame whose channels cannot be confused: red left third, green middle, blue right, a gradient below."""
    img = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    img[:, :third, 0] = 255
    img[:, third : 2 * third, 1] = 255
    img[:, 2 * third :, 2] = 255
    img[height // 2 :, :, 1] = np.linspace(0, 255, width, dtype=np.uint8)
    return img


def documented_array(rgb: np.ndarray, fmt: str) -> np.ndarray:
    """What capture_array returns for ``fmt``: the manual's byte order, X bytes 255."""
    planes = {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2], "X": np.full(rgb.shape[:2], 255, np.uint8)}
    return np.stack([planes[c] for c in DOCUMENTED[fmt]], axis=-1)


class FakePicamera2:
    """Picamera2's surface that the source uses; one camera, refused while another instance holds it."""

    held: ClassVar[set[int]] = set()
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num in self.held:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        self.held.add(camera_num)
        self.camera_num, self.config, self.started, self.calls = camera_num, None, False, []
        self.instances.append(self)

    def create_preview_configuration(self, main: dict | None = None, **_: object) -> dict:
        stream = {"format": "XBGR8888", "size": (640, 480)} | (main or {})
        return {"use_case": "preview", "main": stream}

    def configure(self, config: dict) -> None:
        self.config = config

    def camera_configuration(self) -> dict:
        return self.config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.started and name == "main"
        width, height = self.config["main"]["size"]
        return documented_array(scene_rgb(height, width), self.config["main"]["format"])

    def stop(self) -> None:
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        self.calls.append("close")
        self.held.discard(self.camera_num)


@pytest.fixture
def fake_picamera2(monkeypatch):
    FakePicamera2.held, FakePicamera2.instances = set(), []
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


@pytest.mark.parametrize("fmt", sorted(DOCUMENTED))
def test_every_documented_format_becomes_bgr(fmt):
    rgb = scene_rgb(6, 9)
    bgr = picamera2_to_bgr(documented_array(rgb, fmt), fmt)
    assert bgr.shape == (6, 9, 3) and bgr.dtype == np.uint8 and bgr.flags.c_contiguous
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])


def test_source_delivers_bgr_at_the_configured_size(fake_picamera2):
    source = make_source(SourceConfig(kind="picamera2", width=320, height=240))
    assert isinstance(source, Picamera2Source)
    source.open()
    cam = fake_picamera2.instances[-1]
    assert tuple(cam.config["main"]["size"]) == (320, 240)
    frame = source.read()
    assert frame is not None and frame.shape == (240, 320, 3)
    np.testing.assert_array_equal(frame, scene_rgb(240, 320)[..., ::-1])
    assert frame[0, 0].tolist() == [0, 0, 255]  # the red third is red to OpenCV (B, G, R)
    source.close()
    assert cam.calls == ["stop", "close"]


def test_default_size_camera_number_and_reopen(fake_picamera2):
    source = make_source(SourceConfig(kind="picamera2", camera=1))
    source.open()
    assert fake_picamera2.instances[-1].camera_num == 1
    assert source.read().shape == (480, 640, 3)
    source.close()
    source.open()  # the capture thread's reopen after a failure: the first instance was released
    assert len(fake_picamera2.instances) == 2
    source.close()


def test_missing_picamera2_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(ShelfscanError) as exc:
        Picamera2Source().open()
    assert "\n" not in str(exc.value) and "python3-picamera2" in str(exc.value)
    assert "--system-site-packages" in str(exc.value)


def test_config_wants_both_sides_of_the_size():
    base = {"model": {"bundle": "b"}}
    with pytest.raises(ShelfscanError, match="needs both width and height"):
        parse_config(base | {"source": {"kind": "picamera2", "width": 640}})
    with pytest.raises(ShelfscanError, match="camera number"):
        parse_config(base | {"source": {"kind": "picamera2", "camera": "/dev/video0"}})
    cfg = parse_config(base | {"source": {"kind": "picamera2", "width": 1280, "height": 720}})
    assert (cfg.source.width, cfg.source.height) == (1280, 720)
