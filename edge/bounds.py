"""Named number ranges that the agent's configuration and the bundle manifest share (pydantic ``Annotated``).

A field reads ``match_iou: Overlap`` instead of repeating ``gt=0, le=1``: the range says what
kind of number it is, and every IoU threshold or share is checked the same way.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# An IoU threshold: 0 would match boxes that do not touch at all.
Overlap = Annotated[float, Field(gt=0, le=1)]
# A share or a score between 0 and 1, both included.
Share = Annotated[float, Field(ge=0, le=1)]
# A position strictly inside the frame, as a share of its width (a counting line).
Inside = Annotated[float, Field(gt=0, lt=1)]
# A share that 1 would make impossible to pass (an agreement a vote must exceed).
BelowOne = Annotated[float, Field(ge=0, lt=1)]
# A TCP port.
Port = Annotated[int, Field(ge=1, le=65535)]
