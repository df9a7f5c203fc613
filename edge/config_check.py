"""``shelfscan-agent config --check``: everything the agent would trip over at start, all at once.

Schema validation alone said ``ok`` for a configuration whose bundle, video or TLS file does not
exist. The check here goes as far as the agent's own start does, without connecting to the
broker: every schema problem (not only the first), the trusted keys, every bundle loaded and
validated as the agent loads it (signature, files, tensors), the frame source opened once,
the TLS files readable, the state directory writable. Each problem is one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from edge.config import AgentConfig, read_config_data, validation_problems
from edge.errors import ShelfscanError


def check_config(path: str | Path) -> tuple[AgentConfig | None, list[str]]:
    """The configuration (None when its schema is wrong) and every problem found, one line each."""
    try:
        data = read_config_data(path)
        cfg = AgentConfig.model_validate(data)
    except ShelfscanError as exc:
        return None, [str(exc)]
    except ValidationError as exc:
        return None, validation_problems(exc, path)
    problems = [
        *_model_problems(cfg),
        *_source_problems(cfg),
        *_tls_problems(cfg),
        *_state_problems(cfg),
        *_monitoring_problems(cfg),
    ]
    return cfg, [f"{path}: {p}" for p in problems]


def _model_problems(cfg: AgentConfig) -> list[str]:
    from edge.agent_setup import Bundles

    try:
        bundles = Bundles(cfg)
    except (ShelfscanError, OSError, ValueError) as exc:
        return [f"model.trusted_keys: {exc}"]
    try:
        bundles.load()
    except (ShelfscanError, OSError, ValueError, RuntimeError) as exc:
        return [f"model: {exc}"]
    return []


def _source_problems(cfg: AgentConfig) -> list[str]:
    from edge.sources import make_source

    source = make_source(cfg.source)
    try:
        source.open()
    except Exception as exc:
        return [f"source ({cfg.source.kind}): {exc}"]
    finally:
        source.close()
    return []


def _tls_problems(cfg: AgentConfig) -> list[str]:
    tls = cfg.mqtt.tls
    files: dict[str, Path | None] = {"rollout.ca": cfg.rollout.ca}
    if tls is not None:
        files |= {f"mqtt.tls.{name}": getattr(tls, name) for name in ("ca", "cert", "key")}
    problems = []
    for name, f in files.items():
        if f is None:
            continue
        if not f.is_file():
            problems.append(f"{name}: {f}: file not found")
        elif not os.access(f, os.R_OK):
            problems.append(f"{name}: {f}: not readable")
    if tls is not None and (tls.cert is None) != (tls.key is None):
        problems.append("mqtt.tls: cert and key go together (mutual TLS needs both)")
    return problems


def _monitoring_problems(cfg: AgentConfig) -> list[str]:
    """The live page exposed without its password (the agent would refuse to start)."""
    from edge.monitoring import check_monitoring

    try:
        check_monitoring(cfg)
    except ShelfscanError as exc:
        return [str(exc)]
    return []


def _state_problems(cfg: AgentConfig) -> list[str]:
    state = cfg.device.state_dir
    if state.exists() and not state.is_dir():
        return [f"device.state_dir: {state}: is a file, not a folder"]
    existing = state if state.exists() else next((p for p in state.parents if p.exists()), Path("/"))
    if not os.access(existing, os.W_OK):
        return [f"device.state_dir: {state}: {existing} is not writable (the outbox lives there)"]
    return []
