"""A durable outbox: QoS >= 1 messages are on disk before they are published.

SQLite in WAL mode with ``synchronous=FULL``: a message written here survives a SIGKILL or a
power cut, and is deleted only after the broker acknowledged it. The sequence counter lives in
the same database, so ``seq`` keeps increasing across restarts. Bounded by count and bytes;
past either bound the oldest messages go first and are counted.

Storage faults never end the agent. When a write fails (disk full, read-only, I/O error) the
outbox turns ``degraded``: new messages wait in a bounded in-memory queue, still numbered
without gaps, and the writes are retried every ``retry_s``; when they succeed the queue is
written in order and the state is ``ok`` again. A state directory that cannot be written at all
(read-only, full, not a directory) gives the same in-memory mode from the start. A corrupt
database file is moved aside (``<name>.corrupt-<UTC time>``, kept for forensics), whatever rows
can still be read from it are copied into a fresh one, and :meth:`Outbox.take_notices` hands the
agent a line for an ``error`` message.

The row id of every message is its ``seq``, so a message keeps its identity (and the MQTT link
its place) whether it sits in memory or on disk.

The files themselves (the database's schema and integrity check, read-only reads of a damaged
or unwritable one, the seq side file) are in :mod:`edge.outbox_files`; this module is the
outbox's state: the in-memory queue, degrading and retrying, bounds, acknowledgements.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from edge.outbox_files import SEQ_BLOCK as SEQ_BLOCK
from edge.outbox_files import Pending as Pending
from edge.outbox_files import SeqCeiling as SeqCeiling
from edge.outbox_files import connect, readable_seq, salvage
from edge.outbox_files import is_corruption as is_corruption
from edge.outbox_files import utc_stamp as utc_stamp

log = logging.getLogger(__name__)

MEMORY_MAX_BYTES = 16 * 2**20  # the in-memory queue's byte bound (and never above max_bytes)


class StorageState:
    OK = "ok"
    DEGRADED = "degraded"


class Outbox:
    def __init__(
        self, path: str | Path, max_messages: int = 100_000, max_bytes: int = 64 * 2**20, retry_s: float = 5.0
    ) -> None:
        self.path = Path(path)
        self.max_messages, self.max_bytes, self.retry_s = max_messages, max_bytes, retry_s
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._memory: deque[Pending] = deque()  # taken seqs not written yet, in order
        self._memory_bytes = 0
        self._unacked_deletes: set[int] = set()  # acknowledged, but the DELETE failed: not pending any more
        self._memory_dropped = 0
        self._notices: list[str] = []
        self._detail = ""
        self._next_retry = 0.0
        self._seq = 0
        self._ceiling = SeqCeiling(self.path.with_name(self.path.name + ".seq"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except (OSError, sqlite3.Error) as exc:
            self._db = None
            readable = readable_seq(self.path)  # a read-only disk: the file still says where seq is
            self._seq = max(self._seq, self._ceiling.value if readable is None else readable)
            self._degrade(self._unwritable(exc))

    def _unwritable(self, exc: BaseException) -> str:
        """The detail while there is no database at all: the same words at start and on every retry."""
        return (
            f"state directory {self.path.parent} not writable ({type(exc).__name__}: {exc}); "
            "messages are kept in memory only until it is"
        )

    # -- opening ------------------------------------------------------------------------------
    def _open(self) -> None:
        """Open (or create) the database; a corrupt one is moved aside and replaced."""
        if not self.path.exists():  # a first start, or a file deleted by hand: never reuse a seq of the old one
            self._seq = max(self._seq, self._ceiling.value)
        try:
            self._db = connect(self.path)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._replace_corrupt(str(exc))
            self._db = connect(self.path)
        stored = int(self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
        if stored < self._seq:  # a fresh file: store where seq continues before any message is taken
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (self._seq,))
        self._seq = max(self._seq, stored)

    def _replace_corrupt(self, reason: str) -> None:
        """Move the bad file (and its WAL) aside, keep what can be read, and say so once."""
        salvaged = salvage(self.path)
        # a damaged file's own counter may be damaged too: never go below the side file's ceiling
        last = max(readable_seq(self.path) or 0, self._ceiling.value, max((p.id for p in salvaged), default=0))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{utc_stamp()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        self._seq = max(self._seq, last)
        self._memory.extendleft(reversed(salvaged))  # older than anything queued: written first by the next drain
        self._memory_bytes += sum(len(p.payload) for p in salvaged)
        message = (
            f"outbox {self.path} was corrupt ({reason[:200]}): moved to {aside.name}, a fresh one started; "
            f"{len(salvaged)} unsent messages recovered from it; seq continues after {last}"
        )
        log.error("%s", message)
        self._notices.append(message)

    # -- the storage state --------------------------------------------------------------------
    def _degrade(self, detail: str) -> None:
        """Enter (or stay in) the degraded state; the first line of a fault is a warning, repeats are debug."""
        if not self._detail:
            log.warning("outbox storage degraded: %s", detail)
        else:
            log.debug("outbox storage still degraded: %s", detail)
        self._detail = detail
        self._next_retry = time.monotonic() + self.retry_s

    def storage(self) -> dict[str, object]:
        """``state`` (ok/degraded), ``detail`` and ``memory`` (messages held only in memory), for status and stats."""
        with self._lock:
            self.retry_if_due()
            state = StorageState.DEGRADED if self._detail else StorageState.OK
            return {"state": state, "detail": self._detail, "memory": len(self._memory)}

    def take_notices(self) -> list[str]:
        """Problems the agent should publish as ``error`` messages (each handed out once)."""
        with self._lock:
            notices, self._notices = self._notices, []
            return notices

    def retry_if_due(self) -> bool:
        """Reopen and write the in-memory queue when the retry time has come; True when storage is ok."""
        with self._lock:
            if not self._detail and not self._memory and not self._unacked_deletes:
                return True
            if time.monotonic() < self._next_retry:
                return False
            return self._drain()

    def _drain(self) -> bool:
        try:
            if self._db is None:
                try:
                    self._open()
                except (OSError, sqlite3.Error) as exc:
                    if not (isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc)):
                        self._degrade(self._unwritable(exc))
                        return False
                    raise
            assert self._db is not None
            count = len(self._memory)
            self._write(list(self._memory), self._seq)
            if self._unacked_deletes:
                self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in self._unacked_deletes])
                self._unacked_deletes.clear()
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc) and self._db is not None:
                self._db.close()
                self._db = None
                try:
                    self._replace_corrupt(str(exc))
                except OSError as move_exc:
                    exc = move_exc
            self._degrade(f"{type(exc).__name__}: {exc}")
            return False
        self._memory.clear()
        self._memory_bytes = 0
        if self._detail:
            log.info("outbox storage ok again: %d messages kept in memory are now on disk", count)
        self._detail = ""
        return True

    # -- writing ------------------------------------------------------------------------------
    def _write(self, messages: list[Pending], seq: int) -> None:
        """Insert messages (id = seq) and store ``seq`` as the last one taken, in one transaction; raises on failure."""
        assert self._db is not None
        self._ceiling.cover(seq)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (id, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                [(m.id, m.topic, m.payload, m.qos, int(m.retain)) for m in messages],
            )
            self._db.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = 'seq'", (seq,))
            self._enforce_bounds()
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (SQLITE_FULL does): a second ROLLBACK would raise
            # "cannot rollback - no transaction is active" and hide the real error.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def add(self, topic: str, make_payload: Callable[[int], bytes], qos: int, retain: bool) -> int:
        """Take the next ``seq``, build the message with it and store both in one transaction.

        One commit (one fsync) per durable message, and a failing ``make_payload`` burns no seq,
        which would look like a lost message downstream. When the disk refuses the write, the
        message joins the in-memory queue with its seq (still no gap) and the agent goes on.
        """
        with self._lock:
            self.retry_if_due()
            seq = self._seq + 1
            message = Pending(seq, topic, make_payload(seq), qos, retain)
            if self._db is not None and not self._memory and not self._detail:
                try:
                    self._write([message], seq)
                    self._seq = seq
                    return seq
                except (OSError, sqlite3.Error) as exc:
                    self._degrade(f"{type(exc).__name__}: {exc}; messages are kept in memory until writes succeed")
            self._seq = seq
            self._memory.append(message)
            self._memory_bytes += len(message.payload)
            self._bound_memory()
            return seq

    def _bound_memory(self) -> None:
        """The in-memory queue drops its oldest beyond the bounds (counted, and a gap in seq says so)."""
        limit_bytes = min(self.max_bytes, MEMORY_MAX_BYTES)
        while len(self._memory) > self.max_messages or (self._memory_bytes > limit_bytes and len(self._memory) > 1):
            gone = self._memory.popleft()
            self._memory_bytes -= len(gone.payload)
            self._memory_dropped += 1

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def _enforce_bounds(self) -> None:
        assert self._db is not None
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        dropped = 0
        while count > self.max_messages or size > self.max_bytes:
            row = self._db.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
            count, size, dropped = count - 1, size - row[1], dropped + 1
        if dropped:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,))

    # -- reading and acknowledging ------------------------------------------------------------
    def pending(self, after_id: int = 0, limit: int = 100) -> list[Pending]:
        """Unacknowledged messages in the order they were written (on disk first, then in memory)."""
        with self._lock:
            out: list[Pending] = []
            if self._db is not None:
                try:
                    rows = self._db.execute(
                        "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                        (after_id, limit),
                    ).fetchall()
                    out = [Pending(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]
                    out = [p for p in out if p.id not in self._unacked_deletes]
                except sqlite3.Error as exc:
                    self._degrade(f"{type(exc).__name__}: {exc} (reading the outbox)")
            out += [p for p in self._memory if p.id > after_id][: max(0, limit - len(out))]
            return out

    def ack(self, message_id: int) -> None:
        with self._lock:
            for i, p in enumerate(self._memory):
                if p.id == message_id:
                    del self._memory[i]
                    self._memory_bytes -= len(p.payload)
                    return
            if self._db is None:
                return
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            except sqlite3.Error as exc:  # a full disk can refuse a delete too: remember it, retry later
                self._unacked_deletes.add(message_id)
                self._degrade(f"{type(exc).__name__}: {exc} (deleting acknowledged messages)")

    def depth(self) -> int:
        with self._lock:
            on_disk = self._count_on_disk("SELECT COUNT(*) FROM outbox")
            return max(0, on_disk - len(self._unacked_deletes)) + len(self._memory)

    def dropped(self) -> int:
        with self._lock:
            return self._count_on_disk("SELECT value FROM meta WHERE key = 'dropped'") + self._memory_dropped

    def _count_on_disk(self, query: str) -> int:
        """A number the database holds; 0 without a database or when it cannot be read (a broken file is
        reported where it breaks, not by every stats call). The caller holds the lock."""
        if self._db is None:
            return 0
        with contextlib.suppress(sqlite3.Error):
            return int(self._db.execute(query).fetchone()[0])
        return 0

    def close(self) -> None:
        with self._lock:
            if self._memory or self._detail:
                self._next_retry = 0.0
                self.retry_if_due()
            if self._memory:
                log.warning(
                    "%d messages were never written to the outbox (storage: %s) and are lost with this process",
                    len(self._memory),
                    self._detail,
                )
            if self._db is not None:
                self._db.close()
                self._db = None
