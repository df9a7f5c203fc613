"""Bare models: a ``.tflite`` (and labels) from elsewhere, wrapped as an in-memory bundle.

Model Maker, Coral and EfficientDet-Lite models come without a manifest. These functions give
them one that says so (``variant: imported``, version ``unversioned``), with preprocessing
inferred from the input tensor unless the caller says otherwise, and check it against the
model's tensors like any bundle, so the runtime has one kind of thing to bind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.adapters import DetectorIO, ModelIO
from edge.bundle import Bundle, build_manifest, check_model_io, infer_spec
from edge.delegates import DelegateSpec
from edge.errors import BundleError
from edge.interpreter import inspect_detector, inspect_model
from edge.labels import read_labels
from edge.manifest import Task
from edge.preprocess import PreprocessSpec


def open_bare(
    model: str | Path,
    labels: str | Path,
    spec: PreprocessSpec | None = None,
    threads: int | None = None,
    delegate: DelegateSpec | None = None,
    **spec_overrides: Any,
) -> tuple[Bundle, Any]:
    """Wrap a bare ``.tflite`` + labels file as an in-memory bundle.

    Returns the bundle and the interpreter that inspected it, so the model is read once.
    """
    model_path = _bare_model_path(model)
    label_list = read_labels(labels)
    interpreter, io = inspect_model(model_path, threads, delegate)
    spec = spec or infer_spec(io, **spec_overrides)
    return _bare_bundle(model_path, label_list, Path(labels).read_bytes(), io, spec), interpreter


def _bare_model_path(model: str | Path) -> Path:
    model_path = Path(model)
    if not model_path.is_file():
        raise BundleError(f"{model_path}: model file not found")
    return model_path


def _bare_bundle(
    model_path: Path,
    label_list: list[str],
    labels_bytes: bytes,
    io: ModelIO | DetectorIO,
    spec: PreprocessSpec,
    task: Task = "classify",
    detection: Mapping[str, Any] | None = None,
) -> Bundle:
    """The in-memory bundle of a bare model: a manifest that says it was imported, checked against ``io``."""
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
        task=task,
        detection=detection,
    )
    bundle = Bundle(model_path.parent, manifest, label_list, bare=True)
    check_model_io(bundle, io)
    return bundle


def open_bare_detector(
    model: str | Path,
    labels: str | Path | None = None,
    threads: int | None = None,
    detection: Mapping[str, Any] | None = None,
    delegate: DelegateSpec | None = None,
    **spec_overrides: Any,
) -> tuple[Bundle, Any]:
    """Wrap a bare detector ``.tflite`` (centernet or post-processing outputs) as an in-memory detect bundle.

    Labels are optional (default: one label, ``object``, which names a class-agnostic
    detector's boxes; :meth:`edge.detector.Detector.from_file` shows a post-processing model's
    unnamed class ids as ``class N``). Preprocessing is inferred as for classifiers, except that the frame is
    stretched by default: detectors are trained on whole frames (SSD, EfficientDet-Lite and
    the centernet contract all resize without cropping).
    """
    model_path = _bare_model_path(model)
    label_list = read_labels(labels) if labels is not None else ["object"]  # read_labels names a missing file
    labels_bytes = Path(labels).read_bytes() if labels is not None else b"object\n"
    interpreter, io = inspect_detector(model_path, threads, delegate)
    overrides = dict(spec_overrides)
    if overrides.get("resize") is None:
        overrides["resize"] = "stretch"
    spec = infer_spec(io, **overrides)
    return _bare_bundle(model_path, label_list, labels_bytes, io, spec, "detect", detection), interpreter
