"""`shelfscan-agent bundle`: a bare model (Coral / Model Maker style, TFLite Metadata inside) becomes a bundle."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from edge.tflite_metadata import _parse, read_tflite_metadata
from tests.conftest import run_cli

REF_MODEL = "mobilenet_v2_1.0_224_quant.tflite"


def test_reads_labels_and_normalization_from_a_coral_model(reference):
    meta = read_tflite_metadata(reference / REF_MODEL)
    assert meta.name == "ImageClassifier" and meta.labels_file == "imagenet_labels.txt"
    assert meta.labels == (reference / "imagenet_labels.txt").read_text().strip().splitlines()
    assert meta.mean == (127.5,) * 3 and meta.std == (127.5,) * 3


def test_a_model_without_metadata_says_nothing(tiny_models):
    meta = read_tflite_metadata(tiny_models["float_softmax"])
    assert meta.labels is None and meta.mean is None and meta.name is None


def test_not_a_flatbuffer_is_one_clear_error(tmp_path):
    from edge.errors import BundleError

    (tmp_path / "x.tflite").write_bytes(b"\x01\x00")
    with pytest.raises(BundleError, match="not a TFLite FlatBuffer"):
        read_tflite_metadata(tmp_path / "x.tflite")


def _metadata(mean: list[float], std: list[float], labels_file: str) -> bytes:
    """A ModelMetadata FlatBuffer as Model Maker writes it: input normalization, output label file."""
    import flatbuffers

    b = flatbuffers.Builder(256)

    def floats(values):
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(v)
        return b.EndVector()

    def vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    mean_v, std_v = floats(mean), floats(std)
    b.StartObject(2)  # NormalizationOptions
    b.PrependUOffsetTRelativeSlot(0, mean_v, 0)
    b.PrependUOffsetTRelativeSlot(1, std_v, 0)
    norm = b.EndObject()
    b.StartObject(2)  # ProcessUnit
    b.PrependUint8Slot(0, 1, 0)
    b.PrependUOffsetTRelativeSlot(1, norm, 0)
    unit = b.EndObject()
    units = vector([unit])
    b.StartObject(7)  # input TensorMetadata
    b.PrependUOffsetTRelativeSlot(4, units, 0)
    tensor_in = b.EndObject()
    name = b.CreateString(labels_file)
    b.StartObject(5)  # AssociatedFile
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependInt8Slot(2, 2, 0)
    afile = b.EndObject()
    files = vector([afile])
    b.StartObject(7)  # output TensorMetadata
    b.PrependUOffsetTRelativeSlot(6, files, 0)
    tensor_out = b.EndObject()
    ins, outs = vector([tensor_in]), vector([tensor_out])
    b.StartObject(7)  # SubGraphMetadata
    b.PrependUOffsetTRelativeSlot(2, ins, 0)
    b.PrependUOffsetTRelativeSlot(3, outs, 0)
    sub = b.EndObject()
    subs = vector([sub])
    model_name = b.CreateString("float model")
    b.StartObject(8)  # ModelMetadata
    b.PrependUOffsetTRelativeSlot(0, model_name, 0)
    b.PrependUOffsetTRelativeSlot(3, subs, 0)
    root = b.EndObject()
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def test_float_normalization_and_packed_labels_are_read():
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        z.writestr("labels.txt", "apple\nbanana\n")
    meta = _parse(_metadata([0.0], [255.0], "labels.txt"), b"model bytes" + packed.getvalue())
    assert meta.name == "float model" and meta.labels == ["apple", "banana"]
    assert meta.mean == (0.0,) * 3 and meta.std == (255.0,) * 3  # Model Maker's [0, 1] input


def test_bundle_command_wraps_a_coral_model_that_classify_then_runs(reference, tmp_path):
    out = tmp_path / "coral"
    proc = run_cli("bundle", "--model", str(reference / REF_MODEL), "--out", str(out), "--version", "7")
    assert proc.returncode == 0, proc.stderr
    assert "1001 labels (metadata:imagenet_labels.txt)" in proc.stdout and "input quantization" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == "7" and manifest["provenance"]["tool"] == "shelfscan-agent bundle"
    top = run_cli("classify", str(reference / "samples" / "coffee.png"), "--bundle", str(out), "--json", check=True)
    assert json.loads(top.stdout)["results"][0]["top_k"][0]["label"] == "espresso"
    again = run_cli("bundle", "--model", str(reference / REF_MODEL), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_model_without_labels_needs_them(tiny_models, tmp_path):
    proc = run_cli("bundle", "--model", str(tiny_models["float_softmax"]), "--out", str(tmp_path / "b"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"shelfscan-agent bundle: error: {tiny_models['float_softmax']}: no labels in its metadata: pass --labels FILE"
    ]
    ok = run_cli(
        "bundle",
        "--model",
        str(tiny_models["float_softmax"]),
        "--labels",
        str(tiny_models["labels"]),
        "--mean",
        "0",
        "--std",
        "255",
        "--out",
        str(tmp_path / "b"),
    )
    assert ok.returncode == 0 and "normalization options" in ok.stdout, ok.stderr
