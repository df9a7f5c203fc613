"""Classification metrics from predicted probabilities (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def top_k_accuracy(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` highest scores (0 for no rows)."""
    if not y.size:
        return 0.0
    topk = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, probs.shape[1])]  # ties: the lower index
    return float((topk == y[:, None]).any(axis=1).mean())


def classification_metrics(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Top-1, top-5, per-class precision/recall/F1 and the confusion matrix."""
    n = len(classes)
    pred = probs.argmax(axis=1)
    cm = confusion(y, pred, n)
    tp = np.diag(cm).astype(np.float64)
    precision = np.divide(tp, cm.sum(axis=0), out=np.zeros(n), where=cm.sum(axis=0) > 0)
    recall = np.divide(tp, cm.sum(axis=1), out=np.zeros(n), where=cm.sum(axis=1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    return {
        "images": int(y.size),
        "top1": top_k_accuracy(probs, y, 1),
        "top5": top_k_accuracy(probs, y, 5),
        "macro_f1": float(f1.mean()),
        "per_class": {
            c: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(cm[i].sum()),
            }
            for i, c in enumerate(classes)
        },
        "confusion": cm.tolist(),
    }
