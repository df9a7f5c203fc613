"""Camera motion from phase correlation, on real shelf pixels shifted by known offsets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.motion import MotionTracker, box_shift, estimate_shift, to_small_gray


@pytest.fixture(scope="module")
def panorama(shared: Path) -> np.ndarray:
    """A wide shelf (2 to 3 rows of facings) composed from Freiburg *val* photos, before camera effects."""
    from trainer.photo_library import PhotoLibrary
    from trainer.shelf_composer import compose_canvas

    library = PhotoLibrary.from_tree(shared / "datasets" / "freiburg_groceries" / "val")
    shelf = compose_canvas(library, 2200, 560, np.random.default_rng(5))
    return np.clip(shelf.image, 0, 255).astype(np.uint8)


def view(image: np.ndarray, x: float, y: float, width: int = 640, height: int = 480) -> np.ndarray:
    """The camera's 640x480 window at ``(x, y)`` of ``image``, subpixel positions interpolated."""
    matrix = np.float32([[1, 0, -x], [0, 1, -y]])
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def shift_of(a: np.ndarray, b: np.ndarray, scale: tuple[int, int] = (2, 4)) -> tuple[float, float, float]:
    dx, dy, conf = estimate_shift(to_small_gray(a, scale), to_small_gray(b, scale))
    return dx * scale[0], dy * scale[1], conf


@pytest.mark.shared
@pytest.mark.parametrize("step", [(24.0, 0.0), (3.0, -2.0), (57.5, 3.25), (-40.0, 1.5), (0.5, 0.0), (0.0, 0.0)])
def test_shift_of_real_shelf_within_a_pixel(panorama, step):
    """The window moves right by ``step``: the picture moves left by as much."""
    for x, y in [(100.0, 30.0), (700.0, 50.0), (1300.0, 20.0)]:
        a, b = view(panorama, x, y), view(panorama, x + step[0], y + step[1])
        dx, dy, conf = shift_of(a, b)
        assert abs(dx + step[0]) < 1.0 and abs(dy + step[1]) < 1.0, (x, step, dx, dy)
        assert conf > 0.5


@pytest.mark.shared
def test_shift_survives_blur_noise_and_flicker(panorama):
    rng = np.random.default_rng(0)
    for x in (150.0, 900.0):
        a = view(panorama, x, 30.0)
        b = view(panorama, x + 30.0, 32.0).astype(np.float32) * 1.35  # exposure jump (flicker)
        b = cv2.blur(b, (9, 1)) + rng.normal(0, 6, b.shape).astype(np.float32)  # motion blur along the pan, noise
        dx, dy, conf = shift_of(a, np.clip(b, 0, 255).astype(np.uint8))
        assert abs(dx + 30.0) < 1.0 and abs(dy + 2.0) < 1.0 and conf > 0.3


@pytest.mark.shared
def test_tracker_accumulates_the_pan(panorama):
    """40 frames of a pan with bob: the world offset follows the true camera position."""
    tracker = MotionTracker()
    rng = np.random.default_rng(1)
    x, y = 50.0, 30.0
    for k in range(40):
        if k:
            x += rng.uniform(10, 35)
            y = 30.0 + 4 * np.sin(k / 5)
        est = tracker.update(view(panorama, x, y))
        assert est.source == ("first" if k == 0 else "phase")
    assert abs(tracker.offset[0] - (x - 50.0)) < 4.0 and abs(tracker.offset[1] - (y - 30.0)) < 3.0
    assert tracker.fallbacks == 0


def test_shift_of_textured_frames_without_shared_data():
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (700, 1400, 3)).astype(np.float32), (0, 0), 6)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    a, b = view(texture, 200.0, 40.0), view(texture, 231.5, 38.0)
    dx, dy, conf = shift_of(a, b)
    assert abs(dx + 31.5) < 1.0 and abs(dy - 2.0) < 1.0 and conf > 0.5


def test_blank_frames_fall_back_to_the_last_velocity_or_the_boxes():
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (600, 2000, 3)).astype(np.float32), (0, 0), 6)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)

    def blank() -> np.ndarray:  # a grey wall and fresh sensor noise: nothing to correlate
        return np.clip(120 + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8)

    assert shift_of(blank(), blank())[2] < 0.1

    tracker = MotionTracker()
    tracker.update(view(texture, 100.0, 50.0))
    est = tracker.update(view(texture, 120.0, 50.0))
    assert est.source == "phase" and abs(est.dx + 20.0) < 1.0
    est = tracker.update(blank())  # a flash: the last trusted velocity carries on
    assert est.source == "velocity" and (est.dx, est.dy) == tracker.velocity
    assert tracker.fallbacks == 1

    boxes = np.array([[x, 100, x + 80, 200] for x in range(40, 600, 80)], np.float64)
    tracker.update(blank(), boxes)
    est = tracker.update(blank(), boxes - [25, 0, 25, 0])  # no picture, but the boxes moved 25 px left
    assert est.source == "boxes" and abs(est.dx + 25.0) < 1e-6 and est.dy == 0.0
    tracker.reset()
    assert tracker.offset == (0.0, 0.0) and tracker.update(blank()).source == "first"


def test_box_shift_uses_the_velocity_to_resolve_identical_facings():
    """Identical facings every 80 px, picture moved 50 px left: the boxes alone could also say 30 px right."""
    prev = np.array([[x, 100, x + 80, 220] for x in range(0, 640, 80)], np.float64)
    cur = prev - [50, 0, 50, 0]
    cur = cur[cur[:, 2] > 0]
    dx, dy, conf = box_shift(prev, cur, guess=(-45.0, 0.0))
    assert abs(dx + 50.0) < 1e-6 and dy == 0.0 and conf > 0.8
    assert abs(box_shift(prev, cur, guess=(20.0, 0.0))[0] - 30.0) < 1e-6  # a wrong guess picks the alias
    assert box_shift(prev, cur[:1], guess=(-45.0, 0.0))[2] == 0.0  # one match is not evidence
    assert box_shift(prev[:0], cur) == (0.0, 0.0, 0.0)


def test_estimate_shift_checks_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        estimate_shift(np.zeros((120, 320), np.float32), np.zeros((120, 160), np.float32))
