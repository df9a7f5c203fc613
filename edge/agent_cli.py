"""``shelfscan-agent run`` and ``shelfscan-agent config``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, handlers: dict[str, Any]) -> None:
    p = sub.add_parser("run", help="run the agent: camera -> classify -> MQTT",
                       description="Run the on-device agent with a TOML configuration.")  # fmt: skip
    p.add_argument("--config", required=True, metavar="FILE", help="agent configuration (TOML)")
    handlers["run"] = run
    c = sub.add_parser("config", help="print an example configuration or check one")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--example", action="store_true", help="print a fully commented example configuration")
    g.add_argument("--check", metavar="FILE", help="validate a configuration file")
    g.add_argument("--reference", action="store_true", help="print the configuration reference (markdown)")
    handlers["config"] = config


def run(args: argparse.Namespace) -> int:
    from edge.agent import Agent
    from edge.config import load_config

    agent = Agent(load_config(args.config))
    agent.install_signals()
    return agent.run()


def config(args: argparse.Namespace) -> int:
    from edge.config import example_toml, load_config, reference_markdown

    if args.reference:
        print(reference_markdown())
        return 0
    if args.example:
        print(example_toml())
        return 0
    cfg = load_config(args.check)
    print(f"{args.check}: ok (device {cfg.device.id}, bundle {cfg.model.bundle}, source {cfg.source.kind})")
    return 0
