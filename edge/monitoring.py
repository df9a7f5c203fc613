"""Wires the optional onlookers (Prometheus metrics, the live page) to an agent.

Both read one :class:`~edge.live_state.LiveState` that the agent's inference thread refreshes
after each frame; each serves on its own daemon thread and is closed at the agent's shutdown.
Neither is imported when disabled, so a device without ``prometheus-client`` runs as before.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from edge.config import AgentConfig
from edge.errors import ShelfscanError
from edge.live_state import LiveState

if TYPE_CHECKING:
    from edge.agent import Agent


def check_monitoring(cfg: AgentConfig) -> None:
    """What must hold before anything starts: a live page exposed without a password is refused, metrics need
    ``prometheus-client`` (the ``edge`` extra), each as one line instead of a half-started agent."""
    if cfg.metrics.enabled and importlib.util.find_spec("prometheus_client") is None:
        raise ShelfscanError(
            "metrics.enabled needs the prometheus-client package (pip install 'shelfscan[edge]' "
            "or pip install prometheus-client)"
        )
    if cfg.live.enabled:
        from edge.live_page import check_exposure

        check_exposure(cfg.live)


def attach_monitoring(agent: Agent, cfg: AgentConfig) -> LiveState | None:
    """Start the enabled servers for ``agent``; their frame taps and closers are added to it.

    ``check_monitoring(cfg)`` has run already (``build_agent`` calls it before anything starts).
    """
    if not (cfg.metrics.enabled or cfg.live.enabled):
        return None
    state = LiveState(agent)
    state.refresh()
    agent.frame_taps.append(state.frame_done)
    if cfg.metrics.enabled:
        from edge.metrics import MetricsServer

        metrics = MetricsServer(agent, state, cfg.metrics.host, cfg.metrics.port)
        agent.frame_taps.append(metrics.histograms.frame_done)
        agent.closers.append(metrics.close)
    if cfg.live.enabled:
        from edge.live_page import LivePage

        page = LivePage(state, cfg.live, agent.device)
        agent.closers.append(page.close)
    return state
