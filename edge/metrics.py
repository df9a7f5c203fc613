"""The optional Prometheus endpoint: ``http://<metrics.host>:<metrics.port>/metrics``.

``prometheus-client`` (the Prometheus project's own Python client: maintained, writes the
standard text exposition format, pure Python, a few hundred kB) serves a private registry on
its own thread. Almost everything is read at scrape time by :class:`AgentCollector` from the
agent's counters and the :class:`~edge.live_state.LiveState` copies, so the frame loop pays
nothing for it; only the per-stage latency histograms need an observation per frame
(:class:`StageHistograms`, the agent's frame tap: one bucket increment per stage).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from edge.errors import ShelfscanError
from edge.live_state import LiveState

if TYPE_CHECKING:
    from edge.agent import Agent
    from edge.pipelines import StageClock

log = logging.getLogger(__name__)

#: Stage latencies in seconds: a Raspberry Pi's 1 ms crop up to a slow camera frame's second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SOURCE_STATES = ("starting", "ok", "error", "ended")
STORAGE_STATES = ("ok", "degraded")


class StageHistograms:
    """Per-stage latency histograms fed from the pipeline's :class:`~edge.pipelines.StageClock`.

    The clock keeps only the last few hundred samples (for percentiles); a Prometheus histogram
    needs every observation, so after each frame this tap observes the sample the frame just added.
    """

    def __init__(self, clock: StageClock, registry: CollectorRegistry) -> None:
        self.clock = clock
        histogram = Histogram(
            "shelfscan_stage_latency_seconds",
            "Time of one frame in each pipeline stage ('frame': the whole pipeline).",
            ["stage"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._children = {stage: histogram.labels(stage) for stage in clock.stages}

    def frame_done(self, _image: np.ndarray, _ts: float) -> None:
        for stage, child in self._children.items():
            samples = self.clock.samples[stage]
            if samples:
                child.observe(samples[-1])


class AgentCollector(Collector):
    """Everything else, read from the agent and its live state when Prometheus scrapes."""

    def __init__(self, agent: Agent, state: LiveState) -> None:
        self.agent, self.state = agent, state

    def collect(self) -> Iterator[Metric]:
        agent, snap = self.agent, self.state.snapshot
        yield CounterMetricFamily("shelfscan_frames", "Frames processed.", value=agent.frames_done)
        yield CounterMetricFamily("shelfscan_frame_errors", "Frames the pipeline failed on.", value=agent.frame_errors)
        yield CounterMetricFamily(
            "shelfscan_frames_dropped",
            "Camera frames replaced before the pipeline took them.",
            value=agent.capture.dropped,
        )
        yield GaugeMetricFamily(
            "shelfscan_fps",
            f"Frames processed per second over the last {self.state.fps_window_s:g} s.",
            value=self.state.fps(),
        )
        yield GaugeMetricFamily(
            "shelfscan_uptime_seconds", "Seconds since the agent started.", value=time.time() - agent.started
        )
        yield GaugeMetricFamily(
            "shelfscan_outbox_depth", "Durable messages not yet acknowledged by the broker.", value=agent.outbox.depth()
        )
        yield CounterMetricFamily(
            "shelfscan_outbox_dropped", "Messages dropped because the outbox was full.", value=agent.outbox.dropped()
        )
        storage = str(agent.outbox.storage()["state"])
        yield state_gauge(
            "shelfscan_storage_state", "Outbox storage state (1: the current one).", storage, STORAGE_STATES
        )
        yield state_gauge(
            "shelfscan_source_state",
            "Camera/source state (1: the current one).",
            str(agent.capture.state),
            SOURCE_STATES,
        )
        yield GaugeMetricFamily(
            "shelfscan_mqtt_connected",
            "1 while connected to the broker.",
            value=1.0 if agent.link.connected.is_set() else 0.0,
        )
        info = InfoMetricFamily(
            "shelfscan_model", "The models running (role: classifier or detector).", labels=["role"]
        )
        for role, model in sorted(snap.models.items()):
            info.add_metric([role], {k: str(model.get(k, "")) for k in ("name", "version", "sha256")})
        yield info
        yield from scan_metrics(snap.scan_id, snap.counts)


def state_gauge(name: str, doc: str, current: str, known: tuple[str, ...]) -> GaugeMetricFamily:
    """One series per state, 1 for the current one: alerts can match ``{state="error"} == 1``."""
    gauge = GaugeMetricFamily(name, doc, labels=["state"])
    for state in dict.fromkeys((*known, current)):
        gauge.add_metric([state], 1.0 if state == current else 0.0)
    return gauge


def scan_metrics(scan_id: str | None, counts: dict[str, object]) -> Iterator[Metric]:
    """The current (or last) scan's counts per label, and the facings, gaps and unknowns of detect_classify."""
    yield GaugeMetricFamily("shelfscan_scan_active", "1 while a scan is running.", value=0.0 if scan_id is None else 1)
    per_label = GaugeMetricFamily(
        "shelfscan_scan_count",
        "The scan's count per label (sightings in classify, facings in detect_classify).",
        labels=["label"],
    )
    labels = counts.get("counts")
    if isinstance(labels, dict):
        for label, n in sorted(labels.items()):
            per_label.add_metric([str(label)], float(n))
    yield per_label
    for key, doc in (
        ("facings", "Facings counted in the scan."),
        ("gaps", "Out-of-stock gaps found in the scan."),
        ("unknown", "Facings of the scan without a confident label."),
    ):
        value = counts.get(key)
        if isinstance(value, int | float):
            yield GaugeMetricFamily(f"shelfscan_scan_{key}", doc, value=float(value))


class MetricsServer:
    """The registry and its HTTP server (a daemon thread of ``prometheus-client``)."""

    def __init__(self, agent: Agent, state: LiveState, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.histograms = StageHistograms(agent.pipeline.clock, self.registry)
        self.registry.register(AgentCollector(agent, state))
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise ShelfscanError(f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.port = int(self._server.server_port)
        log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
