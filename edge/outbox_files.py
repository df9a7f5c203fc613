"""The durable outbox's files: the SQLite database (schema, integrity, read-only reads) and the seq side file.

:func:`connect` opens or creates the database as :class:`edge.outbox.Outbox` writes it (WAL,
``synchronous=FULL``, ``outbox`` and ``meta`` tables, the integrity check that finds a corrupt
file); :func:`readable_seq` and :func:`salvage` read what a read-only or damaged file still
holds, without writing next to it; :class:`SeqCeiling` keeps ``seq`` from going back when the
database is lost.

Kept apart from :mod:`edge.outbox` because these are facts about files, with no state of the
outbox: the :class:`~edge.outbox.Outbox` decides when to open, replace a corrupt file, degrade
to memory and retry, and these helpers only do the file work it asks for.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("edge.outbox")  # the outbox's lines keep its logger name, as before the split

SEQ_BLOCK = 1000  # seqs reserved per write of the side file (one fsync'd rename per SEQ_BLOCK messages)


@dataclass(frozen=True)
class Pending:
    id: int  # the message's seq
    topic: str
    payload: bytes
    qos: int
    retain: bool


def is_corruption(exc: BaseException) -> bool:
    """True for "file is not a database" / "database disk image is malformed": retrying cannot help."""
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def utc_stamp() -> str:
    """A file-name-safe UTC time, so moved-aside files sort by when they were found bad."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class SeqCeiling:
    """A tiny side file holding a ``seq`` no message has reached yet.

    It matters only when the database is lost (corrupt, unreadable): the new one starts from
    here, so ``seq`` never goes back. Writing the exact seq would cost an fsync per message;
    reserving a block costs one per ``SEQ_BLOCK`` messages, at the price of a jump of up to a
    block after a replaced outbox (a jump that the ``error`` message about it explains).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = self.read()

    def read(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def cover(self, seq: int) -> None:
        """Make sure the ceiling is above ``seq`` (before ``seq`` is used); failures are only logged."""
        if seq < self.value:
            return
        value = seq + SEQ_BLOCK
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(f"{value}\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
            self.value = value
        except OSError as exc:
            log.debug("seq side file %s not written: %s", self.path, exc)


def connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the outbox database at ``path``: integrity checked, WAL, ``synchronous=FULL``, the schema
    in place; raises ``sqlite3.DatabaseError`` for a corrupt file."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        check = db.execute("PRAGMA integrity_check(1)").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed (integrity_check: {check})")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(
            """
                CREATE TABLE IF NOT EXISTS outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
                    qos INTEGER NOT NULL, retain INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                INSERT OR IGNORE INTO meta VALUES ('seq', 0), ('dropped', 0);
                """
        )
    except BaseException:
        db.close()
        raise
    return db


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only view that writes nothing next to the file (no -shm, no WAL replay)."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def readable_seq(path: Path) -> int | None:
    """The seq stored in a database that cannot be written (read-only disk) or is damaged; None if unreadable."""
    if not path.exists():
        return None
    try:
        db = open_readonly(path)
        try:
            return int(db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
        finally:
            db.close()
    except (sqlite3.Error, TypeError, ValueError):
        return None


def salvage(path: Path) -> list[Pending]:
    """The unsent rows still readable from a damaged database (often none: then they are in the moved file)."""
    try:
        db = open_readonly(path)
        try:
            rows = db.execute("SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id").fetchall()
        finally:
            db.close()
        return [Pending(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]
    except (sqlite3.Error, TypeError, ValueError):
        return []
