"""Facing counting on synthetic box streams: a true shelf seen by a panning camera (tests/shelf_streams.py).

Every scenario checks exact counts per label and per row, that no facing is counted twice (each
reported facing maps to its own true facing) and the gaps against the truth writer's rule.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import cv2
import numpy as np
import pytest

from edge.config import CountingConfig
from edge.detections import Detections, box_iou
from edge.motion import MotionTracker
from edge.shelf_counter import FacingCounter
from edge.shelf_events import UNKNOWN, FacingCounted, GapFound, cluster_rows
from edge.tracking import WorldTracker, greedy_match
from tests.shelf_streams import NAMES, Frame, TruthFacing, TruthShelf, build_shelf, noisy_labels, pan, still, stream

SHELF_ROWS = ["AAAB_CCDD_DEEEFF", "FFFFGG_HHH_IIJJJ"]  # runs of touching identical facings, two empty slots a row
HARD = {"jitter": 2.0, "bob": 4.0, "zoom": 0.03}  # box noise, vertical sway, slight zoom; drift is on by default


@pytest.fixture(scope="module")
def shelf() -> TruthShelf:
    return build_shelf(SHELF_ROWS)


def run(
    frames: Iterable[Frame], config: CountingConfig | None = None, pose: bool = False
) -> tuple[FacingCounter, list[FacingCounted | GapFound]]:
    counter = FacingCounter(config)
    events: list[FacingCounted | GapFound] = []
    for f in frames:
        odometry = {"x_m": round((f.true_offset[0] + 320) / 1000, 4), "aisle": "7"} if pose else None
        events += counter.update(f.index, f.t, f.detections, f.labels, f.offset, pose=odometry)
    events += counter.finish("end")
    return counter, events


def truth_of(counter: FacingCounter, shelf: TruthShelf) -> list[TruthFacing]:
    """The true facing of each reported facing (best world IoU; drift and zoom keep it above 0.6)."""
    counted = np.array([f.world_box for f in counter.facings], np.float32).reshape(-1, 4)
    truth = np.array([f.box for f in shelf.facings], np.float32)
    iou = box_iou(counted, truth)
    assert (iou.max(axis=1) > 0.6).all(), iou.max(axis=1)
    return [shelf.facings[int(k)] for k in iou.argmax(axis=1)]


def assert_exact(counter: FacingCounter, shelf: TruthShelf, events: list[FacingCounted | GapFound]) -> None:
    """Every true facing reported exactly once with its label, in its row; gaps as the truth says."""
    matched = truth_of(counter, shelf)
    ids = [f.id for f in matched]
    assert len(ids) == len(set(ids)), "a facing was counted twice"
    assert sorted(ids) == [f.id for f in shelf.facings], "a facing was missed"
    assert counter.counts == shelf.counts()
    assert counter.row_counts == shelf.row_counts()
    for reported, true in zip(counter.facings, matched, strict=True):
        assert (reported.label, reported.row) == (true.label, true.row)
    facings = [e for e in events if isinstance(e, FacingCounted)]
    assert facings == list(counter.facings) and counter.pending == 0
    assert_gaps(counter, shelf)


def assert_gaps(counter: FacingCounter, shelf: TruthShelf) -> None:
    by_id = {f.id: f for f in shelf.facings}
    assert len(counter.gaps) == len(shelf.gaps)
    for true in shelf.gaps:
        found = [g for g in counter.gaps if g.row == true.row and abs(g.x0 - true.x0) < 8 and abs(g.x1 - true.x1) < 8]
        assert len(found) == 1, (true, counter.gaps)
        gap = found[0]
        assert (gap.left_label, gap.right_label) == (by_id[true.left].label, by_id[true.right].label)
        assert 0.9 < gap.width_facings < 1.4  # one empty slot of about one facing
        neighbours = {f.track_id: f for f in counter.facings}
        assert neighbours[gap.left_track].world_box[2] == gap.x0 and neighbours[gap.right_track].world_box[0] == gap.x1


def test_constant_pan_counts_every_facing_once(shelf):
    counter, events = run(stream(shelf, pan(-100, 900, 24), seed=1, **HARD))
    assert_exact(counter, shelf, events)
    hows = {f.how for f in counter.facings}
    assert hows == {"line", "edge", "end"}  # in view behind the line at the start, ahead of it at the end
    assert counter.direction == 1 and counter.duplicates == 0 and counter.unknown == 0


def test_leftward_pan_counts_the_same(shelf):
    counter, events = run(stream(shelf, pan(900, -100, 24), seed=2, **HARD))
    assert_exact(counter, shelf, events)
    assert counter.direction == -1


def test_stop_and_go_never_counts_twice(shelf):
    """3 s still at 10 fps (30 frames) with the counting line on facings of both rows, boxes jittering."""
    xs = pan(-100, 400, 24) + still(400, 30) + pan(400, 900, 24) + still(900, 30)
    counter, events = run(stream(shelf, xs, seed=3, jitter=3.0, drift=0.3, bob=4.0))
    assert_exact(counter, shelf, events)


def test_stop_with_broken_tracks_is_caught_by_the_shelf_map(shelf):
    """While the robot stands, the detector loses every facing for 5 frames: new tracks, same facings."""
    xs = pan(-100, 400, 24) + still(400, 30) + pan(400, 900, 24)
    blind = set(range(27, 32))
    counter, events = run(stream(shelf, xs, seed=4, jitter=2.0, miss=lambda i, k: k in blind))
    assert_exact(counter, shelf, events)
    assert counter.duplicates > 0


def test_reversing_robot_never_counts_twice(shelf):
    """Forward past several facings, back up over them, forward again to the end."""
    xs = pan(-100, 700, 24) + pan(700, 250, 20) + still(250, 10) + pan(250, 1000, 24)
    counter, events = run(stream(shelf, xs, seed=5, **HARD))
    assert_exact(counter, shelf, events)
    assert counter.duplicates > 0  # facings seen again by new tracks were recognised on the shelf map


def test_missed_detections_are_tolerated(shelf):
    rng = np.random.default_rng(0)
    dropped = {(int(i), int(k)) for i, k in zip(rng.integers(0, 28, 80), rng.integers(0, 45, 80), strict=True)}
    for k in range(15, 17):  # two frames in a row for two facings, right as they cross the line
        dropped |= {(5, k), (18, k)}
    counter, events = run(stream(shelf, pan(-100, 900, 24), seed=6, miss=lambda i, k: (i, k) in dropped, **HARD))
    assert_exact(counter, shelf, events)


def test_identical_touching_neighbours_at_a_fast_pan():
    """Eight identical facings touching, 40 px per frame (half a facing): world IoU keeps them apart."""
    shelf = build_shelf(["AAAAAAAA", "DDDDDDDDD"])
    counter, events = run(stream(shelf, pan(-700, 1400, 40), seed=7, **HARD))
    assert_exact(counter, shelf, events)
    assert counter.counts == {"beans": 8, "milk": 9}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_labels_the_vote_wins(shelf, seed):
    """A fifth of the crops get a random wrong label: every facing still gets its own."""
    counter, events = run(stream(shelf, pan(-700, 1400, 24), seed=seed, labeler=noisy_labels(0.2), **HARD))
    assert_exact(counter, shelf, events)
    assert any(len(f.votes) > 1 for f in counter.facings)


def test_a_wrong_label_in_a_few_frames_is_outvoted(shelf):
    def labeler(f, k, rng):
        if f.id in (2, 17) and k % 5 == 0:  # every fifth frame, very sure and wrong
            return "coffee" if f.label != "coffee" else "tea", 0.99
        return f.label, float(rng.uniform(0.6, 0.9))

    counter, events = run(stream(shelf, pan(-700, 1400, 24), seed=8, labeler=labeler, **HARD))
    assert_exact(counter, shelf, events)


def test_split_vote_is_unknown(shelf):
    """A facing classified half the time as one product, half as another, is not guessed."""

    def labeler(f, k, rng):
        if f.id == 9:
            return ("tea" if k % 2 else "juice"), 0.8
        if f.id == 20:
            return None, 0.0  # its crops never classify
        return f.label, 0.9

    counter, _ = run(stream(shelf, pan(-700, 1400, 24), seed=9, labeler=labeler, **HARD))
    matched = truth_of(counter, shelf)
    assert len({f.id for f in matched}) == len(shelf.facings) == counter.total
    by_truth = {t.id: f for t, f in zip(matched, counter.facings, strict=True)}
    split, silent = by_truth[9], by_truth[20]
    assert split.label == UNKNOWN and set(split.votes) == {"tea", "juice"}
    assert abs(split.votes["tea"] - split.votes["juice"]) <= 0.8  # at most one vote apart
    assert silent.label == UNKNOWN and silent.votes == {} and silent.score == 0.0
    expected = shelf.counts()
    for t in (9, 20):
        expected[shelf.facings[t].label] -= 1
    expected[UNKNOWN] = 2
    assert counter.counts == {k: v for k, v in sorted(expected.items()) if v}
    assert counter.unknown == 2


def test_few_votes_are_unknown():
    counter = FacingCounter(CountingConfig(min_votes=5, settle_votes=5))
    boxes = Detections.from_arrays([[300, 100, 380, 200]], [0.9])
    for k in range(4):
        counter.update(k, k / 10, boxes, [("beans", 0.9)], (-20.0 * k, 0.0))
    (facing,) = [e for e in counter.finish() if isinstance(e, FacingCounted)]
    assert facing.label == UNKNOWN and facing.votes == {"beans": 3.6} and facing.score == 0.9


def test_strict_line_crossing_without_edges(shelf):
    """``count_edges=False``: only what the counting line passed counts."""
    xs = pan(-100, 900, 24)
    counter, _ = run(stream(shelf, xs, seed=10, **HARD), CountingConfig(count_edges=False))
    line0, line1 = xs[0] + 320, xs[-1] + 320
    passed = {f.id for f in shelf.facings if line0 + 10 < (f.box[0] + f.box[2]) / 2 < line1 - 10}
    matched = {f.id for f in truth_of(counter, shelf)}
    assert passed <= matched and len(matched) == counter.total <= len(passed) + 2
    assert {f.how for f in counter.facings} == {"line"}


def test_rows_are_numbered_top_to_bottom(shelf):
    counter, _ = run(stream(shelf, pan(-100, 900, 24), seed=11, **HARD))
    assert list(counter.row_counts) == [0, 1]
    rows = counter.shelfmap()["rows"]
    assert [r["row"] for r in rows] == [0, 1] and rows[0]["y"] < rows[1]["y"]
    assert [r["counts"] for r in rows] == [shelf.row_counts()[0], shelf.row_counts()[1]]


def test_cluster_rows():
    # two boards: facings of different heights standing on y = 200 and y = 400
    heights = [100, 120, 90, 110, 95, 100]
    bottoms = [200, 200, 200, 400, 400, 400]
    centres = [b - h / 2 for b, h in zip(bottoms, heights, strict=True)]
    assert cluster_rows(centres, heights) == [0, 0, 0, 1, 1, 1]
    assert cluster_rows(list(reversed(centres)), list(reversed(heights))) == [1, 1, 1, 0, 0, 0]
    assert cluster_rows([], []) == []


def test_shelfmap_orders_facings_and_gaps_with_metres(shelf):
    counter, _ = run(stream(shelf, pan(-100, 900, 24), seed=12, **HARD), pose=True)
    doc = counter.shelfmap()
    assert doc["metres"] and doc["facings"] == len(shelf.facings) and doc["gaps"] == len(shelf.gaps)
    assert doc["ended"] == "end" and doc["direction"] == 1
    for row in doc["rows"]:
        items = row["items"]
        truth = sorted([f for f in shelf.facings if f.row == row["row"]], key=lambda f: f.box[0])
        facings = [i for i in items if i["type"] == "facing"]
        assert [i["label"] for i in facings] == [f.label for f in truth]
        assert [i["x0"] for i in items] == sorted(i["x0"] for i in items)
        for item, f in zip(facings, truth, strict=True):
            assert abs(item["x0_m"] - f.box[0] / 1000) < 0.01  # odometry: 1 mm per world pixel
        gaps = [i for i in items if i["type"] == "gap"]
        assert len(gaps) == sum(g.row == row["row"] for g in shelf.gaps)
        for gap in gaps:  # a gap sits between its two neighbours in the ordered row
            k = items.index(gap)
            assert items[k - 1]["track_id"] == gap["left_track"] and items[k + 1]["track_id"] == gap["right_track"]
    line = [f for f in counter.facings if f.how == "line"]
    assert all(f.pose is not None and f.pose["aisle"] == "7" for f in counter.facings)
    assert all(abs(f.pose["x_m"] - (f.world_box[0] + f.world_box[2]) / 2000) < 0.03 for f in line)
    json.dumps(doc)


def test_a_facings_box_is_found_in_the_frame_it_names(shelf):
    """``box`` is the facing's best view, which need not be the frame it counted in: ``box_frame_index`` names
    the frame it is from, so box + that frame's camera offset is its world box."""
    frames = list(stream(shelf, pan(-100, 900, 24), seed=13))
    _, events = run(frames)
    facings = [e for e in events if isinstance(e, FacingCounted)]
    assert facings and all(0 <= f.box_frame_index <= f.frame_index for f in facings if f.how == "line")
    for f in facings:
        shown = frames[f.box_frame_index]
        assert f.box in [tuple(round(float(v), 2) for v in b) for b in shown.detections.xyxy], f
        offset = shown.offset
        assert abs(f.world_box[0] - (f.box[0] + offset[0])) < 0.05, (f, offset)


def test_events_serialize(shelf):
    _, events = run(stream(shelf, pan(-100, 900, 24), seed=13), pose=True)
    docs = [json.loads(json.dumps(e.to_dict())) for e in events]
    facing = next(d for d in docs if d["event"] == "facing")
    gap = next(d for d in docs if d["event"] == "gap")
    assert set(facing) >= {
        "track_id",
        "label",
        "score",
        "votes",
        "row",
        "box",
        "world_box",
        "frame_index",
        "t",
        "pose",
        "how",
        "box_frame_index",
    }
    assert len(facing["box"]) == 4 and facing["label"] in NAMES.values()
    assert set(gap) >= {
        "row",
        "x0",
        "x1",
        "width_facings",
        "left_label",
        "right_label",
        "left_track",
        "right_track",
        "world_box",
        "frame_index",
        "t",
        "pose",
    }


def test_labels_settle_before_they_are_reported(shelf):
    """A facing counts as the line passes it but is reported once ``settle_votes`` crops voted or its track ended."""
    counter = FacingCounter()
    waited = 0
    for f in stream(shelf, pan(-100, 900, 24), seed=14):
        for e in counter.update(f.index, f.t, f.detections, f.labels, f.offset):
            if isinstance(e, FacingCounted):
                waited = max(waited, f.index - e.frame_index)
    assert waited > 0 and counter.pending > 0
    counter.finish()
    assert counter.pending == 0 and counter.total == len(shelf.facings)


def test_reset_and_input_checks(shelf):
    counter, _ = run(stream(shelf, pan(-100, 900, 24), seed=15))
    assert counter.total
    counter.reset()
    assert (counter.total, counter.counts, counter.gaps, counter.live_tracks, counter.ended) == (0, {}, (), 0, None)
    counter2, _ = run(stream(shelf, pan(-100, 900, 24), seed=15))
    assert counter2.counts == shelf.counts()
    with pytest.raises(ValueError, match="2 detections but 1 labels"):
        counter.update(0, 0.0, Detections.from_arrays([[0, 0, 9, 9], [9, 0, 19, 9]], [1, 1]), [("a", 1.0)], (0, 0))
    for bad in ({"line": 1.0}, {"min_agreement": 1.0}, {"match_iou": 0.0}, {"min_hits": 0}, {"gap_share": 0}):
        with pytest.raises(ValueError):
            CountingConfig(**bad)


def test_empty_frames_and_a_scan_without_motion():
    counter = FacingCounter()
    assert counter.update(0, 0.0, Detections.empty(), [], (0.0, 0.0)) == []
    boxes = Detections.from_arrays([[100, 100, 180, 200], [180, 100, 260, 200]], [0.9, 0.9])
    for k in range(1, 6):
        counter.update(k, k / 10, boxes, [("tea", 0.9), ("tea", 0.8)], (0.0, 0.0))
    assert counter.total == 0 and counter.direction == 0  # nothing passed the line
    events = counter.finish()
    assert [e.how for e in events if isinstance(e, FacingCounted)] == ["end", "end"]
    assert counter.counts == {"tea": 2}


def test_world_tracker_keeps_touching_neighbours_apart():
    tracker = WorldTracker(match_iou=0.3, max_missed=2)
    row = np.array([[x, 0, x + 80, 100] for x in range(0, 640, 80)], np.float32)
    first = tracker.update(row)
    assert len(set(first.tolist())) == 8
    rng = np.random.default_rng(0)
    for _ in range(20):  # a few px of error in the world boxes, order shuffled
        order = rng.permutation(8)
        ids = tracker.update(row[order] + rng.normal(0, 3, row.shape).astype(np.float32))
        assert ids.tolist() == first[order].tolist()
    assert tracker.update(row[:0]).tolist() == [] and len(tracker.live_ids) == 8
    tracker.update(row[:0])
    tracker.update(row[:0])
    assert tracker.live_ids == []  # unseen for more than max_missed frames
    assert set(tracker.update(row).tolist()).isdisjoint(first.tolist())  # ids are never reused


def test_greedy_match():
    iou = np.array([[0.9, 0.5, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 0.1]])
    assert greedy_match(iou, 0.3) == [(0, 0)]
    assert greedy_match(iou, 0.15) == [(0, 0), (1, 1)]
    assert greedy_match(np.zeros((0, 3)), 0.3) == []


@pytest.mark.shared
@pytest.mark.parametrize("seed", [0, 3])
def test_real_pixels_motion_and_counting_agree(shared, seed):
    """A pan over a shelf composed from Freiburg *val* photos: offsets from :class:`MotionTracker` on the pixels
    (with noise and flicker), boxes and labels from the composer's truth. Every facing seen in at least
    ``min_hits`` frames counts once, and every gap reported is a true one."""
    from trainer.photo_library import PhotoLibrary
    from trainer.shelf_composer import compose_canvas
    from trainer.shelf_types import ShelfStyle

    library = PhotoLibrary.from_tree(shared / "datasets" / "freiburg_groceries" / "val")
    rng = np.random.default_rng(seed)
    canvas = compose_canvas(library, 2600, 480, rng, ShelfStyle(rows=(2, 2)))
    image = np.clip(canvas.image, 0, 255).astype(np.uint8)
    boxes = np.array([f.box for f in canvas.facings], np.float64)
    labels = [f.label for f in canvas.facings]
    motion, counter = MotionTracker(), FacingCounter()
    seen = np.zeros(len(boxes), np.int64)
    for k, x in enumerate(np.arange(0.0, 2600 - 640, 22.0)):
        frame = cv2.warpAffine(image, np.float32([[1, 0, -x], [0, 1, 0]]), (640, 480)).astype(np.float32)
        frame = frame * rng.uniform(0.85, 1.15) + rng.normal(0, 4, frame.shape).astype(np.float32)
        in_frame = boxes - [x, 0, x, 0]
        clipped = np.clip(in_frame, 0, [640, 480, 640, 480])
        area = np.prod(in_frame[:, 2:] - in_frame[:, :2], axis=1)
        share = np.prod((clipped[:, 2:] - clipped[:, :2]).clip(0), axis=1) / area
        keep = np.flatnonzero(share >= 0.5)
        seen[keep] += 1
        offset = motion.update(np.clip(frame, 0, 255).astype(np.uint8)).offset
        dets = Detections.from_arrays(clipped[keep], np.full(len(keep), 0.9))
        counter.update(k, k / 10, dets, [(labels[i], 0.9) for i in keep], offset)
    counter.finish()
    assert abs(motion.offset[0] - x) < 3.0
    expected = sorted(i for i in range(len(boxes)) if seen[i] >= counter.config.min_hits)
    visible = np.clip(boxes, 0, [2600, 480, 2600, 480]).astype(np.float32)  # facings cut by the canvas's borders
    iou = box_iou(np.array([f.world_box for f in counter.facings], np.float32), visible)
    assert (iou.max(axis=1) > 0.8).all()
    assert sorted(iou.argmax(axis=1).tolist()) == expected  # each once, none missed
    assert counter.counts == dict(sorted(Counter(labels[i] for i in expected).items()))
    for gap in counter.gaps:
        assert any(abs(gap.x0 - g.box[0]) < 4 and abs(gap.x1 - g.box[2]) < 4 for g in canvas.gaps), gap


def test_a_box_voted_background_is_no_facing_and_its_gap_shows():
    """A detector box on an empty slot whose crops read as an ignored label is dropped: the gap is reported."""
    world = np.array(
        [[100, 100, 180, 200], [180, 100, 260, 200], [260, 100, 340, 200], [340, 100, 420, 200]], np.float32
    )
    labels = [("tea", 0.9), ("background", 0.9), ("milk", 0.9), ("milk", 0.9)]
    for ignore, facings, gaps in (
        (frozenset({"background"}), {"milk": 2, "tea": 1}, 1),
        (frozenset(), {"background": 1, "milk": 2, "tea": 1}, 0),
    ):
        counter = FacingCounter(CountingConfig(), frame_width=640, ignore=ignore)
        events = []
        for k in range(60):
            offset = (8.0 * k - 200.0, 0.0)
            dets = Detections.from_arrays(world - np.array([*offset, *offset], np.float32), [0.9] * 4)
            events += counter.update(k, k / 10, dets, labels, offset)
        events += counter.finish("stop")
        assert counter.counts == facings and len(counter.gaps) == gaps, (ignore, counter.counts, counter.gaps)
        assert counter.rejected == (1 if ignore else 0)
        if gaps:
            gap = counter.gaps[0]
            assert (gap.left_label, gap.right_label) == ("tea", "milk") and gap.x1 - gap.x0 == pytest.approx(80, abs=1)
