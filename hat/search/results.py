"""What a search returns: candidates, the best per constraint, the history and the Pareto front."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from hat.search.objectives import Limit
from hat.space import SubTransformerConfig


class LatencyModel(Protocol):
    """What the search needs from a predictor: ``predict(configs) -> ms`` (see LatencyPredictor)."""

    def predict(self, configs: Sequence[SubTransformerConfig]) -> np.ndarray: ...


@dataclass
class Candidate:
    archid: str
    config: SubTransformerConfig
    latency_ms: float
    loss: float | None = None
    objectives: dict[str, float] = field(default_factory=dict)  # the search's limits' objectives


@dataclass
class ConstraintResult:
    constraint_ms: float
    best: Candidate
    best_loss_per_iteration: list[float]
    evaluations: int  # fitness evaluations spent for this constraint (cache hits not counted)


@dataclass
class SearchResult:
    results: list[ConstraintResult]
    candidates: dict[str, Candidate]
    history: list[dict[str, Any]]
    evaluations: int
    feasible_range_ms: tuple[float, float]
    limits: list[Limit] = field(default_factory=list)

    def pareto_front(self) -> list[Candidate]:
        """Evaluated candidates not beaten on both predicted latency and loss, by latency."""
        evaluated = sorted((c for c in self.candidates.values() if c.loss is not None),
                           key=lambda c: (c.latency_ms, c.loss))
        front, best = [], float("inf")
        for candidate in evaluated:
            if candidate.loss < best:
                front.append(candidate)
                best = candidate.loss
        return front
