"""The versioned ``manifest.json`` of a model bundle: the contract between the three roles.

The trainer records how pixels were prepared, the converter records what the ``.tflite`` file
expects, and the device refuses any bundle whose parts disagree. Unknown keys are rejected so
that a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import BundleError
from edge.preprocess import PreprocessSpec

SCHEMA_ID = "shelfscan.bundle"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
MANIFEST_NAME = "manifest.json"

TensorDType = Literal["float32", "float16", "uint8", "int8", "int16"]


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


class Provenance(_Strict):
    created: datetime = Field(default_factory=lambda: datetime.now(UTC), description="UTC creation time.")
    tool: str = Field("shelfscan", description="Program that wrote the bundle.")
    tool_version: str = Field(description="Version of that program.")
    source_model_sha256: str | None = Field(None, description="sha256 of the model it was converted from.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Accuracy and size figures.")
    training: dict[str, Any] = Field(default_factory=dict, description="Trainer configuration summary.")


class Manifest(_Strict):
    schema_id: Literal["shelfscan.bundle"] = Field(SCHEMA_ID, alias="schema")
    schema_version: int = Field(SCHEMA_VERSION, description="Manifest format version.")
    name: str = Field(min_length=1, description="Model name, e.g. freiburg-mobilenet_v2.")
    version: str = Field(min_length=1, description="Model version, chosen by whoever trains it.")
    backbone: str = Field(description="Feature extractor, e.g. inception_v3 or mobilenet_v2.")
    variant: str = Field(description="Export variant: fp32, fp16, dynamic, int8, or imported.")
    model: FileRef
    labels: LabelsRef
    preprocessing: PreprocessSpec
    input: TensorSpec
    output: OutputSpec
    provenance: Provenance

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def format_validation_error(exc: ValidationError, name: str) -> str:
    """One line: the first problem with its field path, plus how many more there are."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
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
