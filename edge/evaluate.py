"""Accuracy on a folder-per-class tree: the evaluation every other tool in shelfscan reuses.

Images are decoded on a small thread pool (OpenCV releases the GIL) while the interpreter
runs, so evaluating a few thousand photos is bound by the model, not by JPEG decoding.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ImageError, ShelfscanError
from edge.images import list_images
from edge.labels import canonical
from edge.preprocess import read_image
from edge.progress import Progress
from edge.runtime import Classifier, Prediction

log = logging.getLogger(__name__)

PREFETCH = 8  # images decoded ahead of the interpreter


@dataclass
class ImageResult:
    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    truth: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.truth is not None:
            out["truth"] = self.truth
        if self.error:
            out["error"] = self.error
        else:
            out["top_k"] = [{"label": p.label, "index": p.index, "score": round(p.score, 6)} for p in self.predictions]
        return out


def classify_paths(clf: Classifier, paths: Iterable[Path], k: int, desc: str = "classify") -> Iterator[ImageResult]:
    """Classify files in order; unreadable files yield a result with ``error`` set, never raise."""
    paths = list(paths)

    def load(path: Path) -> np.ndarray | ImageError:
        try:
            return read_image(path)
        except ImageError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool, Progress(len(paths), desc) as bar:
        # A bounded window of decodes ahead: Executor.map would decode every file up front and
        # hold all of them in memory at once.
        ahead: deque[Future[np.ndarray | ImageError]] = deque()
        queue_ = iter(paths)
        for path in queue_:
            ahead.append(pool.submit(load, path))
            if len(ahead) >= PREFETCH:
                break
        for path in paths:
            image = ahead.popleft().result()
            nxt = next(queue_, None)
            if nxt is not None:
                ahead.append(pool.submit(load, nxt))
            bar.update()
            if isinstance(image, ImageError):
                log.info("skipped %s", image)
                yield ImageResult(str(path), error=str(image))
            else:
                yield ImageResult(str(path), clf.classify_bgr(image, k))


@dataclass
class Evaluation:
    """Top-1/top-5 accuracy, per-class recall and a confusion table over the truth classes."""

    classes: list[str]
    confusion: np.ndarray  # rows: truth class, columns: predicted class, last column: anything else
    top1_hits: int = 0
    top5_hits: int = 0
    total: int = 0
    errors: int = 0

    @property
    def top1(self) -> float:
        return self.top1_hits / self.total if self.total else 0.0

    @property
    def top5(self) -> float:
        return self.top5_hits / self.total if self.total else 0.0

    def recall(self) -> dict[str, float]:
        rows = self.confusion.sum(axis=1)
        return {c: float(self.confusion[i, i] / rows[i]) if rows[i] else 0.0 for i, c in enumerate(self.classes)}

    def to_dict(self) -> dict[str, Any]:
        rows = self.confusion.sum(axis=1)
        return {
            "images": self.total,
            "errors": self.errors,
            "top1": round(self.top1, 6),
            "top5": round(self.top5, 6),
            "per_class": {
                c: {"images": int(rows[i]), "recall": round(r, 6)} for i, (c, r) in enumerate(self.recall().items())
            },
            "confusion": {
                "rows": self.classes,
                "columns": [*self.classes, "(other)"],
                "counts": self.confusion.tolist(),
            },
        }


def match_classes(folders: list[str], labels: list[str]) -> dict[str, int]:
    """Map folder names to label indices, ignoring case, spaces, dashes and underscores."""
    by_name = {canonical(label): i for i, label in enumerate(labels)}
    mapping = {f: by_name[canonical(f)] for f in folders if canonical(f) in by_name}
    if not mapping:
        raise ShelfscanError(f"none of the class folders ({', '.join(folders[:5])}, ...) matches a model label")
    for f in folders:
        if f not in mapping:
            log.warning("class folder %r matches no model label: all its images count as wrong", f)
    return mapping


def evaluate_tree(clf: Classifier, root: Path, k: int = 5) -> tuple[Evaluation, list[ImageResult]]:
    """Evaluate ``clf`` on ``root/<class>/<image>``."""
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    return evaluate_items(clf, [(p, f) for f in folders for p in list_images(root / f)], k)


def evaluate_items(clf: Classifier, items: list[tuple[Path, str]], k: int = 5) -> tuple[Evaluation, list[ImageResult]]:
    """Evaluate ``clf`` on ``(image, class name)`` pairs (a folder tree, or a split the trainer held out)."""
    folders = sorted({f for _, f in items})
    mapping = match_classes(folders, clf.labels)
    index_of = {label_idx: row for row, label_idx in enumerate(mapping[f] for f in folders if f in mapping)}
    classes = [f for f in folders if f in mapping] + [f for f in folders if f not in mapping]
    row_of = {f: i for i, f in enumerate(classes)}
    ev = Evaluation(classes, np.zeros((len(classes), len(classes) + 1), np.int64))
    results = []
    for (_, folder), result in zip(
        items, classify_paths(clf, [p for p, _ in items], max(k, 5), "evaluate"), strict=True
    ):
        result.truth = folder
        results.append(result)
        if result.error:
            ev.errors += 1
            continue
        ev.total += 1
        want = mapping.get(folder, -1)
        got = [p.index for p in result.predictions]
        ev.top1_hits += got[0] == want
        ev.top5_hits += want in got[:5]
        ev.confusion[row_of[folder], index_of.get(got[0], len(classes))] += 1
    for r in results:
        r.predictions = r.predictions[:k]
    return ev, results


def format_evaluation(ev: Evaluation, max_matrix: int = 30) -> str:
    """Readable summary: accuracy, per-class recall, and the confusion table (or its worst cells)."""
    lines = [
        f"images: {ev.total} (skipped {ev.errors})   top-1: {100 * ev.top1:.2f} %   top-5: {100 * ev.top5:.2f} %",
        "",
    ]
    width = max(len(c) for c in ev.classes)
    rows = ev.confusion.sum(axis=1)
    lines.append(f"{'class':<{width}}  images  recall")
    for i, (c, r) in enumerate(ev.recall().items()):
        lines.append(f"{c:<{width}}  {rows[i]:>6}  {100 * r:5.1f} %")
    lines.append("")
    n = len(ev.classes)
    if n <= max_matrix:
        lines.append("confusion (rows: truth, columns: predicted, #: other labels)")
        lines.append(" " * (width + 4) + "".join(f"{j:>4}" for j in range(n)) + "   #")
        for i, c in enumerate(ev.classes):
            cells = "".join(f"{v:>4}" if v else "   ." for v in ev.confusion[i, :n])
            lines.append(f"{c:<{width}} {i:>2} {cells}{ev.confusion[i, n]:>4}")
    else:
        off = [
            (int(ev.confusion[i, j]), ev.classes[i], ([*ev.classes, "(other)"])[j])
            for i in range(n)
            for j in range(n + 1)
            if i != j and ev.confusion[i, j]
        ]
        lines.append("most frequent confusions (truth -> predicted)")
        lines += [f"{cnt:>5}  {t} -> {p}" for cnt, t, p in sorted(off, reverse=True)[:20]]
    return "\n".join(lines)
