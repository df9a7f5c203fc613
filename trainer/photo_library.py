"""Product photos for the shelf composer: a folder-per-class tree, decoded on demand with padding trimmed.

Kept apart from :mod:`trainer.shelf_composer` because reading and cleaning photos is its own
concern (bad files, caches, the uniform bars around dataset photos) and is used on its own too:
the trainer's augmentation trims crops with :func:`trim_padding`, the demo and the benches open
libraries without composing.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from edge.errors import ImageError, ShelfscanError
from edge.images import is_class_tree, list_images
from edge.preprocess import read_image

log = logging.getLogger("trainer.shelf_composer")  # its lines keep the composer's logger name, as before the split


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
