"""The closed sets of names the agent works with: events between threads, commands, states, scan ends.

Separate from :mod:`edge.agent` so that the agent's collaborators (set-up, commands, monitoring)
can name them without importing the agent itself.
"""

from __future__ import annotations

from edge.compat import StrEnum


class AgentEvent(StrEnum):
    """What other threads ask of the inference thread."""

    ONLINE = "online"  # (re)connected to the broker
    SOURCE = "source"  # the camera's state changed: (state, detail)
    COMMAND = "command"  # a cmd/<name> message: (name, payload)
    RELOAD = "reload"  # reason
    ANNOUNCE = "announce"  # Home Assistant came online
    POSE = "pose"  # the robot's retained pose message: payload
    DESIRED = "desired"  # a desired-model message (edge.rollout): (topic, payload)
    ARCHIVE = "archive"  # a rollout's bundle archive arrived: (topic, payload)


class Command(StrEnum):
    """The ``cmd/<name>`` topics the agent obeys."""

    SCAN_START = "scan/start"
    SCAN_STOP = "scan/stop"
    RELOAD = "reload"
    SNAPSHOT = "snapshot"


class State(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class ScanEnd(StrEnum):
    """Why a scan ended: the ``reason`` of its final counts."""

    STOPPED = "scan_stop"  # cmd/scan/stop
    REPLACED = "scan_start"  # a new scan started
    INTERVAL = "interval"  # scan.interval_s
    END_OF_SOURCE = "end_of_source"  # the video or folder is over
    SHUTDOWN = "shutdown"  # SIGTERM / SIGINT
