"""Bottleneck features with an on-disk cache that survives augmentation.

retrain.py switched its cache off as soon as augmentation was on. Here every augmentation view
is a deterministic function of the image bytes, so each (image, view) pair is cached like a
clean one. The cache key covers everything that changes a feature: backbone, weights, input
size, the edge preprocessing spec and the augmentation settings (the "model key", one folder)
and the image's content hash (one ``.npy`` per image holding all its views).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ImageError
from edge.preprocess import Preprocessor, PreprocessSpec, decode_image
from edge.progress import Progress
from trainer.augment import AugmentConfig, view
from trainer.dataset import Sample, report_skip

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass
class ExtractStats:
    images: int = 0
    hits: int = 0
    extracted_views: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def model_key(backbone: str, weights_id: str, spec: PreprocessSpec, augment: AugmentConfig) -> str:
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "backbone": backbone,
            "weights": weights_id,
            "preprocessing": spec.model_dump(mode="json"),
            "augment": augment.key(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class FeatureCache:
    def __init__(self, root: Path, key: str) -> None:
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, content_hash: str) -> Path:
        return self.dir / content_hash[:2] / f"{content_hash}.npy"

    def get(self, content_hash: str, views: int) -> np.ndarray | None:
        path = self.path(content_hash)
        if not path.is_file():
            return None
        try:
            arr = np.load(path)
        except (OSError, ValueError):
            return None  # a torn write from an interrupted run: extract again
        return arr if arr.shape[0] == views else None

    def put(self, content_hash: str, features: np.ndarray) -> None:
        path = self.path(content_hash)
        path.parent.mkdir(exist_ok=True)
        # a name of its own per writer: several machines may share one cache folder (docs/trainer.md)
        tmp = path.with_name(f"{path.stem}.{socket.gethostname()}.{os.getpid()}.tmp.npy")
        np.save(tmp, features)
        tmp.replace(path)


def make_extractor(backbone_model: Any) -> Any:
    """Backbone + global average pooling, compiled once, called in inference mode."""
    import keras
    import tensorflow as tf

    pooled = keras.Sequential([backbone_model, keras.layers.GlobalAveragePooling2D()])
    spec = tf.TensorSpec((None, *backbone_model.input_shape[1:]), tf.float32)

    @tf.function(input_signature=[spec])  # one trace for every batch size, including the last
    def extract(x: Any) -> Any:
        return pooled(x, training=False)

    return extract


def extract_features(
    samples: list[Sample],
    extract: Any,
    spec: PreprocessSpec,
    cache: FeatureCache,
    augment: AugmentConfig,
    batch_size: int = 32,
    desc: str = "features",
) -> tuple[dict[str, np.ndarray], ExtractStats]:
    """Features for every sample, shape ``(1 + views, D)`` keyed by path; misses are extracted.

    Missing (image, view) pairs stream through ``tf.data``: decoding, augmentation and edge
    preprocessing run in parallel map calls while the backbone works on the previous batch.
    """
    import tensorflow as tf

    stats = ExtractStats(images=len(samples))
    start = time.perf_counter()
    n_views = 1 + augment.views
    out: dict[str, np.ndarray] = {}
    todo: list[tuple[str, str]] = []  # (path, content hash)
    for s in samples:
        data = s.path.read_bytes()
        h = hashlib.sha256(data).hexdigest()
        cached = cache.get(h, n_views)
        if cached is not None:
            out[str(s.path)] = cached
            stats.hits += 1
        else:
            todo.append((str(s.path), h))
    if todo:
        items = [(i, v) for i in range(len(todo)) for v in range(n_views)]
        size = (spec.height, spec.width, 3)

        def load(i: np.int64, v: np.int64) -> tuple[np.ndarray, np.bool_]:
            path, h = todo[int(i)]
            pre = Preprocessor(spec, "float32")
            try:
                image = decode_image(Path(path).read_bytes(), path)
            except ImageError:
                return np.zeros(size, np.float32), np.bool_(False)
            return pre.from_bgr(view(image, h, int(v), augment))[0].copy(), np.bool_(True)

        def tf_load(i: Any, v: Any) -> Any:
            x, ok = tf.numpy_function(load, [i, v], [tf.float32, tf.bool])
            x.set_shape(size)
            return x, ok

        idx = np.array(items, np.int64).reshape(-1, 2)
        ds = (
            tf.data.Dataset.from_tensor_slices((idx[:, 0], idx[:, 1]))
            .map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(2)
        )
        feats, oks = [], []
        with Progress(len(items), f"{desc}: extracting {len(todo)} images x {n_views} views", unit="view") as bar:
            for x, ok in ds:
                feats.append(extract(x).numpy())
                oks.append(ok.numpy())
                bar.update(int(x.shape[0]))
        all_feats = np.concatenate(feats).reshape(len(todo), n_views, -1)
        all_ok = np.concatenate(oks).reshape(len(todo), n_views).all(axis=1)
        for (path, h), f, ok in zip(todo, all_feats, all_ok, strict=True):
            if not ok:
                try:
                    decode_image(Path(path).read_bytes(), path)
                except ImageError as exc:
                    report_skip(stats.skipped, Path(path), exc)
                continue
            cache.put(h, f.astype(np.float32))
            out[path] = f
        stats.extracted_views = len(items)
    stats.seconds = time.perf_counter() - start
    log.info(
        "%s: %d images, %d from cache, %d views extracted in %.1f s",
        desc,
        stats.images,
        stats.hits,
        stats.extracted_views,
        stats.seconds,
    )
    return out, stats
