"""The facing detector's workstation side: composer truth, training, conversion and the round trip to the edge."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.detect_decode import decode_centernet, frame_map
from edge.detector import Detector
from edge.errors import ShelfscanError
from edge.preprocess import Preprocessor
from tests.toydata import HUES, flat_photos
from trainer.photo_library import PhotoLibrary
from trainer.shelf_composer import compose, compose_canvas, read_truth, row_gaps, write_set
from trainer.shelf_types import ShelfStyle

CLEAN = ShelfStyle(
    run_length=(1, 1),
    facing_gap_px=(2, 8),
    zoom=(1.0, 1.0),
    perspective=0.0,
    motion_blur_px=(0, 0),
    noise=(0.0, 0.0),
    exposure=(1.0, 1.0),
)


def colour_bbox(image: np.ndarray, colour: np.ndarray, tolerance: float) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1 exclusive) of the pixels within ``tolerance`` of ``colour``."""
    close = np.abs(image.astype(np.float32) - colour).max(axis=2) <= tolerance
    ys, xs = np.nonzero(close)
    return None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_padding_is_trimmed_so_widths_follow_the_photo(tmp_path):
    lib = PhotoLibrary.from_tree(flat_photos(tmp_path / "photos"))
    shapes = {lib.image(i).shape[:2] for i in range(len(lib))}
    assert shapes == {(90, int(90 * a)) for a in (0.6, 1.0, 1.4)}


def test_canvas_boxes_are_exactly_where_the_facings_are_drawn(tmp_path):
    lib = PhotoLibrary.from_tree(flat_photos(tmp_path / "photos"))
    colours = {f"{p.parent.name}/{p.name}": np.array(HUES[int(p.stem[1:])], np.float32) for _, p in lib.photos}
    checked = 0
    for seed in range(4):
        shelf = compose_canvas(lib, 640, 480, np.random.default_rng(seed), CLEAN)
        image = np.clip(shelf.image, 0, 255).astype(np.uint8)
        for f in shelf.facings:
            x0, y0, x1, y1 = (int(v) for v in f.box)
            cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(640, x1), min(480, y1)
            if cx1 - cx0 < 3 or cy1 - cy0 < 3:
                continue
            patch = image[cy0:cy1, cx0:cx1].astype(np.float32)
            # every pixel of the box is the facing: one flat colour, its photo's (brightness jitter <= 7 %)
            colour = patch[0, 0]
            assert np.ptp(patch.reshape(-1, 3), axis=0).max() <= 1, f.photo
            assert np.abs(colour - colours[f.photo]).max() <= 0.08 * 255, f.photo
            # and the pixels just outside it are not
            ring = []
            if x0 > 0:
                ring.append(image[cy0:cy1, x0 - 1])
            if x1 < 640:
                ring.append(image[cy0:cy1, x1])
            if y0 > 0:
                ring.append(image[y0 - 1, cx0:cx1])
            outside = np.concatenate(ring).astype(np.float32)
            assert (np.abs(outside - colour).max(axis=1) > 3).mean() > 0.9, f.photo
            checked += 1
    assert checked > 20


def test_camera_view_boxes_follow_the_drawn_facings(tmp_path):
    """Zoom and perspective on: each listed box is the bounding box of its facing's pixels (within 2 px)."""
    lib = PhotoLibrary.from_tree(flat_photos(tmp_path / "photos"))
    style = ShelfStyle(
        run_length=(1, 1),
        facing_gap_px=(4, 8),
        motion_blur_px=(0, 0),
        noise=(0.0, 0.0),
        exposure=(1.0, 1.0),
        zoom=(1.0, 1.3),
        perspective=0.03,
    )
    checked = 0
    for index in range(6):
        shelf = compose(lib, 640, 480, seed=3, index=index, style=style)
        for f in shelf.facings:
            colour = np.array(HUES[int(Path(f.photo).stem[1:])], np.float32)
            # look 3 px around the box: neighbours stand at least ~3 px away after zoom and tilt
            wx0, wy0 = max(0, int(f.box[0]) - 3), max(0, int(f.box[1]) - 3)
            wx1, wy1 = min(640, int(f.box[2]) + 4), min(480, int(f.box[3]) + 4)
            found = colour_bbox(shelf.image[wy0:wy1, wx0:wx1], colour * 0.93, 0.15 * 255)
            assert found is not None, f.photo
            found = np.add(found, (wx0, wy0, wx0, wy0))
            assert np.abs(found - np.array(f.box)).max() <= 2.5, (f.photo, found, f.box)
            checked += 1
    assert checked > 15


def test_composer_is_deterministic_and_honours_the_style(tmp_path):
    lib = PhotoLibrary.from_tree(flat_photos(tmp_path / "photos"))
    a, b = compose(lib, 320, 240, 7, 3), compose(lib, 320, 240, 7, 3)
    assert np.array_equal(a.image, b.image) and a.to_dict("x") == b.to_dict("x")
    assert not np.array_equal(a.image, compose(lib, 320, 240, 7, 4).image)
    dense = ShelfStyle().dense_runs()
    for i in range(5):
        canvas = compose_canvas(lib, 640, 480, np.random.default_rng(i), dense)
        for row in {f.row for f in canvas.facings}:
            xs = sorted((f.box[0], f.box[2], f.photo) for f in canvas.facings if f.row == row)
            runs = [[xs[0]]]
            for prev, cur in itertools.pairwise(xs):
                assert cur[0] == prev[1], "dense runs touch"
                if cur[2] == prev[2]:
                    runs[-1].append(cur)
                else:
                    runs.append([cur])
            inner = runs[1:-1]  # the first and last runs may be cut by the image border
            assert all(3 <= len(r) <= 6 for r in inner)
        assert canvas.gaps == []


def test_gap_rule_is_a_share_of_the_median_width():
    from trainer.shelf_types import Facing

    def facing(x0: float, x1: float) -> Facing:
        return Facing((x0, 0.0, x1, 50.0), "a", 0, "p")

    row = [facing(0, 40), facing(40, 80), facing(110, 150), facing(185, 225)]  # spans 30 and 35; median 40
    gaps = row_gaps(row, 0, 0.0, 50.0)  # both spans are wider than 0.7 * 40 = 28
    assert [(g.box[0], g.box[2]) for g in gaps] == [(80.0, 110.0), (150.0, 185.0)]
    gaps = row_gaps(row, 0, 0.0, 50.0, share=0.8)  # 32: only the 35-pixel span
    assert [(g.box[0], g.box[2]) for g in gaps] == [(150.0, 185.0)]


def test_written_set_round_trips(tmp_path):
    lib = PhotoLibrary.from_tree(flat_photos(tmp_path / "photos"))
    path = write_set(tmp_path / "set", lib, 3, seed=1, width=320, height=240)
    doc = read_truth(path)
    assert [img["file"] for img in doc["images"]] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    for img in doc["images"]:
        assert cv2.imread(str(tmp_path / "set" / img["file"])).shape == (240, 320, 3)
        for f in img["facings"]:
            x0, y0, x1, y1 = f["box"]
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
            if "full_box" in f:  # cut by the border, at least half in view
                fx0, fy0, fx1, fy1 = f["full_box"]
                assert (x1 - x0) * (y1 - y0) >= 0.45 * (fx1 - fx0) * (fy1 - fy0)  # polygon share >= 0.5


@pytest.mark.parametrize("case", ["missing", "no_classes", "undecodable"])
def test_photo_tree_without_usable_images_is_one_line(tmp_path, capsys, case):
    from trainer.cli import main as train

    root = tmp_path / "photos"
    if case != "missing":
        (root / "a").mkdir(parents=True)
    if case == "undecodable":
        (root / "a" / "x.jpg").write_bytes(b"not a jpeg")
    assert train([str(root), "--compose", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err[-1:]) == 1 and err[-1].startswith("shelfscan-train: error:") and str(root) in err[-1]
    with pytest.raises(ShelfscanError):
        PhotoLibrary([], "empty")


@pytest.mark.shared
@pytest.mark.slow
def test_detector_run_writes_the_run_directory(tiny_detector):
    run = tiny_detector["run"]
    for name in ("model.keras", "labels.txt", "preprocessing.json", "config.json", "metrics.json", "report.html"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "detect" and config["detection"]["stride"] == 8
    assert config["detection"]["score_threshold"] == 0.1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["images"] == 6 and 0.0 <= metrics["val"]["ap50"] <= 1.0
    assert "AP50" in (run / "report.html").read_text()
    comparison = json.loads((tiny_detector["bundles"] / "comparison.json").read_text())
    assert comparison["task"] == "detect" and set(comparison["variants"]) == {"fp32", "int8"}
    assert comparison["gate_metric"] == "AP50"


@pytest.mark.shared
@pytest.mark.slow
def test_edge_detector_reproduces_keras(tiny_detector):
    """fp32 bundle: same outputs as Keras; decoded boxes within a pixel. int8: heatmap within a few steps."""
    import keras

    model = keras.models.load_model(tiny_detector["run"] / "model.keras", compile=False)
    fp32 = Detector.from_bundle(tiny_detector["bundles"] / "run-fp32", threads=1, score_threshold=0.01)
    int8 = Detector.from_bundle(tiny_detector["bundles"] / "run-int8", threads=1, score_threshold=0.01)
    assert fp32.bundle.manifest.task == "detect" and int8.io.input.dtype == "uint8"
    doc = read_truth(tiny_detector["eval"] / "shelves.json")
    pre = Preprocessor(fp32.bundle.spec, "float32")
    compared = 0
    for img in doc["images"]:
        frame = cv2.imread(str(tiny_detector["eval"] / img["file"]))
        heat, boxes = (np.asarray(t) for t in model(pre.from_bgr(frame), training=False))
        theirs = fp32.detect_bgr(frame)
        tflite_heat = fp32.interpreter.get_tensor(fp32.io.outputs["heatmap"].index)
        np.testing.assert_allclose(tflite_heat, heat, atol=1e-4)
        ours = decode_centernet(
            heat,
            boxes,
            8,
            frame_map(*frame.shape[:2], fp32.bundle.spec),
            score_threshold=0.01,
            nms_iou=fp32.settings.nms_iou,
            max_detections=fp32.settings.max_detections,
        )
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(theirs.xyxy, ours.xyxy, atol=1.0)
        compared += len(ours)
        int8.detect_bgr(frame)
        q = int8.io.outputs["heatmap"]
        int8_heat = q.scale * (int8.interpreter.get_tensor(q.index).astype(np.float32) - q.zero_point)
        assert np.abs(int8_heat - heat).max() < 0.1
    assert compared > 0
