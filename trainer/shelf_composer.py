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
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config import GAP_SHARE  # the agent's gap rule: truth and report agree
from edge.errors import ImageError, ShelfscanError
from edge.images import is_class_tree, list_images
from edge.preprocess import read_image
from edge.progress import Progress

log = logging.getLogger(__name__)

TRUTH_NAME = "shelves.json"
TRUTH_SCHEMA = "shelfscan.shelves"
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


@dataclass(frozen=True)
class ShelfStyle:
    """Ranges the composer draws from; sizes in pixels are for a 640-pixel-wide image and scale with it."""

    rows: tuple[int, int] = (1, 3)  # shelf rows in view
    run_length: tuple[int, int] = (1, 6)  # identical facings side by side
    facing_gap_px: tuple[int, int] = (0, 8)  # between facings of one run
    run_gap_px: tuple[int, int] = (0, 14)  # between two runs
    empty_prob: float = 0.15  # chance that an empty slot of about one facing follows a run (~4 % of slots)
    fill: tuple[float, float] = (0.7, 0.95)  # facing height / free height of the row
    size_jitter: float = 0.12  # relative width jitter around the photo's aspect
    zoom: tuple[float, float] = (1.0, 1.3)
    perspective: float = 0.035  # corner jitter, share of the image size
    motion_blur_px: tuple[int, int] = (0, 9)
    noise: tuple[float, float] = (0.0, 6.0)
    exposure: tuple[float, float] = (0.65, 1.3)
    min_visible: float = 0.5  # a facing cut by the border is listed when this share is in view

    def dense_runs(self) -> ShelfStyle:
        """Only runs of 3 to 6 identical facings touching each other, no empty slots (the hard case)."""
        return replace(self, run_length=(3, 6), facing_gap_px=(0, 0), run_gap_px=(0, 0), empty_prob=0.0)


@dataclass
class Facing:
    box: Box  # what is in view (clipped to the image)
    label: str
    row: int
    photo: str
    full: Box | None = None  # the whole facing, also where the image border cuts it (None: same as box)

    @property
    def extent(self) -> Box:
        """The whole (amodal) box: what the detector learns, so a cut facing's centre says if it is half in view."""
        return self.full or self.box


@dataclass
class Gap:
    box: Box
    row: int


@dataclass
class Shelf:
    """A composed shelf image (BGR) and its truth."""

    image: np.ndarray
    facings: list[Facing] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    rows: list[tuple[float, float]] = field(default_factory=list)  # y0, y1 of each row

    def to_dict(self, file: str) -> dict[str, Any]:
        h, w = self.image.shape[:2]
        return {
            "file": file,
            "width": w,
            "height": h,
            "facings": [
                {"box": _r(f.box), "label": f.label, "row": f.row, "photo": f.photo}
                | ({"full_box": _r(f.full)} if f.full else {})
                for f in self.facings
            ],
            "gaps": [{"box": _r(g.box), "row": g.row} for g in self.gaps],
            "rows": [{"y0": round(a, 1), "y1": round(b, 1)} for a, b in self.rows],
        }


def _r(box: Box) -> list[float]:
    return [round(float(v), 2) for v in box]


def trim_padding(image: np.ndarray, tolerance: int = 6) -> np.ndarray:
    """Cut uniform bars (the padding around non-square dataset photos) from the four sides."""
    corner = image[0, 0].astype(np.int16)
    flat = np.abs(image.astype(np.int16) - corner).max(axis=2) <= tolerance
    rows, cols = ~flat.all(axis=1), ~flat.all(axis=0)
    if not rows.any() or not cols.any():
        return image
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    if (y1 - y0 + 1) * (x1 - x0 + 1) < 0.2 * image.shape[0] * image.shape[1]:
        return image  # a mostly uniform photo: keep it whole
    return image[y0 : y1 + 1, x0 : x1 + 1]


class PhotoLibrary:
    """Product photos as ``(label, path)`` pairs, decoded on demand (trimmed, cached)."""

    def __init__(self, photos: list[tuple[str, Path]], name: str, cache_size: int = 4096) -> None:
        self.name = name
        self.photos = [(label, Path(p)) for label, p in photos]
        self.labels = sorted({label for label, _ in self.photos})
        self.bad: set[int] = set()
        self._load = functools.lru_cache(maxsize=cache_size)(self._decode)
        sample = min(len(self.photos), 64)
        if not any(self.image(i) is not None for i in range(sample)):
            raise ShelfscanError(f"{name}: no usable images (none of the first {sample} decode)")

    @classmethod
    def from_tree(cls, root: str | Path) -> PhotoLibrary:
        """A folder-per-class tree, ``DIR/<class>/*.jpg``."""
        root = Path(root)
        if not root.is_dir():
            raise ShelfscanError(f"{root}: photo folder not found")
        if not is_class_tree(root):
            raise ShelfscanError(f"{root}: no usable images (expected a folder-per-class tree, <class>/<images>)")
        return cls([(d.name, p) for d in sorted(root.iterdir()) if d.is_dir() for p in list_images(d)], str(root))

    def __len__(self) -> int:
        return len(self.photos)

    def _decode(self, index: int) -> np.ndarray | None:
        try:
            return trim_padding(read_image(self.photos[index][1]))
        except ImageError as exc:
            log.warning("composer: skipping %s", exc)
            self.bad.add(index)
            return None

    def image(self, index: int) -> np.ndarray | None:
        return None if index in self.bad else self._load(index)

    def pick(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """A random usable photo (index, trimmed BGR pixels)."""
        for _ in range(100):
            i = int(rng.integers(len(self.photos)))
            img = self.image(i)
            if img is not None:
                return i, img
        raise ShelfscanError(f"{self.name}: no usable images (100 random picks failed to decode)")


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
