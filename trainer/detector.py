"""One facing-detector training run: compose shelves -> cached backbone features -> neck -> outputs.

Shelves for training are composed from the *train* photos and shelves for validation (early
stopping, the figures in ``metrics.json``) from the *val* photos: the detector never sees a val
photo in training. The run directory follows the classifier's conventions (``model.keras``,
``labels.txt``, ``preprocessing.json``, ``config.json``, ``metrics.json``, ``report.html``,
TensorBoard ``logs/``), plus ``task: detect`` and the decoding parameters in ``config.json``,
which is what the converter reads to write a detect bundle.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge import __version__
from edge.detect_decode import decode_centernet, frame_map
from edge.detection_metrics import EVAL_SCORE_FLOOR, count_errors, detection_report
from edge.detections import Detections
from edge.errors import ShelfscanError
from edge.preprocess import Preprocessor, PreprocessSpec
from edge.progress import Progress
from trainer import backbones
from trainer.dataset import load_dataset
from trainer.detector_model import (
    FEATURE_LAYERS,
    STRIDE,
    assemble,
    build_backbone_features,
    build_neck,
    focal_loss,
    giou_loss,
    targets,
)
from trainer.photo_library import PhotoLibrary
from trainer.shelf_composer import compose
from trainer.shelf_types import ShelfStyle

log = logging.getLogger(__name__)
DETECT_LABELS = ["facing"]
FRAME = (640, 480)  # composed shelves are camera-sized; the model input is a stretch of them


@dataclass(frozen=True)
class DetectorConfig:
    """Every setting of a detector run; ``shelfscan-train --task detect`` shows these defaults."""

    data: str
    out: str
    weights: str = "imagenet"
    height: int = 240
    width: int = 320
    train_shelves: int = 4000
    val_shelves: int = 300
    dense_share: float = 0.25  # training shelves made only of runs of touching identical facings (the hard case)
    epochs: int = 40
    patience: int = 5
    learning_rate: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    val_pct: float = 10.0
    test_pct: float = 0.0
    score_threshold: float | None = None  # None: the one with the lowest count error on the val shelves
    nms_iou: float = 0.5
    max_detections: int = 100


@dataclass
class ShelfSet:
    """Composed shelves as cached backbone features plus their targets and truth boxes (frame pixels)."""

    f8: np.ndarray
    f16: np.ndarray
    heat: np.ndarray
    reg: np.ndarray
    truth: list[np.ndarray]
    whole: list[np.ndarray]  # per shelf: which truth facings the image border does not cut
    examples: list[np.ndarray]


def shelf_batches(shelves: ShelfSet, batch_size: int, seed: int | None = None) -> Any:
    """Batches straight from the cached float16 arrays, shuffled per epoch when ``seed`` is given.

    Handing Keras the whole arrays made it build float32 copies of everything: 24 GB for
    4,000 shelves, and the run was killed. A ``PyDataset`` casts one batch at a time.
    """
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.order = np.arange(len(shelves.heat))
            self.rng = np.random.default_rng(seed) if seed is not None else None
            self.on_epoch_end()

        def __len__(self) -> int:
            return int(np.ceil(len(self.order) / batch_size))

        def __getitem__(self, i: int) -> Any:
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            inputs = (shelves.f8[idx].astype(np.float32), shelves.f16[idx].astype(np.float32))
            return inputs, (shelves.heat[idx], shelves.reg[idx])

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.rng.shuffle(self.order)

    return Batches()


def detector_spec(cfg: DetectorConfig) -> PreprocessSpec:
    bb = backbones.get_backbone("mobilenet_v2")
    return PreprocessSpec(height=cfg.height, width=cfg.width, resize="stretch", mean=(bb.mean,) * 3, std=(bb.std,) * 3)


def compose_features(
    features: Any,
    library: PhotoLibrary,
    count: int,
    seed: int,
    spec: PreprocessSpec,
    desc: str,
    style: ShelfStyle | None = None,
    dense_share: float = 0.0,
    batch: int = 16,
    keep: int = 0,
) -> ShelfSet:
    """Compose ``count`` shelves, run the frozen backbone on them once and keep only what the neck needs.

    The backbone runs as one ``tf.function``: called eagerly, TensorFlow kept ~450 MB of
    activations per call of 32 frames (4.5 GB after ten), compiled it stays under 0.5 GB.
    ``dense_share`` of the shelves are made of runs of touching identical facings only.
    """
    import tensorflow as tf

    run_backbone = tf.function(lambda x: features(x, training=False), reduce_retracing=True)
    pre = Preprocessor(spec, "float32")
    dense = (style or ShelfStyle()).dense_runs()
    sx, sy = spec.width / FRAME[0], spec.height / FRAME[1]
    gh, gw = spec.height // STRIDE, spec.width // STRIDE
    f8, f16, heat, reg, truth, whole, examples = [], [], [], [], [], [], []
    with Progress(count, desc) as bar:
        for start in range(0, count, batch):
            inputs = []
            for i in range(start, min(count, start + batch)):
                dense_now = dense_share > 0 and (i * dense_share) % 1 + dense_share >= 1
                shelf = compose(library, *FRAME, seed, i, dense if dense_now else style or ShelfStyle())
                truth.append(np.array([f.box for f in shelf.facings], np.float32).reshape(-1, 4))
                whole.append(np.array([f.full is None for f in shelf.facings], bool))
                extents = np.array([f.extent for f in shelf.facings], np.float32).reshape(-1, 4)
                h, r = targets(extents * np.array([sx, sy, sx, sy], np.float32), gh, gw)
                heat.append(h)
                reg.append(r)
                inputs.append(pre.from_bgr(shelf.image)[0].copy())
                if len(examples) < keep:
                    examples.append(shelf.image)
            a, b = run_backbone(np.stack(inputs))
            f8.append(np.asarray(a, np.float16))
            f16.append(np.asarray(b, np.float16))
            bar.update(len(inputs))
    return ShelfSet(np.concatenate(f8), np.concatenate(f16), np.stack(heat), np.stack(reg), truth, whole, examples)


def decode_batch(
    heat: np.ndarray,
    boxes: np.ndarray,
    spec: PreprocessSpec,
    cfg: DetectorConfig,
    threshold: float = EVAL_SCORE_FLOOR,
    frame: tuple[int, int] = FRAME,
) -> list[Detections]:
    """Keras outputs -> frame-pixel detections, through the edge decoder the device runs.

    The default threshold is the evaluation floor: AP needs the whole precision-recall curve.
    """
    fmap = frame_map(frame[1], frame[0], spec)
    return [
        decode_centernet(
            heat[i : i + 1],
            boxes[i : i + 1],
            STRIDE,
            fmap,
            score_threshold=threshold,
            nms_iou=cfg.nms_iou,
            max_detections=cfg.max_detections,
        )
        for i in range(len(heat))
    ]


def train_detector(cfg: DetectorConfig) -> dict[str, Any]:
    """Run detector training; returns the summary written to ``metrics.json``."""
    import keras

    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    if cfg.height % 16 or cfg.width % 16:
        raise ShelfscanError(f"detector input {cfg.height}x{cfg.width}: both sides must be multiples of 16")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(cfg.data, val_pct=cfg.val_pct, test_pct=cfg.test_pct, verify=False)
    photos = {
        split: PhotoLibrary([(ds.classes[s.label], s.path) for s in samples], f"{cfg.data} ({split})")
        for split, samples in ds.splits.items()
        if split in ("train", "val")
    }
    spec = detector_spec(cfg)
    features = build_backbone_features(cfg.weights, cfg.height, cfg.width)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train = compose_features(
        features, photos["train"], cfg.train_shelves, cfg.seed, spec, "train shelves", dense_share=cfg.dense_share
    )
    val = compose_features(features, photos["val"], cfg.val_shelves, cfg.seed + 1, spec, "val shelves", keep=6)
    timings["compose_and_features_s"] = round(time.perf_counter() - t0, 1)
    channels = (int(train.f8.shape[-1]), int(train.f16.shape[-1]))
    neck = build_neck(channels)
    neck.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=[focal_loss, giou_loss], loss_weights=[1.0, 2.0]
    )
    callbacks = [
        keras.callbacks.EarlyStopping(patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=max(1, cfg.patience // 2), min_lr=1e-5),
        keras.callbacks.TensorBoard(log_dir=str(out / "logs")),
    ]
    t0 = time.perf_counter()
    history = neck.fit(
        shelf_batches(train, cfg.batch_size, cfg.seed),
        epochs=cfg.epochs,
        callbacks=callbacks,
        validation_data=shelf_batches(val, 64),
        verbose=2,
    ).history
    timings["train_s"] = round(time.perf_counter() - t0, 1)
    heat, boxes = neck.predict(shelf_batches(val, 64), verbose=0)
    predictions = decode_batch(heat, boxes, spec, cfg)
    if cfg.score_threshold is None:
        cfg = replace(cfg, score_threshold=pick_threshold(predictions, val.truth))
    sizes = [FRAME] * len(val.truth)
    metrics: dict[str, Any] = {"val": detection_report(predictions, val.truth, cfg.score_threshold, val.whole, sizes)}
    export_neck = build_neck(channels)  # an uncompiled copy: model.keras must load without the training losses
    export_neck.set_weights(neck.get_weights())
    model = assemble(features, export_neck)
    model.save(out / "model.keras")
    timings["total_s"] = round(time.perf_counter() - start, 1)
    metrics |= {
        "task": "detect",
        "timings": timings,
        "epochs_run": len(history.get("loss", [])),
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
    }
    _write_outputs(out, cfg, spec, metrics, val.examples, predictions, val.truth)
    return metrics


def pick_threshold(predictions: list[Detections], truth: list[np.ndarray]) -> float:
    """The score threshold (0.20 to 0.70) whose counts are closest to the truth on the val shelves.

    Counting is what the agent sells, so the operating point is chosen for it, on val only.
    """
    candidates = [round(0.2 + 0.05 * k, 2) for k in range(11)]
    errors = [float(np.mean(np.abs(count_errors([p.above(t) for p in predictions], truth)))) for t in candidates]
    best = candidates[int(np.argmin(errors))]
    log.info("score threshold %.2f (val count error %.3f; tried %s)", best, min(errors), candidates)
    return best


def detection_params(cfg: DetectorConfig) -> dict[str, Any]:
    """What the device needs to decode, written to ``config.json`` and from there into the manifest."""
    return {
        "format": "centernet",
        "stride": STRIDE,
        "score_threshold": cfg.score_threshold,
        "nms_iou": cfg.nms_iou,
        "max_detections": cfg.max_detections,
    }


def draw(image: np.ndarray, detections: Detections, truth: np.ndarray | None = None) -> np.ndarray:
    """Truth in thin green, detections in red with their scores: the report's example frames."""
    out = image.copy()
    for x0, y0, x1, y1 in [] if truth is None else truth:
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (0, 200, 0), 1)
    for (x0, y0, x1, y1), s in zip(detections.xyxy, detections.scores, strict=True):
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (0, 0, 255), 2)
        cv2.putText(out, f"{s:.2f}", (int(x0) + 3, int(y0) + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
    return out


def _write_outputs(
    out: Path,
    cfg: DetectorConfig,
    spec: PreprocessSpec,
    metrics: dict[str, Any],
    examples: list[np.ndarray],
    predictions: list[Detections],
    truth: list[np.ndarray],
) -> None:
    from trainer import report

    (out / "labels.txt").write_text("\n".join(DETECT_LABELS) + "\n", encoding="utf-8")
    (out / "preprocessing.json").write_text(spec.model_dump_json(indent=2) + "\n")
    config = {
        **asdict(cfg),
        "task": "detect",
        "backbone": "mobilenet_v2",
        "feature_layers": list(FEATURE_LAYERS),
        "input_size": [cfg.height, cfg.width],
        "detection": detection_params(cfg),
        "weights_id": backbones.weights_id(cfg.weights),
        "tool_version": __version__,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    figures = []
    for i, image in enumerate(examples):
        name = f"example_{i}.jpg"
        cv2.imwrite(str(out / name), draw(image, predictions[i], truth[i]))
        figures.append(name)
    report.curves_png(metrics["history"], out / "training_curves.png", ("heatmap_loss", "boxes_loss"))
    report.write_detector_html(out, metrics, config, figures)
