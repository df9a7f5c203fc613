"""One training run: ingest -> cached features -> head -> optional fine-tune -> outputs.

Everything a run produces lands in one directory, together with the exact configuration, so a
converter (or a person) can pick it up without guessing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.errors import ShelfscanError
from edge.preprocess import Preprocessor, PreprocessSpec
from trainer import backbones, report
from trainer.augment import AugmentConfig
from trainer.dataset import Dataset, load_dataset
from trainer.features import FeatureCache, extract_features, make_extractor, model_key
from trainer.finetune import FineTuneConfig, fine_tune, preprocess_all
from trainer.head import HeadConfig, build_classifier, class_weights, default_patience, train_head
from trainer.metrics import classification_metrics

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "shelfscan" / "bottlenecks"


@dataclass
class TrainConfig:
    data: str
    out: str
    csv: str | None = None
    backbone: str = "inception_v3"
    weights: str = "imagenet"
    input_size: int | None = None
    interpolation: str = "bilinear_antialias"
    val_pct: float = 10.0
    test_pct: float = 10.0  # held out by file-name hash when the data has no test/: nothing tunes on it
    batch_size: int = 32
    cache_dir: str = field(default_factory=lambda: str(default_cache_dir()))
    seed: int = 0
    strategy: str = "default"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)


#: Why ``--strategy multiworker`` is refused: measured here with two loopback workers (TF_CONFIG), TF 2.21,
#: Keras 3: the first ``fit`` step fails ("Attempt to convert a value (PerReplica...)"), also for a one-layer
#: model on a plain tf.data pipeline; upstream: keras-team/keras#20585 (open).
MULTIWORKER_UNSUPPORTED = (
    "--strategy multiworker: Keras 3's Model.fit does not run under tf.distribute.MultiWorkerMirroredStrategy "
    "(keras-team/keras#20585); train on one machine (--strategy mirrored uses all its GPUs) - with the bottleneck "
    "cache, head training takes minutes"
)


def distribution_scope(name: str) -> Any:
    """``tf.distribute`` scope: mirrored (all local GPUs); multiworker is refused (``MULTIWORKER_UNSUPPORTED``)."""
    if name == "default":
        return contextlib.nullcontext()
    if name != "mirrored":
        raise ShelfscanError(MULTIWORKER_UNSUPPORTED if name == "multiworker" else f"unknown strategy {name!r}")
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    log.info("distribution strategy %s with %d replicas", name, strategy.num_replicas_in_sync)
    return strategy.scope()


def _stack(feats: dict[str, np.ndarray], samples: list, view0_only: bool) -> tuple[np.ndarray, np.ndarray, list]:
    kept = [s for s in samples if str(s.path) in feats]
    x = np.stack([feats[str(s.path)] for s in kept])
    y = np.array([s.label for s in kept], np.int64)
    if view0_only:
        return x[:, 0], y, kept
    views = x.shape[1]
    return x.reshape(-1, x.shape[-1]), np.repeat(y, views), kept


def _calibrate_random(base: Any, ds: Dataset, spec: PreprocessSpec, seed: int, count: int = 64) -> str:
    """BatchNorm statistics for a random backbone from a fixed sample of training images.

    Returns the weights id for the feature cache: the random weights depend on the seed and
    the statistics on the sample's bytes, so either changing invalidates cached features.
    """
    from edge.errors import ImageError
    from edge.preprocess import decode_image

    pre = Preprocessor(spec, "float32")
    picked, digest = [], hashlib.sha256(f"seed={seed}".encode())
    for s in sorted(ds.splits["train"], key=lambda s: hashlib.sha256(str(s.path.name).encode()).digest()):
        try:
            data = s.path.read_bytes()
            picked.append(pre.from_bgr(decode_image(data, str(s.path)))[0].copy())
        except (OSError, ImageError):
            continue
        digest.update(hashlib.sha256(data).digest())
        if len(picked) == count:
            break
    backbones.calibrate_batchnorm(base, np.stack(picked))
    return f"none:{digest.hexdigest()[:16]}"


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training; returns the summary written to ``metrics.json``."""
    import keras

    start = time.perf_counter()
    if cfg.strategy == "multiworker":  # before any work: it would fail at the first training step
        raise ShelfscanError(MULTIWORKER_UNSUPPORTED)
    if cfg.head.patience is None:
        cfg = replace(cfg, head=replace(cfg.head, patience=default_patience(cfg.augment.views)))
    keras.utils.set_random_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bb = backbones.get_backbone(cfg.backbone)
    size = cfg.input_size or bb.size
    spec = PreprocessSpec(
        height=size, width=size, mean=(bb.mean,) * 3, std=(bb.std,) * 3, interpolation=cfg.interpolation
    )
    ds: Dataset = load_dataset(cfg.data, csv_path=cfg.csv, val_pct=cfg.val_pct, test_pct=cfg.test_pct, verify=False)
    log.info("dataset: %d classes\n%s", len(ds.classes), ds.count_table())
    weights_id = backbones.weights_id(cfg.weights)
    n = len(ds.classes)
    with distribution_scope(cfg.strategy):
        base = backbones.build(bb, size, cfg.weights)
        if cfg.weights == "none":
            weights_id = _calibrate_random(base, ds, spec, cfg.seed)
        base.trainable = False
        extract = make_extractor(base)
        timings: dict[str, float] = {}
        feats: dict[str, dict[str, np.ndarray]] = {}
        for split, augment in (("train", cfg.augment), ("val", AugmentConfig()), ("test", AugmentConfig())):
            if split not in ds.splits:
                continue
            cache = FeatureCache(Path(cfg.cache_dir), model_key(bb.name, weights_id, spec, augment))
            feats[split], stats = extract_features(
                ds.splits[split], extract, spec, cache, augment, cfg.batch_size, split
            )
            ds.skipped += stats.skipped
            timings[f"features_{split}_s"] = round(stats.seconds, 2)
            timings[f"features_{split}_cache_hits"] = stats.hits
        train_x, train_y, _ = _stack(feats["train"], ds.splits["train"], view0_only=False)
        val_x, val_y, val_kept = _stack(feats["val"], ds.splits["val"], view0_only=True)
        standardize = cfg.head.standardize == "on" or (cfg.head.standardize == "auto" and cfg.weights == "none")
        model, head = build_classifier(base, n, cfg.head.dropout, cfg.head.hidden, train_x if standardize else None)
        tb = keras.callbacks.TensorBoard(log_dir=str(out / "logs"))
        t0 = time.perf_counter()
        history = train_head(head, train_x, train_y, val_x, val_y, n, cfg.head, cfg.seed, [tb])
        timings["head_s"] = round(time.perf_counter() - t0, 2)
        evaluated: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
        if cfg.finetune.epochs > 0:
            t0 = time.perf_counter()
            pre = Preprocessor(spec, "float32")
            tr_kept = [s for s in ds.splits["train"] if str(s.path) in feats["train"]]
            # with shelf-camera views on, each photo also as a facing crop (view 1), so the unfrozen blocks learn it
            ft_views = (0, 1) if cfg.augment.camera and cfg.augment.views >= 1 else (0,)
            ft_train = preprocess_all(
                [str(s.path) for s in tr_kept], pre, "fine-tune: train images", np.float16, cfg.augment, ft_views
            )
            ft_val = preprocess_all([str(s.path) for s in val_kept], pre, "fine-tune: val images")
            weights = class_weights(train_y, n) if cfg.head.balance != "none" else None
            ft_y = np.repeat(np.array([s.label for s in tr_kept]), len(ft_views))
            history |= fine_tune(
                model, base, ft_train, ft_y, ft_val, val_y, n, cfg.finetune, bb.fine_tune_after, cfg.seed, weights, [tb]
            )
            evaluated["val"] = (model.predict(ft_val, batch_size=cfg.batch_size, verbose=0), val_y, val_kept)
            timings["finetune_s"] = round(time.perf_counter() - t0, 2)
        else:
            evaluated["val"] = (head.predict(val_x, batch_size=256, verbose=0), val_y, val_kept)
        if "test" in feats:
            test_x, test_y, test_kept = _stack(feats["test"], ds.splits["test"], view0_only=True)
            if cfg.finetune.epochs > 0:
                imgs = preprocess_all([str(s.path) for s in test_kept], Preprocessor(spec, "float32"), "test images")
                evaluated["test"] = (model.predict(imgs, batch_size=cfg.batch_size, verbose=0), test_y, test_kept)
            else:
                evaluated["test"] = (head.predict(test_x, batch_size=256, verbose=0), test_y, test_kept)
    model.save(out / "model.keras")
    timings["total_s"] = round(time.perf_counter() - start, 2)
    return write_outputs(out, cfg, ds, spec, weights_id, evaluated, history, timings)


def write_outputs(
    out: Path,
    cfg: TrainConfig,
    ds: Dataset,
    spec: PreprocessSpec,
    weights_id: str,
    evaluated: dict[str, tuple[np.ndarray, np.ndarray, list]],
    history: dict[str, list[float]],
    timings: dict[str, float],
) -> dict[str, Any]:
    (out / "labels.txt").write_text("\n".join(ds.classes) + "\n", encoding="utf-8")
    (out / "preprocessing.json").write_text(spec.model_dump_json(indent=2) + "\n")
    config = {**asdict(cfg), "input_size": spec.height, "weights_id": weights_id, "tool_version": __version__}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics: dict[str, Any] = {
        split: classification_metrics(probs, y, ds.classes) for split, (probs, y, _) in evaluated.items()
    }
    metrics |= {
        "backbone": cfg.backbone,
        "weights": cfg.weights,
        "random_weights": cfg.weights == "none",
        "classes": ds.classes,
        "counts": ds.counts(),
        "skipped": [list(s) for s in ds.skipped],
        "warnings": ds.warnings,
        "timings": timings,
        "history": history,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    probs, y, kept = evaluated["val"]
    with open(out / "predictions.csv", "w", newline="") as fp, open(out / "misclassified.csv", "w", newline="") as fm:
        all_w, mis_w = csv.writer(fp), csv.writer(fm)
        for w in (all_w, mis_w):
            w.writerow(["path", "truth", "predicted", "score", "truth_score"])
        for p, t, s in zip(probs, y, kept, strict=True):
            row = [str(s.path), ds.classes[t], ds.classes[int(p.argmax())], f"{p.max():.6f}", f"{p[t]:.6f}"]
            all_w.writerow(row)
            if int(p.argmax()) != t:
                mis_w.writerow(row)
    report.class_distribution_png(ds.counts(), out / "class_distribution.png")
    report.confusion_png(metrics["val"]["confusion"], ds.classes, out / "confusion_matrix.png")
    report.curves_png(history, out / "training_curves.png")
    report.write_html(out, metrics, config, ds.warnings + [f"skipped {p}: {r}" for p, r in ds.skipped])
    return metrics
