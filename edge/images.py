"""Which files are images: the one rule the capture sources, evaluation, the trainer's ingest and the
converter's calibration share.

Kept apart from :mod:`edge.evaluate` (which imports the TFLite runtime) so that asking whether a
path is an image imports nothing but :mod:`pathlib`.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


def is_image(path: Path) -> bool:
    """A visible file with an image suffix (case-insensitive); hidden files (``._x.jpg`` from macOS) are not."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(root: Path) -> list[Path]:
    """Images under ``root`` (recursively), sorted so runs are reproducible."""
    return sorted(p for p in root.rglob("*") if is_image(p))


def is_class_tree(root: Path) -> bool:
    """A folder whose subfolders hold images and that has no images of its own."""
    if not root.is_dir() or any(is_image(p) for p in root.iterdir()):
        return False
    return any(d.is_dir() and any(is_image(p) for p in d.iterdir()) for d in root.iterdir())
