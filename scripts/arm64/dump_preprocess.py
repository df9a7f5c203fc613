"""Run edge.preprocess over real photos in many configurations and save every result (.npz).

Run once by the x86 venv and once by the emulated aarch64 interpreter on the same files; compare.py
then requires every array to be identical. Covers decoding (OpenCV: PNG, JPEG), every interpolation
(the C resampler ``edge._resample`` for bilinear_antialias, OpenCV for the others), centre crop and
stretch, crop fractions, square / non-square / tiny (>14x downscale) inputs, the colour swap, and the
four normalization paths (uint8 copy, int8 xor, uint8 and float32 through the lookup table).

    python dump_preprocess.py OUT.npz IMAGE...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edge import resample
from edge.preprocess import Preprocessor, PreprocessSpec, read_image

SIZES = [(224, 224), (96, 128), (16, 16)]
RESIZES = [("center_crop", 1.0), ("center_crop", 0.875), ("stretch", 1.0)]
INTERPOLATIONS = ["bilinear_antialias", "bilinear", "area", "nearest"]
NORMALIZATIONS = {  # name: (spec fields, dtype, scale, zero point) -> the Preprocessor mode it takes
    "u8copy": ({"mean": (127.0,) * 3, "std": (127.5,) * 3}, "uint8", 2 / 255, 127),
    "i8xor": ({"mean": (128.0,) * 3, "std": (128.0,) * 3}, "int8", 1 / 128, 0),
    "u8affine": ({"mean": (123.7, 116.3, 103.5), "std": (58.4, 57.1, 57.4)}, "uint8", 0.0186, 114),
    "f32affine": ({"mean": (127.5,) * 3, "std": (127.5,) * 3}, "float32", 0.0, 0),
}


def dump(images: list[Path]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for i, path in enumerate(images):
        frame = read_image(path)
        arrays[f"{i}:{path.name}:decoded"] = frame
        for h, w in SIZES:
            for resize, fraction in RESIZES:
                for interp in INTERPOLATIONS:
                    spec = PreprocessSpec(
                        height=h, width=w, resize=resize, crop_fraction=fraction, interpolation=interp
                    )
                    pre = Preprocessor(spec)
                    for order in ("BGR", "RGB"):  # RGB: the model's order, no swap; BGR: swapped on the way
                        key = f"{i}:{path.name}:{h}x{w}:{resize}{fraction}:{interp}:{order}"
                        arrays[key] = pre.resize_only(frame, order).copy()
        for name, (fields, dtype, scale, zp) in NORMALIZATIONS.items():
            pre = Preprocessor(PreprocessSpec(height=224, width=224, **fields), dtype, scale, zp)
            arrays[f"{i}:{path.name}:norm:{name}:{pre.mode}"] = pre.from_path(path).copy()
    return arrays


def main() -> int:
    out, images = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    arrays = dump(images)
    np.savez(out, **arrays)
    print(f"{len(arrays)} arrays from {len(images)} images, resize kernel {resample.kernel()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
