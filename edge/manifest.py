"""The versioned ``manifest.json`` of a model bundle: the contract between the three roles.

The trainer records how pixels were prepared, the converter records what the ``.tflite`` file
expects, and the device refuses any bundle whose parts disagree. Unknown keys are rejected so
that a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from edge.bounds import Overlap, Share
from edge.errors import BundleError
from edge.preprocess import PreprocessSpec

SCHEMA_ID: Final = "shelfscan.bundle"  # Final: its type is the literal the schema field accepts
SCHEMA_VERSION = 2  # the newest this reader knows; see version_for()
SUPPORTED_VERSIONS = frozenset({1, 2})
MANIFEST_NAME = "manifest.json"

TensorDType = Literal["float32", "float16", "uint8", "int8", "int16"]
Task = Literal["classify", "detect"]
DetectionFormat = Literal["centernet", "tflite_postprocess"]

#: The outputs each detection format has, by role (docs/detector.md).
DETECTION_OUTPUTS: dict[str, tuple[str, ...]] = {
    "centernet": ("heatmap", "boxes"),
    "tflite_postprocess": ("boxes", "classes", "scores", "count"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FileRef(_Strict):
    """A file inside the bundle and the hash it must have."""

    path: str = Field(description="File name relative to the bundle directory.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex sha256 of the file.")
    size_bytes: int = Field(ge=0, description="File size in bytes.")


class LabelsRef(FileRef):
    count: int = Field(gt=0, description="Number of labels; must equal the model's output size.")


class Quantization(_Strict):
    scale: float = Field(gt=0, description="Real value = scale * (q - zero_point).")
    zero_point: int = Field(description="Quantized value that represents real zero.")


class TensorSpec(_Strict):
    dtype: TensorDType = Field(description="Element type of the tensor in the .tflite file.")
    shape: list[int] = Field(description="Tensor shape, batch first.")
    quantization: Quantization | None = Field(None, description="Present for integer tensors.")


class OutputSpec(TensorSpec):
    kind: Literal["probabilities", "logits", "sigmoid"] = Field(
        description="What the output values are: softmax probabilities, raw logits, or sigmoid scores."
    )


class DetectionSpec(_Strict):
    """How a detector's outputs become boxes (``task: detect``); the tensor facts come from the model."""

    format: DetectionFormat = Field(
        description="Output layout: centernet (heatmap + ltrb box distances per cell, decoded on the device) or "
        "tflite_postprocess (the four outputs of TFLite's detection post-processing op: boxes, classes, scores, "
        "count)."
    )
    stride: int | None = Field(
        None, gt=0, description="centernet only: input pixels per output cell (input size / heatmap size)."
    )
    score_threshold: Share = Field(0.3, description="Boxes scoring below this are dropped.")
    nms_iou: Overlap = Field(
        0.5,
        description="centernet: non-maximum suppression drops a box overlapping a better one by more than this "
        "IoU (tflite_postprocess models did their own suppression).",
    )
    max_detections: PositiveInt = Field(100, description="At most this many boxes per frame, best first.")
    crop_margin: float = Field(
        0.0,
        ge=0.0,
        le=0.5,
        description="How a box becomes the classifier's input (detect_classify): the box grown by this share of "
        "its width and height on every side, clipped to the frame ...",
    )
    crop_resize: Literal["stretch", "center_crop"] = Field(
        "center_crop",
        description="... then resized by the classifier's own preprocessing with this resize policy (center_crop, "
        "the classifiers' own policy, named crops of composed Freiburg val shelves best: docs/tracking.md).",
    )
    outputs: dict[str, TensorSpec] = Field(
        description="Output tensors by role: heatmap and boxes (centernet); boxes, classes, scores and count "
        "(tflite_postprocess). Roles are told apart by shape, never by output order."
    )

    @model_validator(mode="after")
    def _format_fields(self) -> DetectionSpec:
        roles = DETECTION_OUTPUTS[self.format]
        if sorted(self.outputs) != sorted(roles):
            raise ValueError(f"{self.format} outputs must be {', '.join(roles)}; got {', '.join(self.outputs)}")
        if self.format == "centernet" and self.stride is None:
            raise ValueError("centernet needs a stride")
        if self.format == "tflite_postprocess" and self.stride is not None:
            raise ValueError("stride is only for centernet")
        return self


class Provenance(_Strict):
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc), description="UTC creation time.")
    tool: str = Field("shelfscan", description="Program that wrote the bundle.")
    tool_version: str = Field(description="Version of that program.")
    source_model_sha256: str | None = Field(None, description="sha256 of the model it was converted from.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Accuracy and size figures.")
    training: dict[str, Any] = Field(default_factory=dict, description="Trainer configuration summary.")


def version_for(task: Task) -> int:
    """The oldest schema version that can describe a bundle of ``task``.

    Classifier bundles are still written as version 1, so devices running an older shelfscan
    keep loading them; detector bundles need version 2, which older readers refuse with
    "upgrade shelfscan" instead of misreading them.
    """
    return 1 if task == "classify" else 2


class Manifest(_Strict):
    schema_id: Literal["shelfscan.bundle"] = Field(SCHEMA_ID, alias="schema")
    schema_version: int = Field(
        1, description="Manifest format version: 1 (classifiers only) or 2 (adds task and detection)."
    )
    task: Task = Field(
        "classify",
        description="What the model does: classify (one label per image; output) or detect (boxes; detection). "
        "Absent in version 1, where it is always classify.",
    )
    name: str = Field(min_length=1, description="Model name, e.g. freiburg-mobilenet_v2.")
    version: str = Field(min_length=1, description="Model version, chosen by whoever trains it.")
    backbone: str = Field(description="Feature extractor, e.g. inception_v3 or mobilenet_v2.")
    variant: str = Field(description="Export variant: fp32, fp16, dynamic, int8, or imported.")
    model: FileRef = Field(description="The .tflite file.")
    labels: LabelsRef = Field(description="The labels file: class names in output order (detectors: class ids).")
    preprocessing: PreprocessSpec = Field(description="How camera pixels become model input.")
    input: TensorSpec = Field(description="The model's input tensor.")
    output: OutputSpec | None = Field(None, description="classify only: the model's one output tensor.")
    detection: DetectionSpec | None = Field(None, description="detect only: the outputs and how to decode them.")
    provenance: Provenance = Field(description="Who made the bundle, from what, and how good it was.")

    @model_validator(mode="after")
    def _task_fields(self) -> Manifest:
        if self.schema_version < 2 and {"task", "detection"} & self.model_fields_set:
            raise ValueError(f"task and detection need schema_version 2, this manifest says {self.schema_version}")
        if self.task == "classify":
            if self.output is None:
                raise ValueError("a classify manifest needs output")
            if self.detection is not None:
                raise ValueError("detection is only for task detect")
        else:
            if self.detection is None:
                raise ValueError("a detect manifest needs detection")
            if self.output is not None:
                raise ValueError("output is only for task classify (a detector's outputs are in detection.outputs)")
        return self

    def to_json(self) -> str:
        """The manifest as written: version 1 files carry no version-2 keys, so older readers accept them."""
        exclude = {name for name in ("output", "detection") if getattr(self, name) is None}
        if self.schema_version < 2:
            exclude.add("task")
        return self.model_dump_json(by_alias=True, indent=2, exclude=exclude) + "\n"


def format_validation_error(exc: ValidationError, name: str) -> str:
    """One line: the first problem with its field path, plus how many more there are."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{name}: {where}: {msg}{more}"


def parse_manifest(text: str, name: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate manifest text; the version is checked before the fields."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{name}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{name}: expected a JSON object")
    if raw.get("schema") != SCHEMA_ID:
        raise BundleError(f"{name}: schema is {raw.get('schema')!r}, expected {SCHEMA_ID!r}")
    version = raw.get("schema_version")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        raise BundleError(
            f"{name}: unknown schema version {version!r} (this shelfscan reads {supported}; upgrade shelfscan)"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(format_validation_error(exc, name)) from None
