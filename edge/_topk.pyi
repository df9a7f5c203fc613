"""Types of the compiled ``edge/_topk.c`` (optional; ``edge.adapters.top_k`` falls back to numpy)."""

import numpy as np

def top_k(scores: np.ndarray, k: int, scale: float = 0.0, zero_point: int = 0, /) -> list[tuple[int, float]]: ...
