"""A bundle as one archive for rollout: packed on the workstation, unpacked on the robot.

The archive is a plain ``.tar.gz`` of the bundle's files (no folders, links or devices), in a
fixed order with zeroed owners and times, so the same bundle always packs to the same bytes and
the same sha256. Unpacking trusts nothing in it: only regular files with plain names, a size cap
before and after decompression, into a fresh folder that is renamed into place only when whole.
The signature check comes after (``edge.bundle.load_bundle`` with the trusted keys).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from edge.errors import BundleError

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
MAX_FILES = 32


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_bundle(bundle: str | Path) -> bytes:
    """The bundle folder's files as deterministic ``.tar.gz`` bytes."""
    root = Path(bundle)
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise BundleError(f"{root}: no files to pack")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in files:
            data = p.read_bytes()
            info = tarfile.TarInfo(p.name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def unpack_bundle(data: bytes, dest: Path, max_bytes: int) -> Path:
    """Unpack archive bytes into the new folder ``dest`` (atomically: a temporary sibling, then a rename).

    Raises :class:`BundleError` naming the problem: not a gzip tar, too large, a member that is
    not a plain file, an unsafe or repeated name.
    """
    if len(data) > max_bytes:
        raise BundleError(f"bundle archive of {len(data)} bytes is over the {max_bytes}-byte limit")
    if dest.exists():
        raise BundleError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BundleError(f"bundle archive is not a gzip file ({exc})") from None
        if len(raw) > max_bytes:
            raise BundleError(f"bundle archive unpacks to {len(raw)} bytes, over the {max_bytes}-byte limit")
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
                members = tar.getmembers()
                if len(members) > MAX_FILES:
                    raise BundleError(f"bundle archive holds {len(members)} entries (at most {MAX_FILES})")
                seen: set[str] = set()
                for m in members:
                    if not m.isreg() or not _NAME.match(m.name) or m.name in seen:
                        raise BundleError(f"bundle archive entry {m.name[:100]!r} is not a plain file name")
                    seen.add(m.name)
                    src = tar.extractfile(m)
                    assert src is not None  # a regular member always has data
                    (tmp / m.name).write_bytes(src.read())
        except tarfile.TarError as exc:
            raise BundleError(f"bundle archive is not a tar file ({exc})") from None
        for p in tmp.iterdir():
            p.chmod(0o644)
        tmp.chmod(0o755)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
