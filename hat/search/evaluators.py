"""Evaluate many configs: in this process, or on Ray actors that each hold the fitness once."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from hat.errors import HatError
from hat.space import SubTransformerConfig

log = logging.getLogger(__name__)
Fitness = Callable[[SubTransformerConfig], float]


class SerialEvaluator:
    def __init__(self, fitness: Fitness) -> None:
        self.fitness = fitness

    def __call__(self, configs: Sequence[SubTransformerConfig]) -> list[float]:
        return [float(self.fitness(c)) for c in configs]

    def close(self) -> None:
        pass


class _FitnessActor:
    def __init__(self, fitness: Fitness) -> None:
        self.fitness = fitness

    def evaluate(self, config: dict) -> float:
        return float(self.fitness(SubTransformerConfig.from_dict(config)))


class RayEvaluator:
    """``workers`` actors fed through an ActorPool: an idle actor takes the next candidate.

    Actors restart when they die and Ray re-runs their unfinished tasks (``max_task_retries``):
    a lost worker costs time, never candidates. Results come back in input order.
    """

    def __init__(self, fitness: Fitness, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise HatError("parallel search needs Ray: pip install 'hat-nas[ray]'") from None
        if workers < 1:
            raise HatError(f"--workers must be at least 1, got {workers}")
        self._ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(_FitnessActor)
        self.actors = [actor.remote(fitness) for _ in range(workers)]

    def __call__(self, configs: Sequence[SubTransformerConfig]) -> list[float]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        payload = [c.to_dict(include_space=False) for c in configs]
        return [float(x) for x in pool.map(lambda actor, config: actor.evaluate.remote(config), payload)]

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
