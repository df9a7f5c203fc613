"""The durable outbox: order, acknowledgement, bounds, and seq persistence across restarts."""

from __future__ import annotations

import os

import pytest

from edge.outbox import Outbox


def test_order_ack_and_restart(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.add("t", lambda s: f"m{s}".encode(), 1, False) for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5] and box.last_seq() == 5
    pending = box.pending()
    assert [p.payload for p in pending] == [b"m1", b"m2", b"m3", b"m4", b"m5"]
    box.ack(pending[1].id)
    box.close()
    again = Outbox(tmp_path / "o.sqlite")  # a restart (or a SIGKILL) loses nothing
    assert [p.payload for p in again.pending()] == [b"m1", b"m3", b"m4", b"m5"]
    assert again.add("t", lambda s: f"m{s}".encode(), 1, True) == 6  # seq keeps increasing
    assert again.pending(after_id=pending[3].id)[-1].retain is True


def test_bounds_drop_oldest_and_count(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_messages=10, max_bytes=10_000)
    for _ in range(15):
        box.add("t", lambda s: b"x" * 100, 1, False)
    assert box.depth() == 10 and box.dropped() == 5
    assert box.pending()[0].id == 6
    box.add("t", lambda s: b"y" * 9_500, 1, False)  # the byte bound: 9,500 + 5 x 100 fit in 10,000
    assert box.depth() == 6 and box.dropped() == 10


def test_failed_payload_burns_no_seq(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")

    def broken(seq: int) -> bytes:
        raise ValueError("cannot serialize")

    with pytest.raises(ValueError):
        box.add("t", broken, 1, False)
    assert box.last_seq() == 0 and box.depth() == 0
    assert box.add("t", lambda s: b"ok", 1, False) == 1


def payload(seq: int) -> bytes:
    return f'{{"seq": {seq}}}'.encode()


def test_corrupt_file_is_moved_aside_and_seq_continues(tmp_path):
    from tests.storage import corrupt

    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    assert [box.add("t", payload, 1, False) for _ in range(3)] == [1, 2, 3]
    box.close()
    corrupt(path)
    again = Outbox(path)
    notices = again.take_notices()
    assert len(notices) == 1 and "was corrupt" in notices[0] and "moved to o.sqlite.corrupt-" in notices[0], notices
    aside = list(tmp_path.glob("o.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"not a database")  # kept for forensics
    assert again.storage()["state"] == "ok" and again.take_notices() == []
    seq = again.add("t", payload, 1, False)
    assert seq > 3  # never reused: the side file's ceiling is above every seq taken
    again.close()
    assert Outbox(path).last_seq() == seq  # the fresh file stores where seq is


def test_deleted_file_does_not_restart_seq(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.add("t", payload, 1, False)
    box.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"o.sqlite{suffix}").unlink(missing_ok=True)
    assert Outbox(path).add("t", payload, 1, False) > 1


@pytest.fixture
def tmpfs(tmp_path):
    from tests.storage import small_tmpfs

    with small_tmpfs(tmp_path / "mnt", "256k") as mnt:
        yield mnt


def test_disk_full_keeps_order_in_memory_and_drains(tmpfs):
    from tests.storage import fill

    path = tmpfs / "state" / "o.sqlite"
    box = Outbox(path, retry_s=0.0)
    assert [box.add("t", payload, 1, False) for _ in range(3)] == [1, 2, 3]
    box.ack(box.pending()[0].id)
    filler = fill(tmpfs)
    seqs = [box.add("t", lambda s: payload(s) * 200, 1, False) for _ in range(20)]  # ~2 kB each: the disk refuses
    assert seqs == list(range(4, 24))  # no seq burnt, none reused
    state = box.storage()
    assert state["state"] == "degraded" and "full" in str(state["detail"]) and int(state["memory"]) > 0, state
    assert [p.id for p in box.pending()] == list(range(2, 24)) and box.depth() == 22  # disk rows, then memory
    box.ack(5)  # acknowledged while only in memory: never written
    filler.unlink()
    assert box.storage() == {"state": "ok", "detail": "", "memory": 0}
    box.add("t", payload, 1, False)
    box.close()
    again = Outbox(path)
    assert [p.id for p in again.pending()] == [2, 3, 4, *range(6, 25)]  # in order, on disk, nothing lost
    assert again.last_seq() == 24


def test_read_only_state_dir_at_start_runs_in_memory(tmpfs, caplog):
    from tests.storage import remount

    path = tmpfs / "o.sqlite"
    box = Outbox(path)
    box.add("t", payload, 1, False)
    box.close()
    remount(tmpfs, "ro")
    try:
        with caplog.at_level("WARNING", logger="edge.outbox"):
            box = Outbox(path, retry_s=0.0)
            assert [box.add("t", payload, 1, False) for _ in range(3)] == [2, 3, 4]  # seq read from the ro file
            assert box.storage()["state"] == "degraded"
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and "not writable" in warnings[0].getMessage(), [r.getMessage() for r in warnings]
        assert [p.id for p in box.pending()] == [2, 3, 4]
    finally:
        remount(tmpfs, "rw")
    assert box.storage()["state"] == "ok"  # the next retry opens the file and writes the queue
    box.close()
    assert [p.id for p in Outbox(path).pending()] == [1, 2, 3, 4]


def test_damaged_file_gives_back_the_rows_it_still_can(tmp_path):
    """integrity_check fails (a damaged index page) but the messages table reads: those rows are not lost."""
    import sqlite3

    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    for _ in range(3):
        box.add("t", payload, 1, False)
    box.ack(1)
    box.close()  # the last connection checkpoints the WAL into the file
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_meta_1'").fetchone()[0]
    db.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
    again = Outbox(path)
    notices = again.take_notices()
    assert len(notices) == 1 and "2 unsent messages recovered" in notices[0], notices
    assert [(p.id, p.payload) for p in again.pending()] == [(2, payload(2)), (3, payload(3))]
    assert again.add("t", payload, 1, False) > 3
    again.close()
    assert [p.id for p in Outbox(path).pending()][:2] == [2, 3]  # written to the fresh file


def test_memory_queue_is_bounded_and_counts_what_it_drops(tmp_path, caplog):
    """state_dir is a file: in-memory only from the start, one warning, the oldest dropped beyond the bound."""
    (tmp_path / "state").write_text("not a folder")
    with caplog.at_level("WARNING", logger="edge.outbox"):
        box = Outbox(tmp_path / "state" / "o.sqlite", max_messages=10, retry_s=0.0)
        assert [box.add("t", payload, 1, False) for _ in range(15)] == list(range(1, 16))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["outbox storage degraded"]
    assert [p.id for p in box.pending()] == list(range(6, 16)) and box.dropped() == 5 and box.depth() == 10
    assert box.storage()["state"] == "degraded" and "not writable" in str(box.storage()["detail"])
    box.ack(6)
    assert box.pending(after_id=0, limit=2)[0].id == 7


def test_garbage_over_the_file_while_running_loses_nothing(tmp_path):
    """A failing card overwrites the outbox file while the agent runs: writes go on (the write-ahead log), nothing
    raises, and the next start finds every row and the seq where they were."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    assert [box.add("t", payload, 1, False) for _ in range(3)] == [1, 2, 3]
    size = path.stat().st_size
    path.write_bytes(b"not a database" + os.urandom(max(size, 4096)))
    assert [box.add("t", payload, 1, False) for _ in range(3)] == [4, 5, 6]
    assert box.storage()["state"] == "ok" and [m.id for m in box.pending()] == [1, 2, 3, 4, 5, 6]
    box.close()
    again = Outbox(path)
    assert [m.id for m in again.pending()] == [1, 2, 3, 4, 5, 6] and again.last_seq() == 6
    assert again.add("t", payload, 1, False) == 7
    again.close()
