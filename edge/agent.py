"""``shelfscan-agent run``: camera -> classify -> sightings and counts -> MQTT.

One inference thread owns the classifier; capture and MQTT have their own threads. Commands
and signals only set flags or queue events that the inference thread handles between frames,
so a model swap or a scan change never races a frame in flight.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import AgentConfig
from edge.errors import ShelfscanError
from edge.messages import Topics, envelope, rfc3339
from edge.mqtt import MqttLink
from edge.outbox import Outbox
from edge.runtime import Classifier
from edge.sightings import Sighting, SightingTracker, Smoother
from edge.sources import CaptureThread, make_source

log = logging.getLogger(__name__)


def bundle_fingerprint(path: Path) -> str:
    """What changes when a new bundle is put in place (a swapped symlink or rewritten files)."""
    try:
        real = path.resolve()
        return f"{real}:{(real / 'manifest.json').stat().st_mtime_ns}"
    except OSError:
        return "missing"


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.device = cfg.device.id
        self.topics = Topics(cfg.device.prefix, self.device)
        self.trusted = None
        if cfg.model.trusted_keys:
            from edge.signing import load_public_keys

            self.trusted = load_public_keys(list(cfg.model.trusted_keys))
        self.clf = Classifier.from_bundle(cfg.model.bundle, cfg.model.threads, self.trusted)
        self.fingerprint = bundle_fingerprint(cfg.model.bundle)
        state = Path(cfg.device.state_dir)
        self.outbox = Outbox(state / f"outbox-{self.device}.sqlite", cfg.outbox.max_messages, cfg.outbox.max_bytes)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop_flag = threading.Event()
        self.started = time.time()
        # The broker sends the will, not us: it repeats the latest seq instead of taking one.
        will = envelope("status", self.device, self.outbox.last_seq(), self.clf.bundle.model_id, state="offline")
        ha = cfg.homeassistant
        extra = {ha.status_topic: self._on_homeassistant_status} if ha.enabled else {}
        self.announced: set[str] = set()  # labels with a Home Assistant sensor config out
        self.link = MqttLink(
            cfg.mqtt, self.device, self.topics, self.outbox, self._on_command, self._on_connected, will, extra
        )
        self.capture = CaptureThread(make_source(cfg.source), self._on_source_state, cfg.source.fps,
                                     tuple(cfg.source.reopen_backoff_s))  # type: ignore[arg-type]  # fmt: skip
        inf = cfg.inference
        self.smoother = Smoother(inf.smoothing_frames)
        self.tracker = SightingTracker(inf.score_threshold, inf.min_frames, frozenset(inf.ignore_labels))
        self.scan: dict[str, Any] | None = None
        self.latency: dict[str, deque[float]] = {
            s: deque(maxlen=500) for s in ("preprocess", "invoke", "post", "frame")
        }
        self.frames_done = 0
        self.progress = time.monotonic()  # the watchdog looks at this
        self._last_classification = 0.0

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, kind: str, retain: bool = False, qos: int | None = None, **body: Any) -> None:
        qos = self.cfg.mqtt.qos if qos is None else qos
        # Durable (QoS >= 1) messages take the next seq; QoS 0 ones repeat the latest, so a gap in
        # seq always means a lost durable message.
        topic, model = getattr(self.topics, kind), self.clf.bundle.model_id
        if qos == 0:
            self.link.publish_now(topic, envelope(kind, self.device, self.outbox.last_seq(), model, **body), retain)
        else:
            self.outbox.add(topic, lambda seq: envelope(kind, self.device, seq, model, **body), qos, retain)
            self.link.wake()

    def error(self, message: str, **context: Any) -> None:
        log.error("%s", message)
        self.publish("error", error=message, **context)

    # -- callbacks from other threads: only queue events ----------------------------------------
    def _on_connected(self) -> None:
        self.events.put(("online", None))

    def _on_source_state(self, state: str, detail: str) -> None:
        self.events.put(("source", (state, detail)))

    def _on_command(self, name: str, payload: bytes) -> None:
        self.events.put(("command", (name, payload)))

    def _on_homeassistant_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            self.events.put(("announce", "Home Assistant online"))

    def request_reload(self, reason: str) -> None:
        self.events.put(("reload", reason))

    # -- event handling (inference thread) ------------------------------------------------------
    def _handle_events(self) -> None:
        while True:
            try:
                kind, arg = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "online":
                self.publish("status", retain=True, state="online", source=self.capture.state)
                self.announce()
            elif kind == "announce":
                self.announce()
            elif kind == "source":
                state, detail = arg
                self.publish("status", retain=True, state="online", source=state, detail=detail[:300])
            elif kind == "command":
                self._command(*arg)
            elif kind == "reload":
                self.reload(arg)

    def _command(self, name: str, payload: bytes) -> None:
        try:
            body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("payload must be a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self.error(f"malformed command on cmd/{name}: {str(exc)[:200]}", command=name[:100])
            return
        if name == "scan/start":
            scan_id, location = body.get("scan_id"), body.get("location", "")
            if not isinstance(scan_id, str) or not scan_id or not isinstance(location, str):
                self.error("cmd/scan/start needs a non-empty string 'scan_id' (and optional string 'location')",
                           command=name)  # fmt: skip
                return
            self.start_scan(scan_id[:200], location[:200])
        elif name == "scan/stop":
            self.stop_scan()
        elif name == "reload":
            self.reload("cmd/reload")
        else:
            self.error(f"unknown command cmd/{name[:100]}", command=name[:100])

    # -- scans ----------------------------------------------------------------------------------
    def start_scan(self, scan_id: str, location: str = "") -> None:
        if self.scan is not None:
            self.stop_scan()
        self.scan = {"scan_id": scan_id, "location": location, "started": time.time()}
        self.tracker.counts.clear()
        self.tracker.current = None
        self.smoother.reset()
        log.info("scan %s started (%s)", scan_id, location or "no location")
        self._publish_counts(final=False)

    def stop_scan(self) -> None:
        if self.scan is None:
            return
        done = self.tracker.close()
        if done is not None:
            self._publish_sighting(done)
        self._publish_counts(final=True)
        log.info("scan %s ended: %s", self.scan["scan_id"], dict(self.tracker.counts))
        self.scan = None

    def _publish_sighting(self, s: Sighting) -> None:
        assert self.scan is not None
        self.publish("sighting", scan_id=self.scan["scan_id"], location=self.scan["location"], label=s.label,
                     mean_score=round(s.mean_score, 4), max_score=round(s.max_score, 4), frames=s.frames,
                     first_ts=_ts(s.first_ts), last_ts=_ts(s.last_ts))  # fmt: skip
        self._publish_counts(final=False)

    def _publish_counts(self, final: bool) -> None:
        assert self.scan is not None
        self.publish("counts", retain=True, scan_id=self.scan["scan_id"], location=self.scan["location"],
                     counts=dict(sorted(self.tracker.counts.items())), final=final,
                     started=_ts(self.scan["started"]))  # fmt: skip

    # -- model reload ---------------------------------------------------------------------------
    def reload(self, reason: str) -> None:
        path = self.cfg.model.bundle
        try:
            new = Classifier.from_bundle(path, self.cfg.model.threads, self.trusted)
        except ShelfscanError as exc:
            self.error(f"reload ({reason}) refused, keeping {self.clf.bundle.manifest.name} "
                       f"{self.clf.bundle.manifest.version}: {exc}", reason=reason)  # fmt: skip
            self.fingerprint = bundle_fingerprint(path)
            return
        old = self.clf.bundle.model_id
        self.clf = new
        self.fingerprint = bundle_fingerprint(path)
        self.smoother.reset()
        self.tracker.current = None
        log.info("model reloaded (%s): %s -> %s", reason, old, new.bundle.model_id)
        self.publish("status", retain=True, state="online", source=self.capture.state, reloaded_from=old)
        self.announce()

    def announce(self) -> None:
        """Home Assistant discovery for the current labels; sensors of labels that went away are removed."""
        ha = self.cfg.homeassistant
        if not ha.enabled:
            return
        from edge.homeassistant import config_topic, discovery_messages

        labels = [lb for lb in self.clf.labels if lb not in self.cfg.inference.ignore_labels]
        for topic, payload in discovery_messages(ha.discovery_prefix, self.device, self.topics, labels,
                                                 self.clf.bundle.model_id):  # fmt: skip
            self.link.publish_now(topic, payload, retain=True, qos=1)
        for gone in self.announced - set(labels):
            self.link.publish_now(config_topic(ha.discovery_prefix, self.device, gone), b"", retain=True, qos=1)
        self.announced = set(labels)
        log.info("Home Assistant discovery: %d sensors announced", len(labels))

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> int:
        from edge.sdnotify import Watchdog, notify, watchdog_interval

        self.link.start()
        self.capture.start()
        interval = watchdog_interval()
        watchdog = None
        if interval:
            watchdog = Watchdog(interval, lambda: self.progress, stall_after=max(interval, 5.0))
            watchdog.start()
        notify(f"READY=1\nSTATUS=running {self.clf.bundle.manifest.name} {self.clf.bundle.manifest.version}")
        if self.cfg.scan.auto_start:
            self.start_scan(f"auto-{int(time.time())}")
        last_stats = last_watch = last_scan = time.monotonic()
        min_gap = 1.0 / self.cfg.inference.max_fps
        last_frame = 0.0
        while not self.stop_flag.is_set():
            self._handle_events()
            now = time.monotonic()
            self.progress = now
            if now - last_watch >= self.cfg.model.watch_interval_s:
                last_watch = now
                if bundle_fingerprint(self.cfg.model.bundle) != self.fingerprint:
                    self.reload("bundle path changed")
            if self.cfg.scan.interval_s and now - last_scan >= self.cfg.scan.interval_s:
                last_scan = now
                self.start_scan(f"auto-{int(time.time())}")
            if now - last_stats >= self.cfg.publish.stats_interval_s:
                last_stats = now
                self.publish_stats()
            if now - last_frame < min_gap:
                time.sleep(min(min_gap - (now - last_frame), 0.05))
                continue
            frame = self.capture.get(timeout=0.2)
            if frame is None:
                if self.capture.exhausted():
                    break
                continue
            last_frame = time.monotonic()
            self.process(frame.image, frame.ts)
        notify("STOPPING=1")
        if watchdog:
            watchdog.stop()
        return self.shutdown()

    def process(self, image: np.ndarray, ts: float) -> None:
        t0 = time.perf_counter()
        self.clf.preprocessor.from_bgr(image)
        t1 = time.perf_counter()
        self.clf.run_model()
        t2 = time.perf_counter()
        smoothed = self.smoother.update(self.clf.output_scores())
        best = int(smoothed.argmax())
        if self.scan is not None:
            done = self.tracker.update(self.clf.labels[best], float(smoothed[best]), ts)
            if done is not None:
                self._publish_sighting(done)
        if (
            self.cfg.publish.classification
            and ts - self._last_classification >= 1 / self.cfg.publish.classification_max_rate
        ):
            self._last_classification = ts
            top = self.clf.predictions(smoothed, self.cfg.inference.top_k)
            self.publish("classification", qos=0, frame_ts=_ts(ts),
                         top_k=[{"label": p.label, "score": round(p.score, 4)} for p in top])  # fmt: skip
        t3 = time.perf_counter()
        for stage, value in (("preprocess", t1 - t0), ("invoke", t2 - t1), ("post", t3 - t2), ("frame", t3 - t0)):
            self.latency[stage].append(value)
        self.frames_done += 1

    def publish_stats(self) -> None:
        lat = {s: {"p50": _pct(v, 50), "p95": _pct(v, 95)} for s, v in self.latency.items()}
        uptime = time.time() - self.started
        self.publish("stats", qos=0, fps=round(self.frames_done / max(uptime, 1e-9), 2), latency_ms=lat,
                     frames=self.frames_done, dropped_frames=self.capture.dropped, outbox_depth=self.outbox.depth(),
                     outbox_dropped=self.outbox.dropped(), uptime_s=round(uptime, 1), source=self.capture.state,
                     mqtt_connected=self.link.connected.is_set())  # fmt: skip

    def shutdown(self, flush_timeout: float = 10.0) -> int:
        self.capture.stop()
        if self.capture.ended.is_set() and self.scan is not None:
            self.stop_scan()  # the video is over: this scan is complete
        self._handle_events()
        self.publish("status", retain=True, state="offline")
        flushed = self.link.flush(flush_timeout)
        if not flushed:
            log.warning("%d messages not acknowledged yet; they stay in the outbox for the next start",
                        self.outbox.depth())  # fmt: skip
        self.link.stop()
        self.outbox.close()
        log.info("agent stopped after %d frames", self.frames_done)
        return 0

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop_flag.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_flag.set())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload("SIGHUP"))


def _ts(t: float) -> str:
    return rfc3339(t)


def _pct(values: deque[float], q: int) -> float | None:
    return round(1e3 * float(np.percentile(np.fromiter(values, float), q)), 3) if values else None
