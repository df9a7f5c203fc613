"""The composer's camera: what a tilted, zoomed camera sees of a composed shelf, and its sensor effects.

:func:`camera_view` maps a canvas through a homography (boxes, gaps and rows with it, keeping
facings enough in view); :func:`camera_effects` applies exposure, white balance, motion blur and
noise, so the shelf-pass video and the trainer's augmentation film with the same camera.

Kept apart from :mod:`trainer.shelf_composer` because it is the stage after the layout: it
knows nothing of photos, runs or boards, only of a finished :class:`~trainer.shelf_types.Shelf`.
"""

from __future__ import annotations

import cv2
import numpy as np

from trainer.shelf_types import Box, Facing, Gap, Shelf, ShelfStyle


def _warp_quad(box: Box, matrix: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cv2.perspectiveTransform(np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float64), matrix)[0]


def _bounds(points: np.ndarray) -> Box:
    return float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())


def _in_view(quad: np.ndarray, width: int, height: int) -> tuple[Box, float]:
    """Bounding box of the part of ``quad`` inside the image, and the share of its area that is in view.

    The quad is clipped as a polygon: under perspective, clipping its bounding box instead
    would leave a corner that is out of view inside the box.
    """
    frame = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    area = abs(cv2.contourArea(quad.astype(np.float32)))
    seen, polygon = cv2.intersectConvexConvex(quad.astype(np.float32), frame)
    if polygon is None or seen <= 0 or area <= 0:
        return (0.0, 0.0, 0.0, 0.0), 0.0
    x0, y0, x1, y1 = _bounds(polygon.reshape(-1, 2))
    return (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)), seen / area


def camera_view(
    canvas: Shelf, width: int, height: int, rng: np.random.Generator, style: ShelfStyle = ShelfStyle()
) -> Shelf:
    """What a camera sees of ``canvas``: a zoomed, slightly tilted window, blurred, noisy, exposed.

    Boxes go through the same homography and are kept when at least ``style.min_visible`` of
    them is in view.
    """
    ch, cw = canvas.image.shape[:2]
    zoom = rng.uniform(*style.zoom)
    jitter = style.perspective * np.array([cw, ch])
    # the tilted window stays inside the canvas: no reflected (unlabelled) products at the borders
    win_w, win_h = min(cw - 2 * jitter[0], cw / zoom), min(ch - 2 * jitter[1], ch / zoom)
    x = jitter[0] + rng.uniform(0.0, max(0.0, cw - 2 * jitter[0] - win_w))
    y = jitter[1] + rng.uniform(0.0, max(0.0, ch - 2 * jitter[1] - win_h))
    src = np.array([[x, y], [x + win_w, y], [x + win_w, y + win_h], [x, y + win_h]], np.float64)
    src += rng.uniform(-1, 1, (4, 2)) * jitter
    dst = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    matrix = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    image = cv2.warpPerspective(
        canvas.image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    view = Shelf(_camera_effects(image, rng, style, width / 640))
    for f in canvas.facings:
        quad = _warp_quad(f.extent, matrix)
        box, seen = _in_view(quad, width, height)
        if seen >= style.min_visible and box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            view.facings.append(Facing(box, f.label, f.row, f.photo, _bounds(quad) if seen < 0.999 else None))
    for g in canvas.gaps:
        box, seen = _in_view(_warp_quad(g.box, matrix), width, height)
        if seen >= style.min_visible:
            view.gaps.append(Gap(box, g.row))
    for top, bottom in canvas.rows:
        _, y0, _, y1 = _bounds(_warp_quad((cw / 2 - 1, top, cw / 2 + 1, bottom), matrix))
        if y1 > 0 and y0 < height:
            view.rows.append((max(0.0, y0), min(float(height), y1)))
    return view


def _camera_effects(image: np.ndarray, rng: np.random.Generator, style: ShelfStyle, scale: float) -> np.ndarray:
    """Exposure, white balance, motion blur along the pan and sensor noise drawn from ``style``."""
    gain = (rng.uniform(*style.exposure) * rng.uniform(0.92, 1.08, 3)).astype(np.float32)
    length = int(rng.integers(style.motion_blur_px[0], style.motion_blur_px[1] + 1) * scale)
    return camera_effects(image, gain, length, rng.uniform(*style.noise), rng)


def camera_effects(
    image: np.ndarray, gain: float | np.ndarray, blur_px: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """``image`` times ``gain`` (exposure, per-channel white balance), blurred ``blur_px`` along x (the pan),
    plus sensor noise of sigma ``noise``, in float, then to uint8.

    Public so that the shelf-pass video films its frames with the same camera as the still shelves.
    """
    img = image * np.asarray(gain, np.float32)
    if blur_px >= 2:
        kernel = np.zeros((1, blur_px), np.float32)
        kernel[:] = 1.0 / blur_px
        img = cv2.filter2D(img, -1, kernel)
    if noise > 0:
        img += rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)
