"""Generated product-like toy images for trainer and converter tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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
