"""``shelfscan-agent run``: camera -> frame pipeline -> sightings, facings, gaps and counts -> MQTT.

One inference thread owns the pipeline (and so the interpreters); capture and MQTT have their
own threads. Commands, signals and broker callbacks only queue :class:`AgentEvent` s that the
inference thread handles between frames, so a model swap or a scan change never races a frame
in flight. The agent is handed its collaborators (pipeline, capture, outbox, link, bundles:
see ``edge.agent_setup``), which keeps its logic testable without a subprocess.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edge.agent_commands import AgentCommands
from edge.agent_events import AgentEvent, Command, ScanEnd, State
from edge.config import AgentConfig
from edge.errors import ShelfscanError
from edge.frame_rate import FrameRate
from edge.messages import MessageKind, Topics, envelope, rfc3339
from edge.pipelines import FramePipeline, Report, ReportKind

if TYPE_CHECKING:
    from edge.evidence import Evidence
    from edge.rollout import Rollout

log = logging.getLogger(__name__)
#: Consecutive failed frames after which the source is closed and opened again (a camera sending
#: garbage recovers; one bad frame does not cost a reopen).
REOPEN_AFTER_FAILED_FRAMES = 20


class Agent(AgentCommands):
    """The inference thread's loop and everything it publishes; commands come from :class:`AgentCommands`."""

    def __init__(
        self,
        cfg: AgentConfig,
        pipeline: FramePipeline,
        capture: Any,
        outbox: Any,
        link: Any,
        bundles: Any,
        events: queue.Queue[tuple[AgentEvent, Any]],
    ) -> None:
        self.cfg = cfg
        self.device = cfg.device.id
        self.topics = Topics(cfg.device.prefix, self.device)
        self.pipeline, self.capture, self.outbox, self.link, self.bundles = pipeline, capture, outbox, link, bundles
        self.events = events
        self.stop_flag = threading.Event()
        self.started = time.time()
        self.announced: set[str] = set()  # labels with a Home Assistant sensor config out
        self.scan: dict[str, Any] | None = None
        self.pose: dict[str, Any] | None = None
        self.frames_done = 0
        self.frame_errors = 0
        self.progress = time.monotonic()  # the watchdog looks at this
        self._last_classification = 0.0
        self._failed_in_a_row = 0  # frames whose processing failed since the last good one
        self.console: TextIO | None = None  # a terminal for status lines (`run` in the foreground)
        self.frame_rate = FrameRate()  # stats.fps and the terminal line: the last 10 s
        self._storage_state = "ok"  # the outbox's storage state last published in status
        # Optional onlookers (edge.monitoring: metrics, live page): called after every processed frame on
        # this thread, so they must be cheap (keep references, never encode); closed at shutdown.
        self.frame_taps: list[Callable[[np.ndarray, float], None]] = []
        self.closers: list[Callable[[], None]] = []
        # Evidence images of doubtful facings and snapshots (edge.evidence; set by edge.agent_setup when enabled).
        self.evidence: Evidence | None = None
        self._last_frame: tuple[np.ndarray, int] | None = None  # the latest processed frame, for cmd/snapshot
        # Model rollout over MQTT (edge.rollout; set by edge.agent_setup when model.trusted_keys is set).
        self.rollout: Rollout | None = None
        self._commands: dict[str, Callable[[dict[str, Any]], None]] = {
            Command.SCAN_START: self._cmd_scan_start,
            Command.SCAN_STOP: lambda _body: self.stop_scan(ScanEnd.STOPPED),
            Command.RELOAD: lambda _body: self.reload("cmd/reload"),
            Command.SNAPSHOT: self._cmd_snapshot,
        }
        self._handlers: dict[AgentEvent, Callable[[Any], None]] = {
            AgentEvent.ONLINE: self._online,
            AgentEvent.ANNOUNCE: lambda _: self.announce(),
            AgentEvent.SOURCE: lambda arg: self.publish_status(detail=arg[1][:300]),
            AgentEvent.COMMAND: lambda arg: self._command(*arg),
            AgentEvent.RELOAD: self.reload,
            AgentEvent.POSE: self._pose,
            AgentEvent.DESIRED: lambda arg: self._rollout_step(lambda r: r.on_desired(*arg)),
            AgentEvent.ARCHIVE: lambda arg: self._rollout_step(lambda r: r.on_archive(*arg)),
        }

    def _online(self, _arg: Any) -> None:
        """(Re)connected: the retained status first, then the announcement (Home Assistant discovery)."""
        self.publish_status()
        self.announce()

    # -- publishing -----------------------------------------------------------------------------
    def model_id(self) -> dict[str, str]:
        """The classifier's name, version and sha256: the ``model`` of every message."""
        return self.pipeline.models()["classifier"]

    def publish(self, kind: MessageKind, retain: bool = False, qos: int | None = None, **body: Any) -> None:
        qos = self.cfg.mqtt.qos if qos is None else qos
        # Durable (QoS >= 1) messages take the next seq; QoS 0 ones repeat the latest, so a gap in
        # seq always means a lost durable message.
        topic, model = getattr(self.topics, kind), self.model_id()
        if qos == 0:
            self.link.publish_now(topic, envelope(kind, self.device, self.outbox.last_seq(), model, **body), retain)
        else:
            self.outbox.add(topic, lambda seq: envelope(kind, self.device, seq, model, **body), qos, retain)
            self.link.wake()

    def publish_status(self, **extra: Any) -> None:
        if "detail" not in extra and self.capture.state in ("error", "stalled"):
            extra["detail"] = self.capture.detail[:300]  # e.g. on reconnect: still say why the source is down
        outage = getattr(self.link, "last_outage", None)
        if outage:
            extra.setdefault("mqtt_last_outage", outage)
        models, storage = self.pipeline.models(), self.storage()
        self._storage_state = storage["state"]
        detector: dict[str, Any] = {"detector": models["detector"]} if "detector" in models else {}
        if self.rollout is not None:
            extra.setdefault("rollout", self.rollout.summary())
        self.publish(
            MessageKind.STATUS,
            retain=True,
            state=State.ONLINE,
            source=self.capture.state,
            pipeline=self.pipeline.mode,
            **detector,
            storage=storage,
            **extra,
        )

    def storage(self) -> dict[str, Any]:
        """The outbox's storage state (``ok``/``degraded``, why, messages held only in memory) for status and stats."""
        state = self.outbox.storage()
        return {"state": str(state["state"]), "detail": state["detail"], "in_memory": state["memory"]}

    def check_storage(self) -> None:
        """Publish the outbox's problems (a corrupt file moved aside) as errors, and status when its state changes.

        The outbox retries failed writes on this call too, so a degraded outbox heals here even
        when no message is being published.
        """
        for notice in self.outbox.take_notices():
            self.error(notice)
        if str(self.outbox.storage()["state"]) != self._storage_state:
            self.publish_status()

    def error(self, message: str, **context: Any) -> None:
        log.error("%s", message)
        self.publish(MessageKind.ERROR, error=message, **context)

    # -- event handling (inference thread) ------------------------------------------------------
    def handle_events(self) -> None:
        while True:
            try:
                kind, arg = self.events.get_nowait()
            except queue.Empty:
                return
            self._handlers[kind](arg)

    # -- scans ----------------------------------------------------------------------------------
    def start_scan(self, scan_id: str, location: str = "") -> None:
        if self.scan is not None:
            self.stop_scan(ScanEnd.REPLACED)
        self.scan = {"scan_id": scan_id, "location": location, "started": time.time()}
        self.pipeline.start_scan()
        log.info("scan %s started (%s)", scan_id, location or "no location")
        self._publish_counts(final=False)

    def stop_scan(self, reason: ScanEnd) -> None:
        if self.scan is None:
            return
        self._publish_reports(self.pipeline.end_scan())
        shelfmap = getattr(self.pipeline, "shelfmap", None)
        if shelfmap is not None:
            self.publish(MessageKind.SHELFMAP, retain=True, **self._scan_fields(), **shelfmap())
        self._publish_counts(final=True, reason=reason)
        log.info("scan %s ended (%s): %s", self.scan["scan_id"], reason, self.pipeline.counts())
        self.scan = None

    def _scan_fields(self) -> dict[str, Any]:
        assert self.scan is not None
        return {"scan_id": self.scan["scan_id"], "location": self.scan["location"]}

    def _publish_reports(self, reports: list[Report]) -> None:
        if not reports or self.scan is None:
            return
        for r in reports:
            self.publish(MessageKind(r.kind), **self._scan_fields(), **r.body)
            if r.kind == ReportKind.FACING:
                self._facing_evidence(r.body)
        self._publish_counts(final=False)

    def _facing_evidence(self, facing: dict[str, Any]) -> None:
        """An ``evidence`` message (after its facing, same durable path) when the facing is unknown or weak."""
        crops = getattr(self.pipeline, "crops", None)
        if self.evidence is None or crops is None:
            return
        doc = self.evidence.for_facing(facing, crops.take)
        if doc is not None:
            self.publish(MessageKind.EVIDENCE, qos=max(self.cfg.mqtt.qos, 1), **self._scan_fields(), **doc)

    def _publish_counts(self, final: bool, reason: ScanEnd | None = None) -> None:
        assert self.scan is not None
        ending: dict[str, Any] = {"reason": reason} if reason else {}
        self.publish(
            MessageKind.COUNTS,
            retain=True,
            **self._scan_fields(),
            **self.pipeline.counts(),
            final=final,
            started=rfc3339(self.scan["started"]),
            pipeline=self.pipeline.mode,
            **ending,
        )

    # -- model reload ---------------------------------------------------------------------------
    def reload(self, reason: str) -> None:
        """Load every bundle again (signature checked); on any failure keep running the old models."""
        old = self.pipeline.models()
        try:
            self.bundles.reload_into(self.pipeline)
        except ShelfscanError as exc:
            names = ", ".join(f"{m['name']} {m['version']}" for m in old.values())
            self.error(f"reload ({reason}) refused, keeping {names}: {exc}", reason=reason)
            return
        log.info("models reloaded (%s): %s -> %s", reason, old, self.pipeline.models())
        self.publish_status(reloaded_from=old["classifier"])
        self.announce()

    def announce(self) -> None:
        """Home Assistant discovery for the current labels; sensors of labels that went away are removed."""
        ha = self.cfg.homeassistant
        if not ha.enabled:
            return
        from edge.homeassistant import config_topic, discovery_messages

        labels = self.pipeline.labels()
        for topic, payload in discovery_messages(
            ha.discovery_prefix, self.device, self.topics, labels, self.model_id()
        ):
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
        model = self.model_id()
        notify(f"READY=1\nSTATUS=running {self.pipeline.mode} {model['name']} {model['version']}")
        self.check_storage()
        if self.rollout is not None:
            self.rollout.recover()
        if self.cfg.scan.auto_start:
            self.start_scan(f"auto-{int(time.time())}")
        last_stats = last_watch = last_scan = time.monotonic()
        min_gap = 1.0 / self.cfg.inference.max_fps
        last_frame = 0.0
        while not self.stop_flag.is_set():
            self.handle_events()
            now = time.monotonic()
            self.progress = now
            if self.rollout is not None:
                self._rollout_step(lambda r: r.tick())
            if now - last_watch >= self.cfg.model.watch_interval_s:
                last_watch = now
                if self.bundles.changed():
                    self.reload("bundle path changed")
            if self.cfg.scan.interval_s and now - last_scan >= self.cfg.scan.interval_s:
                last_scan = now
                self.stop_scan(ScanEnd.INTERVAL)
                self.start_scan(f"auto-{int(time.time())}")
            if now - last_stats >= self.cfg.publish.stats_interval_s:
                last_stats = now
                self.check_storage()
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
            self.frame_rate.tick()
        notify("STOPPING=1")
        if watchdog:
            watchdog.stop()
        return self.shutdown()

    def process(self, image: np.ndarray, ts: float) -> None:
        try:
            reports = self.pipeline.process(image, ts, self.pose)
        except Exception as exc:  # one bad frame must never end the agent: say so (not every time), count, go on
            self.frame_errors += 1
            self._failed_in_a_row += 1
            if self._failed_in_a_row == REOPEN_AFTER_FAILED_FRAMES:  # the source may be what is broken
                self.capture.request_reopen(f"{REOPEN_AFTER_FAILED_FRAMES} frames in a row failed")
                self._failed_in_a_row = 0
            if self.frame_errors in (1, 10) or self.frame_errors % 100 == 0:
                log.exception("frame failed")
                self.error(f"frame failed ({self.frame_errors} so far): {type(exc).__name__}: {str(exc)[:200]}")
            return
        self._failed_in_a_row = 0
        if self.rollout is not None:
            self.rollout.observe(self.pipeline.confidence())
        self._publish_reports(reports)
        top_k = getattr(self.pipeline, "top_k", None)
        if (
            top_k is not None
            and self.cfg.publish.classification
            and ts - self._last_classification >= 1 / self.cfg.publish.classification_max_rate
        ):
            self._last_classification = ts
            best = [{"label": p.label, "score": round(p.score, 4)} for p in top_k(self.cfg.inference.top_k)]
            self.publish(MessageKind.CLASSIFICATION, qos=0, frame_ts=rfc3339(ts), top_k=best)
        if self.evidence is not None:
            self._last_frame = (image, self.frames_done)  # a reference only: cmd/snapshot encodes it, not the loop
        self.frames_done += 1
        for tap in self.frame_taps:
            tap(image, ts)

    def publish_stats(self) -> None:
        uptime = time.time() - self.started
        evidence: dict[str, Any] = {"evidence": self.evidence.stats()} if self.evidence is not None else {}
        self.publish(
            MessageKind.STATS,
            qos=0,
            fps=round(self.frame_rate.fps(), 2),
            latency_ms=self.pipeline.clock.percentiles_ms(50, 95),
            frames=self.frames_done,
            dropped_frames=self.capture.dropped,
            outbox_depth=self.outbox.depth(),
            outbox_dropped=self.outbox.dropped(),
            uptime_s=round(uptime, 1),
            source=self.capture.state,
            mqtt_connected=self.link.connected.is_set(),
            pipeline=self.pipeline.mode,
            frame_errors=self.frame_errors,
            resize=self.pipeline.resize_kernels(),
            storage=self.storage(),
            **getattr(self.pipeline, "stats", dict)(),
            **evidence,
        )
        if self.console is not None:
            self.console.write(self.status_line() + "\n")
            self.console.flush()

    def status_line(self) -> str:
        """One line for a person watching ``run`` in a terminal (written at each stats interval)."""
        counts = self.pipeline.counts().get("counts", {})
        top = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:4]) or "-"
        more = f" (+{len(counts) - 4})" if len(counts) > 4 else ""
        scan = self.scan["scan_id"] if self.scan else "-"
        return (
            f"{time.strftime('%H:%M:%S')}  {self.capture.state}  {self.frame_rate.fps():.1f} fps  "
            f"{self.frames_done} frames  mqtt {'up' if self.link.connected.is_set() else 'DOWN'}  "
            f"outbox {self.outbox.depth()}  scan {scan}: {top}{more}"
        )

    def shutdown(self, flush_timeout: float = 10.0) -> int:
        self.capture.stop()
        if self.scan is not None:
            # the video is over: this scan is complete; a signal: the scan ends here, and says so
            self.stop_scan(ScanEnd.END_OF_SOURCE if self.capture.ended.is_set() else ScanEnd.SHUTDOWN)
        self.handle_events()
        self.publish(MessageKind.STATUS, retain=True, state=State.OFFLINE)
        flushed = self.link.flush(flush_timeout)
        if not flushed:
            log.warning(
                "%d messages not acknowledged yet; they stay in the outbox for the next start", self.outbox.depth()
            )
        for close in self.closers:
            close()
        self.link.stop()
        self.outbox.close()
        log.info("agent stopped after %d frames", self.frames_done)
        return 0

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop_flag.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_flag.set())
        signal.signal(signal.SIGHUP, lambda *_: self.events.put((AgentEvent.RELOAD, "SIGHUP")))
