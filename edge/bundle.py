"""Model bundles: load and validate them, write them atomically (bare ``.tflite`` files: :mod:`edge.bare_model`).

A bundle is a directory holding ``model.tflite``, ``labels.txt`` and ``manifest.json``.
Loading checks every promise the manifest makes (files present, hashes, label count, and the
tensors the ``.tflite`` really has) so a device never runs a model with the wrong labels or
the wrong preprocessing. A bundle holds a classifier (``task: classify``) or a detector
(``task: detect``); each is checked against its own kind of tensors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge import __version__
from edge.adapters import DetectorIO, ModelIO, TensorInfo
from edge.errors import BundleError
from edge.interpreter import inspect_detector, inspect_model
from edge.labels import parse_labels, read_labels
from edge.manifest import (
    MANIFEST_NAME,
    DetectionSpec,
    FileRef,
    LabelsRef,
    Manifest,
    OutputSpec,
    Provenance,
    Quantization,
    Task,
    TensorSpec,
    format_validation_error,
    parse_manifest,
    version_for,
)
from edge.preprocess import NORMALIZATIONS, PreprocessSpec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

MODEL_NAME = "model.tflite"
LABELS_NAME = "labels.txt"
#: What a caller may choose about a detector; everything else in ``detection`` is read from the model.
DETECTION_SETTINGS = ("score_threshold", "nms_iou", "max_detections", "crop_margin", "crop_resize")
_USE = {
    "classify": "shelfscan-agent classify / edge.runtime.Classifier",
    "detect": "shelfscan-agent detect / edge.detector.Detector",
}


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


def load_bundle(root: str | Path, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None) -> Bundle:
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


def require_task(bundle: Bundle, task: Task) -> None:
    """Refuse a bundle made for the other job, saying what opens it instead."""
    actual = bundle.manifest.task
    if actual != task:
        raise BundleError(f"{bundle.root}: is a {actual} bundle (task: {actual}), not a {task} one; use {_USE[actual]}")


def check_model_io(bundle: Bundle, io: ModelIO | DetectorIO) -> None:
    """Cross-check the manifest against what the interpreter read from the ``.tflite``.

    A classify bundle is checked against :class:`ModelIO` (one output), a detect bundle against
    :class:`DetectorIO` (outputs by role); the input and preprocessing checks are shared.
    """
    m = bundle.manifest
    problems = [_tensor_problem("input", m.input, io.input)]
    shape = io.input.shape
    if len(shape) != 4 or shape[3] != 3:
        problems.append(f"input shape {list(shape)} is not an NHWC RGB image")
    elif (shape[1], shape[2]) != (m.preprocessing.height, m.preprocessing.width):
        problems.append(
            f"input shape mismatch: preprocessing makes {m.preprocessing.height}x{m.preprocessing.width}, "
            f"model takes {shape[1]}x{shape[2]}"
        )
    if m.task == "detect":
        if not isinstance(io, DetectorIO):
            raise BundleError(f"{bundle.root}: is a detect bundle but its model was read as a classifier")
        problems += _detector_problems(bundle, io)
    else:
        if not isinstance(io, ModelIO):
            raise BundleError(f"{bundle.root}: is a classify bundle but its model was read as a detector")
        problems += _classifier_problems(bundle, io)
    problems = [p for p in problems if p]
    if problems:
        raise BundleError(f"{bundle.root}: {problems[0]}")


def _classifier_problems(bundle: Bundle, io: ModelIO) -> list[str | None]:
    output = bundle.manifest.output
    assert output is not None  # the manifest validator guarantees it for task classify
    problems = [_tensor_problem("output", output, io.output)]
    classes = io.output.shape[-1] if io.output.shape else 0
    if classes != len(bundle.labels):
        problems.append(f"label count {len(bundle.labels)} does not match the model's output size {classes}")
    if io.output_kind != output.kind:
        problems.append(f"output kind mismatch: manifest says {output.kind}, model gives {io.output_kind}")
    return problems


def _detector_problems(bundle: Bundle, io: DetectorIO) -> list[str | None]:
    spec = bundle.manifest.detection
    assert spec is not None  # the manifest validator guarantees it for task detect
    if spec.format != io.format:
        return [f"detection format mismatch: manifest says {spec.format}, model has the {io.format} outputs"]
    problems = [
        _tensor_problem(f"{role} output", declared, io.outputs[role]) for role, declared in spec.outputs.items()
    ]
    if spec.format == "centernet":
        if spec.stride != io.stride:
            problems.append(f"stride mismatch: manifest says {spec.stride}, model has {io.stride}")
        if len(bundle.labels) != 1:
            problems.append(f"a centernet detector is class-agnostic: it takes 1 label, not {len(bundle.labels)}")
    return problems


def _tensor_spec(info: TensorInfo) -> dict[str, Any]:
    quant = Quantization(scale=info.scale, zero_point=info.zero_point) if info.quantized else None
    return {"dtype": info.dtype, "shape": list(info.shape), "quantization": quant}


def infer_spec(io: ModelIO | DetectorIO, **overrides: Any) -> PreprocessSpec:
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


def detection_spec(io: DetectorIO, settings: Mapping[str, Any] | None = None) -> DetectionSpec:
    """The manifest's ``detection``: format, stride and outputs from the model, thresholds from ``settings``.

    ``settings`` may set :data:`DETECTION_SETTINGS`; it may also state the ``format`` and
    ``stride`` the caller expects, which are checked against the model, never copied from it.
    """
    chosen = dict(settings or {})
    for key in ("format", "stride"):
        if key in chosen and (expected := chosen.pop(key)) != getattr(io, key):
            raise BundleError(f"detection {key} mismatch: expected {expected}, the model has {getattr(io, key)}")
    unknown = sorted(set(chosen) - set(DETECTION_SETTINGS))
    if unknown:
        raise BundleError(
            f"detection settings {', '.join(unknown)}: only {', '.join(DETECTION_SETTINGS)} can be chosen "
            "(format, stride and outputs are read from the model)"
        )
    outputs = {role: TensorSpec(**_tensor_spec(info)) for role, info in io.outputs.items()}
    try:
        return DetectionSpec(format=io.format, stride=io.stride, outputs=outputs, **chosen)
    except ValidationError as exc:
        raise BundleError(format_validation_error(exc, "detection")) from None


def build_manifest(
    model_path: Path,
    labels: list[str],
    io: ModelIO | DetectorIO,
    spec: PreprocessSpec,
    *,
    name: str,
    version: str,
    backbone: str,
    variant: str,
    labels_sha256: str,
    labels_size: int,
    provenance: dict[str, Any] | None = None,
    task: Task = "classify",
    detection: Mapping[str, Any] | None = None,
) -> Manifest:
    """Describe a model file and its labels; tensor facts come from the model, never from callers.

    ``task="detect"`` takes a :class:`DetectorIO` and writes ``detection`` (see
    :func:`detection_spec`) instead of ``output``, as schema version 2; classifiers stay
    version 1 so that older devices keep reading them.
    """
    prov = {"tool_version": __version__, **(provenance or {})}
    task_fields: dict[str, Any]
    if task == "detect":
        if not isinstance(io, DetectorIO):
            raise BundleError(f"{model_path}: task detect needs a detector's outputs")
        task_fields = {"task": task, "detection": detection_spec(io, detection)}
    else:
        if not isinstance(io, ModelIO):
            raise BundleError(f"{model_path}: task classify needs a classifier's output")
        if detection:
            raise BundleError("detection settings are only for task detect")
        task_fields = {"output": OutputSpec(**_tensor_spec(io.output), kind=io.output_kind)}
    return Manifest(
        schema_version=version_for(task),
        **task_fields,
        name=name,
        version=version,
        backbone=backbone,
        variant=variant,
        model=FileRef(path=model_path.name, sha256=sha256_file(model_path), size_bytes=model_path.stat().st_size),
        labels=LabelsRef(path=LABELS_NAME, sha256=labels_sha256, size_bytes=labels_size, count=len(labels)),
        preprocessing=spec,
        input=TensorSpec(**_tensor_spec(io.input)),
        provenance=Provenance(**prov),
    )


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
    task: Task = "classify",
    detection: Mapping[str, Any] | None = None,
) -> Bundle:
    """Write a bundle atomically: build it in a temp dir beside ``dest``, validate, then rename.

    A device watching ``dest`` therefore sees either no bundle or a complete, loadable one.
    ``task="detect"`` writes a detector bundle: labels are the class names (``["facing"]`` for
    the class-agnostic centernet detector) and ``detection`` holds the chosen thresholds (see
    :func:`detection_spec`); the format, stride and outputs are read from the model.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise BundleError(f"{dest}: already exists (pass overwrite=True to replace it)")
    parse_labels("\n".join(labels), "labels")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    # mkdtemp makes the directory 0700: a copied bundle must stay readable by the agent's
    # DynamicUser service, so it gets the modes of a plain `mkdir` (0755) and its files 0644.
    tmp.chmod(0o755)
    try:
        model_path = tmp / MODEL_NAME
        model_path.write_bytes(model if isinstance(model, bytes) else Path(model).read_bytes())
        labels_bytes = ("\n".join(labels) + "\n").encode("utf-8")
        (tmp / LABELS_NAME).write_bytes(labels_bytes)
        _, io = inspect_detector(model_path) if task == "detect" else inspect_model(model_path)
        manifest = build_manifest(
            model_path,
            labels,
            io,
            spec,
            name=name,
            version=version,
            backbone=backbone,
            variant=variant,
            labels_sha256=hashlib.sha256(labels_bytes).hexdigest(),
            labels_size=len(labels_bytes),
            provenance=provenance,
            task=task,
            detection=detection,
        )
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        for f in (model_path, tmp / LABELS_NAME, tmp / MANIFEST_NAME):
            f.chmod(0o644)
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
    log.info("wrote %s bundle %s (%s %s, %d labels)", task, dest, name, variant, len(labels))
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
