"""Dataset ingest: folder-per-class trees, one folder split by file-name hash, or a CSV.

A tree with ``train/`` and ``val/`` but no ``test/`` gets its test split by the same hash rule,
taken from both (``test_pct``), so every dataset has images that nothing was tuned on.

Every image is opened once with the edge decoder; unreadable files are reported with path and
reason and skipped. The split of a single folder depends only on each file's name (as in
retrain.py), so adding images never moves existing ones between train, val and test.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import ImageError, ShelfscanError
from edge.images import is_image, list_images
from edge.preprocess import read_image

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MIN_PER_CLASS = 20


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    classes: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per-class image counts for each split."""
        out = {}
        for split, samples in self.splits.items():
            c = Counter(s.label for s in samples)
            out[split] = {name: c.get(i, 0) for i, name in enumerate(self.classes)}
        return out

    def count_table(self) -> str:
        counts = self.counts()
        splits = [s for s in SPLITS if s in counts]
        width = max(len(c) for c in self.classes)
        lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>6}" for s in splits)]
        for name in self.classes:
            lines.append(f"{name:<{width}}  " + "  ".join(f"{counts[s][name]:>6}" for s in splits))
        return "\n".join(lines)


def hash_split(name: str, val_pct: float, test_pct: float) -> str:
    """retrain.py's rule: the split is a function of the file name alone (minus any ``_nohash_`` suffix)."""
    key = name.split("_nohash_")[0]
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10000 / 100.0
    if bucket < val_pct:
        return "val"
    if bucket < val_pct + test_pct:
        return "test"
    return "train"


def _readable(path: Path, skipped: list[tuple[str, str]]) -> bool:
    try:
        read_image(path)
    except ImageError as exc:
        report_skip(skipped, path, exc)
        return False
    return True


def report_skip(skipped: list[tuple[str, str]], path: Path, exc: Exception) -> None:
    """Record an unusable image with its reason (the path is not repeated in the reason)."""
    reason = str(exc).removeprefix(f"{path}: ")
    skipped.append((str(path), reason))
    log.warning("skipping %s: %s", path, reason)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def load_dataset(
    source: str | Path,
    *,
    csv_path: str | Path | None = None,
    val_pct: float = 10.0,
    test_pct: float = 0.0,
    verify: bool = True,
) -> Dataset:
    """Load a dataset (layouts in the module docstring).

    ``verify`` decodes every image now; the trainer passes False because feature extraction
    decodes (and reports) them anyway, and a warm cache should not pay for decoding twice.
    """
    root = Path(source)
    if not root.is_dir():
        raise ShelfscanError(f"{root}: dataset folder not found")
    if csv_path:
        raw = _from_csv(root, Path(csv_path), val_pct, test_pct)
    elif (root / "train").is_dir():
        raw = {s: {d.name: list_images(d) for d in _class_dirs(root / s)} for s in SPLITS if (root / s).is_dir()}
        if "val" not in raw:
            raw = _split_by_hash(raw["train"], val_pct, test_pct)
        elif "test" not in raw and test_pct > 0:
            raw = _hold_out_test(raw, test_pct)
    else:
        raw = _split_by_hash({d.name: list_images(d) for d in _class_dirs(root)}, val_pct, test_pct)
    classes = sorted({c for per_class in raw.values() for c in per_class})
    if len(classes) < 2:
        raise ShelfscanError(f"{root}: need at least 2 class folders with images, found {len(classes)}")
    ds = Dataset(classes)
    index = {c: i for i, c in enumerate(classes)}
    for split, per_class in raw.items():
        ds.splits[split] = [
            Sample(p, index[c])
            for c in sorted(per_class)
            for p in per_class[c]
            if not verify or _readable(p, ds.skipped)
        ]
    for name, n in ds.counts().get("train", {}).items():
        if n < MIN_PER_CLASS:
            ds.warnings.append(f"class {name!r} has only {n} training images (fewer than {MIN_PER_CLASS})")
            log.warning(ds.warnings[-1])
    if not ds.splits.get("train") or not ds.splits.get("val"):
        raise ShelfscanError(f"{root}: the train and val splits must both hold images")
    return ds


def _split_by_hash(
    per_class: dict[str, list[Path]], val_pct: float, test_pct: float
) -> dict[str, dict[str, list[Path]]]:
    out: dict[str, dict[str, list[Path]]] = {s: {} for s in SPLITS}
    for cls, paths in per_class.items():
        for p in paths:
            out[hash_split(p.name, val_pct, test_pct)].setdefault(cls, []).append(p)
    return {s: v for s, v in out.items() if v}


def _hold_out_test(raw: dict[str, dict[str, list[Path]]], test_pct: float) -> dict[str, dict[str, list[Path]]]:
    """``train/`` + ``val/`` without ``test/``: ``test_pct`` of both, by file-name hash, become the test split.

    The test split is what no early stopping, model selection or int8 calibration may see; a
    dataset that ships only train and val (Freiburg) would otherwise have none. The hash rule is
    the single-folder one, so the same files are held out on every run and machine.
    """
    out: dict[str, dict[str, list[Path]]] = {s: {} for s in SPLITS}
    for split, per_class in raw.items():
        for cls, paths in per_class.items():
            for p in paths:
                dest = "test" if hash_split(p.name, 0.0, test_pct) == "test" else split
                out[dest].setdefault(cls, []).append(p)
    return {s: v for s, v in out.items() if v}


def _from_csv(root: Path, csv_path: Path, val_pct: float, test_pct: float) -> dict[str, dict[str, list[Path]]]:
    """CSV of (image path or id, label), like HackerEarth's ``train.csv`` (``image_id,label``)."""
    if not csv_path.is_file():
        raise ShelfscanError(f"{csv_path}: CSV file not found")
    by_stem = {p.stem: p for p in root.rglob("*") if is_image(p)}
    per_class: dict[str, list[Path]] = {}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if rows and not (root / rows[0][0]).is_file() and rows[0][0] not in by_stem:
        rows = rows[1:]  # header
    for number, row in enumerate(rows, 2):
        if len(row) < 2:
            raise ShelfscanError(f"{csv_path}:{number}: expected 'image,label', got {row!r}")
        ref, label = row[0].strip(), row[1].strip()
        path = root / ref if (root / ref).is_file() else by_stem.get(Path(ref).stem)
        if path is None:
            log.warning("%s:%d: image %r not found under %s", csv_path, number, ref, root)
            continue
        per_class.setdefault(label, []).append(path)
    return _split_by_hash(per_class, val_pct, test_pct)
