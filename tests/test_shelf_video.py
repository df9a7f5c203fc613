"""The shelf-pass video: one long composed shelf, its truth, the camera path, stop-and-go, reversal, the file."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ShelfscanError
from trainer.photo_library import PhotoLibrary
from trainer.shelf_composer import row_gaps
from trainer.shelf_types import Facing
from trainer.shelf_video import (
    PassSpec,
    compare_counts,
    frame_window,
    plan_pass,
    read_pass,
    render_pass,
    row_truth,
    to_canvas,
)

# 160x120 frames: pixel sizes scale with the width, so this is the default pass in miniature.
SMALL = PassSpec(width=160, height=120, seconds=16.0, seed=4)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> PhotoLibrary:
    """Eight flat-colour products in four classes, of several aspects, padded with grey as Freiburg pads."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        folder = root / f"class_{i % 4}"
        folder.mkdir(exist_ok=True)
        h, w = 60, int(60 * (0.5, 0.8, 1.0, 1.3)[i % 4])
        img = np.full((h + 12, w + 12, 3), 128, np.uint8)
        img[6 : 6 + h, 6 : 6 + w] = rng.integers(0, 256, 3)
        cv2.imwrite(str(folder / f"p{i}.png"), img)
    return PhotoLibrary.from_tree(root)


@pytest.fixture(scope="module")
def small_pass(library: PhotoLibrary, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return render_pass(library, tmp_path_factory.mktemp("pass") / "frames", SMALL, images=True)


def facings(truth: dict) -> list[dict]:
    return [f for row in truth["rows"] for f in row["facings"]]


def test_truth_totals_are_the_canvas_facings_and_gaps(library, small_pass):
    canvas, path = plan_pass(library, SMALL)
    assert small_pass["schema"] == "shelfscan.shelfpass" and small_pass["version"] == 1
    assert small_pass["totals"]["facings"] == dict(Counter(f.label for f in canvas.facings))
    assert sum(small_pass["totals"]["facings"].values()) == len(facings(small_pass)) == len(canvas.facings) > 10
    assert small_pass["totals"]["gaps"] == len(canvas.gaps) == sum(len(r["gaps"]) for r in small_pass["rows"])
    assert small_pass["totals"]["rows"] == len(small_pass["rows"]) == 2
    assert small_pass["frames"] == len(small_pass["camera"]) == len(path) == 160 and small_pass["fps"] == 10.0


def test_gaps_follow_the_agents_rule_with_their_neighbours(library):
    canvas, _ = plan_pass(library, PassSpec(width=160, height=120, seconds=40.0, empty_prob=0.5, seed=2))
    rows = row_truth(canvas)
    assert sum(len(r["gaps"]) for r in rows) >= 2
    for row in rows:
        ordered = [Facing(tuple(f["box"]), f["label"], row["row"], f["photo"]) for f in row["facings"]]
        expected = row_gaps(ordered, row["row"], row["y0"], row["y1"])
        assert [g["span"] for g in row["gaps"]] == [[g.box[0], g.box[2]] for g in expected]
        for g in row["gaps"]:
            left = next(f for f in ordered if f.box[2] == g["span"][0])
            right = next(f for f in ordered if f.box[0] == g["span"][1])
            assert (g["left"], g["right"]) == (left.label, right.label)


def test_no_facing_is_cut_and_every_facing_crosses_the_frame_centre(small_pass):
    width, height = small_pass["canvas"]["width"], small_pass["canvas"]["height"]
    first, last = frame_window(small_pass, 0), frame_window(small_pass, small_pass["frames"] - 1)
    for f in facings(small_pass):
        x0, y0, x1, y1 = f["box"]
        assert 0 < x0 < x1 < width and 0 < y0 < y1 < height
        assert x0 > (first[0] + first[2]) / 2 and x1 < (last[0] + last[2]) / 2  # right of the centre, then left


def test_every_facing_is_whole_in_some_frame_and_rows_are_never_cut(small_pass):
    boxes = np.array([f["box"] for f in facings(small_pass)])
    windows = np.array([frame_window(small_pass, i) for i in range(small_pass["frames"])])
    canvas = small_pass["canvas"]
    assert (windows[:, :2] >= 0).all() and (windows[:, 2] <= canvas["width"]).all()
    assert (windows[:, 3] <= canvas["height"]).all()
    inside = (
        (boxes[None, :, 0] >= windows[:, None, 0])
        & (boxes[None, :, 2] <= windows[:, None, 2])
        & (boxes[None, :, 1] >= windows[:, None, 1])
        & (boxes[None, :, 3] <= windows[:, None, 3])
    )
    assert inside.any(axis=0).all()
    # vertically every facing is whole in every frame: nothing is ever half-seen at the top or bottom
    assert (boxes[:, 1].min() >= windows[:, 1].max()) and (boxes[:, 3].max() <= windows[:, 3].min())


def test_camera_path_maps_frame_pixels_to_canvas_pixels(small_pass):
    i = 37
    window = frame_window(small_pass, i)
    assert to_canvas(small_pass, i, (0.0, 0.0, 160.0, 120.0)) == pytest.approx(window)
    cam = small_pass["camera"][i]
    assert window[2] - window[0] == pytest.approx(160 / cam["zoom"])


def test_stop_and_go_stands_still_for_three_seconds(small_pass):
    (stop,) = [e for e in small_pass["events"] if e["kind"] == "stop"]
    a, b = stop["frames"]
    assert b - a + 1 == 30 and 40 < a < 80  # in the middle of the 160 frames
    cam = small_pass["camera"]
    still = np.array([[c["x"], c["y"], c["zoom"]] for c in cam[a : b + 1]])
    jitter = SMALL.jitter_px * SMALL.scale
    assert np.ptp(still[:, 0]) <= 2 * jitter + 0.01 and np.ptp(still[:, 1]) <= 2 * jitter + 0.01
    assert np.ptp(still[:, 2]) == 0
    assert cam[a - 10]["x"] < still[:, 0].min() - 10 and cam[b + 10]["x"] > still[:, 0].max() + 10


def test_reversal_backs_up_and_goes_on(library):
    spec = PassSpec(width=160, height=120, seconds=16.0, stop_seconds=0.0, reverse_px=200.0, seed=1)
    _, path = plan_pass(library, spec)
    (back,) = path.events
    assert back["kind"] == "reverse" and back["px"] == pytest.approx(200 * spec.scale, rel=0.25)
    a, b = back["frames"]
    centre = path.x + 80 / path.zoom
    assert centre[b + 1] < centre[a] - 0.8 * back["px"]  # it went back
    assert centre[-1] > centre[a] + 50  # and on, further than before
    assert (np.diff(centre[: a - 5]) > 0).all()


def test_same_seed_same_pass_other_seed_other_pass(library, small_pass, tmp_path):
    again = render_pass(library, tmp_path / "frames", SMALL, images=True)
    assert again == small_pass
    first = sorted((tmp_path / "frames").iterdir())
    assert len(first) == 160
    other = render_pass(library, tmp_path / "other", PassSpec(width=160, height=120, seconds=16.0, seed=5), images=True)
    assert other["rows"] != small_pass["rows"]
    assert read_pass(tmp_path / "frames.json") == small_pass


def test_same_seed_same_pixels(library, tmp_path):
    spec = PassSpec(width=96, height=72, seconds=12.0, stop_seconds=1.0, seed=3)
    render_pass(library, tmp_path / "a", spec, images=True)
    render_pass(library, tmp_path / "b", spec, images=True)
    a, b = sorted((tmp_path / "a").iterdir()), sorted((tmp_path / "b").iterdir())
    assert len(a) == 120 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    shorter = replace(spec, seconds=11.0)
    assert render_pass(library, tmp_path / "a", shorter, images=True)["frames"] == 110
    assert len(list((tmp_path / "a").iterdir())) == 110  # no frames left from the longer pass


def test_video_opens_with_the_announced_frame_count(library, tmp_path):
    spec = PassSpec(width=160, height=120, seconds=12.0, stop_seconds=1.0, seed=6)
    truth = render_pass(library, tmp_path / "pass.mp4", spec)
    assert truth["video"] == "pass.mp4" and (tmp_path / "pass.json").is_file()
    cap = cv2.VideoCapture(str(tmp_path / "pass.mp4"))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == truth["frames"] == 120 and frames[0].shape == (120, 160, 3)


def test_one_clear_error_when_the_video_cannot_be_written(library, tmp_path):
    (tmp_path / "taken.mp4").mkdir()
    with pytest.raises(ShelfscanError, match=r"taken\.mp4: OpenCV cannot write an mp4v video"):
        render_pass(library, tmp_path / "taken.mp4", PassSpec(width=160, height=120, seconds=12.0, stop_seconds=1.0))


def test_too_short_a_pass_and_a_wrong_truth_file_are_one_clear_error(library, tmp_path):
    with pytest.raises(ShelfscanError, match="too short"):
        plan_pass(library, PassSpec(width=160, height=120, seconds=3.0))
    with pytest.raises(ShelfscanError, match="cannot read shelf-pass truth"):
        read_pass(Path(__file__))
    (tmp_path / "shelves.json").write_text('{"schema": "shelfscan.shelves", "version": 1}')
    with pytest.raises(ShelfscanError, match=r"not a shelfscan\.shelfpass file"):
        read_pass(tmp_path / "shelves.json")


def test_compare_counts():
    truth = {"totals": {"facings": {"beans": 10, "cake": 6, "tea": 4}, "gaps": 3, "rows": 2}}
    got = compare_counts(truth, {"beans": 9, "cake": 6, "tea": 5, "rice": 1, "unknown": 2}, gaps_found=2)
    assert {k: v["error"] for k, v in got["per_label"].items()} == {"beans": 1, "cake": 0, "rice": 1, "tea": 1}
    assert got["abs_error"] == 3 and got["error_share"] == pytest.approx(0.15)
    assert got["facings"] == {"truth": 20, "counted": 21, "unknown": 2}
    assert got["gaps"] == {"truth": 3, "found": 2, "difference": -1}
    perfect = compare_counts(truth, dict(truth["totals"]["facings"]), 3)
    assert perfect["abs_error"] == 0 and perfect["gaps"]["difference"] == 0


@pytest.mark.shared
def test_dense_pass_from_freiburg_val(shared, tmp_path):
    """The acceptance video's recipe in miniature: held-out (val) photos, two rows, runs, a few gaps."""
    val = shared / "datasets" / "freiburg_groceries" / "val"
    library = PhotoLibrary.from_tree(val)
    truth = render_pass(library, tmp_path / "val", PassSpec(width=160, height=120, seconds=30.0, seed=7), images=True)
    labels = {d.name for d in val.iterdir() if d.is_dir()}
    assert set(truth["totals"]["facings"]) <= labels and sum(truth["totals"]["facings"].values()) >= 25
    runs = [len(list(g)) for row in truth["rows"] for _, g in itertools.groupby(f["photo"] for f in row["facings"])]
    assert max(runs) > 1 and max(runs) <= 5
    assert all(f["photo"].split("/")[0] == f["label"] for f in facings(truth))
    assert len(list((tmp_path / "val").iterdir())) == truth["frames"] == 300
