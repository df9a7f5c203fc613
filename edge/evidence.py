"""Evidence images: what a doubtful count was counted from, kept on the robot for an auditor.

A miscount can only be audited with the picture it came from. For every counted facing whose
label is ``unknown`` or whose score is below ``evidence.min_score`` (and on ``cmd/snapshot``) the
agent writes a small JPEG crop of the facing plus a downscaled JPEG of the frame it came from
into ``state_dir/evidence/`` and publishes an ``evidence`` message naming the files (no image
bytes: MQTT carries the links, the robot keeps the pictures; docs/agent.md, "Evidence").

Three small parts, so each is testable on its own:

- :class:`CropKeeper` holds, per open track, the best (highest score) crop seen so far as JPEG
  bytes and a reference to that frame's thumbnail. Memory stays bounded: only tracks that may
  still be reported are kept (:meth:`CropKeeper.retain`), at most ``max_tracks`` of them, and a
  thumbnail is shared by every track that picked the same frame.
- :class:`EvidenceRing` is the folder: retention by file count and bytes, oldest deleted first,
  a write skipped (never retried, never fatal) when it fails or the disk is nearly full.
- :class:`Evidence` is the policy the agent calls: which facings need evidence, and the
  ``evidence`` message body.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config_fleet import EvidenceConfig
from edge.shelf_events import UNKNOWN

log = logging.getLogger(__name__)
#: Tracks whose crops are held at once; beyond it new tracks keep none (a pathological frame of
#: hundreds of boxes must not grow memory; a shelf in view has tens).
MAX_TRACKS = 256


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` with its longest side at most ``max_side`` (area interpolation); small ones as they are."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w, 1)
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes | None:
    """JPEG bytes of a BGR (or grey) image; ``None`` when OpenCV cannot encode it (an empty crop)."""
    if image.size == 0:
        return None
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(data.tobytes()) if ok else None


@dataclass(frozen=True)
class Kept:
    """A track's best crop so far: JPEG bytes, its score and the (shared, downscaled) frame it came from."""

    jpeg: bytes
    score: float
    frame: np.ndarray
    frame_index: int


class CropKeeper:
    """Best crop per open track (see the module docstring). Used on the inference thread only."""

    def __init__(self, crop_max_side: int, frame_max_side: int, quality: int, max_tracks: int = MAX_TRACKS) -> None:
        self.crop_max_side, self.frame_max_side, self.quality = crop_max_side, frame_max_side, quality
        self.max_tracks = max_tracks
        self._kept: dict[int, Kept] = {}
        self.overflow = 0  # offers refused because max_tracks tracks were held

    def __len__(self) -> int:
        return len(self._kept)

    def offer(self, frame_index: int, frame: np.ndarray, crops: Iterable[tuple[int, np.ndarray, float]]) -> None:
        """This frame's ``(track id, crop, score)`` s: a crop replaces a track's kept one when it scores higher.

        The frame is downscaled once, and only when some track keeps a crop of it, so a frame
        where nothing improved costs a dictionary lookup per box.
        """
        thumb: np.ndarray | None = None
        for tid, crop, score in crops:
            old = self._kept.get(tid)
            if old is not None and score <= old.score:
                continue
            if old is None and len(self._kept) >= self.max_tracks:
                self.overflow += 1
                continue
            jpeg = encode_jpeg(downscale(crop, self.crop_max_side), self.quality)
            if jpeg is None:
                continue
            if thumb is None:
                thumb = downscale(frame, self.frame_max_side)
                if thumb is frame:
                    thumb = frame.copy()  # the capture may reuse its buffer; a small frame is cheap to copy
            self._kept[tid] = Kept(jpeg, float(score), thumb, frame_index)

    def take(self, track_id: int) -> Kept | None:
        """The track's crop, forgotten here (a reported facing needs it once)."""
        return self._kept.pop(track_id, None)

    def retain(self, track_ids: Iterable[int]) -> None:
        """Forget every track not in ``track_ids`` (ended uncounted, or reported without needing evidence)."""
        keep = set(track_ids)
        for tid in [t for t in self._kept if t not in keep]:
            del self._kept[tid]

    def clear(self) -> None:
        self._kept.clear()


@dataclass(frozen=True)
class StoredFile:
    name: str  # relative to the ring's folder
    role: str  # "crop" or "frame"
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "bytes": self.bytes, "sha256": self.sha256}


class EvidenceRing:
    """A folder of evidence files bounded by count and bytes; the oldest files go first.

    File names start with a sequence number that goes on across restarts (then the UTC time, for
    people), so age order never depends on the clock: a robot without a real-time clock may boot
    in 1970. Files left by an earlier run are counted at start, so a restart cannot overshoot
    the caps; files not named by the ring are left alone.
    A write that fails (read-only or full disk, permissions) is skipped: logged once as a
    warning (then at debug level) and counted in ``failed``; fewer than ``min_free_bytes`` free
    on the file system also skips (``dropped``), so evidence never fills the disk.
    """

    def __init__(self, root: Path, max_files: int, max_bytes: int, min_free_bytes: int = 0) -> None:
        self.root, self.max_files, self.max_bytes, self.min_free_bytes = root, max_files, max_bytes, min_free_bytes
        self._files: deque[tuple[str, int]] = deque()  # (name, size), oldest first
        self.bytes = 0
        self.written = 0  # files written by this process
        self.pruned = 0  # files deleted to stay within the caps
        self.dropped = 0  # sets not written: larger than the caps alone, or the disk nearly full
        self.failed = 0  # sets not written because writing failed
        self._warned = False
        self._counter = 0
        self._scan()

    def _scan(self) -> None:
        try:
            ours = [p for p in self.root.iterdir() if p.name.split("-", 1)[0].isdigit()]
        except OSError:
            return  # not there yet (made on the first write) or unreadable (the first write says why)
        for tmp in (p for p in ours if p.suffix == ".tmp"):  # a write cut short by a crash or power loss
            tmp.unlink(missing_ok=True)
        paths = [p for p in ours if p.suffix == ".jpg"]
        for path in sorted(paths, key=lambda p: int(p.name.split("-", 1)[0])):
            try:
                size = path.stat().st_size
            except OSError:
                continue
            self._files.append((path.name, size))
            self.bytes += size
            self._counter = int(path.name.split("-", 1)[0])
        self._prune()

    def stats(self) -> dict[str, int]:
        """For the stats message: what the folder holds and what was given up."""
        return {
            "files": len(self._files),
            "bytes": self.bytes,
            "written": self.written,
            "pruned": self.pruned,
            "dropped": self.dropped,
            "failed": self.failed,
        }

    def add(self, stem: str, images: dict[str, bytes]) -> list[StoredFile] | None:
        """Write ``images`` (role -> JPEG bytes) as ``<n>-<UTC time>-<stem>-<role>.jpg``; ``None`` when skipped."""
        size = sum(len(b) for b in images.values())
        if size > self.max_bytes or len(images) > self.max_files:
            self.dropped += 1
            return None
        self._counter += 1
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
        prefix = f"{self._counter:08d}-{stamp}"
        written: list[StoredFile] = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if self.min_free_bytes and shutil.disk_usage(self.root).free - size < self.min_free_bytes:
                self.dropped += 1
                self._warn(f"evidence not written: under {self.min_free_bytes} bytes free in {self.root}")
                return None
            self._prune(size, len(images))  # room first: the folder never holds more than the caps, even briefly
            for role, data in images.items():
                name = f"{prefix}-{stem}-{role}.jpg"
                _write_atomic(self.root / name, data)
                written.append(StoredFile(name, role, len(data), hashlib.sha256(data).hexdigest()))
        except OSError as exc:
            self.failed += 1
            self._warn(f"evidence not written to {self.root}: {exc}")
            for f in written:  # half a set is no evidence
                (self.root / f.name).unlink(missing_ok=True)
            return None
        for f in written:
            self._files.append((f.name, f.bytes))
            self.bytes += f.bytes
            self.written += 1
        self._prune()
        return written

    def _prune(self, incoming_bytes: int = 0, incoming_files: int = 0) -> None:
        """Delete the oldest files until the ring plus what is about to be written fits both caps."""
        while self._files and (
            len(self._files) + incoming_files > self.max_files or self.bytes + incoming_bytes > self.max_bytes
        ):
            name, size = self._files.popleft()
            try:
                (self.root / name).unlink(missing_ok=True)
            except OSError as exc:
                self._warn(f"evidence file {name} not deleted: {exc}")
            self.bytes -= size
            self.pruned += 1

    def _warn(self, message: str) -> None:
        """Once as a warning: a read-only disk must not fill the log at every counted facing."""
        if self._warned:
            log.debug("%s", message)
        else:
            self._warned = True
            log.warning("%s (further evidence problems are logged at debug level)", message)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


class Evidence:
    """The agent's evidence policy: which counted facings need pictures, and the ``evidence`` message body."""

    def __init__(self, cfg: EvidenceConfig, root: Path) -> None:
        self.cfg = cfg
        self.ring = EvidenceRing(root, cfg.max_files, cfg.max_bytes, cfg.min_free_bytes)
        self.keeper = CropKeeper(cfg.crop_max_side, cfg.frame_max_side, cfg.jpeg_quality)
        self.missing = 0  # doubtful facings with no crop kept (all over the track cap)

    def needs(self, facing: dict[str, Any]) -> bool:
        return facing.get("label") == UNKNOWN or float(facing.get("score", 0.0)) < self.cfg.min_score

    def for_facing(self, facing: dict[str, Any], take: Callable[[int], Kept | None]) -> dict[str, Any] | None:
        """The message body for a doubtful facing (``None``: not doubtful, no crop, or not written)."""
        if not self.needs(facing):
            return None
        tid = int(facing["track_id"])
        kept = take(tid)
        if kept is None:
            self.missing += 1
            return None
        frame = encode_jpeg(kept.frame, self.cfg.jpeg_quality)
        images = {"crop": kept.jpeg, **({"frame": frame} if frame is not None else {})}
        files = self.ring.add(f"t{tid}", images)
        if files is None:
            return None
        reason = "unknown" if facing.get("label") == UNKNOWN else "low_score"
        return {
            "reason": reason,
            "track_id": tid,
            "label": facing.get("label"),
            "score": facing.get("score"),
            "frame_index": kept.frame_index,
            "crop_score": round(kept.score, 4),
            "facing_frame_index": facing.get("frame_index"),
            "files": [f.to_dict() for f in files],
        }

    def snapshot(self, image: np.ndarray, frame_index: int) -> dict[str, Any] | None:
        """The message body for ``cmd/snapshot`` (the current frame, downscaled); ``None`` when not written."""
        frame = encode_jpeg(downscale(image, self.cfg.frame_max_side), self.cfg.jpeg_quality)
        if frame is None:
            return None
        files = self.ring.add("snapshot", {"frame": frame})
        if files is None:
            return None
        return {
            "reason": "snapshot",
            "track_id": None,
            "label": None,
            "score": None,
            "frame_index": frame_index,
            "files": [f.to_dict() for f in files],
        }

    def stats(self) -> dict[str, int]:
        return {**self.ring.stats(), "missing": self.missing, "tracks_held": len(self.keeper)}
