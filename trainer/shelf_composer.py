"""Synthetic shelves composed from folder-per-class product photos, with exact facing boxes.

No pretrained product detector can be had offline (and SKU-110K is non-commercial), so the
facing detector learns from shelves composed out of the user's own product photos, the way
retail-vision papers bootstrap one. Everything that makes a real shelf hard is drawn on
purpose: rows of facings standing on shelf boards, runs of *identical* facings touching each
other, empty slots where stock ran out, price strips, facings cut by the image border, varied
walls, perspective and zoom, motion blur, noise and exposure. The demo's shelf video and the
tests use this module too; there is no second copy.

Each photo is one facing (Freiburg photos show a product in context, sometimes two packs: the
truth still says one facing per placed photo). Uniform padding around a photo (Freiburg pads
non-square photos with grey) is trimmed first, so widths follow the real photo's aspect.
Everything is deterministic by ``(seed, index)``.

This module lays out the shelf (wall, boards, rows of runs, gaps) and writes and reads sets; the
photos come from :mod:`trainer.photo_library`, the camera from :mod:`trainer.composer_camera`,
the shelf and its truth types from :mod:`trainer.shelf_types`. Their public names are still
importable from here.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import GAP_SHARE  # the agent's gap rule: truth and report agree
from edge.errors import ShelfscanError
from edge.progress import Progress
from trainer.composer_camera import camera_effects as camera_effects
from trainer.composer_camera import camera_view as camera_view
from trainer.photo_library import PhotoLibrary as PhotoLibrary
from trainer.photo_library import trim_padding as trim_padding
from trainer.shelf_types import Box as Box
from trainer.shelf_types import Facing as Facing
from trainer.shelf_types import Gap as Gap
from trainer.shelf_types import Shelf as Shelf
from trainer.shelf_types import ShelfStyle as ShelfStyle

log = logging.getLogger(__name__)

TRUTH_NAME = "shelves.json"
TRUTH_SCHEMA = "shelfscan.shelves"


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> np.ndarray:
    return rng.integers(lo, hi, 3).astype(np.float32)


def _wall(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A back wall: flat, stripes, pegboard, dark fridge or blurred clutter, with a light gradient."""
    kind = int(rng.integers(5))
    img = np.empty((h, w, 3), np.float32)
    img[:] = _colour(rng, 20, 240)
    if kind == 1:  # vertical stripes or panels
        period = int(rng.integers(8, 80))
        img[:, (np.arange(w) // period) % 2 == 1] *= rng.uniform(0.7, 0.95)
    elif kind == 2:  # pegboard holes
        step = int(rng.integers(10, 24))
        ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
        img[ys.ravel(), xs.ravel()] *= 0.3
        img = cv2.GaussianBlur(img, (3, 3), 0)
    elif kind == 3:  # dark fridge interior
        img *= rng.uniform(0.15, 0.4)
    elif kind == 4:  # coloured clutter, blurred
        small = rng.uniform(30, 230, (max(2, h // 40), max(2, w // 40), 3)).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    grad = np.linspace(rng.uniform(0.6, 1.1), rng.uniform(0.7, 1.1), h, dtype=np.float32)[:, None, None]
    return img * grad


def _board(img: np.ndarray, y0: int, y1: int, rng: np.random.Generator, scale: float) -> None:
    """A shelf board from ``y0`` to ``y1`` with a price strip and price labels on its front edge."""
    w = img.shape[1]
    img[y0:y1] = _colour(rng, 40, 250) * rng.uniform(0.5, 1.0)
    img[y0 : y0 + max(1, int(2 * scale))] *= 1.25  # lit top edge
    strip0 = y0 + int((y1 - y0) * rng.uniform(0.15, 0.35))
    img[strip0:y1] = _colour(rng, 150, 256) if rng.random() < 0.7 else _colour(rng, 20, 120)
    strip = np.ascontiguousarray(img[strip0:y1], dtype=np.uint8)  # OpenCV draws text on 8-bit images only
    sh = strip.shape[0]
    label_w = int(rng.uniform(30, 60) * scale)
    x = int(rng.integers(0, max(1, label_w)))
    while x < w and sh >= 3:
        colour = (255, 255, 255) if rng.random() < 0.6 else (60, 220, 250)
        cv2.rectangle(strip, (x, 1), (x + label_w, sh - 2), colour, -1)
        text = f"{rng.integers(0, 9)}.{rng.integers(10, 99)}"
        cv2.putText(strip, text, (x + 2, sh - 3), cv2.FONT_HERSHEY_SIMPLEX, max(0.25, sh / 40), (20, 20, 20), 1)
        x += label_w + int(rng.uniform(20, 160) * scale)
    img[strip0:y1] = strip


def compose_canvas(
    library: PhotoLibrary,
    width: int,
    height: int,
    rng: np.random.Generator,
    style: ShelfStyle = ShelfStyle(),
    *,
    span: tuple[float, float] | None = None,
    rows_span: tuple[float, float] | None = None,
    scale: float | None = None,
) -> Shelf:
    """Rows of facings on shelf boards over a wall, ``width`` x ``height``, before any camera effect.

    By default it is a piece cut out of a longer shelf: facings run off both sides and rows off
    the top and bottom. A shelf-pass video must show every facing whole, so ``span`` (x0, x1)
    keeps the facings between x0 and x1 (plain wall and boards outside, nothing cut at the
    ends) and ``rows_span`` (y0, y1) lays exactly the drawn number of whole rows between y0 and
    y1, under the board of the shelf above. ``scale`` sets the style's pixel sizes (default
    ``width / 640``, wrong for a long panorama: it passes its frame's ``frame_width / 640``).
    """
    scale = width / 640 if scale is None else scale
    img = _wall(height, width, rng)
    shelf = Shelf(img)
    n_rows = int(rng.integers(style.rows[0], style.rows[1] + 1))
    band = min(0.6, rng.uniform(0.85, 1.05) / n_rows) * height  # rows above and below are cut by the borders
    y = -rng.uniform(0.3, 0.9) * band
    if rows_span is not None:
        band, y = (rows_span[1] - rows_span[0]) / n_rows, rows_span[0]
        _board(img, max(0, int(y - 0.12 * band)), max(0, int(y)), rng, scale)  # the shelf above
    row = 0
    while y < height and (rows_span is None or row < n_rows):
        h = band * rng.uniform(0.85, 1.15) if rows_span is None else band
        top, bottom = y, y + h
        board_y = bottom - h * rng.uniform(0.08, 0.14)
        _board(img, max(0, int(board_y)), max(0, min(height, int(bottom))), rng, scale)
        if board_y > 0:
            shelf.rows.append((max(0.0, top), min(float(height), board_y)))
            _fill_row(shelf, library, row, top + h * 0.03, board_y, width, rng, style, scale, span)
            row += 1
        y = bottom
    return shelf


def _fill_row(
    shelf: Shelf,
    library: PhotoLibrary,
    row: int,
    top: float,
    floor: float,
    width: int,
    rng: np.random.Generator,
    style: ShelfStyle,
    scale: float,
    span: tuple[float, float] | None = None,
) -> None:
    """Runs of identical facings standing on ``floor``, left to right, cut at both borders (or kept in ``span``)."""
    free = floor - top
    x = -rng.uniform(0.0, 0.6) * free if span is None else span[0]  # the first facing may be cut by the left border
    end = width if span is None else span[1]
    first = len(shelf.facings)
    while x < end:
        index, photo = library.pick(rng)
        ph, pw = photo.shape[:2]
        h = free * rng.uniform(*style.fill)
        w = float(np.clip(h * pw / ph * rng.uniform(1 - style.size_jitter, 1 + style.size_jitter), 0.25 * h, 2.5 * h))
        art = cv2.resize(photo, (max(1, round(w)), max(1, round(h))), interpolation=cv2.INTER_AREA)
        run = int(rng.integers(style.run_length[0], style.run_length[1] + 1))
        label, path = library.photos[index]
        for k in range(run):
            if x >= end:
                break
            if span is not None and x + art.shape[1] > end:
                x = end  # the row is full: no facing is cut at the span's end
                break
            x0, y0 = round(x), round(floor - h)
            _paste(shelf.image, art * np.float32(rng.uniform(0.93, 1.07)), x0, y0)
            box = (float(x0), float(y0), float(x0 + art.shape[1]), float(y0 + art.shape[0]))
            shelf.facings.append(Facing(box, label, row, f"{path.parent.name}/{path.name}"))
            gap = rng.integers(style.facing_gap_px[0], style.facing_gap_px[1] + 1) * scale if k < run - 1 else 0
            x = box[2] + gap
        x += rng.integers(style.run_gap_px[0], style.run_gap_px[1] + 1) * scale
        if rng.random() < style.empty_prob:
            x += w * rng.uniform(0.9, 1.3)  # out of stock: about one facing of empty shelf
    shelf.gaps += row_gaps(shelf.facings[first:], row, top, floor)


def row_gaps(facings: list[Facing], row: int, top: float, floor: float, share: float = GAP_SHARE) -> list[Gap]:
    """Empty spans between neighbouring facings wider than ``share`` of the row's median facing width.

    The same rule the agent applies to what it detects, so the truth and the report agree on
    what a gap is (the spaces between runs are narrower and are not gaps).
    """
    if len(facings) < 2:
        return []
    ordered = sorted(facings, key=lambda f: f.box[0])
    median = float(np.median([f.box[2] - f.box[0] for f in ordered]))
    return [
        Gap((a.box[2], top, b.box[0], floor), row)
        for a, b in itertools.pairwise(ordered)
        if b.box[0] - a.box[2] > share * median
    ]


def _paste(canvas: np.ndarray, art: np.ndarray, x0: int, y0: int) -> None:
    h, w = canvas.shape[:2]
    ax0, ay0 = max(0, -x0), max(0, -y0)
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(w, x0 + art.shape[1]), min(h, y0 + art.shape[0])
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = art[ay0 : ay0 + cy1 - cy0, ax0 : ax0 + cx1 - cx0]


def compose(
    library: PhotoLibrary,
    width: int = 640,
    height: int = 480,
    seed: int = 0,
    index: int = 0,
    style: ShelfStyle = ShelfStyle(),
) -> Shelf:
    """Shelf image number ``index`` of the set ``seed``: the same arguments give the same pixels."""
    rng = np.random.default_rng([seed, index])
    margin = 1.0 + 2 * style.perspective
    canvas = compose_canvas(
        library, round(width * margin * style.zoom[1] / 1.15), round(height * margin * style.zoom[1] / 1.15), rng, style
    )
    return camera_view(canvas, width, height, rng, style)


def write_set(
    out: str | Path,
    library: PhotoLibrary,
    count: int,
    seed: int = 0,
    width: int = 640,
    height: int = 480,
    style: ShelfStyle = ShelfStyle(),
    quality: int = 92,
) -> Path:
    """Write ``count`` composed shelves as JPEGs plus ``shelves.json`` (the box truth) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    with Progress(count, "composing shelves") as bar:
        for i in range(count):
            shelf = compose(library, width, height, seed, i, style)
            name = f"{i:06d}.jpg"
            cv2.imwrite(str(out / name), shelf.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            images.append(shelf.to_dict(name))
            bar.update()
    truth = {"schema": TRUTH_SCHEMA, "version": 1, "source": library.name, "seed": seed, "images": images}
    path = out / TRUTH_NAME
    path.write_text(json.dumps(truth) + "\n", encoding="utf-8")
    log.info("wrote %d shelves (%d facings) to %s", count, sum(len(i["facings"]) for i in images), out)
    return path


def read_truth(path: str | Path, schema: str = TRUTH_SCHEMA, what: str = "box truth") -> dict[str, Any]:
    """Load a truth file (``shelves.json`` from :func:`write_set` by default) with a one-line error when it is not
    one: unreadable, not JSON, or another ``schema``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShelfscanError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise ShelfscanError(f"{path}: not a {schema} file")
    return doc
