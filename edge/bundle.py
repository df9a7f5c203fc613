"""Model bundles: load and validate them, write them atomically, or wrap a bare ``.tflite``.

A bundle is a directory holding ``model.tflite``, ``labels.txt`` and ``manifest.json``.
Loading checks every promise the manifest makes (files present, hashes, label count, and the
tensors the ``.tflite`` really has) so a device never runs a model with the wrong labels or
the wrong preprocessing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import __version__
from edge.adapters import ModelIO, TensorInfo
from edge.errors import BundleError
from edge.labels import parse_labels, read_labels
from edge.manifest import (
    MANIFEST_NAME,
    FileRef,
    LabelsRef,
    Manifest,
    OutputSpec,
    Provenance,
    Quantization,
    TensorSpec,
    parse_manifest,
)
from edge.preprocess import NORMALIZATIONS, PreprocessSpec

log = logging.getLogger(__name__)

MODEL_NAME = "model.tflite"
LABELS_NAME = "labels.txt"


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk (or a bare model wrapped as one)."""

    root: Path
    manifest: Manifest
    labels: list[str]
    bare: bool = False

    @property
    def model_path(self) -> Path:
        return self.root / self.manifest.model.path

    @property
    def spec(self) -> PreprocessSpec:
        return self.manifest.preprocessing

    @property
    def model_id(self) -> dict[str, str]:
        """Name, version and sha256: what every message and log line identifies a model by."""
        m = self.manifest
        return {"name": m.name, "version": m.version, "sha256": m.model.sha256}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checked_file(root: Path, ref: FileRef, what: str) -> Path:
    path = root / ref.path
    if Path(ref.path).is_absolute() or ".." in Path(ref.path).parts:
        raise BundleError(f"{root}: {what} path {ref.path!r} must stay inside the bundle")
    if not path.is_file():
        raise BundleError(f"{root}: missing {what} file {ref.path}")
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise BundleError(
            f"{root}: sha256 mismatch for {ref.path}: manifest {ref.sha256[:12]}…, file {actual[:12]}… "
            "(file changed or corrupted after the bundle was written)"
        )
    return path


def load_bundle(root: str | Path, trusted_keys: dict[str, object] | None = None) -> Bundle:
    """Load a bundle directory and check signature, files, hashes and labels (not yet the tensors).

    With ``trusted_keys`` (from :func:`edge.signing.load_public_keys`) the bundle must carry a
    valid signature by one of them; the signature is checked before anything else is trusted.

    :func:`check_model_io` finishes the job once an interpreter has read the model; the
    runtime calls both, so ``Classifier.from_bundle`` never returns a half-checked bundle.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{root}: missing {MANIFEST_NAME} (is this a bundle directory?)")
    if trusted_keys is not None:
        from edge.signing import verify_bundle

        verify_bundle(root, trusted_keys)
    manifest = parse_manifest(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
    _checked_file(root, manifest.model, "model")
    labels_path = _checked_file(root, manifest.labels, "labels")
    labels = read_labels(labels_path)
    if len(labels) != manifest.labels.count:
        raise BundleError(
            f"{root}: {manifest.labels.path} has {len(labels)} labels but the manifest says {manifest.labels.count}"
        )
    return Bundle(root, manifest, labels)


def _tensor_problem(what: str, declared: TensorSpec, actual: TensorInfo) -> str | None:
    if declared.dtype != actual.dtype:
        return f"{what} dtype mismatch: manifest says {declared.dtype}, model has {actual.dtype}"
    if tuple(declared.shape) != actual.shape:
        return f"{what} shape mismatch: manifest says {list(declared.shape)}, model has {list(actual.shape)}"
    q = declared.quantization
    if actual.quantized:
        if q is None:
            return (
                f"{what} quantization missing from manifest (model has scale {actual.scale:g}, zp {actual.zero_point})"
            )
        if abs(q.scale - actual.scale) > 1e-6 * max(1.0, actual.scale) or q.zero_point != actual.zero_point:
            return (
                f"{what} quantization mismatch: manifest says scale {q.scale:g} zp {q.zero_point}, "
                f"model has scale {actual.scale:g} zp {actual.zero_point}"
            )
    return None


def check_model_io(bundle: Bundle, io: ModelIO) -> None:
    """Cross-check the manifest against what the interpreter read from the ``.tflite``."""
    m = bundle.manifest
    problems = [_tensor_problem("input", m.input, io.input), _tensor_problem("output", m.output, io.output)]
    shape = io.input.shape
    if len(shape) != 4 or shape[3] != 3:
        problems.append(f"input shape {list(shape)} is not an NHWC RGB image")
    elif (shape[1], shape[2]) != (m.preprocessing.height, m.preprocessing.width):
        problems.append(
            f"input shape mismatch: preprocessing makes {m.preprocessing.height}x{m.preprocessing.width}, "
            f"model takes {shape[1]}x{shape[2]}"
        )
    classes = io.output.shape[-1] if io.output.shape else 0
    if classes != len(bundle.labels):
        problems.append(f"label count {len(bundle.labels)} does not match the model's output size {classes}")
    if io.output_kind != m.output.kind:
        problems.append(f"output kind mismatch: manifest says {m.output.kind}, model gives {io.output_kind}")
    problems = [p for p in problems if p]
    if problems:
        raise BundleError(f"{bundle.root}: {problems[0]}")


def _tensor_spec(info: TensorInfo) -> dict[str, Any]:
    quant = Quantization(scale=info.scale, zero_point=info.zero_point) if info.quantized else None
    return {"dtype": info.dtype, "shape": list(info.shape), "quantization": quant}


def infer_spec(io: ModelIO, **overrides: Any) -> PreprocessSpec:
    """Preprocessing for a bare model: size from the input tensor, normalization from its quantization.

    A quantized input is assumed to take raw pixels (``q = x``, the convention of Coral,
    Model Maker and Teachable Machine exports); a float input defaults to ``[-1, 1]``, which
    callers should override when they know better.
    """
    info = io.input
    fields: dict[str, Any] = {"height": info.shape[1], "width": info.shape[2]}
    if info.quantized:
        shift = 0 if info.dtype == "uint8" else 128
        fields["mean"] = (float(info.zero_point + shift),) * 3
        fields["std"] = (1.0 / info.scale,) * 3
    else:
        mean, std = NORMALIZATIONS["minus_one_to_one"]
        fields["mean"], fields["std"] = (mean,) * 3, (std,) * 3
        if "mean" not in overrides:
            log.warning("float model without preprocessing arguments: assuming inputs in [-1, 1]")
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return PreprocessSpec(**fields)


def build_manifest(
    model_path: Path,
    labels: list[str],
    io: ModelIO,
    spec: PreprocessSpec,
    *,
    name: str,
    version: str,
    backbone: str,
    variant: str,
    labels_sha256: str,
    labels_size: int,
    provenance: dict[str, Any] | None = None,
) -> Manifest:
    """Describe a model file and its labels; tensor facts come from the model, never from callers."""
    prov = {"tool_version": __version__, **(provenance or {})}
    return Manifest(
        name=name,
        version=version,
        backbone=backbone,
        variant=variant,
        model=FileRef(path=model_path.name, sha256=sha256_file(model_path), size_bytes=model_path.stat().st_size),
        labels=LabelsRef(path=LABELS_NAME, sha256=labels_sha256, size_bytes=labels_size, count=len(labels)),
        preprocessing=spec,
        input=TensorSpec(**_tensor_spec(io.input)),
        output=OutputSpec(**_tensor_spec(io.output), kind=io.output_kind),
        provenance=Provenance(**prov),
    )


def open_bare(
    model: str | Path,
    labels: str | Path,
    spec: PreprocessSpec | None = None,
    threads: int | None = None,
    **spec_overrides: Any,
) -> tuple[Bundle, Any]:
    """Wrap a bare ``.tflite`` + labels file as an in-memory bundle.

    Returns the bundle and the interpreter that inspected it, so the model is read once.
    """
    from edge.runtime import inspect_model  # runtime imports this module

    model_path = Path(model)
    if not model_path.is_file():
        raise BundleError(f"{model_path}: model file not found")
    label_list = read_labels(labels)
    interpreter, io = inspect_model(model_path, threads)
    spec = spec or infer_spec(io, **spec_overrides)
    labels_bytes = Path(labels).read_bytes()
    manifest = build_manifest(
        model_path,
        label_list,
        io,
        spec,
        name=model_path.stem,
        version="unversioned",
        backbone="unknown",
        variant="imported",
        labels_sha256=hashlib.sha256(labels_bytes).hexdigest(),
        labels_size=len(labels_bytes),
    )
    bundle = Bundle(model_path.parent, manifest, label_list, bare=True)
    check_model_io(bundle, io)
    return bundle, interpreter


def write_bundle(
    dest: str | Path,
    model: bytes | str | Path,
    labels: list[str],
    spec: PreprocessSpec,
    *,
    name: str,
    version: str,
    backbone: str,
    variant: str,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a bundle atomically: build it in a temp dir beside ``dest``, validate, then rename.

    A device watching ``dest`` therefore sees either no bundle or a complete, loadable one.
    """
    from edge.runtime import inspect_model

    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise BundleError(f"{dest}: already exists (pass overwrite=True to replace it)")
    parse_labels("\n".join(labels), "labels")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        model_path = tmp / MODEL_NAME
        model_path.write_bytes(model if isinstance(model, bytes) else Path(model).read_bytes())
        labels_bytes = ("\n".join(labels) + "\n").encode("utf-8")
        (tmp / LABELS_NAME).write_bytes(labels_bytes)
        _, io = inspect_model(model_path)
        manifest = build_manifest(
            model_path, labels, io, spec, name=name, version=version, backbone=backbone, variant=variant,
            labels_sha256=hashlib.sha256(labels_bytes).hexdigest(), labels_size=len(labels_bytes),
            provenance=provenance,
        )  # fmt: skip
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        check_model_io(load_bundle(tmp), io)
        _fsync_tree(tmp)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote bundle %s (%s %s, %d labels)", dest, name, variant, len(labels))
    return load_bundle(dest)


def _fsync_tree(root: Path) -> None:
    for path in root.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
