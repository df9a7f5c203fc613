"""TFLite Metadata of a bare ``.tflite``: its embedded label file and input normalization, without TensorFlow.

Model Maker, Coral and TF Hub models carry what a user would otherwise type by hand: the label
file is packed into the model (the ``.tflite`` is also a zip archive of its associated files)
and the input tensor's ``NormalizationOptions`` say how pixels were scaled (a float Model Maker
model expects ``[0, 1]``, not the ``[-1, 1]`` a bare float model is assumed to take).

The model and its metadata are FlatBuffers. Rather than depend on ``tflite-support`` (its wheels
pin old numpy and TensorFlow) this reads the few fields needed straight from the buffers, with
the field numbers of ``tensorflow/lite/schema/schema.fbs`` and ``metadata_schema.fbs``:

* Model: ``buffers`` 4, ``metadata`` 6; Metadata: ``name`` 0, ``buffer`` 1; Buffer: ``data`` 0;
* ModelMetadata (``M001``): ``name`` 0, ``description`` 1, ``version`` 2, ``subgraph_metadata`` 3,
  ``associated_files`` 6; SubGraphMetadata: ``input_tensor_metadata`` 2, ``output_tensor_metadata`` 3;
  TensorMetadata: ``process_units`` 4, ``associated_files`` 6; ProcessUnit: ``options_type`` 0,
  ``options`` 1 (``NormalizationOptions`` is union member 1: ``mean`` 0, ``std`` 1);
  AssociatedFile: ``name`` 0, ``type`` 2 (``TENSOR_AXIS_LABELS`` = 2).
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge.errors import BundleError

METADATA_NAME = "TFLITE_METADATA"
NORMALIZATION = 1  # ProcessUnitOptions union member
TENSOR_AXIS_LABELS = 2  # AssociatedFileType


class _Table:
    """A FlatBuffers table: field ``i`` is at the offset the vtable's slot ``i`` gives (0: absent)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, vtable)[0]
        self.vtable = vtable

    def _field(self, i: int) -> int:
        slot = 4 + 2 * i
        if slot >= self.vsize:
            return 0
        off = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + off if off else 0

    def _deref(self, at: int) -> int:
        offset: int = struct.unpack_from("<I", self.buf, at)[0]
        return at + offset

    def scalar(self, i: int, fmt: str, default: int | float = 0) -> int | float:
        at = self._field(i)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def string(self, i: int) -> str | None:
        at = self._field(i)
        if not at:
            return None
        start = self._deref(at)
        n = struct.unpack_from("<I", self.buf, start)[0]
        return self.buf[start + 4 : start + 4 + n].decode("utf-8", "replace")

    def table(self, i: int) -> _Table | None:
        at = self._field(i)
        return _Table(self.buf, self._deref(at)) if at else None

    def _vector(self, i: int) -> tuple[int, int]:
        at = self._field(i)
        if not at:
            return 0, 0
        start = self._deref(at)
        return start + 4, struct.unpack_from("<I", self.buf, start)[0]

    def tables(self, i: int) -> list[_Table]:
        start, n = self._vector(i)
        return [_Table(self.buf, self._deref(start + 4 * k)) for k in range(n)]

    def floats(self, i: int) -> list[float]:
        start, n = self._vector(i)
        return list(struct.unpack_from(f"<{n}f", self.buf, start)) if n else []

    def data(self, i: int) -> bytes:
        start, n = self._vector(i)
        return self.buf[start : start + n]


def _root(buf: bytes) -> _Table:
    return _Table(buf, struct.unpack_from("<I", buf, 0)[0])


@dataclass(frozen=True)
class TFLiteMetadata:
    """What a model's metadata says; every field is ``None`` when the model does not say it."""

    name: str | None = None
    version: str | None = None
    description: str | None = None
    labels: list[str] | None = None  # the output's TENSOR_AXIS_LABELS file, one label per line
    labels_file: str | None = None
    mean: tuple[float, float, float] | None = None  # input NormalizationOptions, on the 0..255 scale of raw pixels
    std: tuple[float, float, float] | None = None


def _three(values: list[float]) -> tuple[float, float, float] | None:
    if len(values) == 1:
        return (values[0],) * 3
    return (values[0], values[1], values[2]) if len(values) == 3 else None


def read_tflite_metadata(model: str | Path) -> TFLiteMetadata:
    """The metadata of ``model``; an empty :class:`TFLiteMetadata` when it has none.

    Normalization is ``(x - mean) / std`` on the pixel values the model was exported for,
    which for image models is 0..255. A model file that is not a FlatBuffer is a
    :class:`BundleError`.
    """
    path = Path(model)
    buf = path.read_bytes()
    try:
        root = _root(buf)
        meta_buf = next(
            (root.tables(4)[int(m.scalar(1, "I"))].data(0) for m in root.tables(6) if m.string(0) == METADATA_NAME), b""
        )
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not a TFLite FlatBuffer ({exc})") from None
    if not meta_buf:
        return TFLiteMetadata()
    try:
        return _parse(meta_buf, buf)
    except (struct.error, IndexError) as exc:
        raise BundleError(f"{path}: unreadable TFLite metadata ({exc})") from None


def _parse(meta_buf: bytes, model_buf: bytes) -> TFLiteMetadata:
    meta = _root(meta_buf)
    subgraphs = meta.tables(3)
    mean = std = None
    labels_file = None
    if subgraphs:
        for tensor in subgraphs[0].tables(2)[:1]:  # the image input
            for unit in tensor.tables(4):
                options = unit.table(1)
                if int(unit.scalar(0, "B")) == NORMALIZATION and options is not None:
                    mean, std = _three(options.floats(0)), _three(options.floats(1))
        for tensor in subgraphs[0].tables(3):
            for f in tensor.tables(6):
                if int(f.scalar(2, "b")) == TENSOR_AXIS_LABELS and labels_file is None:
                    labels_file = f.string(0)
    labels = _packed_file(model_buf, labels_file) if labels_file else None
    return TFLiteMetadata(
        name=meta.string(0),
        version=meta.string(2),
        description=meta.string(1),
        labels=labels,
        labels_file=labels_file,
        mean=mean,
        std=std,
    )


def _packed_file(model_buf: bytes, name: str) -> list[str] | None:
    """Lines of the associated file ``name`` packed into the model's zip part (None when it is not packed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_buf)) as archive:
            text = archive.read(name).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError):
        return None
    return [line.strip() for line in text.splitlines() if line.strip()]
