"""Label files: one class per line, in output order.

Accepts the plain format (Model Maker, ``imagenet_labels.txt``) and the indexed one that
Teachable Machine writes (``0 Class name``), so bare exports open without editing.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge.errors import BundleError

_INDEXED = re.compile(r"^(\d+)[\s:]+(.*\S)\s*$")


def parse_labels(text: str, name: str = "labels") -> list[str]:
    """Labels from file text; trailing blank lines are ignored, blank labels are an error."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise BundleError(f"{name}: no labels in file")
    for number, line in enumerate(lines, 1):
        if not line:
            raise BundleError(f"{name}: line {number} is empty (one label per line, in output order)")
    matches = [m for m in (_INDEXED.match(line) for line in lines) if m is not None]
    if len(matches) == len(lines) and [int(m.group(1)) for m in matches] == list(range(len(lines))):
        return [m.group(2) for m in matches]
    return lines


def read_labels(path: str | Path) -> list[str]:
    """Read a labels file, naming the file in any error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path}: labels file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read labels ({exc})") from None
    return parse_labels(text, str(path))


def canonical(label: str) -> str:
    """Folder names vs labels: case, spaces, dashes and underscores do not matter."""
    return re.sub(r"[\s_\-]+", " ", label).strip().casefold()
