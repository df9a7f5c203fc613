"""The device side of the facing detector: bundles, decoding, Detector, metrics and ``shelfscan-agent detect``.

Real TFLite models throughout (tests/tiny_detectors.py): their weights are set by hand, so
every expected box is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundle import write_bundle
from edge.detect_decode import decode_centernet, decode_postprocess, frame_map
from edge.detection_metrics import average_precision, count_errors, detection_report, evaluate_detections
from edge.detections import Detections, box_iou, nms
from edge.detector import Detector
from edge.errors import BundleError, ShelfscanError
from edge.labels import read_labels
from edge.manifest import parse_manifest
from edge.preprocess import PreprocessSpec
from edge.runtime import Classifier
from tests.conftest import run_cli
from tests.tiny_detectors import HEIGHT, PP_BOXES, PP_CLASSES, PP_SCORES, PP_SIZE, STRIDE, WIDTH, cell_box

STRETCH = PreprocessSpec(height=HEIGHT, width=WIDTH, resize="stretch")


@pytest.fixture(scope="module")
def detectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.prebuilt import build_or_load

    return build_or_load("detectors", tmp_path_factory.mktemp("tiny_detectors"))


def detect_bundle(dest: Path, model: Path, spec: PreprocessSpec = STRETCH, **kwargs) -> Path:
    fields = {"name": "facings", "version": "1", "backbone": "tiny", "variant": model.stem, "task": "detect"}
    write_bundle(dest, model, kwargs.pop("labels", ["facing"]), spec, **(fields | kwargs))
    return dest


def classify_bundle(dest: Path, tiny_models: dict[str, Path]):
    labels, spec = read_labels(tiny_models["labels"]), PreprocessSpec(height=16, width=16)
    return write_bundle(
        dest, tiny_models["float_softmax"], labels, spec, name="t", version="1", backbone="t", variant="fp32"
    )


def shelf_frame(
    cells: list[tuple[int, int]], scale: int = 2, height: int = 2 * HEIGHT, width: int = 2 * WIDTH, x_offset: int = 0
) -> np.ndarray:
    """A black BGR frame with a white square on each model cell ``(i, j)`` (``scale`` frame pixels per input pixel)."""
    frame = np.zeros((height, width, 3), np.uint8)
    side = STRIDE * scale
    for i, j in cells:
        frame[i * side : (i + 1) * side, x_offset + j * side : x_offset + (j + 1) * side] = 255
    return frame


def expected_boxes(cells, scale: int = 2, x_offset: int = 0, width: int = 2 * WIDTH, height: int = 2 * HEIGHT):
    boxes = np.array([cell_box(i, j) for i, j in cells], np.float32) * scale
    boxes[:, 0::2] = np.clip(boxes[:, 0::2] + x_offset, 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    return boxes


def sorted_rows(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes.T[::-1])]


def one_error_line(stderr: str) -> str:
    """The CLI's error line; the interpreter's own INFO lines and log warnings are not ours."""
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    return lines[0]


# -- centernet bundles ------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["centernet_float", "centernet_int8"])
def test_centernet_bundle_decodes_the_expected_boxes(detectors, tmp_path, flavour):
    root = detect_bundle(tmp_path / "b", detectors[flavour], detection={"score_threshold": 0.5, "max_detections": 20})
    doc = json.loads((root / "manifest.json").read_text())
    assert (doc["schema_version"], doc["task"], "output" in doc) == (2, "detect", False)
    assert doc["detection"]["format"] == "centernet" and doc["detection"]["stride"] == STRIDE
    assert doc["detection"]["outputs"]["heatmap"]["shape"] == [1, HEIGHT // STRIDE, WIDTH // STRIDE, 1]
    assert doc["detection"]["outputs"]["boxes"]["shape"] == [1, HEIGHT // STRIDE, WIDTH // STRIDE, 4]
    assert (doc["detection"]["score_threshold"], doc["detection"]["max_detections"]) == (0.5, 20)
    assert doc["labels"]["count"] == 1
    if flavour == "centernet_int8":
        assert doc["detection"]["outputs"]["heatmap"]["quantization"] is not None

    det = Detector.from_bundle(root, threads=1)
    cells = [(2, 3), (4, 6), (0, 0)]
    found = det.detect_bgr(shelf_frame(cells))
    assert len(found) == 3 and found.class_id is None
    tol = 1e-3 if flavour == "centernet_float" else 0.5  # int8: one quantization step of 2/255 strides
    np.testing.assert_allclose(sorted_rows(found.xyxy), sorted_rows(expected_boxes(cells)), atol=tol)
    assert (found.scores > 0.9).all()
    assert det.describe()["detection"] == {
        "format": "centernet",
        "stride": STRIDE,
        "score_threshold": 0.5,
        "nms_iou": 0.5,
        "max_detections": 20,
        "crop_margin": 0.0,
        "crop_resize": "center_crop",
    }
    # Overrides: a threshold above every score finds nothing; max_detections keeps the best.
    assert len(Detector.from_bundle(root, threads=1, score_threshold=0.99).detect_bgr(shelf_frame(cells))) == 0
    assert len(Detector.from_bundle(root, threads=1, max_detections=2).detect_bgr(shelf_frame(cells))) == 2
    assert len(det.detect_bgr(np.zeros((96, 128, 3), np.uint8))) == 0


def test_center_crop_maps_boxes_back_to_the_frame(detectors, tmp_path):
    """A wider frame is cropped to the model's 4:3 window; boxes come back in full-frame pixels."""
    spec = PreprocessSpec(height=HEIGHT, width=WIDTH, resize="center_crop")
    root = detect_bundle(tmp_path / "b", detectors["centernet_float"], spec)
    det = Detector.from_bundle(root, threads=1)
    cells = [(1, 1), (3, 5)]
    frame = shelf_frame(cells, height=96, width=160, x_offset=16)  # the 128-wide window starts at x = 16
    found = det.detect_bgr(frame)
    np.testing.assert_allclose(
        sorted_rows(found.xyxy), sorted_rows(expected_boxes(cells, x_offset=16, width=160)), atol=1e-3
    )
    rgb = det.detect_rgb(np.ascontiguousarray(frame[:, :, ::-1]))
    np.testing.assert_allclose(rgb.xyxy, found.xyxy)


def test_bare_centernet_model_infers_its_stride(detectors, tmp_path):
    det = Detector.from_file(detectors["centernet_int8"], threads=1, mean=(127.5,) * 3, std=(127.5,) * 3)
    assert (det.format, det.stride, det.bundle.bare, det.bundle.spec.resize) == ("centernet", STRIDE, True, "stretch")
    path = tmp_path / "shelf.png"
    cv2.imwrite(str(path), shelf_frame([(2, 2)]))
    found = det.detect_path(path)
    np.testing.assert_allclose(found.xyxy, expected_boxes([(2, 2)]), atol=0.5)


# -- TFLite post-processing outputs -------------------------------------------------------------
def pp_expected(frame_w: int, frame_h: int, keep: int) -> np.ndarray:
    yxyx = np.array(PP_BOXES[:keep], np.float32)
    return yxyx[:, [1, 0, 3, 2]] * np.array([frame_w, frame_h, frame_w, frame_h], np.float32)


def test_real_postprocess_op_is_read_by_role_not_order(detectors, tmp_path):
    det = Detector.from_file(detectors["postprocess_op"], threads=1, mean=(127.5,) * 3, std=(127.5,) * 3)
    assert det.format == "tflite_postprocess" and det.stride is None
    details = det.interpreter.get_output_details()
    order = [role for d in details for role, info in det.io.outputs.items() if info.index == d["index"]]
    assert order != ["boxes", "classes", "scores", "count"]  # the converter scrambled them: roles must not care
    frame = np.zeros((32, 64, 3), np.uint8)
    found = det.detect_bgr(frame)  # default threshold 0.3: the 0.2 box is dropped
    np.testing.assert_allclose(found.xyxy, pp_expected(64, 32, 2), atol=1e-4)
    np.testing.assert_allclose(found.scores, PP_SCORES[:2], atol=1e-6)
    assert found.class_id.tolist() == [int(c) for c in PP_CLASSES[:2]]
    assert [r["label"] for r in found.to_list(det.labels)] == ["class 2", "class 0"]  # no labels given: unnamed
    low = Detector.from_file(
        detectors["postprocess_op"], threads=1, score_threshold=0.1, mean=(127.5,) * 3, std=(127.5,) * 3
    ).detect_bgr(frame)
    assert len(low) == 3  # count says 3: the padding slot is never read
    root = detect_bundle(
        tmp_path / "b",
        detectors["postprocess_op"],
        PreprocessSpec(height=PP_SIZE, width=PP_SIZE, resize="stretch"),
        labels=["beans", "coffee", "tea"],
    )
    det = Detector.from_bundle(root, threads=1)
    rows = det.detect_bgr(frame).to_list(det.labels)
    assert [(r["label"], r["class_id"]) for r in rows] == [("tea", 2), ("beans", 0)]
    assert json.loads((root / "manifest.json").read_text())["detection"]["stride"] is None


def test_postprocess_shapes_from_plain_keras_layers(detectors):
    """Four outputs with the op's shapes but without the op (a re-built model) are still accepted.

    The real op is tested above; here the classes/scores pair has no op to tell them apart, so
    names or the op's order decide. Threshold 0: the decoded boxes do not depend on which is which.
    """
    det = Detector.from_file(
        detectors["postprocess_keras"], threads=1, score_threshold=0.0, mean=(127.5,) * 3, std=(127.5,) * 3
    )
    assert det.format == "tflite_postprocess" and set(det.io.outputs) == {"boxes", "classes", "scores", "count"}
    found = det.detect_bgr(np.zeros((32, 64, 3), np.uint8))
    np.testing.assert_allclose(sorted_rows(found.xyxy), sorted_rows(pp_expected(64, 32, 3)), atol=1e-4)


# -- one-line errors ----------------------------------------------------------------------------
def test_bundle_opened_for_the_wrong_task(detectors, tiny_models, tmp_path):
    det_root = detect_bundle(tmp_path / "det", detectors["centernet_float"])
    with pytest.raises(BundleError, match=r"is a detect bundle \(task: detect\).*shelfscan-agent detect") as info:
        Classifier.from_bundle(det_root, threads=1)
    assert "\n" not in str(info.value)
    clf_root = classify_bundle(tmp_path / "clf", tiny_models).root
    with pytest.raises(BundleError, match=r"is a classify bundle \(task: classify\).*shelfscan-agent classify"):
        Detector.from_bundle(clf_root, threads=1)
    with pytest.raises(BundleError, match=r"is a detector \(centernet outputs\), not a classifier"):
        Classifier.from_files(detectors["centernet_float"], tiny_models["labels"])
    with pytest.raises(BundleError, match=r"not a detector: .*found \[1, 3\] \(this is a classifier"):
        Detector.from_file(tiny_models["float_softmax"])
    proc = run_cli("classify", "x.png", "--bundle", str(det_root))
    assert proc.returncode == 2 and "is a detect bundle (task: detect)" in one_error_line(proc.stderr)


def test_wrong_outputs_via_the_cli(detectors, tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    proc = run_cli("detect", str(image), "--model", str(detectors["wrong_outputs"]))
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert line.startswith(f"shelfscan-agent detect: error: {detectors['wrong_outputs']}: not a detector: expected")
    assert "centernet outputs" in line and "post-processing outputs" in line and "found [1, " in line


def edit(root: Path, change) -> None:
    path = root / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["detection"].update(stride=4), "stride mismatch: manifest says 4, model has 8"),
        (
            lambda d: d["detection"]["outputs"]["heatmap"].update(dtype="int8"),
            "heatmap output dtype mismatch: manifest says int8, model has float32",
        ),
        (
            lambda d: d.update(output={"dtype": "float32", "shape": [1, 1], "kind": "sigmoid"}),
            "output is only for task classify",
        ),
        (lambda d: d.pop("detection"), "a detect manifest needs detection"),
        (lambda d: d.update(schema_version=1), "task and detection need schema_version 2, this manifest says 1"),
        (
            lambda d: d["detection"].update(format="tflite_postprocess"),
            "detection: tflite_postprocess outputs must be boxes, classes, scores, count; got heatmap, boxes",
        ),
        (lambda d: d["detection"].update(score_threshold=1.5), "detection.score_threshold: Input should be less"),
    ],
)
def test_detect_manifest_problems_are_one_line(detectors, tmp_path, change, message):
    root = detect_bundle(tmp_path / "b", detectors["centernet_float"])
    edit(root, change)
    with pytest.raises(BundleError) as info:
        Detector.from_bundle(root, threads=1)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_write_bundle_refuses_what_the_model_contradicts(detectors, tiny_models, tmp_path):
    with pytest.raises(BundleError, match="class-agnostic: it takes 1 label, not 2"):
        detect_bundle(tmp_path / "a", detectors["centernet_float"], labels=["facing", "gap"])
    with pytest.raises(BundleError, match="detection stride mismatch: expected 4, the model has 8"):
        detect_bundle(tmp_path / "b", detectors["centernet_float"], detection={"stride": 4})
    with pytest.raises(BundleError, match="detection settings outputs: only score_threshold, nms_iou, max_detections"):
        detect_bundle(tmp_path / "c", detectors["centernet_float"], detection={"outputs": {}})
    with pytest.raises(BundleError, match=r"not a detector: .*\(this is a classifier"):
        detect_bundle(tmp_path / "d", tiny_models["float_softmax"])
    assert list(tmp_path.iterdir()) == []  # every failed write cleaned up its temporary directory
    with pytest.raises(ShelfscanError, match="detection: nms_iou: Input should be greater than 0"):
        Detector.from_file(detectors["centernet_float"], nms_iou=0.0, mean=(127.5,) * 3, std=(127.5,) * 3)


def test_version_1_manifests_are_classifiers(tiny_models, tmp_path):
    """Classifier bundles are still written as version 1 (older devices read them) and read as task classify."""
    root = tmp_path / "clf"
    bundle = classify_bundle(root, tiny_models)
    doc = json.loads((root / "manifest.json").read_text())
    assert doc["schema_version"] == 1 and "task" not in doc and "detection" not in doc
    assert bundle.manifest.task == "classify" and bundle.manifest.detection is None
    doc |= {"schema_version": 2, "task": "classify"}  # a version-2 classify manifest reads the same
    assert parse_manifest(json.dumps(doc)).output == bundle.manifest.output
    doc["schema_version"] = 1
    with pytest.raises(BundleError, match="task and detection need schema_version 2"):
        parse_manifest(json.dumps(doc))


# -- pure decoding ------------------------------------------------------------------------------
def test_decode_centernet_peaks_nms_and_limits():
    fmap = frame_map(32, 32, PreprocessSpec(height=32, width=32, resize="stretch"))
    heat = np.zeros((1, 4, 4, 1), np.float32)
    heat[0, 0, 0, 0] = 0.9  # a corner peak: the border never wins
    heat[0, 2, 2, 0] = heat[0, 2, 3, 0] = 0.8  # a plateau: both cells are peaks, suppression keeps one
    heat[0, 3, 0, 0] = 0.25  # below the threshold
    boxes = np.ones((1, 4, 4, 4), np.float32)
    found = decode_centernet(heat, boxes, 8, fmap, score_threshold=0.3, nms_iou=0.3)
    assert found.xyxy.tolist() == [[0, 0, 12, 12], [12, 12, 28, 28]]  # clipped at 0; the plateau's first cell
    np.testing.assert_allclose(found.scores, [0.9, 0.8])
    both = decode_centernet(heat, boxes, 8, fmap, score_threshold=0.3, nms_iou=0.5)  # the plateau's IoU is 0.4
    assert both.xyxy.tolist() == [[0, 0, 12, 12], [12, 12, 28, 28], [20, 12, 32, 28]]
    assert len(decode_centernet(heat, boxes, 8, fmap, score_threshold=0.3, max_detections=1)) == 1
    assert len(decode_centernet(heat, boxes, 8, fmap, score_threshold=0.2, nms_iou=0.3)) == 3  # now the 0.25 cell
    # Quantized tensors: heatmap uint8 with scale 1/255, boxes int8 with scale 0.5 and zero point -10.
    q_heat = np.rint(heat * 255).astype(np.uint8)
    q_boxes = np.full((1, 4, 4, 4), -8, np.int8)  # 0.5 * (-8 + 10) = 1 stride
    quant = decode_centernet(
        q_heat, q_boxes, 8, fmap, nms_iou=0.3, heatmap_quantization=(1 / 255, 0), boxes_quantization=(0.5, -10)
    )
    np.testing.assert_allclose(quant.xyxy, found.xyxy)


def test_decode_postprocess_reads_count_slots_only():
    fmap = frame_map(100, 200, PreprocessSpec(height=10, width=10, resize="stretch"))
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.0, 0.5, 1.0, 1.0], [np.nan, 0, 1e9, 3]]], np.float32)
    scores = np.array([[0.4, 0.9, 7.0]], np.float32)  # the third slot is garbage beyond count
    found = decode_postprocess(boxes, np.array([[1, 0, 5]], np.float32), scores, np.array([2.0], np.float32), fmap)
    assert found.xyxy.tolist() == [[100, 0, 200, 100], [20, 10, 100, 50]]
    assert found.class_id.tolist() == [0, 1] and found.scores.tolist() == pytest.approx([0.9, 0.4])


# -- Detections and NMS -------------------------------------------------------------------------
def test_detections_indexing_and_filtering():
    d = Detections.from_arrays([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 6, 6]], [0.2, 0.9, 0.5], [1, 2, 3])
    assert len(d) == 3 and d.xyxy.dtype == np.float32 and d.class_id.dtype.kind == "i"
    assert d[d.scores > 0.3].class_id.tolist() == [2, 3]
    assert d[np.array([2, 0])].scores.tolist() == pytest.approx([0.5, 0.2])
    assert len(d[1]) == 1 and d[1:].class_id.tolist() == [2, 3]
    assert d.above(0.5).class_id.tolist() == [2, 3] and d.best(2).class_id.tolist() == [2, 3]
    assert d.area.tolist() == [4, 4, 1]
    merged = Detections.merge([d, Detections.empty()])
    assert len(merged) == 3 and merged.class_id is None  # the empty part has no class ids
    assert d[0].to_list(["a", "b"]) == [{"box": [0, 0, 2, 2], "score": 0.2, "class_id": 1, "label": "b"}]
    with pytest.raises(ValueError, match=r"xyxy must be \(N, 4\)"):
        Detections(np.zeros((2, 4), np.float32), np.zeros(3, np.float32))


def reference_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order, keep = list(np.argsort(-scores, kind="stable")), []
    for i in order:
        if all(box_iou(boxes[i], boxes[k])[0, 0] <= iou for k in keep):
            keep.append(i)
    return keep


def test_nms_matches_a_plain_greedy_reference():
    rng = np.random.default_rng(1)
    for n in (0, 1, 5, 60):
        xy = rng.uniform(0, 200, (n, 2))
        d = Detections.from_arrays(np.hstack([xy, xy + rng.uniform(5, 60, (n, 2))]), rng.uniform(0, 1, n))
        d.scores[: n // 3] = 0.5  # ties, and a zero score, must not confuse it
        if n:
            d.scores[-1] = 0.0
        for iou in (0.3, 0.5, 0.7):
            kept = nms(d, iou)
            want = reference_nms(d.xyxy, d.scores, iou)
            np.testing.assert_array_equal(kept.xyxy, d.xyxy[want])


# -- metrics ------------------------------------------------------------------------------------
TRUTH = [np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32), np.array([[0, 0, 40, 40]], np.float32)]


def test_perfect_predictions_score_one():
    preds = [Detections.from_arrays(t, np.linspace(0.9, 0.5, len(t))) for t in TRUTH]
    report = evaluate_detections(preds, TRUTH)
    assert (report.ap50, report.ap50_95, report.count_mae) == (1.0, 1.0, 0.0)
    assert report.counts == [(2, 2), (1, 1)] and report.to_dict()["ap_by_iou"]["0.95"] == 1.0


def test_duplicates_are_false_positives_and_misses_lower_recall():
    # Image 0: the first facing found twice (the duplicate scores lower), the second missed.
    dup = [Detections.from_arrays([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8])]
    # Recall reaches 1/2 at precision 1, then only falls: 51 of the 101 recall points have precision 1.
    assert average_precision(dup, TRUTH[:1], 0.5) == pytest.approx(51 / 101)
    missed = [Detections.from_arrays([[0, 0, 10, 10]], [0.9])]
    assert average_precision(missed, TRUTH[:1], 0.5) == pytest.approx(51 / 101)
    # A false positive scoring above both hits: precision 1/2 then 2/3, recall 1: the envelope is 2/3 everywhere.
    early_fp = [Detections.from_arrays([[50, 50, 60, 60], [0, 0, 10, 10], [20, 0, 30, 10]], [0.95, 0.9, 0.8])]
    assert average_precision(early_fp, TRUTH[:1], 0.5) == pytest.approx(2 / 3)
    # IoU 2/3 (a box shifted by 2 px of 10): a hit up to 0.65; from 0.70 on the best-scoring box is a false
    # positive ranked first: precision 0 then 1/2 at recall 1/2, so AP = 1/2 * 51/101.
    shifted = [Detections.from_arrays([[0, 2, 10, 12], [20, 0, 30, 10]], [0.9, 0.8])]
    report = evaluate_detections(shifted, TRUTH[:1])
    assert report.ap50 == 1.0 and report.ap_by_iou[0.65] == 1.0 and report.ap_by_iou[0.7] == pytest.approx(51 / 202)
    assert report.ap50_95 == pytest.approx((4 * 1.0 + 6 * 51 / 202) / 10)
    assert count_errors(dup + missed, TRUTH).tolist() == [0, 0]
    assert count_errors(missed + dup, [TRUTH[0], TRUTH[0][:1]]).tolist() == [-1, 1]
    assert evaluate_detections(missed + dup, [TRUTH[0], TRUTH[0][:1]]).count_mae == 1.0
    assert np.isnan(average_precision([Detections.empty()], [np.zeros((0, 4))], 0.5))


def test_detection_report_counts_at_the_operating_threshold():
    """AP from every box given (the low-scoring hit completes the curve); counts only above the threshold."""
    preds = [Detections.from_arrays(TRUTH[0], [0.9, 0.1]), Detections.from_arrays(TRUTH[1], [0.8])]
    report = detection_report(preds, TRUTH, 0.5)
    assert (report["ap50"], report["predicted_boxes"], report["count_mae"]) == (1.0, 2, 0.5)
    assert report["counts"] == [{"predicted": 1, "truth": 2}, {"predicted": 1, "truth": 1}]
    assert report["score_threshold"] == 0.5 and report["truth_boxes"] == 3


def test_ap_agrees_with_pycocotools():
    """A random set scored once with pycocotools' COCOeval (bbox, one category): 0.0902280 / 0.2786313."""
    rng = np.random.default_rng(7)
    preds, truths = [], []
    for _ in range(30):
        m = int(rng.integers(0, 12))
        xy = rng.uniform(0, 500, (m, 2))
        gt = np.hstack([xy, xy + rng.uniform(10, 80, (m, 2))])
        boxes = []
        for b in gt:
            if rng.random() < 0.8:
                boxes.append(b + rng.normal(0, 6, 4))
            if rng.random() < 0.2:
                boxes.append(b + rng.normal(0, 15, 4))
        for _ in range(int(rng.integers(0, 4))):
            p = rng.uniform(0, 500, 2)
            boxes.append(np.r_[p, p + rng.uniform(10, 80, 2)])
        boxes = np.array(boxes).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        preds.append(Detections.from_arrays(boxes, np.round(rng.uniform(0, 1, len(boxes)), 3)))
        truths.append(gt)
    report = evaluate_detections(preds, truths)
    assert report.ap50_95 == pytest.approx(0.09022795546154952, abs=1e-6)
    assert report.ap50 == pytest.approx(0.2786313499845444, abs=1e-6)


# -- shelfscan-agent detect -----------------------------------------------------------------------
def composed_set(root: Path) -> Path:
    """Three images and a shelves.json in the composer's format; the third image is unreadable."""
    root.mkdir()
    entries = []
    for k, cells in enumerate([[(2, 3), (4, 6)], [(1, 1)]]):
        cv2.imwrite(str(root / f"{k:06d}.jpg"), shelf_frame(cells), [cv2.IMWRITE_JPEG_QUALITY, 100])
        facings = [
            {"box": box.tolist(), "label": "beans", "row": 0, "photo": "train/beans/b.jpg"}
            for box in expected_boxes(cells)
        ]
        entries.append(
            {
                "file": f"{k:06d}.jpg",
                "width": 2 * WIDTH,
                "height": 2 * HEIGHT,
                "facings": facings,
                "gaps": [{"box": [0, 0, 4, 4], "row": 0}],
                "rows": [{"y0": 0, "y1": 48}],
            }
        )
    (root / "000002.jpg").write_bytes(b"\xff\xd8 truncated")
    entries.append(
        {"file": "000002.jpg", "width": 2 * WIDTH, "height": 2 * HEIGHT, "facings": [], "gaps": [], "rows": []}
    )
    doc = {"schema": "shelfscan.shelves", "version": 1, "images": entries}
    (root / "shelves.json").write_text(json.dumps(doc))
    return root


def test_detect_cli_json_draw_and_truth(detectors, tmp_path):
    bundle = detect_bundle(tmp_path / "bundle", detectors["centernet_int8"])
    shelves = composed_set(tmp_path / "set")
    drawn = tmp_path / "drawn"
    proc = run_cli("detect", str(shelves), "--bundle", str(bundle), "--json", "--draw", str(drawn))
    assert proc.returncode == 1  # the unreadable image was skipped
    skipped = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert skipped == [
        f"shelfscan-agent detect: skipped: {shelves / '000002.jpg'}: corrupt or truncated JPEG data (cannot decode)"
    ]
    doc = json.loads(proc.stdout)
    assert doc["task"] == "detect" and doc["detection"]["format"] == "centernet"
    ok = [r for r in doc["results"] if "error" not in r]
    assert [(r["count"], r["truth_count"]) for r in ok] == [(2, 2), (1, 1)]
    assert set(ok[0]["detections"][0]) == {"box", "score"}
    ev = doc["evaluation"]
    assert ev["truth"] == [str(shelves / "shelves.json")] and ev["images"] == 2 and ev["truth_boxes"] == 3
    assert ev["ap50"] == 1.0 and ev["ap50_95"] > 0.9 and ev["count_mae"] == 0.0
    assert sorted(p.name for p in drawn.iterdir()) == ["000000.jpg", "000001.jpg"]
    picture = cv2.imread(str(drawn / "000000.jpg")).astype(int)
    orange = (picture[:, :, 2] - picture[:, :, 0] > 60).sum()  # the frame is black and white; boxes are orange
    assert picture.shape == (2 * HEIGHT, 2 * WIDTH, 3) and orange > 150


def test_detect_cli_text_with_explicit_truth(detectors, tmp_path):
    bundle = detect_bundle(tmp_path / "bundle", detectors["centernet_float"])
    shelves = composed_set(tmp_path / "set")
    proc = run_cli(
        "detect", "--truth", str(shelves / "shelves.json"), "--bundle", str(bundle), "--score-threshold", "0.99"
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{shelves / '000000.jpg'}: 0 boxes (truth 2)" in lines
    # AP is over the whole curve (boxes down to the evaluation floor); counts are at the 0.99 asked for.
    assert lines[-2].endswith(": 3 true boxes, 0 found at score >= 0.99")
    assert lines[-1] == "AP50 1.000   AP50:95 1.000   count error 1.500 per image (mean absolute)"
    proc = run_cli("detect", str(shelves / "000001.jpg"), "--bundle", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        f"{shelves / '000001.jpg'}: 1 box",
        f"  {'x0':>7} {'y0':>7} {'x1':>7} {'y1':>7}  score  label",
        "      8.0     0.0    56.0    32.0  0.953  facing",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to detect: pass image files or folders, or --truth shelves.json"),
        (["x.png"], "no model: pass --bundle DIR or --model FILE"),
        (["x.png", "--bundle", "b", "--model", "m"], "give either --bundle or --model, not both"),
        (["--truth", "/no/shelves.json"], "/no/shelves.json: cannot read truth (No such file or directory)"),
    ],
)
def test_detect_usage_errors_are_one_line(args, message):
    proc = run_cli("detect", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"shelfscan-agent detect: error: {message}"]


def test_detect_cli_runs_without_tensorflow(detectors, tmp_path):
    """The device command needs no TensorFlow (the models were built by this process, which has it)."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.test_no_tensorflow import blocked_env

    image = tmp_path / "shelf.png"
    cv2.imwrite(str(image), shelf_frame([(2, 3)]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "detect",
            str(image),
            "--model",
            str(detectors["centernet_int8"]),
            "--mean",
            "127.5",
            "--std",
            "127.5",
            "--json",
        ],
        env=blocked_env(tmp_path, "tensorflow"),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runtime"]["package"] == "ai_edge_litert" and doc["results"][0]["count"] == 1
