"""What the facing counter keeps per track and per counted facing, and the label vote over them.

A :class:`Track` is one tracker id's history in the counter (last boxes, best view, crop votes,
which side of the counting line it is on); a :class:`Placed` is a counted facing on the shelf
map, with every track later found to be that facing. :func:`vote` settles a facing's label from
the crop classifications of all its tracks.

Kept apart from :mod:`edge.shelf_counter` (which decides when a track counts and what is
reported) because these are plain records and one rule: none of it needs the counter's state,
and the vote is the part of the counting a reader looks up on its own (docs/tracking.md).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.config import CountingConfig
from edge.shelf_events import UNKNOWN, Box, FacingCounted


@dataclass(eq=False)
class Track:
    id: int
    row: int
    world_box: np.ndarray  # last world box
    box: np.ndarray  # last frame box
    last_frame: int
    hits: int = 0
    votes: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # label -> summed score
    vote_counts: Counter[str] = field(default_factory=Counter)
    side: int = 0  # which side of the counting line its centre is on: -1 left, +1 right
    crossed: bool = False
    counted: bool = False  # counted, or found to be a counted facing
    ended: bool = False
    widths: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    best_world: np.ndarray | None = None  # the world box seen nearest the counting line, preferably not cut
    best_box: np.ndarray | None = None
    best_frame: int = -1  # the frame best_box is from
    best_d: float = float("inf")

    @property
    def cx(self) -> float:
        box = self.world_box if self.best_world is None else self.best_world
        return float(box[0] + box[2]) / 2


@dataclass(eq=False)
class Placed:
    """A counted facing on the shelf map, reported once its label settles."""

    tracks: list[Track]  # the track that counted it, then any later track found to be it
    row: int
    world_box: Box
    box: Box
    frame_index: int
    t: float
    pose: dict[str, Any] | None
    how: str
    box_frame: int
    event: FacingCounted | None = None

    @property
    def cx(self) -> float:
        return (self.world_box[0] + self.world_box[2]) / 2


def vote(placed: Placed, config: CountingConfig) -> tuple[str, float, dict[str, float], int]:
    """The label of ``placed`` from the score-weighted votes of all its tracks' crops: ``(label, score, votes, n)``.

    ``score`` is the winner's mean classifier score, ``votes`` the summed score per label, ``n`` the
    number of votes; fewer than ``min_votes`` of them or a winner holding no more than
    ``min_agreement`` of the weight gives ``unknown``.
    """
    votes: defaultdict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter()
    for track in placed.tracks:
        for name, weight in track.votes.items():
            votes[name] += weight
        counts.update(track.vote_counts)
    n, total = sum(counts.values()), sum(votes.values())
    rounded: dict[str, float] = {k: round(v, 4) for k, v in sorted(votes.items())}
    if n == 0 or total <= 0:
        return UNKNOWN, 0.0, rounded, n
    label, weight = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
    score = round(weight / counts[label], 4)
    if n < config.min_votes or weight / total <= config.min_agreement:
        return UNKNOWN, score, rounded, n
    return label, score, rounded, n
