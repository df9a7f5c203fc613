"""Builds an :class:`~edge.agent.Agent` and its collaborators from the configuration.

The agent itself only receives them (pipeline, capture, outbox, link, bundles and the event
queue the other threads write to), so tests can hand it real ones built differently.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import Any

from edge.agent import Agent
from edge.agent_events import AgentEvent
from edge.config import AgentConfig, CountingConfig, InferenceConfig
from edge.errors import ShelfscanError
from edge.messages import Topics, envelope
from edge.monitoring import attach_monitoring, check_monitoring
from edge.mqtt import MqttLink
from edge.outbox import Outbox
from edge.pipelines import ClassifyPipeline, FramePipeline, PipelineMode
from edge.runtime import Classifier
from edge.sources import CaptureThread, make_source

log = logging.getLogger(__name__)


def bundle_fingerprint(path: Path) -> str:
    """What changes when a new bundle is put in place (a swapped symlink or rewritten files)."""
    try:
        real = path.resolve()
        return f"{real}:{(real / 'manifest.json').stat().st_mtime_ns}"
    except OSError:
        return "missing"


class Bundles:
    """The bundle paths the agent runs (classifier, and detector in detect_classify), loaded and watched.

    Loading checks the signature when trusted keys are configured; a reload builds every model
    first and swaps only when all loaded, so a bad bundle never leaves a half-swapped pipeline.
    """

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.trusted = None
        if cfg.model.trusted_keys:
            from edge.signing import load_public_keys

            self.trusted = load_public_keys(list(cfg.model.trusted_keys))
        self.paths: dict[str, Path] = {"classifier": cfg.model.bundle}
        if cfg.inference.pipeline == PipelineMode.DETECT_CLASSIFY.value and cfg.model.detector is not None:
            self.paths["detector"] = cfg.model.detector
        if self.trusted and cfg.rollout.enabled:  # a rolled-out model outlives restarts (edge.rollout)
            for role in self.paths:
                current = Path(cfg.device.state_dir) / "bundles" / f"current-{role}"
                if current.is_symlink() and current.exists():
                    log.info(
                        "%s: the rolled-out bundle %s (not model config's %s)",
                        role,
                        current.resolve(),
                        self.paths[role],
                    )
                    self.paths[role] = current.resolve()
        self.fingerprints = {role: bundle_fingerprint(p) for role, p in self.paths.items()}

    def load(self) -> dict[str, Any]:
        """Every model, freshly loaded and validated (a :class:`BundleError` names the bad one)."""
        models: dict[str, Any] = {}
        self.fingerprints = {role: bundle_fingerprint(p) for role, p in self.paths.items()}
        delegate = self.cfg.model.delegate_spec()
        models["classifier"] = Classifier.from_bundle(
            self.paths["classifier"], self.cfg.model.threads, self.trusted, delegate=delegate
        )
        if "detector" in self.paths:
            from edge.detector import Detector

            models["detector"] = Detector.from_bundle(
                self.paths["detector"], self.cfg.model.threads, self.trusted, delegate=delegate
            )
        return models

    def changed(self) -> bool:
        return any(bundle_fingerprint(p) != self.fingerprints[role] for role, p in self.paths.items())

    def reload_into(self, pipeline: Any) -> None:
        pipeline.swap(**self.load())

    def switch(self, role: str, path: Path, pipeline: Any) -> None:
        """Run ``path`` as ``role`` (a rollout or its rollback); on failure the old path stays and it raises."""
        old = self.paths[role]
        self.paths[role] = path
        try:
            self.reload_into(pipeline)
        except ShelfscanError:
            self.paths[role] = old
            self.fingerprints = {r: bundle_fingerprint(p) for r, p in self.paths.items()}
            raise


def build_pipeline(models: dict[str, Any], inference: InferenceConfig, counting: CountingConfig) -> FramePipeline:
    """The frame pipeline of ``inference.pipeline`` around freshly loaded models (the agent's and the bench's)."""
    if inference.pipeline == PipelineMode.DETECT_CLASSIFY.value:
        from edge.facing_pipeline import DetectClassifyPipeline

        return DetectClassifyPipeline(models["detector"], models["classifier"], inference, counting)
    return ClassifyPipeline(models["classifier"], inference)


def build_agent(cfg: AgentConfig) -> Agent:
    check_monitoring(cfg)  # before anything starts: one line, not a half-started agent
    bundles = Bundles(cfg)
    pipeline = build_pipeline(bundles.load(), cfg.inference, cfg.counting)
    device = cfg.device.id
    topics = Topics(cfg.device.prefix, device)
    state = Path(cfg.device.state_dir)
    outbox = Outbox(state / f"outbox-{device}.sqlite", cfg.outbox.max_messages, cfg.outbox.max_bytes)
    events: queue.Queue[tuple[AgentEvent, Any]] = queue.Queue()

    def will() -> bytes:
        """Built before every (re)connect: the broker sends it, not us, so it repeats the latest seq
        (taken by then) instead of taking one, and carries the time of that connect."""
        return envelope("status", device, outbox.last_seq(), pipeline.models()["classifier"], state="offline")

    extra: dict[str, Any] = {}
    ha = cfg.homeassistant
    if ha.enabled:
        extra[ha.status_topic] = lambda _t, payload: (
            events.put((AgentEvent.ANNOUNCE, "Home Assistant online")) if payload.strip().lower() == b"online" else None
        )
    if pipeline.mode == PipelineMode.DETECT_CLASSIFY:
        extra[cfg.counting.pose_topic or topics.pose] = lambda _t, payload: events.put((AgentEvent.POSE, payload))

    def queue_event(kind: AgentEvent) -> Any:
        return lambda *arg: events.put((kind, arg if len(arg) > 1 else (arg[0] if arg else None)))

    desired: dict[str, list[str]] = {}  # role -> where its desired model may be set (edge.rollout)
    if cfg.rollout.enabled and bundles.trusted:
        from edge.rollout import desired_topics

        desired = {role: desired_topics(cfg.device.prefix, device, cfg.device.groups, role) for role in bundles.paths}
        for where in desired.values():
            extra |= dict.fromkeys(where, queue_event(AgentEvent.DESIRED))
    elif cfg.rollout.enabled:
        log.info("model rollouts over MQTT are ignored: model.trusted_keys is not set")

    link = MqttLink(
        cfg.mqtt, device, topics, outbox, queue_event(AgentEvent.COMMAND), queue_event(AgentEvent.ONLINE), will, extra
    )
    first, longest = cfg.source.reopen_backoff_s  # SourceConfig: exactly two
    capture = CaptureThread(
        make_source(cfg.source),
        queue_event(AgentEvent.SOURCE),
        cfg.source.fps,
        (first, longest),
        cfg.source.stall_timeout_s,
    )
    agent = Agent(cfg, pipeline, capture, outbox, link, bundles, events)
    if desired:
        from edge.messages import MessageKind
        from edge.rollout import Rollout

        def publish_model(**body: Any) -> None:
            agent.publish(MessageKind.MODEL, qos=max(cfg.mqtt.qos, 1), **body)

        agent.rollout = Rollout(
            cfg.rollout,
            state,
            desired,
            bundles,
            pipeline,
            link,
            publish_model,
            agent.frame_rate.fps,
            queue_event(AgentEvent.ARCHIVE),
        )
    if cfg.evidence.enabled:
        from edge.evidence import Evidence

        agent.evidence = Evidence(cfg.evidence, state / "evidence")
        if hasattr(pipeline, "crops"):  # detect_classify: per-track crops for doubtful facings
            pipeline.crops = agent.evidence.keeper
    attach_monitoring(agent, cfg)  # metrics and live page, when enabled
    return agent
