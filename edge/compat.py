"""What edge uses from Python 3.11+, available on Python 3.10 too.

JetPack (Jetson boards) ships Python 3.10, and the agent has to run on the interpreter a
device already has. ruff's ``target-version = "py310"`` keeps newer syntax out; these names
cover the standard-library additions that a linter cannot see.
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum

    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

    class StrEnum(str, enum.Enum):
        """``enum.StrEnum`` of Python 3.11: members are strings, and ``str()``/``format()`` give the value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str.__format__(str(self.value), spec)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
            return name.lower()


__all__ = ["StrEnum", "tomllib"]
