"""The live page's picture: the latest frame with what the pipeline saw drawn on it, as a JPEG.

Runs on a web thread, on a copy (scaled down to ``max_width``), so the frame loop never waits
for it; each facing box gets its label's colour (the shelf map's, so a product looks the same in
both) and its label, a whole-frame classification its top labels in the corner.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import ShelfscanError
from edge.live_state import LiveFrame
from edge.shelfmap_cli import colour

UNKNOWN_COLOUR = (160, 160, 160)


def draw(frame: LiveFrame, max_width: int) -> np.ndarray:
    """A scaled copy of the frame (BGR) with the boxes and labels drawn."""
    image = frame.image
    h, w = image.shape[:2]
    scale = min(1.0, max_width / max(w, 1))
    if scale < 1.0:
        out = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    else:
        out = image.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    thick = max(1, round(out.shape[1] / 400))
    for box in frame.boxes:
        p0, p1 = (round(box.x0 * scale), round(box.y0 * scale)), (round(box.x1 * scale), round(box.y1 * scale))
        col = UNKNOWN_COLOUR if box.label is None else colour(box.label)
        cv2.rectangle(out, p0, p1, col, thick)
        text = "?" if box.label is None else f"{box.label} {box.score:.2f}"
        _label(out, text, (p0[0], max(p0[1] - 3, 12)), col)
    for i, (label, score) in enumerate(frame.top):
        _label(out, f"{label} {score:.2f}", (6, 20 + 20 * i), colour(label))
    return out


def _label(image: np.ndarray, text: str, origin: tuple[int, int], col: tuple[int, int, int]) -> None:
    """Text on a filled box of the label's colour: readable on any shelf."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (tw, th), base = cv2.getTextSize(text, font, size, 1)
    x, y = origin
    cv2.rectangle(image, (x, y - th - 3), (x + tw + 4, y + base - 1), col, -1)
    cv2.putText(image, text, (x + 2, y - 2), font, size, (20, 20, 20), 1, cv2.LINE_AA)


def to_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ShelfscanError("live page: JPEG encoding failed")
    return bytes(data.tobytes())
