"""Which labelled images a classifier conversion is gated on, and which images calibrate int8.

A gate is only honest on images nothing was tuned on. By default that is the run's own test
split: the trainer holds it out by a file-name hash (``--test-pct``) and no early stopping,
model selection or calibration sees it. A run without one is gated on its val split, and the
comparison says so. ``--eval`` names a split (``test``, ``val``) or a folder-per-class tree.
int8 calibration draws from the run's train split, so the images that judge int8 never shaped it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from converter.source import TrainedRun
from edge.errors import ShelfscanError
from edge.images import list_images

log = logging.getLogger(__name__)

SPLIT_NAMES = ("test", "val")


@dataclass(frozen=True)
class EvalImages:
    """``(image, class name)`` pairs and where they came from, as the comparison reports it."""

    items: list[tuple[Path, str]]
    split: str  # test, val, or folder
    source: str


def run_splits(run: TrainedRun) -> dict[str, list[tuple[Path, str]]]:
    """The run's splits as the trainer made them (same data, same hash shares), by name."""
    from trainer.dataset import load_dataset

    cfg = run.config
    if not cfg.get("data"):
        raise ShelfscanError(f"{run.root}: config.json names no data folder; pass --eval DIR and --calibration DIR")
    ds = load_dataset(
        cfg["data"],
        csv_path=cfg.get("csv"),
        val_pct=cfg.get("val_pct", 10.0),
        test_pct=cfg.get("test_pct", 0.0),
        verify=False,
    )
    return {name: [(s.path, ds.classes[s.label]) for s in samples] for name, samples in ds.splits.items()}


def eval_images(run: TrainedRun, choice: str | None) -> EvalImages | None:
    """The images to gate on: ``choice`` (a split name or a folder), else the run's test split, else val."""
    if choice is not None and choice not in SPLIT_NAMES:
        root = Path(choice)
        if not root.is_dir():
            raise ShelfscanError(f"--eval {choice}: neither a split ({', '.join(SPLIT_NAMES)}) nor a folder")
        folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        items = [(p, f) for f in folders for p in list_images(root / f)]
        if not items:
            raise ShelfscanError(f"--eval {root}: no images in class folders")
        return EvalImages(items, "folder", f"folder {root} ({len(items)} images)")
    if choice is None and not run.config.get("data"):
        log.warning("%s names no data folder: variants are not evaluated (pass --eval DIR)", run.root)
        return None
    splits = run_splits(run)
    for name in [choice] if choice else list(SPLIT_NAMES):
        if splits.get(name):
            note = "held out: nothing was tuned on it" if name == "test" else "used for early stopping and selection"
            if name == "val":
                log.warning(
                    "the run has no test split: gating on val, which the trainer tuned on "
                    "(train with --test-pct to hold one out)"
                )
            return EvalImages(splits[name], name, f"the run's {name} split ({len(splits[name])} images; {note})")
    raise ShelfscanError(f"--eval {choice}: the run has no {choice} split (train with --test-pct)")


def calibration_images(run: TrainedRun) -> list[Path]:
    """The run's training images (never its val or test split): what int8 calibration draws from."""
    return [p for p, _ in run_splits(run).get("train", [])]
