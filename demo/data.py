"""The demo's dataset: generated products, or a real folder-per-class set (``DATA=dir``),
always with an empty-shelf ``background`` class for the classifier (a detector box on empty
shelf is then read as background and ignored), and without it for the facing detector and the
shelf pass, where every photo is one facing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from demo.products import BACKGROUND, background_photo
from edge.evaluate import list_images
from edge.preprocess import read_image

log = logging.getLogger(__name__)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def from_folder(src: Path, root: Path, limit: int, background: int, size: int, seed: int) -> Path:
    """Link a real dataset into ``root/{train,val,test}/<class>/`` (symlinks, nothing copied).

    ``src`` is ``train/ [val/ test/]`` (used as they are; the video comes from ``test/``, else
    ``val/``) or ``<class>/`` (split by file-name hash, retrain.py's rule, as the trainer does).
    ``limit`` caps training images per class (0: all) so the demo stays short on big sets.
    """
    from trainer.dataset import hash_split

    if not src.is_dir():
        raise SystemExit(f"demo: DATA={src}: folder not found")
    splits: dict[str, dict[str, list[Path]]] = {}
    if (src / "train").is_dir():
        for s in ("train", "val", "test"):
            if (src / s).is_dir():
                splits[s] = {d.name: list_images(d) for d in _class_dirs(src / s)}
    else:
        for d in _class_dirs(src):
            for p in list_images(d):
                splits.setdefault(hash_split(p.name, 15.0, 10.0), {}).setdefault(d.name, []).append(p)
    rng = np.random.default_rng(seed)
    for split, classes in splits.items():
        for name, paths in classes.items():
            if name == BACKGROUND:
                continue
            cap = {"train": limit, "val": max(limit // 4, 5), "test": max(limit // 8, 3)}[split] if limit else 0
            keep = [paths[i] for i in sorted(rng.permutation(len(paths))[:cap])] if cap else paths
            dest = root / split / name
            dest.mkdir(parents=True, exist_ok=True)
            for i, p in enumerate(keep):
                link = dest / f"{i:05d}_{p.name}"
                if not link.exists():
                    link.symlink_to(p.resolve())
        bg = root / split / BACKGROUND
        bg.mkdir(parents=True, exist_ok=True)
        n = {"train": background, "val": max(background // 4, 5), "test": 0}[split]
        photos = [p for paths in classes.values() for p in paths]
        for i in range(n):
            neighbour = read_image(photos[int(rng.integers(len(photos)))]) if photos and rng.random() < 0.75 else None
            cv2.imwrite(str(bg / f"{BACKGROUND}_{i:04d}.jpg"), background_photo(size, rng, neighbour))
    log.info("linked %s into %s (%s)", src, root, ", ".join(f"{s}: {len(c)} classes" for s, c in splits.items()))
    return root


def product_tree(root: Path, out: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> Path:
    """``out/<split>/<class>/`` linking every product photo of ``root`` but no ``background``.

    The facing detector and the shelf composer take each photo of a class tree as one facing;
    an empty-shelf photo placed on a shelf would teach the detector that empty shelf is a facing.
    """
    shutil.rmtree(out, ignore_errors=True)
    for split in splits:
        if not (root / split).is_dir():
            continue
        for d in _class_dirs(root / split):
            if d.name == BACKGROUND:
                continue
            (out / split).mkdir(parents=True, exist_ok=True)
            (out / split / d.name).symlink_to(d.resolve(), target_is_directory=True)
    return out


def held_out(root: Path) -> dict[str, list[Path]]:
    """The images the shelf pass is made of: ``test/`` when it has any, else ``val/``."""
    for split in ("test", "val"):
        d = root / split
        if d.is_dir():
            found = {c.name: list_images(c) for c in _class_dirs(d) if c.name != BACKGROUND}
            found = {c: p for c, p in found.items() if p}
            if found:
                return found
    raise SystemExit(f"demo: no held-out images under {root}/test or {root}/val")
