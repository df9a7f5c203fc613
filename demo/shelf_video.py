"""A shelf-pass video rendered from held-out photos: the camera pans along a shelf.

The held-out photos stand on a long shelf with empty shelf between them, wide enough that
the camera sees only shelf for a few frames between two products. That is what makes the
truth well defined: the agent counts one sighting per confident run of frames, so two
neighbouring products of the same class are two runs only if something else is seen between
them (the trained ``background`` class, ignored by the agent).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from demo.products import shelf_background
from edge.preprocess import read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSpec:
    width: int = 320
    height: int = 240
    # Held-out photos are shown this many pixels square: the full frame height, so a centred
    # product fills the agent's centre crop as a training photo does (a smaller photo with
    # shelf around it showed its border, which only background images had in training).
    photo: int = 240
    gap: int = 360  # empty shelf between products (> width: some frames see only shelf)
    step: int = 10  # pan per frame in pixels
    fps: float = 25.0


def pick_items(held_out: dict[str, list[Path]], count: int, seed: int = 0) -> list[tuple[str, Path]]:
    """``count`` (class, photo) pairs in shelf order, every class at least once when possible,
    and some classes twice in a row (the case a naive counter gets wrong)."""
    rng = np.random.default_rng(seed)
    classes = sorted(c for c, paths in held_out.items() if paths)
    pools = {c: [Path(p) for p in rng.permutation([str(p) for p in held_out[c]])] for c in classes}
    order = [str(c) for c in rng.permutation(classes)][:count]
    while len(order) < count:
        order.append(classes[int(rng.integers(len(classes)))])
    if len(order) > len(classes):  # a deliberate neighbouring pair
        k = int(rng.integers(len(classes) - 1))
        order[len(classes) :] = [order[k], *order[len(classes) : -1]]
        order.insert(k + 1, order.pop(len(classes)))
    items = []
    for c in order:
        if not pools[c]:
            pools[c] = [Path(p) for p in rng.permutation([str(p) for p in held_out[c]])]
        items.append((c, pools[c].pop()))
    return items


def render(items: list[tuple[str, Path]], out: Path, spec: VideoSpec = VideoSpec(), seed: int = 0) -> dict:
    """Write ``out`` (mp4) and ``out.with_suffix('.json')`` with the truth; returns the truth."""
    rng = np.random.default_rng(seed)
    total = spec.gap + len(items) * (spec.photo + spec.gap)
    pano = shelf_background(spec.height, total, rng)
    top = (spec.height - spec.photo) // 3
    x = spec.gap
    for _, path in items:
        photo = cv2.resize(read_image(path), (spec.photo, spec.photo), interpolation=cv2.INTER_AREA)
        pano[top : top + spec.photo, x : x + spec.photo] = photo
        x += spec.photo + spec.gap
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {out} (mp4v)")
    frames = 0
    for x0 in range(0, total - spec.width + 1, spec.step):
        frame = pano[:, x0 : x0 + spec.width].astype(np.float32)
        frame *= 0.92 + 0.08 * np.sin(x0 / 700.0)  # lighting changes along the aisle
        frame += rng.normal(0, 2.0, frame.shape).astype(np.float32)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
        frames += 1
    writer.release()
    counts = Counter(c for c, _ in items)
    truth = {
        "video": out.name,
        "frames": frames,
        "fps": spec.fps,
        "order": [c for c, _ in items],
        "photos": [str(p) for _, p in items],
        "counts": dict(sorted(counts.items())),
    }
    out.with_suffix(".json").write_text(json.dumps(truth, indent=2) + "\n")
    log.info("shelf video %s: %d products, %d frames at %.0f fps", out, len(items), frames, spec.fps)
    return truth
