"""shelfscan-convert on a tiny trainer run: every variant, the accuracy gate, signatures, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from converter.cli import main as convert
from converter.compare import gate
from edge.errors import BundleError
from edge.runtime import Classifier
from edge.signing import load_public_keys
from tests.toydata import make_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared) -> dict[str, Path]:
    """A small but competent model: pretrained MobileNetV2 features at 64 px on the toy products."""
    from trainer.cli import main as train

    root = tmp_path_factory.mktemp("conv")
    data = make_dataset(root / "data", per_class=16)
    evaluation = make_dataset(root / "eval", per_class=6, seed=9)
    weights = shared / "models" / "mobilenet_v2_1.0_224_imagenet" / "mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
    args = [
        str(data),
        "--out",
        str(root / "run"),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(weights),
        "--input-size",
        "64",
        "--cache-dir",
        str(root / "cache"),
        "--epochs",
        "40",
        "--val-pct",
        "25",
        "--hidden",
        "32",
        "--dropout",
        "0.1",
    ]
    assert train(args) == 0
    return {"root": root, "run": root / "run", "data": data, "eval": evaluation}


def test_every_variant_converts_loads_and_is_compared(trained, capsys):
    out = trained["root"] / "bundles"
    rc = convert(
        [
            str(trained["run"]),
            "--out",
            str(out),
            "--variants",
            "fp32,fp16,dynamic,int8,int8-pw",
            "--eval",
            str(trained["eval"]),
            "--max-drop",
            "100",
            "--calibration-count",
            "40",
            "--bench-runs",
            "3",
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "comparison.json").read_text())
    printed = capsys.readouterr().out  # the module fixture's training output comes first
    assert json.loads(printed[printed.index('{\n  "run_dir"') :]) == doc
    assert set(doc["variants"]) == {"fp32", "fp16", "dynamic", "int8", "int8-pw"}
    sizes = {}
    for variant, row in doc["variants"].items():
        clf = Classifier.from_bundle(out / f"run-{variant}", threads=1)
        m = clf.bundle.manifest
        assert m.variant == variant and m.backbone == "mobilenet_v2" and m.preprocessing.height == 64
        assert m.provenance.source_model_sha256 and m.provenance.metrics["edge_eval"]["top1"] == row["top1"]
        assert 0 <= row["agreement"] <= 1 and row["images"] == 18 and row["invoke_ms_2t"] > 0
        sizes[variant] = row["size_bytes"]
    int8 = Classifier.from_bundle(out / "run-int8").bundle.manifest
    assert int8.input.dtype == "uint8" and int8.input.quantization is not None
    assert sizes["int8"] < 0.5 * sizes["fp32"] and sizes["fp16"] < 0.7 * sizes["fp32"]
    assert sizes["int8-pw"] < sizes["int8"]  # one scale per 1x1 convolution instead of one per channel
    pw = Classifier.from_bundle(out / "run-int8-pw")
    assert pw.delegate.applied and doc["variants"]["int8-pw"]["agreement"] > 0.5
    assert (out / "comparison.md").read_text().count("| run") == 0 and "| int8 |" in (out / "comparison.md").read_text()


def test_default_gate_is_the_runs_held_out_test_split(trained, tmp_path):
    """No --eval: the variants are judged on the test split the trainer held out, and int8 is calibrated on
    train images only, so nothing that shaped the model or its ranges judges it."""
    from converter.held_out import calibration_images, eval_images, run_splits
    from converter.source import load_run

    run = load_run(trained["run"])
    splits = run_splits(run)
    evals = eval_images(run, None)
    assert evals is not None and evals.split == "test" and evals.items == splits["test"] and evals.items
    calib = set(calibration_images(run))
    assert calib == {p for p, _ in splits["train"]}
    assert not calib & {p for p, _ in splits["test"] + splits["val"]}
    assert eval_images(run, "val").items == splits["val"]
    out = tmp_path / "b"
    assert (
        convert(
            [
                str(trained["run"]),
                "--out",
                str(out),
                "--variants",
                "int8",
                "--calibration-count",
                "40",
                "--max-drop",
                "100",
                "--bench-runs",
                "2",
            ]
        )
        == 0
    )
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["eval_split"] == "test" and doc["variants"]["int8"]["images"] == len(splits["test"])
    assert "the run's test split" in (out / "comparison.md").read_text()


def test_gate_rule():
    rows = {"fp32": {"top1": 0.90}, "int8": {"top1": 0.895}, "bad": {"top1": 0.80}}
    assert gate(rows, 0.90, 1.0) == ["bad"]  # 10 points over; int8 lost 0.5
    assert gate(rows, 0.90, 0.4) == ["int8", "bad"]
    assert gate(rows, 0.90, 2.0) == ["bad"]
    assert gate(rows, None, 1.0) == []


def test_gate_fails_with_wrong_calibration(trained, tmp_path, capsys):
    """Calibrating on black frames squeezes every activation range: int8 accuracy collapses."""
    black = tmp_path / "black"
    black.mkdir()
    for i in range(8):
        cv2.imwrite(str(black / f"{i}.png"), np.zeros((64, 64, 3), np.uint8))
    rc = convert(
        [
            str(trained["run"]),
            "--out",
            str(tmp_path / "b"),
            "--variants",
            "int8",
            "--calibration",
            str(black),
            "--eval",
            str(trained["eval"]),
            "--bench-runs",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1, captured.out
    assert "accuracy gate failed: int8" in captured.err
    doc = json.loads((tmp_path / "b" / "comparison.json").read_text())
    assert doc["gate_failed"] == ["int8"] and doc["keras"]["top1"] - doc["variants"]["int8"]["top1"] > 0.01


def test_signed_bundles_verify_and_tampering_is_rejected(trained, tmp_path):
    key = tmp_path / "signing.pem"
    assert convert(["--make-key", str(key)]) == 0
    other = tmp_path / "other.pem"
    convert(["--make-key", str(other)])
    out = tmp_path / "signed"
    assert (
        convert(
            [str(trained["run"]), "--out", str(out), "--variants", "fp32", "--sign-key", str(key), "--bench-runs", "2"]
        )
        == 0
    )
    bundle = out / "run-fp32"
    trusted = load_public_keys([Path(f"{key}.pub")])
    assert Classifier.from_bundle(bundle, 1, trusted_keys=trusted).bundle.manifest.variant == "fp32"
    with pytest.raises(BundleError, match="not among the trusted keys"):
        Classifier.from_bundle(bundle, 1, trusted_keys=load_public_keys([Path(f"{other}.pub")]))
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["version"] = "evil"
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"bad signature: manifest\.json changed after signing"):
        Classifier.from_bundle(tampered, 1, trusted_keys=trusted)
    (tampered / "signature.json").unlink()
    with pytest.raises(BundleError, match="unsigned bundle"):
        Classifier.from_bundle(tampered, 1, trusted_keys=trusted)


@pytest.mark.parametrize("case", ["no_dir", "no_model", "corrupt_model", "labels", "empty_calibration", "variant"])
def test_clear_errors(trained, tmp_path, capsys, case):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    args = [str(run), "--out", str(tmp_path / "o"), "--variants", "fp32"]
    expected = {
        "no_dir": "run directory not found",
        "no_model": "missing model.keras",
        "corrupt_model": "corrupt or unreadable Keras model",
        "labels": "labels.txt has 4 labels but model.keras outputs 3 classes",
        "empty_calibration": "calibration folder holds no images",
        "variant": "unknown variant(s) fp64",
    }[case]
    if case == "no_dir":
        args[0] = str(tmp_path / "missing")
    elif case == "no_model":
        (run / "model.keras").unlink()
    elif case == "corrupt_model":
        (run / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "labels":
        (run / "labels.txt").write_text("a\nb\nc\nd\n")
    elif case == "empty_calibration":
        (tmp_path / "empty").mkdir()
        args += ["--variants", "int8", "--calibration", str(tmp_path / "empty")]
    else:
        args += ["--variants", "fp32,fp64"]
    assert convert(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_compaction_shares_zero_points_and_keeps_the_numbers(trained):
    """The compacted int8 flatbuffer is smaller and computes exactly what the converter's did."""
    import keras
    import tensorflow as tf

    from converter.compact import compact_tflite

    model = keras.models.load_model(trained["run"] / "model.keras")
    rng = np.random.default_rng(0)
    samples = [rng.uniform(0, 255, (1, 64, 64, 3)).astype(np.float32) for _ in range(8)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s] for s in samples)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    raw = conv.convert()
    compact = compact_tflite(raw)
    assert len(compact) < 0.97 * len(raw)
    outputs, names = [], []
    for flatbuffer in (raw, compact):
        interp = tf.lite.Interpreter(model_content=flatbuffer)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        names.append((inp["name"], out["name"], inp["quantization"], out["quantization"]))
        batch = []
        for s in samples:
            interp.set_tensor(inp["index"], s)
            interp.invoke()
            batch.append(interp.get_tensor(out["index"]).copy())
        outputs.append(np.concatenate(batch))
    assert names[0] == names[1] and names[0][0]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    # every weight buffer starts on a 16-byte boundary, as the converter wrote it (mmap, SIMD loads)
    from tensorflow.lite.python import schema_py_generated as schema

    model_fb = schema.Model.GetRootAsModel(compact, 0)
    starts = []
    for i in range(model_fb.BuffersLength()):
        table = model_fb.Buffers(i)._tab
        field = table.Offset(4)  # Buffer.data
        if field and table.VectorLen(field):
            starts.append(table.Vector(field))
    assert len(starts) > 10 and all(start % 16 == 0 for start in starts), [s % 16 for s in starts]
