"""Where the demo's backbone weights come from: ImageNet when it can have them, else the shared
MobileNetV2 file, else random (and a banner that says what that costs).

The demo must run on a fresh, offline machine, so it never fails for want of weights; but it
says loudly when it trains from random ones, because that changes what the figures mean.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The one weights file ../shared holds (tests and benchmarks use it too); MobileNetV2 only.
SHARED_MOBILENET = Path("models/mobilenet_v2_1.0_224_imagenet/mobilenet_v2_1.0_224_imagenet_notop.weights.h5")
DETECTOR_BACKBONE = "mobilenet_v2"  # the facing detector has no other backbone


@functools.cache
def download_host_answers(timeout: float = 3.0) -> bool:
    """Whether Keras could download ImageNet weights now; asked once per demo (offline it costs the timeout)."""
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def shared_weights(backbone: str) -> Path | None:
    """The shared ImageNet file for ``backbone`` ($SHELFSCAN_SHARED or ../shared), when there is one."""
    if backbone != DETECTOR_BACKBONE:
        return None
    root = Path(os.environ.get("SHELFSCAN_SHARED", REPO.parent / "shared"))
    path = root / SHARED_MOBILENET
    return path.resolve() if path.is_file() else None


def resolve_weights(choice: str | None, backbone: str) -> str:
    """``choice`` when given; else imagenet when the Keras cache has the file or the download host
    answers; else the shared MobileNetV2 file (``mobilenet_v2`` only); else ``none``."""
    from trainer.backbones import get_backbone, keras_cache_dir

    if choice:
        return choice
    if (keras_cache_dir() / get_backbone(backbone).imagenet_file).is_file() or download_host_answers():
        return "imagenet"
    shared = shared_weights(backbone)
    return str(shared) if shared else "none"


def random_weights_banner(backbone: str, real_data: bool, role: str = "classifier") -> str:
    """What random weights mean for ``role`` (classifier or detector) and how to get the real ones."""
    from trainer.backbones import get_backbone, keras_cache_dir

    bb = get_backbone(backbone)
    if role == "detector":
        expect = "a detector that misses and merges facings: the counts below will be off"
        fix = f"DETECTOR_WEIGHTS=/path/to/mobilenet_v2.h5 (or have ../shared/{SHARED_MOBILENET})"
    else:
        expect = (
            "little better than chance on real photos"
            if real_data
            else "90-100 % on these generated products (colour, shape and print are easy), far less on real photos"
        )
        fix = "WEIGHTS=/path/to/backbone.h5"
    bar = "!" * 96
    return (
        f"{bar}\n!!  NO IMAGENET WEIGHTS (offline, nothing in the Keras cache): the {role}'s {backbone} starts "
        "from RANDOM weights.\n"
        f"!!  Expect {expect}.\n"
        f"!!  The real thing: put {bb.imagenet_file} in {keras_cache_dir()}/\n"
        f"!!  (or run once online), or pass {fix}.\n{bar}"
    )
