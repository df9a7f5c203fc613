"""Generated product-like toy images for trainer and converter tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Saturated, pairwise distinct colours: a composed facing's pixels can be found again by colour alone.
HUES = [
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (0, 128, 255),
    (255, 0, 128),
    (128, 255, 0),
    (0, 0, 128),
    (0, 128, 0),
    (128, 0, 0),
]
COLORS = {"red_box": (0, 0, 220), "green_can": (0, 200, 0), "blue_bag": (220, 60, 0)}


def make_dataset(root: Path, per_class: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Product-like toy images: a coloured package on a noisy background, one class per colour/shape."""
    rng = np.random.default_rng(seed)
    for c, (name, color) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            x0, y0 = rng.integers(4, 20, 2)
            if c == 1:
                cv2.circle(img, (int(x0) + 18, int(y0) + 18), 16, color, -1)
            else:
                cv2.rectangle(img, (int(x0), int(y0)), (int(x0) + 30 + 6 * c, int(y0) + 36), color, -1)
            cv2.imwrite(str(root / name / f"{name}_{i:03d}.png"), img)
    return root


def flat_photos(root: Path, aspects: tuple[float, ...] = (0.6, 1.0, 1.4)) -> Path:
    """One photo per colour, each a flat patch padded with grey bars (as Freiburg pads its photos)."""
    for i, colour in enumerate(HUES):
        folder = root / f"class_{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        h = 90
        w = int(h * aspects[i % len(aspects)])
        img = np.full((h + 20, w + 20, 3), 128, np.uint8)
        img[10 : 10 + h, 10 : 10 + w] = colour
        cv2.imwrite(str(folder / f"p{i:02d}.png"), img)
    return root
