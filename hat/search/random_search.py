"""Random search under the same constraints: the baseline evolution has to beat."""
from __future__ import annotations

import random
from typing import Callable, Sequence

from hat.errors import HatError
from hat.search.objectives import Limit
from hat.search.results import Candidate, LatencyModel
from hat.search.store import SearchStore
from hat.space import SearchSpace, SubTransformerConfig


def random_search(
    space: SearchSpace,
    fitness: Callable[[SubTransformerConfig], float],
    predictor: LatencyModel,
    constraint: float,
    budget: int,
    seed: int = 0,
    max_tries: int = 200,
    evaluator: Callable[[Sequence[SubTransformerConfig]], list[float]] | None = None,
    limits: Sequence[Limit] = (),
    store: SearchStore | None = None,
) -> Candidate:
    """Baseline: ``budget`` distinct feasible configs (within ``constraint`` and ``limits``) sampled
    uniformly, best loss wins. Losses ``store`` already holds (the evolution's) are not evaluated again."""
    rng = random.Random(f"random:{seed}")
    chosen: dict[str, Candidate] = {}
    tries = 0
    while len(chosen) < budget and tries < budget * max_tries:
        tries += 1
        config = space.sample(rng=rng)
        if config.archid in chosen:
            continue
        latency = float(predictor.predict([config])[0])
        objectives = {limit.name: float(limit.objective.measure(config)) for limit in limits}
        if latency <= constraint and all(limit.holds(objectives[limit.name]) for limit in limits):
            chosen[config.archid] = Candidate(config.archid, config, latency, objectives=objectives)
    if not chosen:
        raise HatError(f"random search found no SubTransformer under {constraint:g} ms")
    store = store if store is not None else SearchStore()
    evaluate = evaluator or (lambda configs: [float(fitness(c)) for c in configs])
    unknown = [c for c in chosen.values() if c.archid not in store]
    for candidate, loss in zip(unknown, evaluate([c.config for c in unknown]) if unknown else []):
        store.add(candidate.config, float(loss))
    for candidate in chosen.values():
        candidate.loss = store.loss(candidate.archid)
    return min(chosen.values(), key=lambda c: (c.loss, c.archid))
