"""The live page's boxes come from a real detect_classify pipeline: a tiny detector whose boxes are known in
advance (tests/tiny_detectors.py: a white square on black is one box) and the reference classifier on the crops.
What the frame loop keeps is the pipeline's own boxes and labels; the drawn frame shows them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from edge.agent_setup import build_pipeline
from edge.bundle import write_bundle
from edge.config import CountingConfig, InferenceConfig
from edge.detector import Detector
from edge.labels import read_labels
from edge.live_frame_image import draw
from edge.live_state import LiveState
from edge.preprocess import PreprocessSpec
from edge.runtime import Classifier
from edge.shelfmap_cli import colour
from tests.test_detector import STRETCH, detect_bundle, expected_boxes, shelf_frame

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def detector_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_detectors import centernet_model, convert

    root = tmp_path_factory.mktemp("live-det")
    model = root / "centernet_float.tflite"
    model.write_bytes(convert(centernet_model()))
    return detect_bundle(root / "det", model, STRETCH)


def test_live_frame_shows_the_pipelines_boxes_and_labels(detector_bundle, reference, tmp_path):
    clf_bundle = tmp_path / "clf"
    spec = PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3)
    write_bundle(
        clf_bundle,
        reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite",
        read_labels(reference / "imagenet_labels.txt"),
        spec,
        name="imagenet-ref",
        version="1",
        backbone="mobilenet_v2",
        variant="int8",
    )
    models = {
        "detector": Detector.from_bundle(detector_bundle, threads=1),
        "classifier": Classifier.from_bundle(clf_bundle, threads=1),
    }
    pipeline = build_pipeline(models, InferenceConfig(pipeline="detect_classify"), CountingConfig())
    agent = SimpleNamespace(pipeline=pipeline, frames_done=0, scan=None)
    state = LiveState(cast(Any, agent))
    cells = [(1, 1), (3, 5)]
    frame = shelf_frame(cells)
    state.watch()
    pipeline.process(frame, 0.0)
    state.frame_done(frame, 0.0)
    assert state.frame is not None and state.frame.image is frame
    got = np.array(sorted([b.x0, b.y0, b.x1, b.y1] for b in state.frame.boxes), np.float32)
    want = np.array(sorted(expected_boxes(cells).tolist()), np.float32)
    np.testing.assert_allclose(got, np.clip(want, 0, None), atol=2)
    labels = [b.label for b in state.frame.boxes]
    assert all(isinstance(lb, str) and lb for lb in labels), labels
    drawn = draw(state.frame, max_width=1000)
    for box in state.frame.boxes:  # the right edge's middle: inside the frame, on the box's outline
        x, y = min(box.x1, drawn.shape[1] - 1), (box.y0 + box.y1) // 2
        assert tuple(drawn[y, x]) == colour(str(box.label)), (box, drawn[y, x])
