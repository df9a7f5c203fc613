"""``-v`` / ``-q`` mean the same in every shelfscan command, and work anywhere on the line.

argparse only accepts a top-level flag before the subcommand, so ``shelfscan-agent run -v``
failed while ``shelfscan-agent -v run`` worked. The three commands take the flags out of argv
first (:func:`pop_verbosity`), then parse the rest, and set logging up once
(:func:`configure_logging`): each ``-v`` is one level more, each ``-q`` one level less, from
the command's default (the workstation tools show progress at INFO by default, the device
agent warnings only).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
HELP = "-v more logging (-vv debug), -q less; accepted anywhere on the command line"


def pop_verbosity(argv: Sequence[str]) -> tuple[int, list[str]]:
    """``(verbosity change, argv without -v/-vv/--verbose/-q/--quiet)``; tokens after ``--`` are kept as they are."""
    change, rest = 0, []
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            rest += args[i:]
            break
        if arg in ("--verbose", "--quiet"):
            change += 1 if arg == "--verbose" else -1
        elif len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= {"v", "q"}:
            change += arg.count("v") - arg.count("q")
        else:
            rest.append(arg)
    return change, rest


def add_verbosity_help(parser: argparse.ArgumentParser) -> None:
    """Show the flags in ``--help`` (they are parsed by :func:`pop_verbosity`, never by argparse)."""
    parser.add_argument("-v", "--verbose", "-q", "--quiet", action="count", default=0, help=HELP)


def configure_logging(change: int, default: int = logging.WARNING, fmt: str | None = None) -> int:
    """Set the root logger to ``default`` moved ``change`` levels; returns the level."""
    start = LEVELS.index(default)
    level = LEVELS[max(0, min(len(LEVELS) - 1, start + change))]
    logging.basicConfig(level=level, format=fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)  # also when a handler was already there (basicConfig then does nothing)
    return level
