"""The base of every configuration section: unknown keys are rejected (``edge.config`` has the model)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
