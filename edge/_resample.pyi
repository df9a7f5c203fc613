"""Types of the compiled ``edge/_resample.c`` (optional; ``edge.resample`` falls back to Pillow)."""

import numpy as np

def resize(
    src: np.ndarray, y0: int, y1: int, x0: int, x1: int, dst: np.ndarray, swap: bool = False, threads: int = 1, /
) -> None: ...
def kernel() -> str: ...
