"""The durable outbox: order, acknowledgement, bounds, and seq persistence across restarts."""

from __future__ import annotations

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
