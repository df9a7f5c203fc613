"""Small pure functions over a TFLite interpreter, in the spirit of pycoral's ``adapters``.

They work on any interpreter with the standard Python API (``ai_edge_litert``,
``tflite_runtime`` or ``tf.lite``), so the rest of ``edge`` never touches backend details.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_DTYPE_NAMES = {np.float32: "float32", np.uint8: "uint8", np.int8: "int8", np.float16: "float16", np.int16: "int16"}
_PASS_THROUGH_OPS = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"}


@dataclass(frozen=True)
class TensorInfo:
    """What the model file says about one input or output tensor."""

    index: int
    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in ("uint8", "int8", "int16") and self.scale > 0


@dataclass(frozen=True)
class ModelIO:
    """The facts a bundle manifest is cross-checked against."""

    input: TensorInfo
    output: TensorInfo
    output_kind: str  # "probabilities", "logits" or "sigmoid"


@dataclass(frozen=True)
class DetectorIO:
    """A detector's tensors: its outputs by role (``heatmap``, ``boxes``, ...), never by position."""

    input: TensorInfo
    format: str  # "centernet" or "tflite_postprocess"
    outputs: dict[str, TensorInfo]
    stride: int | None = None  # centernet: input pixels per heatmap cell


@dataclass(frozen=True)
class DelegateSummary:
    """How much of the graph a delegate (XNNPACK on CPU) took over."""

    delegate_nodes: int
    delegated_ops: int
    total_ops: int

    @property
    def applied(self) -> bool:
        return self.delegate_nodes > 0


def dtype_name(dtype: Any) -> str:
    """Name of a numpy dtype class as written in manifests (``float32``, ``uint8``, ...)."""
    name: str = _DTYPE_NAMES.get(dtype, np.dtype(dtype).name)  # an Any key makes mypy's .get() Any
    return name


def tensor_info(details: dict[str, Any]) -> TensorInfo:
    """Convert one entry of ``get_input_details()`` / ``get_output_details()``."""
    scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorInfo(
        index=int(details["index"]),
        dtype=dtype_name(details["dtype"]),
        shape=tuple(int(d) for d in details["shape"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


def describe_io(interpreter: Any) -> ModelIO:
    """Describe a single-input, single-output classifier; anything else is rejected.

    Detectors have several outputs and their own :func:`describe_detector_io`.
    """
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"expected a classifier with 1 input and 1 output, found {len(inputs)} and {len(outputs)}")
    out = tensor_info(outputs[0])
    return ModelIO(tensor_info(inputs[0]), out, output_kind(interpreter, out.index))


POSTPROCESS_OP = "TFLite_Detection_PostProcess"
POSTPROCESS_ROLES = ("boxes", "classes", "scores", "count")  # the op's own output order
_NOT_A_DETECTOR = (
    "not a detector: expected the centernet outputs (heatmap (1, h, w, 1) and boxes (1, h, w, 4)) or the 4 TFLite "
    "detection post-processing outputs (boxes (1, N, 4), classes (1, N), scores (1, N), count (1,)); found {}"
)


def describe_detector_io(interpreter: Any) -> DetectorIO:
    """Describe a detector, identifying each output by its shape; anything else is a ``ValueError``.

    Two outputs ``(1, h, w, 1)`` and ``(1, h, w, 4)`` are the centernet heatmap and boxes (the
    stride is the input size over ``h, w``). Four outputs ``(1, N, 4)``, ``(1, N)``, ``(1, N)``,
    ``(1,)`` are TFLite's detection post-processing: see :func:`postprocess_roles` for how the
    two ``(1, N)`` outputs are told apart.
    """
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1:
        raise ValueError(f"expected a detector with 1 input, found {len(inputs)}")
    image = tensor_info(inputs[0])
    infos = [tensor_info(d) for d in outputs]
    found = ", ".join(str(list(o.shape)) for o in infos) or "no outputs"
    if len(infos) == 2 and all(len(o.shape) == 4 for o in infos):
        by_channels = {o.shape[3]: o for o in infos}
        heatmap, boxes = by_channels.get(1), by_channels.get(4)
        if heatmap and boxes and heatmap.shape[:3] == boxes.shape[:3] and heatmap.shape[0] == 1:
            return DetectorIO(image, "centernet", {"heatmap": heatmap, "boxes": boxes}, _stride(image, heatmap))
    if len(infos) == 4:
        roles = postprocess_roles(interpreter, outputs)
        if roles is not None:
            return DetectorIO(image, "tflite_postprocess", {role: infos[i] for role, i in roles.items()})
    raise ValueError(_NOT_A_DETECTOR.format(found))


def _stride(image: TensorInfo, heatmap: TensorInfo) -> int:
    if len(image.shape) != 4:
        raise ValueError(f"input shape {list(image.shape)} is not an NHWC image")
    (height, width), (rows, cols) = image.shape[1:3], heatmap.shape[1:3]
    if rows == 0 or cols == 0 or height % rows or width % cols or height // rows != width // cols:
        raise ValueError(f"heatmap {rows}x{cols} is not the input {height}x{width} divided by one integer stride")
    return height // rows


def postprocess_roles(interpreter: Any, outputs: list[dict[str, Any]]) -> dict[str, int] | None:
    """Positions in ``outputs`` of boxes, classes, scores and count, or ``None`` if the shapes do not fit.

    Boxes ``(1, N, 4)`` and count ``(1,)`` are told by shape. Classes and scores share the shape
    ``(1, N)``, and exports list them in different orders (EfficientDet-Lite: scores, boxes,
    count, classes), so they are told by which output of the ``TFLite_Detection_PostProcess``
    op produces them; a model without that op (rebuilt from other ops) by tensor names
    containing ``class`` / ``score``; failing both, by the op's order (classes first).
    """
    shapes = [tuple(int(d) for d in o["shape"]) for o in outputs]
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[0] == 1 and s[2] == 4]
    count = [i for i, s in enumerate(shapes) if s in ((1,), (1, 1))]
    if len(boxes) != 1 or len(count) != 1:
        return None
    n = shapes[boxes[0]][1]
    pair = [i for i, s in enumerate(shapes) if s == (1, n)]
    if len(pair) != 2:
        return None
    roles = {"boxes": boxes[0], "count": count[0]}
    position = {
        int(t): k
        for op in _original_ops(interpreter)
        if op["op_name"] == POSTPROCESS_OP
        for k, t in enumerate(op["outputs"])
    }
    if all(int(outputs[i]["index"]) in position for i in pair):
        by_role = {POSTPROCESS_ROLES[position[int(outputs[i]["index"])]]: i for i in pair}
        if set(by_role) == {"classes", "scores"}:
            return roles | by_role
    names = [str(outputs[i].get("name", "")).lower() for i in pair]
    for word, role, other in (("score", "scores", "classes"), ("class", "classes", "scores")):
        hits = [word in name for name in names]
        if hits[0] != hits[1]:
            named, rest = (pair[0], pair[1]) if hits[0] else (pair[1], pair[0])
            return roles | {role: named, other: rest}
    return roles | {"classes": pair[0], "scores": pair[1]}


def _original_ops(interpreter: Any) -> list[dict[str, Any]]:
    """Ops as written in the model; delegate kernels are appended after them by the runtime."""
    try:
        ops = interpreter._get_ops_details()
    except AttributeError:  # very old runtimes: no graph introspection
        return []
    return [op for op in ops if op["op_name"] != "DELEGATE"]


def output_kind(interpreter: Any, output_index: int) -> str:
    """Tell probabilities (softmax) from sigmoid scores and raw logits by the producing op."""
    producer = {int(t): op for op in _original_ops(interpreter) for t in op["outputs"]}
    tensor = output_index
    for _ in range(8):  # walk back through quantize/reshape wrappers
        op = producer.get(tensor)
        if op is None:
            return "logits"
        if op["op_name"] == "SOFTMAX":
            return "probabilities"
        if op["op_name"] == "LOGISTIC":
            return "sigmoid"
        if op["op_name"] not in _PASS_THROUGH_OPS or len(op["inputs"]) == 0:
            return "logits"
        tensor = int(op["inputs"][0])
    return "logits"


def delegate_summary(interpreter: Any) -> DelegateSummary:
    """Count delegate kernels and the original ops they replaced.

    The runtime lists the model's ops followed by one ``DELEGATE`` node per partition; the ops
    a partition replaced are those reachable backwards from its outputs without crossing its
    inputs.
    """
    try:
        ops = interpreter._get_ops_details()
    except AttributeError:
        return DelegateSummary(0, 0, 0)
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    producer = {int(t): i for i, op in enumerate(original) for t in op["outputs"]}
    taken: set[int] = set()
    for node in delegates:
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            i = producer.get(tensor)
            if tensor in boundary or i is None or i in taken:
                continue
            taken.add(i)
            stack.extend(int(t) for t in original[i]["inputs"] if int(t) >= 0)
    return DelegateSummary(len(delegates), len(taken), len(original))


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real values of quantized ``uint8``/``int8`` data; float data is returned as float32.

    The subtraction is done in int64, as pycoral does: ``uint8 - zero_point`` in the tensor's
    own dtype wraps around (0 - 128 becomes 128) and silently reorders scores.
    """
    if values.dtype.kind == "f" or scale <= 0:
        return values.astype(np.float32, copy=False)
    return (scale * (values.astype(np.int64) - zero_point)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


def top_k(scores: np.ndarray, k: int, scale: float = 0.0, zero_point: int = 0) -> list[tuple[int, float]]:
    """Indices and scores of the ``k`` best classes, best first (ties: lower index first).

    ``scores`` is read flat, so a ``(1, classes)`` output tensor can be passed as it is. Given
    the output's ``scale`` and ``zero_point``, raw ``uint8``/``int8`` outputs are ranked as they
    are (dequantization is monotonic) and only the winners are dequantized, exactly as
    :func:`dequantize` would. One stable sort, not a partition: this runs right after an invoke has
    pushed numpy's code and data out of the caches, where every numpy call costs microseconds, so
    fewer calls win over the partition's asymptotics (1001 classes, after an invoke: 43 -> 23-30 us).
    """
    flat = scores.reshape(-1)
    keys = -flat.astype(np.int64) if flat.dtype.kind in "iu" else -flat
    best = np.argsort(keys, kind="stable")[: max(1, k)]
    indices, values = best.tolist(), flat[best].tolist()
    if scale > 0 and flat.dtype.kind in "iu":
        return [(i, float(np.float32(scale * (v - zero_point)))) for i, v in zip(indices, values, strict=True)]
    return [(i, float(v)) for i, v in zip(indices, values, strict=True)]
