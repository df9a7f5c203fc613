"""``Detector``: a detect bundle bound to an interpreter, turning frames into :class:`Detections`.

The sibling of :class:`edge.runtime.Classifier`, sharing its runtime selection, preprocessing
and validation: stage one of the shelf pipeline finds the facings, a classifier names them.
The outputs are decoded by the pure functions in :mod:`edge.detect_decode`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from edge.adapters import DetectorIO, describe_detector_io
from edge.bare_model import open_bare_detector
from edge.bound_model import BoundModel
from edge.bundle import Bundle
from edge.delegates import DelegateSpec
from edge.detect_decode import FrameMap, decode_centernet, decode_postprocess, frame_map
from edge.detections import Detections
from edge.errors import BundleError, ShelfscanError
from edge.interpreter import default_threads, load_backend
from edge.manifest import DetectionSpec, Task, format_validation_error
from edge.preprocess import read_image


def detection_settings(spec: DetectionSpec, **overrides: float | int | None) -> DetectionSpec:
    """``spec`` with ``score_threshold`` / ``nms_iou`` / ``max_detections`` replaced, range-checked like a manifest."""
    chosen = {k: v for k, v in overrides.items() if v is not None}
    if not chosen:
        return spec
    try:
        return DetectionSpec.model_validate(spec.model_dump() | chosen)
    except ValidationError as exc:
        raise ShelfscanError(format_validation_error(exc, "detection")) from None


class Detector(BoundModel[DetectorIO]):
    """A validated detect bundle bound to an interpreter; turns images into boxes in frame pixels.

    ``score_threshold``, ``nms_iou`` and ``max_detections`` start from the manifest and may be
    overridden when opening. Not thread-safe: one detector per inference thread.
    """

    task: ClassVar[Task] = "detect"
    noun = "detector"

    @classmethod
    def read_io(cls, bundle: Bundle, interpreter: Any) -> DetectorIO:
        try:
            return describe_detector_io(interpreter)
        except ValueError as exc:
            raise BundleError(f"{bundle.model_path}: {exc}") from None

    def configure(
        self, *, score_threshold: float | None = None, nms_iou: float | None = None, max_detections: int | None = None
    ) -> None:
        """The manifest's decoding settings, with these overrides (``from_bundle``'s and ``from_file``'s options)."""
        assert self.bundle.manifest.detection is not None  # task detect: the manifest validator guarantees it
        self.settings = detection_settings(
            self.bundle.manifest.detection,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
        )
        self.format, self.stride = self.io.format, self.io.stride
        self._out = {role: info.index for role, info in self.io.outputs.items()}
        self._quant = {
            role: (o.scale, o.zero_point) if o.quantized else (0.0, 0) for role, o in self.io.outputs.items()
        }
        self._maps: dict[tuple[int, int], FrameMap] = {}  # per frame size

    def load_detail(self) -> str:
        return f", {self.io.format}"

    @classmethod
    def from_file(
        cls,
        model: str | Path,
        threads: int | None = None,
        *,
        labels: str | Path | None = None,
        score_threshold: float | None = None,
        nms_iou: float | None = None,
        max_detections: int | None = None,
        delegate: DelegateSpec | None = None,
        **spec_overrides: Any,
    ) -> Detector:
        """Open a bare ``.tflite`` with centernet outputs (stride inferred) or post-processing outputs.

        Preprocessing comes from ``spec_overrides`` or is inferred (see
        :func:`edge.bare_model.open_bare_detector`); ``labels`` names class ids (optional).
        """
        threads = threads or default_threads()
        bundle, interpreter = open_bare_detector(model, labels, threads, delegate=delegate, **spec_overrides)
        det = cls(
            bundle,
            interpreter,
            load_backend(),
            threads,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
            external_delegate=delegate,
        )
        if labels is None and det.format == "tflite_postprocess":
            det.labels = []  # its class ids have no names: shown as "class N", never as the placeholder label
        return det

    # -- inference --------------------------------------------------------------------------
    def frame_map(self, frame_height: int, frame_width: int) -> FrameMap:
        """Input-to-frame coordinate map for this frame size (cached: a camera has one size)."""
        key = (frame_height, frame_width)
        fmap = self._maps.get(key)
        if fmap is None:
            if len(self._maps) > 64:  # a folder of photos of every size: keep the cache small
                self._maps.clear()
            fmap = self._maps[key] = frame_map(frame_height, frame_width, self.bundle.spec)
        return fmap

    def decode(self, frame_height: int, frame_width: int) -> Detections:
        """Boxes from the last invoke, in pixels of a ``frame_height`` x ``frame_width`` frame."""
        fmap, s, get = self.frame_map(frame_height, frame_width), self.settings, self.interpreter.get_tensor
        if self.format == "centernet":
            return decode_centernet(
                get(self._out["heatmap"]),
                get(self._out["boxes"]),
                self.stride or 1,
                fmap,
                score_threshold=s.score_threshold,
                nms_iou=s.nms_iou,
                max_detections=s.max_detections,
                heatmap_quantization=self._quant["heatmap"],
                boxes_quantization=self._quant["boxes"],
            )
        out = self._out
        return decode_postprocess(
            get(out["boxes"]),
            get(out["classes"]),
            get(out["scores"]),
            get(out["count"]),
            fmap,
            score_threshold=s.score_threshold,
            max_detections=s.max_detections,
            quantization=self._quant,
        )

    def detect_bgr(self, frame: np.ndarray) -> Detections:
        """Boxes in an OpenCV BGR frame: the agent's hot path."""
        self.preprocessor.from_bgr(frame)
        self.run_model()
        return self.decode(frame.shape[0], frame.shape[1])

    def detect_rgb(self, image: np.ndarray) -> Detections:
        self.preprocessor.from_rgb(image)
        self.run_model()
        return self.decode(image.shape[0], image.shape[1])

    def detect_path(self, path: str | Path) -> Detections:
        return self.detect_bgr(read_image(path))

    def label(self, class_id: int | None) -> str:
        """The label for a class id (class-agnostic detectors: their one label)."""
        if class_id is None:
            return self.labels[0]
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else f"class {class_id}"

    def describe(self) -> dict[str, Any]:
        """Model and runtime facts for logs, ``--json`` output and benchmark reports (as ``Classifier``'s)."""
        return super().describe() | {
            "task": "detect",
            "detection": self.settings.model_dump(exclude={"outputs"}),
            "labels": self.labels,
        }
