"""``shelfscan-agent``: the device-side command line; builds the parser and dispatches, nothing else.

Subcommands import their modules lazily so ``--help`` stays instant on a Raspberry Pi and
never pulls in OpenCV or an interpreter. The options they share are in :mod:`edge.cli_args`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from edge import __version__
from edge.cli_args import Handler, OneLineParser
from edge.errors import ShelfscanError
from edge.logsetup import add_verbosity_help, configure_logging, pop_verbosity


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The whole command line: each ``*_cli`` module registers its subcommands and their handlers."""
    from edge import agent_cli, bench_cli, bundle_cli, classify_cli, detect_cli, shelfmap_cli

    parser = OneLineParser(
        prog="shelfscan-agent",
        description="shelfscan on-device agent: classify shelf images locally and report products over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"shelfscan {__version__}")
    add_verbosity_help(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers: dict[str, Handler] = {}
    classify_cli.register(sub, handlers)
    detect_cli.register(sub, handlers)
    agent_cli.register(sub, handlers)
    bench_cli.register(sub, handlers)
    shelfmap_cli.register(sub, handlers)
    bundle_cli.register(sub, handlers)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, set up logging, run the subcommand; a :class:`ShelfscanError` is one line and exit 2."""
    parser, handlers = build_parser()
    verbosity, rest = pop_verbosity(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(rest)
    if configure_logging(verbosity, logging.WARNING) > logging.DEBUG:
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own stderr lines ("can't open camera") too
    try:
        return handlers[args.command](args)
    except ShelfscanError as exc:
        print(f"shelfscan-agent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
