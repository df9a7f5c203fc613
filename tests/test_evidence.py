"""The evidence ring (count and byte caps, oldest first, failed writes) and the per-track crop keeper."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config_fleet import EvidenceConfig
from edge.evidence import CropKeeper, Evidence, EvidenceRing, encode_jpeg
from tests.storage import fill, remount, small_tmpfs


def jpeg(size: int, seed: int = 0) -> bytes:
    """A real JPEG of noise, ``size`` pixels square (noise: the byte size grows with the pixels)."""
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    data = encode_jpeg(image, 80)
    assert data is not None
    return data


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.suffix == ".jpg")


def test_count_cap_prunes_oldest_first(tmp_path):
    ring = EvidenceRing(tmp_path / "ev", max_files=5, max_bytes=10**7)
    stored = [ring.add(f"t{i}", {"crop": jpeg(16, i), "frame": jpeg(32, i)}) for i in range(4)]
    assert all(s is not None and len(s) == 2 for s in stored)
    on_disk = names(tmp_path / "ev")
    assert len(on_disk) == 5 and ring.stats()["files"] == 5 and ring.pruned == 3
    kept = [f.name for s in stored for f in s or []][-5:]  # the newest five, in the order they were written
    assert on_disk == sorted(kept) and kept == sorted(kept)  # name order is age order (numbers of equal width)
    assert ring.bytes == sum((tmp_path / "ev" / n).stat().st_size for n in on_disk)


def test_byte_cap_and_files_match_their_records(tmp_path):
    one = jpeg(64)
    ring = EvidenceRing(tmp_path / "ev", max_files=1000, max_bytes=3 * len(one) + 10)
    for i in range(10):
        ring.add(f"t{i}", {"crop": jpeg(64, i)})
        assert ring.bytes <= ring.max_bytes
    on_disk = names(tmp_path / "ev")
    assert 2 <= len(on_disk) <= 3 and all(n.endswith(("t9-crop.jpg", "t8-crop.jpg", "t7-crop.jpg")) for n in on_disk)
    files = ring.add("t10", {"crop": one})
    assert files is not None
    path = tmp_path / "ev" / files[0].name
    assert files[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and files[0].bytes == len(one)
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    assert ring.add("huge", {"crop": jpeg(256)}) is None and ring.dropped == 1  # larger than the cap alone


def test_restart_counts_the_files_already_there(tmp_path):
    first = EvidenceRing(tmp_path / "ev", max_files=4, max_bytes=10**7)
    for i in range(3):
        first.add(f"t{i}", {"crop": jpeg(16, i)})
    again = EvidenceRing(tmp_path / "ev", max_files=4, max_bytes=10**7)
    assert again.stats()["files"] == 3
    for i in range(3, 6):
        again.add(f"t{i}", {"crop": jpeg(16, i)})
    assert len(names(tmp_path / "ev")) == 4 and names(tmp_path / "ev")[0].endswith("t2-crop.jpg")
    assert names(tmp_path / "ev")[-1].startswith("00000006-")  # numbering goes on after a restart
    (tmp_path / "ev" / "notes.jpg").write_bytes(b"not ours")
    (tmp_path / "ev" / "00000007-x-t1-crop.jpg.tmp").write_bytes(b"half")  # a crash mid-write
    smaller = EvidenceRing(tmp_path / "ev", max_files=2, max_bytes=10**7)  # a lowered cap applies at start
    assert len(names(tmp_path / "ev")) == 3 and smaller.stats()["files"] == 2  # notes.jpg is left alone
    assert not list((tmp_path / "ev").glob("*.tmp"))


@pytest.mark.slow
def test_read_only_and_full_disk_are_logged_once_and_skipped(tmp_path, caplog):
    with small_tmpfs(tmp_path / "mnt", "256k") as mnt:
        ring = EvidenceRing(mnt / "ev", max_files=100, max_bytes=10**7)
        assert ring.add("t0", {"crop": jpeg(16)}) is not None
        remount(mnt, "ro")
        with caplog.at_level(logging.DEBUG, logger="edge.evidence"):
            for i in range(5):
                assert ring.add(f"t{i + 1}", {"crop": jpeg(16, i), "frame": jpeg(32, i)}) is None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "Read-only file system" in warnings[0].getMessage()
        assert ring.failed == 5 and ring.stats()["files"] == 1 and len(names(mnt / "ev")) == 1
        remount(mnt, "rw")
        fill(mnt)  # the disk is full: ENOSPC, nothing half written left behind
        assert ring.add("full", {"crop": jpeg(64), "frame": jpeg(128)}) is None and ring.failed == 6
        assert names(mnt / "ev") == names(mnt / "ev")[:1] and not list((mnt / "ev").glob("*.tmp"))
        (mnt / "filler").unlink()
        assert ring.add("again", {"crop": jpeg(16)}) is not None  # it heals without a restart
        guarded = EvidenceRing(mnt / "ev", max_files=100, max_bytes=10**7, min_free_bytes=10**9)
        assert guarded.add("t", {"crop": jpeg(16)}) is None and guarded.dropped == 1  # would leave < 1 GB free


def test_keeper_keeps_each_tracks_best_crop_and_forgets_closed_tracks():
    keeper = CropKeeper(crop_max_side=32, frame_max_side=100, quality=80, max_tracks=3)
    frame = np.full((200, 400, 3), 7, np.uint8)
    crop = np.full((120, 60, 3), 200, np.uint8)
    keeper.offer(0, frame, [(1, crop, 0.4), (2, crop, 0.9)])
    keeper.offer(1, frame, [(1, crop, 0.7), (2, crop, 0.5)])
    one, two = keeper.take(1), keeper.take(2)
    assert one is not None and two is not None
    assert (one.score, one.frame_index, two.score, two.frame_index) == (0.7, 1, 0.9, 0)
    decoded = cv2.imdecode(np.frombuffer(one.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (32, 16, 3) and one.frame.shape == (50, 100, 3)  # longest sides capped
    assert keeper.take(1) is None  # taken once
    keeper.offer(2, frame, [(3, crop, 0.1), (4, crop, 0.1), (5, crop, 0.1), (6, crop, 0.1)])
    assert len(keeper) == 3 and keeper.overflow == 1  # bounded
    keeper.retain({4})
    assert len(keeper) == 1 and keeper.take(4) is not None


def test_policy_reports_only_doubtful_facings(tmp_path):
    ev = Evidence(EvidenceConfig(min_score=0.6, min_free_bytes=0), tmp_path / "ev")
    frame = np.random.default_rng(1).integers(0, 256, (240, 320, 3), np.uint8)
    ev.keeper.offer(5, frame, [(1, frame[10:80, 10:60], 0.9), (2, frame[10:80, 60:110], 0.3)])
    base = {"frame_index": 7, "votes": {}}
    assert ev.for_facing({**base, "track_id": 1, "label": "milk", "score": 0.9}, ev.keeper.take) is None
    doc = ev.for_facing({**base, "track_id": 2, "label": "milk", "score": 0.3}, ev.keeper.take)
    assert doc is not None and doc["reason"] == "low_score" and doc["frame_index"] == 5
    assert doc["facing_frame_index"] == 7 and [f["role"] for f in doc["files"]] == ["crop", "frame"]
    assert ev.for_facing({**base, "track_id": 3, "label": "unknown", "score": 0.0}, ev.keeper.take) is None
    assert ev.missing == 1  # doubtful, but no crop was kept for it
    snap = ev.snapshot(frame, 9)
    assert snap is not None and snap["reason"] == "snapshot" and len(snap["files"]) == 1
    assert ev.stats()["files"] == 3
