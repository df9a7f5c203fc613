"""Generated product photos for the demo: packages of different shapes, colours and printed
names on varied shelf backgrounds and lighting, plus empty-shelf ``background`` images.

Why generated: the demo must run offline on a fresh machine, and the shelf-pass video needs
held-out images of known classes. Real photos take the same path (``make demo DATA=dir``).
Two boxes and two tall white-labelled packages share shapes, so colour alone is not the
whole story; but the colours differ enough that even a random-weight backbone (offline, no
ImageNet weights) separates the classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

BACKGROUND = "background"


@dataclass(frozen=True)
class Product:
    name: str
    shape: str  # box | can | bottle | bag | carton | jar
    body: tuple[int, int, int]  # BGR
    accent: tuple[int, int, int]
    text: str
    text_color: tuple[int, int, int]
    aspect: float  # width / height of the package


CATALOGUE = (
    Product("cola_can", "can", (40, 30, 200), (240, 240, 240), "COLA", (255, 255, 255), 0.55),
    Product("milk_carton", "carton", (245, 245, 240), (170, 50, 130), "MILK", (120, 30, 90), 0.55),
    Product("cereal_box", "box", (30, 200, 240), (30, 40, 210), "CORN FLAKES", (20, 30, 200), 0.72),
    Product("coffee_bag", "bag", (25, 35, 60), (60, 180, 230), "COFFEE", (80, 200, 240), 0.7),
    Product("water_bottle", "bottle", (210, 120, 10), (60, 60, 60), "AQUA", (150, 40, 0), 0.48),
    Product("tomato_jar", "jar", (30, 110, 235), (40, 140, 40), "TOMATO", (255, 255, 255), 0.6),
    Product("tea_box", "box", (60, 140, 40), (230, 230, 230), "GREEN TEA", (255, 255, 255), 0.8),
)


def _jitter(color: tuple[int, int, int], rng: np.random.Generator, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)  # type: ignore[return-value]


def shelf_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A back wall, a shelf board with a price strip, and some texture: what a camera sees between products."""
    wall = np.array(_jitter((190, 200, 205), rng, 50), np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[:] = wall
    grad = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.1), height, dtype=np.float32)[:, None, None]
    img *= grad
    board_y = int(height * rng.uniform(0.82, 0.9))
    board = np.array(_jitter((90, 120, 150) if rng.random() < 0.5 else (150, 150, 150), rng, 25), np.float32)
    img[board_y:] = board
    strip = int(height * 0.05)
    img[board_y : board_y + strip] = _jitter((235, 235, 235), rng, 10)
    for x in range(int(rng.integers(0, 40)), width, int(rng.integers(60, 120))):  # price tags
        w = int(height * 0.12)
        cv2.rectangle(img, (x, board_y), (x + w, board_y + strip), _jitter((60, 200, 250), rng, 20), -1)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _package_mask_and_art(p: Product, w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The package drawn upright in a w x h canvas: (BGR art, alpha mask)."""
    art = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    body, accent = _jitter(p.body, rng), _jitter(p.accent, rng)
    if p.shape in ("box", "carton"):
        top = int(h * 0.12) if p.shape == "carton" else 0
        pts = np.array([[0, top], [w // 2, 0], [w - 1, top], [w - 1, h - 1], [0, h - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 255)
        art[:] = body
        cv2.rectangle(art, (0, int(h * 0.8)), (w, int(h * 0.92)), accent, -1)
        if top:  # a carton: coloured gable and a wide band, so white cartons stand out on pale walls
            art[: int(h * 0.2)] = accent
            cv2.rectangle(art, (0, int(h * 0.7)), (w, h), accent, -1)
    elif p.shape == "can":
        cv2.rectangle(mask, (0, int(h * 0.04)), (w - 1, int(h * 0.96)), 255, -1)
        cv2.ellipse(mask, (w // 2, int(h * 0.04)), (w // 2, int(h * 0.04) + 1), 0, 0, 360, 255, -1)
        cv2.ellipse(mask, (w // 2, int(h * 0.96)), (w // 2, int(h * 0.04) + 1), 0, 0, 360, 255, -1)
        art[:] = body
        cv2.ellipse(art, (w // 2, int(h * 0.55)), (w // 2, int(h * 0.1)), 0, 0, 360, accent, -1)
        shade = np.cos(np.linspace(-1.3, 1.3, w))[None, :, None] * 0.35 + 0.65
        art = (art * shade).astype(np.uint8)
    elif p.shape == "bottle":
        neck = int(w * 0.35)
        cv2.rectangle(mask, ((w - neck) // 2, 0), ((w + neck) // 2, int(h * 0.25)), 255, -1)
        cv2.ellipse(mask, (w // 2, int(h * 0.3)), (w // 2, int(h * 0.1)), 0, 180, 360, 255, -1)
        cv2.rectangle(mask, (0, int(h * 0.3)), (w - 1, h - 1), 255, -1)
        art[:] = body
        art[: int(h * 0.06)] = accent  # cap
        cv2.rectangle(art, (0, int(h * 0.45)), (w, int(h * 0.75)), (230, 230, 120), -1)  # cyan label
    elif p.shape == "bag":
        pts = np.array([[int(w * 0.1), 0], [int(w * 0.9), 0], [w - 1, h - 1], [0, h - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 255)
        art[:] = body
        for y in range(0, int(h * 0.1), 4):
            cv2.line(art, (0, y), (w, y), accent, 1)
    elif p.shape == "jar":
        cv2.rectangle(mask, (int(w * 0.1), 0), (int(w * 0.9), int(h * 0.15)), 255, -1)
        cv2.rectangle(mask, (0, int(h * 0.15)), (w - 1, h - 1), 255, -1)
        art[:] = body
        art[: int(h * 0.15)] = accent  # lid
        cv2.rectangle(art, (0, int(h * 0.4)), (w, int(h * 0.75)), (40, 30, 120), -1)  # dark red label
    else:
        raise ValueError(f"unknown shape {p.shape}")
    _print_name(art, p, w, h, rng)
    return art, mask


def _print_name(art: np.ndarray, p: Product, w: int, h: int, rng: np.random.Generator) -> None:
    words = p.text.split()
    scale = 1.0
    font = cv2.FONT_HERSHEY_DUPLEX
    widest = max(cv2.getTextSize(word, font, scale, 2)[0][0] for word in words)
    scale = 0.85 * w / max(widest, 1)
    thickness = max(1, int(scale * 2))
    color = (20, 20, 20) if p.shape == "bottle" else _jitter(p.text_color, rng, 10)
    y = int(h * (0.5 if p.shape in ("bottle", "jar") else 0.35))
    for word in words:
        (tw, th), _ = cv2.getTextSize(word, font, scale, thickness)
        cv2.putText(art, word, ((w - tw) // 2, y + th // 2), font, scale, color, thickness, cv2.LINE_AA)
        y += int(th * 1.6)


def paste(canvas: np.ndarray, art: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Alpha-paste ``art`` at (x, y), clipped to the canvas."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    a = (mask[y0 - y : y1 - y, x0 - x : x1 - x, None] / 255.0).astype(np.float32)
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (a * art[y0 - y : y1 - y, x0 - x : x1 - x] + (1 - a) * region).astype(np.uint8)


def light(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Store lighting: exposure, colour cast, a soft side light, sensor noise, sometimes blur."""
    out = img.astype(np.float32) * rng.uniform(0.75, 1.2)
    out *= rng.uniform(0.93, 1.07, 3).astype(np.float32)
    w = img.shape[1]
    side = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), w, dtype=np.float32)
    out *= side[None, :, None] if rng.random() < 0.5 else side[None, ::-1, None]
    out += rng.normal(0, rng.uniform(1, 6), out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    return out


def product_photo(p: Product, size: int, rng: np.random.Generator) -> np.ndarray:
    """One photo of ``p`` standing on a shelf, framed roughly as a shelf camera sees it."""
    img = shelf_background(size, size, rng)
    h = int(size * rng.uniform(0.68, 0.85))
    w = max(8, int(h * p.aspect * rng.uniform(0.9, 1.1)))
    art, mask = _package_mask_and_art(p, w, h, rng)
    angle = rng.uniform(-6, 6)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    art = cv2.warpAffine(art, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR)
    x = (size - w) // 2 + int(rng.integers(-size // 5, size // 5 + 1))
    y = int(size * 0.88) - h + int(rng.integers(-size // 20, size // 40 + 1))
    paste(img, art, mask, x, y)
    return light(img, rng)


def background_photo(size: int, rng: np.random.Generator, neighbour: np.ndarray | None = None) -> np.ndarray:
    """Empty shelf, as the camera sees it between two products: often with the edge (at most
    half) of the neighbouring product's photo at the left or right, as in the shelf video.
    Training these as ``background`` keeps a product that is half out of view from being
    read as some other product while the camera pans."""
    img = shelf_background(size, size, rng)
    if neighbour is not None:
        photo = cv2.resize(neighbour, (size, size), interpolation=cv2.INTER_AREA)
        visible = int(size * rng.uniform(0.05, 0.5))
        if rng.random() < 0.5:
            img[:, :visible] = photo[:, size - visible :]
        else:
            img[:, size - visible :] = photo[:, :visible]
    return light(img, rng)


def generate(
    root: Path, per_class: dict[str, int], size: int = 160, seed: int = 0, products: tuple[Product, ...] = CATALOGUE
) -> dict[str, int]:
    """Write ``root/<split>/<class>/*.jpg`` for splits in ``per_class`` (e.g. train=60, val=15, test=4).

    Each split uses its own random stream, so the held-out images are never near-copies of
    training ones. Returns the number of images written per split.
    """
    written = {}
    for s_index, (split, n) in enumerate(sorted(per_class.items())):
        rng = np.random.default_rng([seed, s_index])
        names = [p.name for p in products] + [BACKGROUND]
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            for p in products:
                cv2.imwrite(
                    str(root / split / p.name / f"{p.name}_{i:04d}.jpg"),
                    product_photo(p, size, rng),
                    [cv2.IMWRITE_JPEG_QUALITY, 92],
                )
            neighbour = product_photo(products[int(rng.integers(len(products)))], size, rng)
            bg = background_photo(size, rng, neighbour if rng.random() < 0.75 else None)
            cv2.imwrite(
                str(root / split / BACKGROUND / f"{BACKGROUND}_{i:04d}.jpg"), bg, [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
        written[split] = n * len(names)
        log.info("generated %d %s images (%d classes)", written[split], split, len(names))
    return written
