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


def _pool_init(fitness: Fitness) -> None:
    global _WORKER_FITNESS
    _WORKER_FITNESS = fitness


def _pool_evaluate(config: dict) -> float:
    return float(_WORKER_FITNESS(SubTransformerConfig.from_dict(config)))


_WORKER_FITNESS: Fitness | None = None


class ProcessPoolEvaluator:
    """``workers`` local processes that each hold the fitness once; nothing listens on the network.

    A worker that dies takes its pool with it: the pool is started again and the unfinished
    candidates are evaluated again (up to ``retries`` times), so a lost worker costs time, never
    candidates. Results come back in input order.
    """

    def __init__(self, fitness: Fitness, workers: int, retries: int = 2) -> None:
        if workers < 1:
            raise HatError(f"--workers must be at least 1, got {workers}")
        self.fitness, self.workers, self.retries = fitness, workers, retries
        self._pool = None

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_pool_init, initargs=(self.fitness,))
        return self._pool

    def __call__(self, configs: Sequence[SubTransformerConfig]) -> list[float]:
        from concurrent.futures.process import BrokenProcessPool

        payload = [c.to_dict(include_space=False) for c in configs]
        results: dict[int, float] = {}
        for attempt in range(self.retries + 1):
            pool = self._start()
            futures = {i: pool.submit(_pool_evaluate, payload[i]) for i in range(len(payload)) if i not in results}
            try:
                for i, future in futures.items():
                    results[i] = future.result()
                return [results[i] for i in range(len(payload))]
            except BrokenProcessPool:
                for i, future in futures.items():  # keep what finished before the worker died
                    if future.done() and future.exception() is None:
                        results[i] = future.result()
                self.close()
                log.warning("a search worker died; restarting the workers (%d of %d retries)", attempt + 1,
                            self.retries)
        raise HatError(f"search workers died {self.retries + 1} times in a row")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class RayEvaluator:
    """``workers`` actors on the Ray cluster at ``address``, fed through an ActorPool.

    Actors restart when they die and Ray re-runs their unfinished tasks (``max_task_retries``):
    a lost worker costs time, never candidates. Results come back in input order. With Ray
    already initialised (a cluster joined by the caller), that connection is used.
    """

    def __init__(self, fitness: Fitness, workers: int, address: str = "auto") -> None:
        from hat.ray_cluster import connect

        if workers < 1:
            raise HatError(f"--workers must be at least 1, got {workers}")
        ray = self._ray = connect(address)
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


def make_evaluator(fitness: Fitness, workers: int, ray_address: str | None = None):
    """None (evaluate in this process), local worker processes, or Ray actors on a named cluster."""
    if ray_address:
        return RayEvaluator(fitness, max(workers, 1), ray_address)
    if workers > 0:
        return ProcessPoolEvaluator(fitness, workers)
    return None
