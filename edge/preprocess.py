"""The one preprocessing implementation shared by trainer, converter and device.

Training-time and device-time preprocessing that differ by a colour swap, a crop or a
normalization constant lose accuracy silently. So the definition lives here once, as a
:class:`PreprocessSpec` that is written into every bundle manifest, and the trainer and
converter import :class:`Preprocessor` instead of re-implementing it.

Pipeline: decoded pixels (BGR frame, RGB array, PIL image or file bytes) -> centre crop or
stretch -> resize -> model colour order -> ``(x - mean) / std`` -> quantized to the model's
input dtype, written into one preallocated buffer so the hot path allocates nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge import resample
from edge.errors import ImageError
from edge.resample import resize_antialias

ColorOrder = Literal["RGB", "BGR"]
InputDType = Literal["float32", "uint8", "int8"]

#: Named normalizations, as (mean, std) on 0..255 pixel values, for CLI flags and docs.
NORMALIZATIONS: dict[str, tuple[float, float]] = {
    "minus_one_to_one": (127.5, 127.5),  # Keras mobilenet_v2 / inception_v3, Teachable Machine
    "zero_to_one": (0.0, 255.0),  # Model Maker float models
    "raw": (0.0, 1.0),  # model expects 0..255 floats
}

# INTER_LINEAR_EXACT, not INTER_LINEAR: the latter's SIMD paths round differently on NEON and x86
# (1 level in ~20 % of the values, `make check-arm64`), so a model trained on x86 would see other
# pixels on the Pi. The exact variant is bit-identical on both; 0.31 vs 0.17 ms for 480x480 -> 224.
_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR_EXACT, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
Interpolation = Literal["bilinear_antialias", "bilinear", "area", "nearest"]
_DTYPE_RANGE = {"uint8": (0, 255), "int8": (-128, 127)}


class PreprocessSpec(BaseModel):
    """How camera pixels become model input; stored verbatim in the bundle manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    height: int = Field(gt=0, le=8192, description="Model input height in pixels.")
    width: int = Field(gt=0, le=8192, description="Model input width in pixels.")
    color_order: ColorOrder = Field("RGB", description="Channel order the model was trained on.")
    resize: Literal["center_crop", "stretch"] = Field(
        "center_crop",
        description="center_crop keeps the aspect ratio by cropping the largest centred "
        "window of the input's aspect ratio; stretch resizes the whole frame.",
    )
    crop_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="Fraction of the centred window kept (0.875 = Inception eval crop)."
    )
    interpolation: Interpolation = Field(
        "bilinear_antialias",
        description="bilinear_antialias: Pillow's BILINEAR (antialiased; how Coral, Teachable Machine and the "
        "reference models were evaluated); bilinear: OpenCV INTER_LINEAR_EXACT, no antialiasing (tf.image.resize "
        "default; bit-identical on x86 and aarch64); area; nearest.",
    )
    mean: tuple[float, float, float] = Field(
        (127.5, 127.5, 127.5), description="Per-channel mean on 0..255 values, in model channel order."
    )
    std: tuple[float, float, float] = Field(
        (127.5, 127.5, 127.5), description="Per-channel std on 0..255 values, in model channel order."
    )

    @classmethod
    def with_normalization(cls, name: str, **fields: Any) -> PreprocessSpec:
        """Build a spec from a named normalization in :data:`NORMALIZATIONS`."""
        if name not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {name!r}; choose one of {', '.join(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[name]
        return cls(mean=(mean,) * 3, std=(std,) * 3, **fields)


def crop_box(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """Return ``(y0, y1, x0, x1)`` of the source window that ``spec`` resizes to the model input."""
    if spec.resize == "stretch":
        win_h, win_w = float(height), float(width)
    else:
        target = spec.width / spec.height
        if width / height > target:
            win_h, win_w = float(height), height * target
        else:
            win_h, win_w = width / target, float(width)
    win_h, win_w = win_h * spec.crop_fraction, win_w * spec.crop_fraction
    h, w = max(1, round(win_h)), max(1, round(win_w))
    y0, x0 = (height - h) // 2, (width - w) // 2
    return y0, y0 + h, x0, x0 + w


def input_affine(
    spec: PreprocessSpec, dtype: InputDType, scale: float = 0.0, zero_point: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(a, b)`` so that the model input value is ``x * a + b`` for pixel ``x``.

    For float inputs that is the normalization; for quantized inputs the normalization and the
    quantization ``q = f / scale + zero_point`` are folded into one affine map.
    """
    mean = np.asarray(spec.mean, np.float64)
    std = np.asarray(spec.std, np.float64)
    if dtype == "float32":
        return 1.0 / std, -mean / std
    if scale <= 0:
        raise ValueError(f"a quantized {dtype} input needs a positive scale, got {scale}")
    a = 1.0 / (std * scale)
    return a, zero_point - mean * a


def _quantize_mode(dtype: InputDType, a: np.ndarray, b: np.ndarray) -> str:
    """Pick a lossless shortcut when the affine map is the identity within half a step.

    The reference uint8 models take raw pixels (``q = x``); computing the affine map in float
    and rounding would give the same values at many times the cost.
    """
    if dtype == "float32":
        return "affine"
    x = np.array([0.0, 255.0])
    shift = 0.0 if dtype == "uint8" else -128.0
    err = np.abs(np.outer(a, x) + b[:, None] - (x + shift)).max()
    if err <= 0.5 + 1e-6:
        return "copy" if dtype == "uint8" else "xor"
    return "affine"


def _affine_lut(a: np.ndarray, b: np.ndarray, dtype: InputDType) -> np.ndarray:
    """The affine map (and rounding, clipping) for every pixel value, per channel: ``(1, 256, 3)``.

    Pixels are 8-bit, so the whole normalization is a 256-entry table per channel, applied in
    one pass (~6x faster than the float arithmetic it replaces). The table is computed with
    the same float32 operations, so the values are identical.
    """
    table = np.empty((256, 3), np.float32)
    np.multiply(np.arange(256, dtype=np.uint8)[:, None], a, out=table)
    np.add(table, b, out=table)
    if dtype != "float32":
        lo, hi = _DTYPE_RANGE[dtype]
        np.clip(np.rint(table, out=table), lo, hi, out=table)
    return table.astype(dtype).reshape(1, 256, 3)


class Preprocessor:
    """Turns decoded images into the model's input tensor, reusing one buffer.

    ``buffer`` has shape ``(1, H, W, 3)`` and the model's input dtype; every ``from_*`` call
    overwrites and returns it, so copy the result if you keep it.
    """

    def __init__(
        self,
        spec: PreprocessSpec,
        dtype: InputDType = "float32",
        scale: float = 0.0,
        zero_point: int = 0,
        threads: int = 1,
    ) -> None:
        self.spec = spec
        self.threads = threads  # threads the compiled resampler may share a frame with (docs/preprocessing.md)
        self.dtype: InputDType = dtype
        self.scale, self.zero_point = float(scale), int(zero_point)
        h, w = spec.height, spec.width
        self.buffer = np.zeros((1, h, w, 3), np.dtype(dtype))
        self._pixels = self.buffer[0]  # the same memory, as (h, w, 3)
        self._resized = np.empty((h, w, 3), np.uint8)
        self._ordered = np.empty((h, w, 3), np.uint8)
        a, b = input_affine(spec, dtype, self.scale, self.zero_point)
        self.mode = _quantize_mode(dtype, a, b)
        self._lut = _affine_lut(a.astype(np.float32), b.astype(np.float32), dtype)
        self._interp = _INTERPOLATION.get(spec.interpolation, -1)
        self._boxes: dict[tuple[int, int], tuple[int, int, int, int]] = {}  # per frame size

    @property
    def resize_kernel(self) -> str:
        """The resize code this preprocessing runs: the compiled resampler's kernel (``c-neon``,
        ``c-avx2``, ...; ``pillow`` without it) or the OpenCV filter. Logged at start, in ``bench``
        and ``stats``, because it decides how far the frame path is from the bare invoke."""
        if self.spec.interpolation == "bilinear_antialias":
            return resample.kernel()
        return f"opencv-{self.spec.interpolation}"

    # -- entry points -------------------------------------------------------------------
    def from_bgr(self, frame: np.ndarray) -> np.ndarray:
        """Preprocess an OpenCV-style BGR ``uint8`` frame of shape ``(H, W, 3)``."""
        return self._run(frame, "BGR")

    def from_rgb(self, image: np.ndarray) -> np.ndarray:
        """Preprocess an RGB ``uint8`` array of shape ``(H, W, 3)``."""
        return self._run(image, "RGB")

    def from_pil(self, image: Any) -> np.ndarray:
        """Preprocess a PIL image (any mode; EXIF orientation applied)."""
        return self.from_rgb(pil_to_rgb(image))

    def from_bytes(self, data: bytes, name: str = "<bytes>") -> np.ndarray:
        """Decode encoded image bytes (JPEG, PNG, ...) and preprocess them."""
        return self.from_bgr(decode_image(data, name))

    def from_path(self, path: str | Path) -> np.ndarray:
        """Read and preprocess an image file."""
        return self.from_bgr(read_image(path))

    # -- pipeline -----------------------------------------------------------------------
    def resize_only(self, image: np.ndarray, order: ColorOrder) -> np.ndarray:
        """Crop, resize and reorder channels; returns ``uint8`` pixels in model channel order.

        The first half of the frame path alone, so the resize can be compared on its own
        (``scripts/arm64`` dumps it to compare aarch64 with x86); :meth:`normalize` is the second.
        """
        return self._resize_into(image, order, self._resized)

    def _resize_into(self, image: np.ndarray, order: ColorOrder, out: np.ndarray) -> np.ndarray:
        # Plain attribute checks: this runs per frame with cold caches, where a numpy dtype
        # comparison alone costs microseconds.
        shape = image.shape
        if len(shape) != 3 or shape[2] != 3 or image.dtype.char != "B":
            raise ImageError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
        size = shape[:2]
        box = self._boxes.get(size)
        if box is None:
            if len(self._boxes) > 64:  # a folder of photos of every size: keep the cache small
                self._boxes.clear()
            box = self._boxes[size] = crop_box(size[0], size[1], self.spec)
        swap = order != self.spec.color_order
        if self._interp < 0:
            return resize_antialias(image, box, out, swap, self.threads)
        y0, y1, x0, x1 = box
        if not swap:
            return cv2.resize(image[y0:y1, x0:x1], (self.spec.width, self.spec.height), out, 0, 0, self._interp)
        cv2.resize(image[y0:y1, x0:x1], (self.spec.width, self.spec.height), self._ordered, 0, 0, self._interp)
        return cv2.cvtColor(self._ordered, cv2.COLOR_BGR2RGB, out)  # same swap both ways

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Map ``uint8`` pixels in model order to the model's input dtype, into ``buffer``."""
        out = self._pixels
        if self.mode == "copy":
            np.copyto(out, pixels)
        elif self.mode == "xor":  # q = x - 128 for int8, exactly, without a float round trip
            np.bitwise_xor(pixels, 0x80, out=out.view(np.uint8))
        else:
            cv2.LUT(pixels, self._lut, dst=out)
        return self.buffer

    def _run(self, image: np.ndarray, order: ColorOrder) -> np.ndarray:
        if self.mode == "copy":  # the model takes raw pixels: resize straight into its buffer
            self._resize_into(image, order, self._pixels)
            return self.buffer
        return self.normalize(self._resize_into(image, order, self._resized))


# -- decoding -------------------------------------------------------------------------------
def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode image bytes to a BGR ``uint8`` array, rejecting empty, foreign and truncated data.

    OpenCV happily returns a half-grey picture for a truncated JPEG, which would then be
    classified as if it were real; the end-of-image marker check turns that into an error.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    buf = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    kind = _sniff(data)
    if image is None:
        if kind:
            raise ImageError(f"{name}: corrupt or truncated {kind} data (cannot decode)")
        raise ImageError(f"{name}: cannot decode image (not an image, or an unsupported format)")
    if kind == "JPEG" and b"\xff\xd9" not in data[-1024:]:
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


_MAGIC = {b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WebP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _sniff(data: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC.items() if data.startswith(magic)), None)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR ``uint8``; errors name the file and the reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


def pil_to_rgb(image: Any) -> np.ndarray:
    """Convert a PIL image of any mode to an RGB ``uint8`` array, honouring EXIF orientation."""
    from PIL import ImageOps  # Pillow is optional on devices

    image = ImageOps.exif_transpose(image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
