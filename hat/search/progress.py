"""Where an evolutionary search stands: enough to resume it exactly, as plain JSON."""
from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Any

from hat.io import finite


@dataclass
class SearchProgress:
    """Everything needed to resume; serialised to JSON after each iteration."""

    constraint_index: int = 0
    iteration: int = -1  # -1: the initial population of this constraint is not evaluated yet
    population: list[list[int]] = field(default_factory=list)
    rng_state: Any = None
    best_per_iteration: list[float] = field(default_factory=list)
    evaluations_at_start: int = 0
    finished: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any], constraints: int, iterations: int) -> "SearchProgress":
        """Progress read back from a state file, its numbers checked (``ValueError`` when they are off)."""
        state = cls(**{item.name: data[item.name] for item in fields(cls)})
        state.constraint_index, state.iteration = int(state.constraint_index), int(state.iteration)
        state.evaluations_at_start = int(state.evaluations_at_start)
        state.best_per_iteration = [finite(x, "best loss") for x in state.best_per_iteration]
        state.finished = list(state.finished)
        if not 0 <= state.constraint_index <= constraints or not -1 <= state.iteration <= iterations:
            raise ValueError("progress is outside this search's constraints or iterations")
        if state.rng_state is not None:
            random.Random().setstate(rng_state_from_json(state.rng_state))
        return state


def rng_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_state_from_json(data: list) -> tuple:
    return (data[0], tuple(data[1]), data[2])
