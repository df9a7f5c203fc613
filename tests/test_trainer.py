"""shelfscan-train on a tiny generated dataset: ingest, split stability, cache, balance, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.toydata import COLORS, make_dataset
from trainer.dataset import hash_split, load_dataset
from trainer.head import balanced_indices, class_weights


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory) -> tuple[Path, Path]:
    import keras

    out = tmp_path_factory.mktemp("weights")
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        m = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
        paths.append(out / f"w{seed}.weights.h5")
        m.save_weights(paths[-1])
    return paths[0], paths[1]


def test_ingest_reports_bad_files_and_small_classes(tmp_path):
    root = make_dataset(tmp_path / "data")
    (root / "red_box" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (root / "red_box" / "notes.png").write_bytes(b"not a picture")
    ds = load_dataset(root, val_pct=30)
    assert ds.classes == ["blue_bag", "green_can", "red_box"]
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["broken.jpg", "notes.png"]
    assert all(reason and str(root) not in reason for _, reason in ds.skipped)
    assert len(ds.warnings) == 3 and "fewer than 20" in ds.warnings[0]
    total = sum(sum(c.values()) for c in ds.counts().values())
    assert total == 24 and "red_box" in ds.count_table()


def test_hash_split_is_stable_when_images_are_added(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=30)
    before = {
        str(s.path): split for split, ss in load_dataset(root, val_pct=20, verify=False).splits.items() for s in ss
    }
    make_dataset(tmp_path / "more", per_class=40, seed=5)
    for f in (tmp_path / "more").rglob("*.png"):
        if int(f.stem.split("_")[-1]) >= 30:
            f.rename(root / f.parent.name / f.name)
    after = {
        str(s.path): split for split, ss in load_dataset(root, val_pct=20, verify=False).splits.items() for s in ss
    }
    assert len(after) == 120 and all(after[p] == split for p, split in before.items())
    assert hash_split("IMG_1_nohash_2.jpg", 20, 0) == hash_split("IMG_1_nohash_7.jpg", 20, 0)


def test_train_dirs_and_csv_layouts(tmp_path):
    make_dataset(tmp_path / "tv" / "train")
    make_dataset(tmp_path / "tv" / "val", per_class=2, seed=3)
    ds = load_dataset(tmp_path / "tv", verify=False)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 24, "val": 6}
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = []
    for f in sorted(make_dataset(tmp_path / "src").rglob("*.png")):
        f.rename(flat / f.name)
        rows.append((f.stem, f.parent.name))  # HackerEarth style: image id without extension
    with open(tmp_path / "train.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("image_id", "label"), *rows])
    ds = load_dataset(flat, csv_path=tmp_path / "train.csv", val_pct=30, verify=False)
    assert ds.classes == sorted(COLORS) and sum(len(v) for v in ds.splits.values()) == 24


def test_train_and_val_dirs_get_a_hash_held_out_test_split(tmp_path):
    """Freiburg ships train/ and val/ only: the test split comes from both, by the file-name hash alone."""
    make_dataset(tmp_path / "tv" / "train", per_class=30)
    make_dataset(tmp_path / "tv" / "val", per_class=10, seed=3)
    for f in (tmp_path / "tv" / "val").rglob("*.png"):
        f.rename(f.with_name(f"v{f.name}"))  # names unlike train's, as in a real dataset
    everything = {str(p) for p in (tmp_path / "tv").rglob("*.png")}
    ds = load_dataset(tmp_path / "tv", test_pct=25, verify=False)
    where = {str(s.path): split for split, ss in ds.splits.items() for s in ss}
    assert set(where) == everything and sum(len(v) for v in ds.splits.values()) == len(everything) == 120
    test = [Path(p) for p, split in where.items() if split == "test"]
    assert {p.parent.parent.name for p in test} == {"train", "val"}  # taken from both
    assert all((hash_split(Path(p).name, 0, 25) == "test") == (split == "test") for p, split in where.items())
    assert 15 <= len(test) <= 45  # about a quarter of 120
    assert all(where[p] == Path(p).parent.parent.name for p in where if where[p] != "test")  # the rest stay put
    assert {k: len(v) for k, v in load_dataset(tmp_path / "tv", test_pct=0, verify=False).splits.items()} == {
        "train": 90,
        "val": 30,
    }


def test_class_balancing():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, 2)
    assert w[0] == pytest.approx(100 / (2 * 90)) and w[1] == pytest.approx(5.0)
    idx = balanced_indices(labels, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [90, 90]


def train(data: Path, out: Path, cache: Path, weights: Path, **extra) -> dict:
    from trainer.cli import main

    args = [
        str(data),
        "--out",
        str(out),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(weights),
        "--input-size",
        "32",
        "--cache-dir",
        str(cache),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--augment-views",
        "1",
        "--val-pct",
        "30",
        "--hidden",
        "16",
    ]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


def test_training_outputs_cache_and_edge_reproduction(tmp_path, weights_files):
    data = make_dataset(tmp_path / "data")
    cache, w1, w2 = tmp_path / "cache", *weights_files
    m1 = train(data, tmp_path / "run1", cache, w1)
    run = tmp_path / "run1"
    for name in (
        "model.keras",
        "labels.txt",
        "metrics.json",
        "config.json",
        "preprocessing.json",
        "report.html",
        "confusion_matrix.png",
        "class_distribution.png",
        "training_curves.png",
        "misclassified.csv",
    ):
        assert (run / name).is_file(), name
    assert (run / "logs").is_dir() and "data:image/png;base64," in (run / "report.html").read_text()
    n_train = sum(m1["counts"]["train"].values())
    assert m1["timings"]["features_train_cache_hits"] == 0
    # warm cache: every image (and its augmented view) comes from disk
    m2 = train(data, tmp_path / "run2", cache, w1)
    assert m2["timings"]["features_train_cache_hits"] == n_train
    assert m2["val"]["top1"] == m1["val"]["top1"]  # seeded and reproducible
    # one image's bytes change: exactly that one is extracted again
    victim = sorted((data / "red_box").glob("*.png"))[0]
    img = cv2.imread(str(victim))
    img[0, 0] = (255, 255, 255)
    cv2.imwrite(str(victim), img)
    m3 = train(data, tmp_path / "run3", cache, w1)
    changed_in_train = m3["timings"]["features_train_cache_hits"] == n_train - 1
    changed_in_val = m3["timings"]["features_val_cache_hits"] == sum(m3["counts"]["val"].values()) - 1
    assert changed_in_train != changed_in_val
    # other weights or other preprocessing: nothing is reused
    assert train(data, tmp_path / "run4", cache, w2)["timings"]["features_train_cache_hits"] == 0
    m5 = train(data, tmp_path / "run5", cache, w1, interpolation="bilinear")
    assert m5["timings"]["features_train_cache_hits"] == 0

    # model.keras + the edge preprocessing reproduce the trainer's own predictions
    import keras

    from edge.preprocess import Preprocessor, PreprocessSpec

    model = keras.models.load_model(run / "model.keras")
    spec = PreprocessSpec.model_validate_json((run / "preprocessing.json").read_text())
    pre = Preprocessor(spec, "float32")
    labels = (run / "labels.txt").read_text().split()
    with open(run / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(m1["counts"]["val"].values())
    for row in rows:
        probs = model.predict(pre.from_path(row["path"]), verbose=0)[0]
        assert labels[int(probs.argmax())] == row["predicted"]
        assert float(probs.max()) == pytest.approx(float(row["score"]), abs=1e-4)


def test_fine_tune_keeps_batchnorm_frozen(tmp_path, weights_files):
    import keras

    from trainer.finetune import unfreeze_top

    m = train(
        make_dataset(tmp_path / "data"), tmp_path / "run", tmp_path / "cache", weights_files[0], fine_tune_epochs=1
    )
    assert "ft_loss" in m["history"]
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    n = unfreeze_top(base, "block_14_add")
    trainable = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert n == len(trainable) > 0
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert all(base.layers.index(layer) > [x.name for x in base.layers].index("block_14_add") for layer in trainable)


def test_random_weights_are_announced(tmp_path, capsys):
    from trainer.cli import main

    data = make_dataset(tmp_path / "data")
    args = [
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        "none",
        "--input-size",
        "32",
        "--cache-dir",
        str(tmp_path / "c"),
        "--epochs",
        "1",
        "--val-pct",
        "30",
    ]
    assert main(args) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["random_weights"] is True
    assert "RANDOM WEIGHTS" in (tmp_path / "run" / "report.html").read_text()
    # the random backbone's BatchNorm statistics come from a sample of the training images,
    # and the seed and that sample are part of the cache key: another seed extracts again
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["weights_id"].startswith("none:")
    assert main([*args[:2], str(tmp_path / "run2"), *args[3:], "--seed", "7"]) == 0
    config2 = json.loads((tmp_path / "run2" / "config.json").read_text())
    assert config2["weights_id"] != config["weights_id"]
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["timings"]["features_train_cache_hits"] == 0


def test_calibrate_batchnorm_uses_the_images_statistics():
    import keras

    from trainer.backbones import calibrate_batchnorm

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(conv))
    images = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32)
    raw = keras.Model(inputs, conv)(images).numpy()
    bn = model.get_layer("bn")
    momentum = bn.momentum
    calibrate_batchnorm(model, images)
    np.testing.assert_allclose(bn.moving_mean.numpy(), raw.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), raw.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    assert bn.momentum == momentum
    out = model(images, training=False).numpy()
    assert abs(out.mean()) < 0.05 and abs(out.std() - 1) < 0.05


def test_offline_imagenet_weights_fail_fast_with_instructions(tmp_path, monkeypatch, capsys):
    from trainer.cli import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    data = make_dataset(tmp_path / "data")
    rc = main(
        [
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--backbone",
            "mobilenet_v2",
            "--input-size",
            "32",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in err[0]
    assert "--weights PATH" in err[0] and str(tmp_path / "keras" / "models") in err[0]


def test_fine_tune_set_holds_each_photos_shelf_camera_view(tmp_path):
    """With camera views on, fine-tuning sees every photo twice: clean, and as the cached camera view (view 1)."""
    import hashlib

    from edge.preprocess import Preprocessor, PreprocessSpec, read_image
    from trainer.augment import AugmentConfig, view
    from trainer.finetune import preprocess_all

    paths = [str(p) for p in sorted(make_dataset(tmp_path / "d", per_class=1).rglob("*.png"))]
    pre = Preprocessor(PreprocessSpec(height=32, width=32), "float32")
    aug = AugmentConfig(views=2, camera=True)
    both = preprocess_all(paths, pre, "t", np.float32, aug, (0, 1))
    assert both.shape == (2 * len(paths), 32, 32, 3)
    for i, p in enumerate(paths):
        image = read_image(p)
        assert np.array_equal(both[2 * i], pre.from_bgr(image)[0])
        digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
        assert np.array_equal(both[2 * i + 1], pre.from_bgr(view(image, digest, 1, aug))[0])
        assert not np.array_equal(both[2 * i], both[2 * i + 1])
    assert np.array_equal(preprocess_all(paths, pre, "t"), both[0::2])


def test_multiworker_is_refused_in_one_line(tmp_path, capsys):
    """Keras 3 cannot fit under MultiWorkerMirroredStrategy (keras-team/keras#20585): say so before any work."""
    from trainer.cli import main as train

    data = make_dataset(tmp_path / "d", per_class=4)
    assert train([str(data), "--out", str(tmp_path / "o"), "--weights", "none", "--strategy", "multiworker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keras-team/keras#20585" in err[0], err
    assert not (tmp_path / "o" / "model.keras").exists()
