"""The model bundle contract: every failure mode gives one clear line naming the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import infer_spec, load_bundle, sha256_file, write_bundle
from edge.errors import BundleError
from edge.labels import parse_labels, read_labels
from edge.preprocess import PreprocessSpec
from edge.runtime import Classifier, inspect_model

REF_MODEL = "tf2_mobilenet_v2_1.0_224_ptq.tflite"


@pytest.fixture
def ref_bundle(reference, tmp_path) -> Path:
    labels = read_labels(reference / "imagenet_labels.txt")
    spec = PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3)
    write_bundle(
        tmp_path / "b",
        reference / REF_MODEL,
        labels,
        spec,
        name="imagenet-ref",
        version="1",
        backbone="mobilenet_v2",
        variant="int8",
        provenance={"metrics": {"note": "reference"}},
    )
    return tmp_path / "b"


def edit_manifest(root: Path, **changes) -> None:
    path = root / "manifest.json"
    doc = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(json.dumps(doc))


def expect_error(root: Path, pattern: str) -> str:
    with pytest.raises(BundleError, match=pattern) as info:
        Classifier.from_bundle(root, threads=1)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_written_bundle_loads_and_classifies(ref_bundle, reference):
    assert sorted(p.name for p in ref_bundle.iterdir()) == ["labels.txt", "manifest.json", "model.tflite"]
    manifest = json.loads((ref_bundle / "manifest.json").read_text())
    assert manifest["schema"] == "shelfscan.bundle" and manifest["schema_version"] == 1
    assert manifest["model"]["sha256"] == "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c"
    assert manifest["input"] == {
        "dtype": "uint8",
        "shape": [1, 224, 224, 3],
        "quantization": {"scale": pytest.approx(2 / 255), "zero_point": 127},
    }
    assert manifest["output"]["kind"] == "probabilities" and manifest["labels"]["count"] == 1001
    assert manifest["provenance"]["tool"] == "shelfscan" and manifest["provenance"]["metrics"] == {"note": "reference"}
    clf = Classifier.from_bundle(ref_bundle, threads=1)
    top = clf.classify_path(reference / "samples" / "coffee.png", k=1)[0]
    assert top.label == "espresso" and abs(top.score - 0.82) <= 0.03
    assert not list(ref_bundle.parent.glob(".b.*"))  # no temp dirs left behind


def test_missing_directory_and_manifest(tmp_path, ref_bundle):
    expect_error(tmp_path / "nope", "bundle directory not found")
    (ref_bundle / "manifest.json").unlink()
    expect_error(ref_bundle, "missing manifest.json")


def test_missing_model_and_labels_files(ref_bundle):
    (ref_bundle / "model.tflite").unlink()
    expect_error(ref_bundle, "missing model file model.tflite")


def test_missing_labels_file(ref_bundle):
    (ref_bundle / "labels.txt").unlink()
    expect_error(ref_bundle, "missing labels file labels.txt")


def test_sha256_mismatch(ref_bundle):
    data = bytearray((ref_bundle / "model.tflite").read_bytes())
    data[-100] ^= 0xFF
    (ref_bundle / "model.tflite").write_bytes(bytes(data))
    expect_error(ref_bundle, r"sha256 mismatch for model.tflite: manifest 5d3137241276…, file [0-9a-f]{12}…")


def test_label_count_differs_from_manifest(ref_bundle):
    labels = ref_bundle / "labels.txt"
    labels.write_text(labels.read_text() + "extra\n")
    edit_manifest(ref_bundle, labels__sha256=sha256_file(labels), labels__size_bytes=labels.stat().st_size)
    expect_error(ref_bundle, "has 1002 labels but the manifest says 1001")


def test_label_count_differs_from_model_output(ref_bundle):
    labels = ref_bundle / "labels.txt"
    labels.write_text("\n".join(labels.read_text().splitlines()[:1000]) + "\n")
    edit_manifest(
        ref_bundle, labels__sha256=sha256_file(labels), labels__size_bytes=labels.stat().st_size, labels__count=1000
    )
    expect_error(ref_bundle, "label count 1000 does not match the model's output size 1001")


def test_input_shape_mismatch(ref_bundle):
    edit_manifest(ref_bundle, preprocessing__height=299, preprocessing__width=299)
    expect_error(ref_bundle, "input shape mismatch: preprocessing makes 299x299, model takes 224x224")


def test_input_dtype_mismatch(ref_bundle):
    edit_manifest(ref_bundle, input__dtype="int8")
    expect_error(ref_bundle, "input dtype mismatch: manifest says int8, model has uint8")


def test_quantization_mismatch(ref_bundle):
    edit_manifest(ref_bundle, input__quantization={"scale": 0.5, "zero_point": 0})
    expect_error(ref_bundle, "input quantization mismatch")


def test_output_kind_mismatch(ref_bundle):
    edit_manifest(ref_bundle, output__kind="logits")
    expect_error(ref_bundle, "output kind mismatch: manifest says logits, model gives probabilities")


def test_unknown_schema_version(ref_bundle):
    edit_manifest(ref_bundle, schema_version=7)
    expect_error(ref_bundle, r"unknown schema version 7 \(this shelfscan reads 1, 2; upgrade shelfscan\)")


def test_wrong_schema_id_and_bad_json(ref_bundle):
    edit_manifest(ref_bundle, schema="something.else")
    expect_error(ref_bundle, "schema is 'something.else', expected 'shelfscan.bundle'")
    (ref_bundle / "manifest.json").write_text("{not json")
    expect_error(ref_bundle, r"manifest.json: not valid JSON \(line 1")


def test_unknown_key_and_bad_value_name_the_field(ref_bundle):
    edit_manifest(ref_bundle, preprocessing__colour_order="RGB")
    expect_error(ref_bundle, "manifest.json: preprocessing.colour_order: unknown key")
    edit_manifest(ref_bundle, preprocessing__resize="zoom")
    expect_error(ref_bundle, "manifest.json: preprocessing.resize: Input should be 'center_crop' or 'stretch'")


def test_path_escape_is_refused(ref_bundle):
    edit_manifest(ref_bundle, model__path="../model.tflite")
    expect_error(ref_bundle, "must stay inside the bundle")


def test_not_a_tflite_file(ref_bundle):
    model = ref_bundle / "model.tflite"
    model.write_bytes(b"this is not a flatbuffer" * 10)
    edit_manifest(ref_bundle, model__sha256=sha256_file(model), model__size_bytes=model.stat().st_size)
    expect_error(ref_bundle, "not a loadable TFLite model")


def test_write_is_atomic_and_refuses_to_clobber(ref_bundle, reference, tmp_path):
    labels = read_labels(reference / "imagenet_labels.txt")
    spec = PreprocessSpec(height=224, width=224)
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(ref_bundle, reference / REF_MODEL, labels, spec, name="x", version="2", backbone="b", variant="v")
    with pytest.raises(BundleError, match="label count 3 does not match the model's output size 1001"):
        write_bundle(
            tmp_path / "bad",
            reference / REF_MODEL,
            ["a", "b", "c"],
            spec,
            name="x",
            version="1",
            backbone="b",
            variant="v",
        )
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))
    before = load_bundle(ref_bundle).manifest.version
    write_bundle(
        ref_bundle,
        reference / REF_MODEL,
        labels,
        spec,
        name="x",
        version="2",
        backbone="b",
        variant="v",
        overwrite=True,
    )
    assert (before, load_bundle(ref_bundle).manifest.version) == ("1", "2")
    # readable by another user (the agent's DynamicUser service) after a plain copy
    assert ref_bundle.stat().st_mode & 0o777 == 0o755
    assert {f.name: f.stat().st_mode & 0o777 for f in ref_bundle.iterdir() if f.name != "signature.json"} == {
        "model.tflite": 0o644,
        "labels.txt": 0o644,
        "manifest.json": 0o644,
    }


def test_bare_model_preprocessing_inferred_from_quantization(reference):
    _, io = inspect_model(reference / "mobilenet_v2_1.0_224_quant.tflite")
    spec = infer_spec(io)
    assert (spec.height, spec.width, spec.mean[0], spec.std[0]) == (224, 224, 128.0, 128.0)
    clf = Classifier.from_files(
        reference / "mobilenet_v2_1.0_224_quant.tflite", reference / "imagenet_labels.txt", resize="stretch"
    )
    assert clf.bundle.bare and clf.bundle.spec.resize == "stretch" and clf.preprocessor.mode == "copy"


def test_bare_model_with_wrong_labels(reference, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    with pytest.raises(BundleError, match="label count 2 does not match the model's output size 1001"):
        Classifier.from_files(reference / REF_MODEL, labels)


def test_tiny_models_every_io_flavour(tiny_models, tmp_path):
    """float32 softmax / logits and int8 / uint8 I/O: dtypes, kinds and scores are right."""
    labels = read_labels(tiny_models["labels"])
    frame = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    results = {}
    for name in ("float_softmax", "float_logits", "int8", "uint8"):
        out = write_bundle(
            tmp_path / name,
            tiny_models[name],
            labels,
            PreprocessSpec(height=16, width=16),
            name=name,
            version="1",
            backbone="tiny",
            variant=name,
        )
        clf = Classifier.from_bundle(out, threads=1)
        m = out.manifest
        assert m.input.dtype == {"float_softmax": "float32", "float_logits": "float32"}.get(name, name)
        assert m.output.kind == ("logits" if name == "float_logits" else "probabilities")
        assert (m.input.quantization is None) == name.startswith("float")
        clf.preprocessor.from_bgr(frame)
        clf.run_model()
        scores = clf.output_scores()
        assert scores.shape == (3,) and abs(float(scores.sum()) - 1.0) < 0.02
        results[name] = scores.copy()
    # Quantized variants of the softmax model agree with the float one; logits are softmaxed.
    np.testing.assert_allclose(results["int8"], results["float_softmax"], atol=0.03)
    np.testing.assert_allclose(results["uint8"], results["float_softmax"], atol=0.03)


def test_labels_formats():
    assert parse_labels("0 red apple\n1 banana\n2 kiwi\n\n") == ["red apple", "banana", "kiwi"]
    assert parse_labels("7up can\nbanana\n") == ["7up can", "banana"]
    assert parse_labels("1 one\n0 zero\n") == ["1 one", "0 zero"]  # not a sequential index: keep text
    with pytest.raises(BundleError, match="line 2 is empty"):
        parse_labels("a\n\nb\n")
    with pytest.raises(BundleError, match="no labels"):
        parse_labels("\n\n")


def test_bundle_survives_copy(ref_bundle, tmp_path):
    """A bundle is relocatable: paths in the manifest are relative."""
    copy = tmp_path / "copy"
    shutil.copytree(ref_bundle, copy)
    assert Classifier.from_bundle(copy, threads=1).bundle.root == copy
