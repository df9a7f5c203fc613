"""``shelfscan-agent bundle``: wrap a bare ``.tflite`` (Coral, Model Maker, TF Hub) as a bundle the agent runs.

``run`` only takes bundles (a manifest says the preprocessing, hashes guard the files, a
signature may vouch for them), so a model made elsewhere needs this step, on the device or
anywhere, without TensorFlow. Labels and input normalization come from the model's TFLite
Metadata when it has them (:mod:`edge.tflite_metadata`), else from ``--labels`` and the
preprocessing options; an option given on the command line wins over the metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge.errors import ShelfscanError

if TYPE_CHECKING:
    from edge.adapters import DetectorIO, ModelIO


def register(sub: Any, handlers: dict[str, Any]) -> None:
    from edge.cli_args import add_preprocess_args

    p = sub.add_parser(
        "bundle",
        help="wrap a bare .tflite (+ labels) into a bundle the agent can run",
        description="Wrap a bare .tflite classifier or detector into a bundle: labels and normalization from its "
        "TFLite Metadata when present (or --labels and the preprocessing options), manifest with hashes, optional "
        "signature.",
    )
    p.add_argument("--model", required=True, metavar="FILE", help="the bare .tflite")
    p.add_argument("--labels", metavar="FILE", help="labels file (default: the one packed in the model's metadata)")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory to write")
    p.add_argument("--name", help="bundle name (default: the metadata's name, else the file name)")
    p.add_argument("--version", default="1", help="bundle version (default 1)")
    p.add_argument("--sign-key", metavar="PEM", help="ed25519 private key to sign the bundle with")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    add_preprocess_args(p)
    p.add_argument("--json", action="store_true", help="print the written manifest as JSON")
    handlers["bundle"] = run


def run(args: argparse.Namespace) -> int:
    from edge.bundle import infer_spec, write_bundle
    from edge.cli_args import preprocess_overrides
    from edge.interpreter import inspect_detector, inspect_model
    from edge.labels import read_labels
    from edge.signing import sign_bundle
    from edge.tflite_metadata import read_tflite_metadata

    model = Path(args.model)
    if not model.is_file():
        raise ShelfscanError(f"{model}: model file not found")
    meta = read_tflite_metadata(model)
    overrides = preprocess_overrides(args)
    task: Literal["classify", "detect"] = "classify"
    given_normalization = "mean" in overrides
    io: ModelIO | DetectorIO
    try:
        _, io = inspect_model(model)
    except ShelfscanError as exc:
        if "is a detector" not in str(exc):
            raise
        _, io = inspect_detector(model)
        task = "detect"
        if overrides.get("resize") is None:
            overrides["resize"] = "stretch"  # detectors see whole frames (SSD, EfficientDet-Lite)
    # A quantized input says itself what it takes (raw pixels, as calibrated); a float input's
    # scaling is only known from the metadata (Model Maker: [0, 1]) or the user.
    from_metadata = not io.input.quantized and meta.mean is not None and meta.std is not None
    if from_metadata and not given_normalization:
        overrides |= {"mean": meta.mean, "std": meta.std}
    if args.labels:
        labels = read_labels(args.labels)
    elif meta.labels:
        labels = meta.labels
    elif task == "detect":
        labels = ["object"]
    else:
        raise ShelfscanError(f"{model}: no labels in its metadata: pass --labels FILE")
    spec = infer_spec(io, **overrides)
    name = args.name or meta.name or model.stem
    if given_normalization:
        normalization = "options"
    elif io.input.quantized:
        normalization = "input quantization"
    else:
        normalization = "metadata" if from_metadata else "assumed [-1, 1]"
    labels_from = str(args.labels) if args.labels else f"metadata:{meta.labels_file}" if meta.labels else "default"
    provenance = {
        "tool": "shelfscan-agent bundle",
        "source_model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "training": {"imported": {"model": model.name, "labels": labels_from, "normalization": normalization}},
    }
    write_bundle(
        args.out,
        model,
        labels,
        spec,
        name=name,
        version=args.version,
        backbone="unknown",
        variant="imported",
        provenance=provenance,
        overwrite=args.force,
        task=task,
    )
    signed = sign_bundle(args.out, args.sign_key) if args.sign_key else None
    if args.json:
        json.dump(json.loads((Path(args.out) / "manifest.json").read_text()), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(
            f"{args.out}: {task} bundle {name} {args.version}, {len(labels)} labels ({labels_from}), "
            f"input {spec.height}x{spec.width} {io.input.dtype}, normalization {normalization}"
            + (f", signed by {signed}" if signed else "")
        )
    return 0
