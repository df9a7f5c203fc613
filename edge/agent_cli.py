"""``shelfscan-agent run``, ``config`` and ``watch``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from edge.cli_args import add_broker_args, broker_from_args

if TYPE_CHECKING:
    from edge.watch import BrokerURL


def register(sub: Any, handlers: dict[str, Any]) -> None:
    p = sub.add_parser(
        "run",
        help="run the agent: camera -> classify -> MQTT",
        description="Run the on-device agent with a TOML configuration.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="agent configuration (TOML)")
    handlers["run"] = run
    c = sub.add_parser("config", help="print an example configuration or check one")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--example", action="store_true", help="print a fully commented example configuration")
    g.add_argument("--check", metavar="FILE", help="validate a configuration file")
    g.add_argument("--reference", action="store_true", help="print the configuration reference (markdown)")
    handlers["config"] = config
    w = sub.add_parser(
        "watch",
        help="live table of every device under a topic prefix",
        description="Subscribe to <prefix>/+/+ and show each device's status, last counts, fps, "
        "latency, outbox depth and model. The password comes from SHELFSCAN_MQTT_PASSWORD "
        "unless the URL carries one.",
    )
    add_broker_args(w)
    w.add_argument("--prefix", default="shelfscan", help="topic prefix (default shelfscan)")
    w.add_argument(
        "--once",
        type=float,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="collect for SECONDS (default 2), print one table, exit",
    )
    w.add_argument("--json", action="store_true", help="print the fleet state as JSON (implies --once)")
    handlers["watch"] = watch_cmd


def watch_cmd(args: argparse.Namespace) -> int:
    once = args.once if args.once is not None else (2.0 if args.json else None)
    return watch(broker_from_args(args), args.prefix, once, args.json)


def watch(url: BrokerURL, prefix: str, once: float | None, as_json: bool, interval: float = 1.0) -> int:
    """Show the fleet table; ``once``: wait that many seconds for retained state, print, exit."""
    from edge.watch import Fleet, connect

    fleet = Fleet(prefix)
    client = connect(url, f"shelfscan-watch-{os.getpid()}", [f"{fleet.prefix}/+/+"], fleet.update)
    try:
        if once is not None:
            time.sleep(once)
            print(json.dumps(fleet.snapshot(), indent=2) if as_json else fleet.table())
            return 0
        tty, shown = sys.stdout.isatty(), ""
        while True:
            text = fleet.table()
            stamp = time.strftime("%H:%M:%S")
            if tty:  # redraw in place
                sys.stdout.write(f"\x1b[H\x1b[2J{url}  {prefix}/+  {stamp}  (Ctrl-C to quit)\n\n{text}\n")
            elif text != shown:  # a log or a pipe: only changes
                sys.stdout.write(f"--- {stamp}\n{text}\n")
            shown = text
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        client.loop_stop()
        client.disconnect()


def run(args: argparse.Namespace) -> int:
    from edge.agent_setup import build_agent
    from edge.config import load_config

    # Loading models takes seconds on a Pi: a SIGTERM then (systemctl stop, a restart) ends the
    # start cleanly with one line instead of killing the process mid-load.
    def stop_while_starting(signum: int, _frame: object) -> None:
        raise StartInterruptedError(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop_while_starting) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent = build_agent(load_config(args.config))
    except StartInterruptedError as exc:
        print(f"shelfscan-agent run: stopped by {exc} while starting; nothing was published", file=sys.stderr)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    agent.install_signals()
    if sys.stderr.isatty():  # run in a terminal: a status line every publish.stats_interval_s
        agent.console = sys.stderr
    return agent.run()


class StartInterruptedError(Exception):
    """A stop signal arrived before the agent was running (raised from the signal handler)."""


def config(args: argparse.Namespace) -> int:
    from edge.config import example_toml, reference_markdown
    from edge.config_check import check_config

    if args.reference:
        print(reference_markdown())
        return 0
    if args.example:
        print(example_toml())
        return 0
    cfg, problems = check_config(args.check)
    for line in problems:
        print(f"shelfscan-agent config: error: {line}", file=sys.stderr)
    if problems or cfg is None:
        return 2
    print(
        f"{args.check}: ok (device {cfg.device.id}, bundle {cfg.model.bundle}, source {cfg.source.kind}; "
        "bundles loaded, source opened)"
    )
    return 0
