"""Rewrite a converted ``.tflite`` without the bytes a device never needs.

The TFLite converter writes, for every per-channel quantized tensor, its own int64 zero-point
vector — all zeros for int8 weights and int32 biases, one 8-byte entry per output channel,
twice per convolution. In a per-channel int8 MobileNetV2 that is ~8 % of the file. The
flatbuffer format lets tables share a vector, so each distinct zero-point vector is written
once and referenced by every tensor that has it: same model, same numbers, smaller file.
Intermediate tensor names (debug strings) are dropped too; the input and output tensors keep
theirs, and the signature stays. Weight buffers stay 16-byte aligned, as the converter wrote them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_TFLITE_IDENTIFIER = b"TFL3"
_BUFFER_ALIGNMENT = 16


def _sharing_builder(size: int) -> Any:
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        """A builder that writes each distinct int64 vector once and aligns byte buffers to 16."""

        def __init__(self, initial: int) -> None:
            super().__init__(initial)
            self.shared: dict[bytes, int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 (flatbuffers' name)
            if x.dtype == np.int64:
                key = x.astype("<i8").tobytes()
                if key not in self.shared:
                    self.shared[key] = super().CreateNumpyVector(x)
                return self.shared[key]
            if x.dtype == np.uint8:
                # Prep pads so that the payload written next starts 16-aligned; CreateByteVector's own
                # 4-byte Prep then adds nothing. Both are the Builder's public API (Prep is what
                # generated code calls for structs), so no builder internals are touched here.
                self.Prep(_BUFFER_ALIGNMENT, x.size)
                return self.CreateByteVector(x.tobytes())
            return super().CreateNumpyVector(x)

    return SharingBuilder(size)


def compact_tflite(flatbuffer: bytes, rewrite: Callable[[Any], None] | None = None) -> bytes:
    """Return ``flatbuffer`` with shared zero-point vectors and no intermediate tensor names.

    ``rewrite`` edits the unpacked model (the schema's ``ModelT``) in place first, so a variant
    that changes the model is unpacked and packed once. Models that use external buffers
    (over 2 GB) are returned unchanged.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    if any(b.offset for b in model.buffers or []):
        return flatbuffer
    if rewrite is not None:
        rewrite(model)
    for graph in model.subgraphs:
        keep = set(graph.inputs.tolist() if graph.inputs is not None else [])
        keep |= set(graph.outputs.tolist() if graph.outputs is not None else [])
        for index, tensor in enumerate(graph.tensors):
            if index not in keep:
                tensor.name = None
    builder = _sharing_builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    out = bytes(builder.Output())
    log.debug("compacted %d -> %d bytes (%d shared zero-point vectors)", len(flatbuffer), len(out), len(builder.shared))
    return out
