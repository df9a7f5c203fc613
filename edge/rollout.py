"""Model rollout over MQTT: desired version -> download -> verify -> swap -> canary -> active or rolled back.

``shelfscan-convert publish`` puts a signed bundle on the broker as one retained archive and a
retained *desired model* document for a device, a group or the whole fleet (topics below). The
agent follows it only when ``model.trusted_keys`` is set: it checks the archive's sha256 and the
bundle's signature, unpacks it into ``state_dir/bundles/<name>-<version>``, swaps the running
model and watches it for ``rollout.canary_s``: frame rate and mean top-1 confidence against the
old model's just before the swap. A model that fails to load, slows the agent below
``rollout.fps_share`` of the old rate or whose confidence falls below ``rollout.confidence_share``
of the old one is swapped back, and its archive is not tried again. Every step is a durable
``model`` message. ``state_dir/bundles/current-<role>`` (a symlink, switched only after a passed
canary) is what the agent runs after a restart; a restart during a canary counts as a failed one.

Everything here runs on the agent's inference thread (MQTT callbacks only queue events), so a
swap never races a frame.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.bundle import load_bundle
from edge.bundle_archive import sha256_hex, unpack_bundle
from edge.compat import StrEnum
from edge.config_fleet import RolloutConfig
from edge.errors import ShelfscanError

log = logging.getLogger(__name__)

ROLES = ("classifier", "detector")


class Step(StrEnum):
    """The ``step`` of a ``model`` message."""

    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    CANARY = "canary"  # the new model runs; being watched
    ACTIVE = "active"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"


def desired_topics(prefix: str, device: str, groups: list[str], role: str) -> list[str]:
    """Where a desired model for ``role`` may be set, most specific first: the device, its groups, the fleet."""
    return [
        f"{prefix}/{device}/desired/{role}",
        *(f"{prefix}/_group/{g}/desired/{role}" for g in groups),
        f"{prefix}/_fleet/desired/{role}",
    ]


def archive_topic(prefix: str, name: str, version: str) -> str:
    return f"{prefix}/_bundles/{name}/{version}"


@dataclass(frozen=True)
class Desired:
    role: str
    name: str
    version: str
    sha256: str  # of the archive
    size: int
    topic: str | None  # the retained archive on the broker, or
    url: str | None  # an https URL to fetch it from

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @classmethod
    def parse(cls, payload: bytes, role: str) -> Desired:
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ShelfscanError(f"desired model is not JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise ShelfscanError("desired model must be a JSON object")
        fields = {k: doc.get(k) for k in ("name", "version", "archive_sha256", "archive_bytes")}
        if not all(isinstance(fields[k], str) and fields[k] for k in ("name", "version", "archive_sha256")) or not (
            isinstance(fields["archive_bytes"], int)
        ):
            raise ShelfscanError("desired model needs string name, version, archive_sha256 and integer archive_bytes")
        topic, url = doc.get("archive_topic"), doc.get("url")
        if not (isinstance(topic, str) and topic) and not (isinstance(url, str) and url.startswith("https://")):
            raise ShelfscanError("desired model needs an archive_topic or an https:// url")
        name, version = str(doc["name"]), str(doc["version"])
        if any(c in s for s in (name, version) for c in "/\\\0") or ".." in name + version:
            raise ShelfscanError("desired model name and version must be plain names")
        return cls(
            role,
            name[:100],
            version[:100],
            str(doc["archive_sha256"]).lower(),
            int(doc["archive_bytes"]),
            topic if isinstance(topic, str) and topic else None,
            url if isinstance(url, str) and url.startswith("https://") else None,
        )


@dataclass
class Canary:
    desired: Desired
    previous: Path
    started: float
    baseline_fps: float
    baseline_confidence: float | None
    confidences: list[float]
    frames: int = 0  # processed since the swap: the canary's own frame rate (the agent's is a 10 s window)


def judge(
    cfg: RolloutConfig, baseline_fps: float, fps: float, baseline_conf: float | None, confidences: list[float]
) -> str | None:
    """Why a canary failed, or None when it passed (a missing baseline is no reason to fail)."""
    if baseline_fps > 0 and fps < cfg.fps_share * baseline_fps:
        return f"frame rate {fps:.1f} fps is below {cfg.fps_share:.0%} of the old model's {baseline_fps:.1f} fps"
    if baseline_conf and confidences:
        mean = sum(confidences) / len(confidences)
        if mean < cfg.confidence_share * baseline_conf:
            return (
                f"mean top-1 confidence {mean:.3f} is below {cfg.confidence_share:.0%} of the old model's "
                f"{baseline_conf:.3f}"
            )
    return None


class Rollout:
    """Follows desired models for the agent. Collaborators: the agent's bundles and pipeline, the MQTT link
    (subscribe/unsubscribe), a publish function for ``model`` messages and a frame-rate probe."""

    def __init__(
        self,
        cfg: RolloutConfig,
        state_dir: Path,
        topics_by_role: dict[str, list[str]],
        bundles: Any,
        pipeline: Any,
        link: Any,
        publish: Callable[..., None],
        fps: Callable[[], float],
        queue_archive: Callable[[str, bytes], None],
    ) -> None:
        self.cfg, self.bundles, self.pipeline, self.link = cfg, bundles, pipeline, link
        self.topics_by_role = topics_by_role  # role -> its desired topics, most specific first
        self.publish, self.fps, self.queue_archive = publish, fps, queue_archive
        self.dir = Path(state_dir) / "bundles"
        self.desired: dict[str, dict[str, Desired | None]] = {role: {} for role in ROLES}
        self.pending: dict[str, Desired] = {}  # role -> the desired model being fetched
        self.waiting: set[str] = set()  # roles whose desired model changed during a canary
        self.canary: Canary | None = None
        self.confidences: deque[float] = deque(maxlen=300)  # the running model's recent top-1 confidences
        self.refused = self._read_refused()
        self.state = "idle"

    # -- persistent state ---------------------------------------------------------------------
    def current_link(self, role: str) -> Path:
        return self.dir / f"current-{role}"

    def _read_refused(self) -> dict[str, str]:
        try:
            doc = json.loads((self.dir / "refused.json").read_text())
            return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _refuse(self, sha: str, reason: str) -> None:
        self.refused[sha] = reason[:300]
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / "refused.json.tmp"
            tmp.write_text(json.dumps(self.refused))
            tmp.replace(self.dir / "refused.json")
        except OSError as exc:
            log.warning("could not record the refused bundle: %s", exc)

    def recover(self) -> None:
        """At start: a canary that did not finish (the agent died or was stopped in it) counts as failed."""
        marker = self.dir / "canary.json"
        try:
            doc = json.loads(marker.read_text())
        except (OSError, ValueError):
            return
        marker.unlink(missing_ok=True)
        reason = "the agent restarted during the canary"
        self._refuse(str(doc.get("sha256", "")), reason)
        self._message(Step.ROLLED_BACK, doc.get("role", "classifier"), doc.get("name"), doc.get("version"), reason)

    # -- events ---------------------------------------------------------------------------------
    def on_desired(self, topic: str, payload: bytes) -> None:
        role = topic.rsplit("/", 1)[-1]
        if role not in ROLES:
            return
        if not payload.strip():
            self.desired[role][topic] = None  # cleared: a less specific desired model (group, fleet) applies again
            self._follow(role)
            return
        try:
            self.desired[role][topic] = Desired.parse(payload, role)
        except ShelfscanError as exc:
            self._message(Step.REFUSED, role, None, None, f"{topic}: {exc}")
            return
        self._follow(role)

    def _effective(self, role: str, topics: list[str]) -> Desired | None:
        for t in topics:
            d = self.desired[role].get(t)
            if d is not None:
                return d
        return None

    def _follow(self, role: str) -> None:
        want = self._effective(role, self.topics_by_role.get(role, []))
        if want is None or role not in self.bundles.paths:
            return
        running = self.pipeline.models().get(role, {})
        if (running.get("name"), running.get("version")) == (want.name, want.version):
            return
        if want.sha256 in self.refused:
            log.info(
                "desired %s %s was refused before (%s); not tried again", role, want.key, self.refused[want.sha256]
            )
            return
        if self.canary is not None:
            self.waiting.add(role)  # looked at again when the running canary ends
            return
        fetching = self.pending.get(role)
        if fetching is not None:
            if fetching.sha256 == want.sha256:
                return  # already on its way
            if fetching.topic:  # superseded by a newer desired model
                self.link.unsubscribe(fetching.topic)
        self.pending[role] = want
        self.state = "downloading"
        if want.topic:
            self.link.subscribe(want.topic, self.queue_archive)
        else:
            assert want.url is not None
            threading.Thread(target=self._fetch_url, args=(want,), name="rollout-fetch", daemon=True).start()

    def _fetch_url(self, want: Desired) -> None:
        """Download on a thread (a few MB over a slow link); the bytes go back through the event queue."""
        limit = int(self.cfg.max_archive_mb * 1e6)
        assert want.url is not None
        try:
            context = ssl.create_default_context(cafile=str(self.cfg.ca) if self.cfg.ca else None)
            with urllib.request.urlopen(want.url, timeout=60, context=context) as resp:  # https only (Desired.parse)
                self.queue_archive(f"url:{want.url}", resp.read(limit + 1))
        except OSError as exc:
            self.queue_archive(f"url-failed:{want.url}", f"download failed: {exc}".encode()[:300])

    def on_archive(self, topic: str, payload: bytes) -> None:
        failed = topic.startswith("url-failed:")
        want = next(
            (d for d in self.pending.values() if topic in (d.topic, f"url:{d.url}", f"url-failed:{d.url}")), None
        )
        if want is None or not payload:
            return
        if want.topic:
            self.link.unsubscribe(want.topic)
        del self.pending[want.role]
        self.state = "idle"
        if failed:  # the network, not the bundle: not remembered, tried again at the next desired model or start
            self._message(Step.REFUSED, want.role, want.name, want.version, payload.decode("utf-8", "replace"))
            return
        sha = sha256_hex(payload)
        if sha != want.sha256:
            self._reject(want, f"archive sha256 mismatch: got {sha[:16]}..., expected {want.sha256[:16]}...")
            return
        self._message(Step.DOWNLOADED, want.role, want.name, want.version, bytes=len(payload))
        dest = self.dir / want.key
        try:
            if dest.exists():  # an earlier download of the same version: checked again below like a new one
                shutil.rmtree(dest)
            unpack_bundle(payload, dest, int(self.cfg.max_archive_mb * 1e6))
            manifest = load_bundle(dest, self.bundles.trusted).manifest
            if (manifest.name, manifest.version) != (want.name, want.version):
                raise ShelfscanError(f"the archive holds {manifest.name} {manifest.version}")
            if (manifest.task == "detect") != (want.role == "detector"):
                raise ShelfscanError(f"a {manifest.task} bundle cannot be the {want.role}")
        except ShelfscanError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            self._reject(want, str(exc))
            return
        self._message(Step.VERIFIED, want.role, want.name, want.version)
        self._start_canary(want, dest)

    def _reject(self, want: Desired, reason: str) -> None:
        self._refuse(want.sha256, reason)
        self._message(Step.REFUSED, want.role, want.name, want.version, reason)

    # -- swap and canary ------------------------------------------------------------------------
    def _start_canary(self, want: Desired, dest: Path) -> None:
        previous = self.bundles.paths[want.role]
        baseline_conf = sum(self.confidences) / len(self.confidences) if self.confidences else None
        baseline_fps = self.fps()
        try:
            self.bundles.switch(want.role, dest, self.pipeline)
        except ShelfscanError as exc:
            self._reject(want, f"does not load: {exc}")
            return
        marker = {"role": want.role, "name": want.name, "version": want.version, "sha256": want.sha256}
        (self.dir / "canary.json").write_text(json.dumps(marker))
        self.canary = Canary(want, previous, time.monotonic(), baseline_fps, baseline_conf, [])
        self.state = "canary"
        self._message(
            Step.CANARY,
            want.role,
            want.name,
            want.version,
            seconds=self.cfg.canary_s,
            baseline_fps=round(baseline_fps, 2),
            baseline_confidence=round(baseline_conf, 4) if baseline_conf else None,
        )

    def observe(self, confidence: float | None) -> None:
        """Called for every processed frame with its top-1 confidence (None: nothing classified in it)."""
        if self.canary is not None:
            self.canary.frames += 1
        if confidence is None:
            return
        if self.canary is not None:
            self.canary.confidences.append(confidence)
        else:
            self.confidences.append(confidence)

    def tick(self) -> None:
        """Called between frames: ends a canary whose time is up and whose frames are enough."""
        c = self.canary
        if c is None or time.monotonic() - c.started < self.cfg.canary_s:
            return
        elapsed = time.monotonic() - c.started
        if c.frames < self.cfg.canary_min_frames and elapsed < 10 * self.cfg.canary_s:
            return  # too few frames to judge (the camera was idle): wait, but not forever
        fps = c.frames / elapsed
        reason = judge(self.cfg, c.baseline_fps, fps, c.baseline_confidence, c.confidences)
        role, want = c.desired.role, c.desired
        self.canary = None
        (self.dir / "canary.json").unlink(missing_ok=True)
        mean = round(sum(c.confidences) / len(c.confidences), 4) if c.confidences else None
        figures: dict[str, Any] = {"fps": round(fps, 2), "confidence": mean, "frames": c.frames}
        if reason is None:
            self._point_current(role, self.bundles.paths[role])
            self.confidences.clear()
            self.confidences.extend(c.confidences)
            self._message(Step.ACTIVE, role, want.name, want.version, **figures)
            self.prune()
        else:
            failed = self.bundles.paths[role]
            try:
                self.bundles.switch(role, c.previous, self.pipeline)
            except ShelfscanError as exc:  # the old one loaded a minute ago; say so if it does not now
                log.error("rollback to %s failed: %s", c.previous, exc)
            else:
                shutil.rmtree(failed, ignore_errors=True)  # refused for good: not worth a place among rollout.keep
            self._refuse(want.sha256, reason)
            self._message(Step.ROLLED_BACK, role, want.name, want.version, reason, **figures)
        self.state = "idle"
        for waiting in sorted(self.waiting):
            self.waiting.discard(waiting)
            self._follow(waiting)

    def _point_current(self, role: str, target: Path) -> None:
        """``current-<role>`` -> ``target``, atomically (a new symlink renamed over the old)."""
        link = self.current_link(role)
        tmp = link.with_name(link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.resolve())
        tmp.replace(link)

    def prune(self) -> None:
        """Keep the newest ``rollout.keep`` unpacked bundles; never the ones running or linked as current."""
        keep = {self.bundles.paths[r].resolve() for r in self.bundles.paths}
        keep |= {self.current_link(r).resolve() for r in ROLES if self.current_link(r).is_symlink()}
        unpacked = [p for p in self.dir.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
        dirs = sorted(unpacked, key=lambda p: p.stat().st_mtime, reverse=True)
        for p in dirs[self.cfg.keep :]:
            if p.resolve() not in keep:
                shutil.rmtree(p, ignore_errors=True)
                log.info("pruned old bundle %s", p.name)

    # -- reporting ------------------------------------------------------------------------------
    def _message(
        self, step: Step, role: str, name: str | None, version: str | None, reason: str | None = None, **extra: Any
    ) -> None:
        text = f"model rollout: {role} {name} {version}: {step}" + (f" ({reason})" if reason else "")
        (log.warning if step in (Step.REFUSED, Step.ROLLED_BACK) else log.info)("%s", text)
        body: dict[str, Any] = {"step": step, "role": role, "name": name, "version": version, **extra}
        if reason:
            body["reason"] = reason[:300]
        self.publish(**body)

    def summary(self) -> dict[str, Any]:
        """For the status message: the rollout state and what is being rolled out."""
        out: dict[str, Any] = {"state": self.state}
        if self.canary is not None:
            out["version"] = self.canary.desired.version
        elif self.pending:
            out["version"] = next(iter(self.pending.values())).version
        return out
