"""Evolutionary search under latency constraints (HAT's algorithm, with its flaws fixed).

- Candidates are identified by ``archid``: fitness is cached, so parents and duplicates are never
  evaluated twice, and one cache serves every constraint of the run.
- Children are evaluated at the end of each iteration, so the last generation counts.
- Rejection sampling against the predicted latency has a bounded number of tries; a constraint
  below the feasible range fails at once with the range.
- The full state is written atomically after every iteration; ``resume=True`` continues it and
  ends with exactly the result of an uninterrupted run.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hat.errors import HatError
from hat.io import atomic_write_json, file_content, finite, load_json
from hat.search.objectives import Limit, feasible_range
from hat.search.operators import crossover, mutate
from hat.search.progress import SearchProgress, rng_state_from_json, rng_state_to_json
from hat.search.results import Candidate, ConstraintResult, LatencyModel, SearchResult
from hat.search.store import SearchStore
from hat.space import Genome, SearchSpace, SubTransformerConfig

log = logging.getLogger(__name__)
STATE_FORMAT = "hat-search-state-v1"


def _setting(default: float, low: float, help: str, high: float | None = None) -> Any:
    """A search-setting field; ``hat search`` builds its option from the bounds and help kept here."""
    return field(default=default, metadata={"low": low, "high": high, "help": help})


@dataclass(frozen=True)
class EvolutionSettings:
    """HAT's evolutionary-search settings; the defaults are HAT's."""

    population: int = _setting(125, 1, "candidates in each generation")
    parents: int = _setting(25, 1, "the fittest candidates a generation keeps and breeds from")
    mutations: int = _setting(50, 0, "children made by mutating one parent, per generation")
    crossovers: int = _setting(50, 0, "children made by crossing two parents, per generation")
    mutation_prob: float = _setting(0.3, 0.0, "chance that a mutation redraws each gene", high=1.0)
    iterations: int = _setting(30, 0, "generations after the first")


HAT_SETTINGS = EvolutionSettings()


class EvolutionarySearch:
    """HAT's evolutionary search with a fitness cache, bounded rejection and resumable state.

    Example:
        >>> search = EvolutionarySearch(space, fitness, predictor, constraints=[100, 150], seed=0)
        >>> result = search.run()
        >>> result.results[0].best.config
    """

    def __init__(
        self,
        space: SearchSpace,
        fitness: Callable[[SubTransformerConfig], float],
        predictor: LatencyModel,
        constraints: Sequence[float],
        *,
        seed: int = 0,
        population: int = HAT_SETTINGS.population,
        parents: int = HAT_SETTINGS.parents,
        mutations: int = HAT_SETTINGS.mutations,
        crossovers: int = HAT_SETTINGS.crossovers,
        mutation_prob: float = HAT_SETTINGS.mutation_prob,
        iterations: int = HAT_SETTINGS.iterations,
        max_tries: int = 200,
        evaluator: Callable[[Sequence[SubTransformerConfig]], list[float]] | None = None,
        state_path: str | Path | None = None,
        progress: bool = True,
        limits: Sequence[Limit] = (),
        store: SearchStore | None = None,
    ) -> None:
        if not constraints:
            raise HatError("give at least one latency constraint")
        if any(not np.isfinite(c) or c <= 0 for c in constraints):
            raise HatError(f"latency constraints must be positive numbers (ms), got {list(constraints)}")
        if parents < 1 or parents > population or mutations < 0 or crossovers < 0 or iterations < 0:
            raise HatError("need 1 <= parents <= population, mutations >= 0, crossovers >= 0, iterations >= 0")
        if not 0 <= mutation_prob <= 1:
            raise HatError(f"mutation probability must be in [0, 1], got {mutation_prob}")
        self.space, self.fitness, self.predictor = space, fitness, predictor
        self.constraints = [float(c) for c in constraints]
        self.limits = list(limits)
        self.store = store if store is not None else SearchStore()
        if len({limit.name for limit in self.limits}) < len(self.limits):
            raise HatError("each objective can be limited once")
        self.seed = seed
        self.population_size, self.parents, self.mutations, self.crossovers = population, parents, mutations, crossovers
        self.mutation_prob, self.iterations, self.max_tries = mutation_prob, iterations, max_tries
        from hat.search.evaluators import SerialEvaluator

        self.evaluate = evaluator or SerialEvaluator(fitness)
        self.state_path = Path(state_path) if state_path else None
        self.progress = progress
        self.candidates: dict[str, Candidate] = {}
        self.history: list[dict[str, Any]] = []
        self.evaluations = 0
        self._state = SearchProgress()

    # ---- candidates -------------------------------------------------------------------------
    def _candidate(self, genome: Genome) -> Candidate:
        config = self.space.decode(genome)
        found = self.candidates.get(config.archid)
        if found is None:
            latency = float(self.predictor.predict([config])[0])
            found = self.candidates[config.archid] = Candidate(config.archid, config, latency,
                                                               objectives=self._objectives(config))
        return found

    def _objectives(self, config: SubTransformerConfig) -> dict[str, float]:
        return {limit.name: float(limit.objective.measure(config)) for limit in self.limits}

    def _feasible(self, candidate: Candidate, constraint: float) -> bool:
        """Within the latency constraint and every limit."""
        return candidate.latency_ms <= constraint and all(
            limit.holds(candidate.objectives[limit.name]) for limit in self.limits)

    def _evaluate(self, genomes: Sequence[Genome], iteration: int, constraint: float) -> None:
        """Score the candidates without a loss: from the store when it knows them (a resumed run, or
        another search with the same fitness), else by the fitness. Each counts as one evaluation of
        this search either way, so a resumed search reports what an uninterrupted one does."""
        fresh: dict[str, Candidate] = {}
        for genome in genomes:
            candidate = self._candidate(genome)
            if candidate.loss is None:
                fresh[candidate.archid] = candidate
        unknown = [c for c in fresh.values() if c.archid not in self.store]
        if unknown:
            for candidate, loss in zip(unknown, self.evaluate([c.config for c in unknown])):
                if not np.isfinite(loss):
                    raise HatError(f"fitness returned {loss} for {candidate.archid}")
                self.store.add(candidate.config, float(loss))
        self.evaluations += len(fresh)
        if fresh:
            for candidate in fresh.values():
                candidate.loss = self.store.loss(candidate.archid)
                self.history.append({
                    "constraint_ms": constraint, "iteration": iteration, "archid": candidate.archid,
                    "latency_ms": candidate.latency_ms, **candidate.objectives, "loss": candidate.loss,
                    "config": candidate.config.to_json(),
                })

    def feasible_range(self, samples: int = 2000) -> tuple[float, float]:
        """Predicted latency range of the space (see :func:`hat.search.objectives.feasible_range`)."""
        return feasible_range(self.space, self.predictor, samples, self.seed)

    def _feasible_child(self, make: Callable[[], Genome], constraint: float, taken: set[str]) -> Genome | None:
        for _ in range(self.max_tries):
            genome = make()
            candidate = self._candidate(genome)
            if self._feasible(candidate, constraint) and candidate.archid not in taken:
                taken.add(candidate.archid)
                return genome
        return None

    # ---- state ------------------------------------------------------------------------------
    def _save(self) -> None:
        if self.state_path is None:
            return
        state = self._state
        atomic_write_json(self.state_path, {
            "format": STATE_FORMAT,
            "settings": self._settings(),
            "progress": asdict(state),
            "evaluations": self.evaluations,
            "candidates": [
                {"archid": c.archid, "config": c.config.to_dict(), "latency_ms": c.latency_ms, "loss": c.loss}
                for c in self.candidates.values() if c.loss is not None
            ],
            "history": self.history,
        })

    def _settings(self) -> dict[str, Any]:
        settings = {
            "space_fingerprint": self.space.fingerprint, "constraints": self.constraints, "seed": self.seed,
            "population": self.population_size, "parents": self.parents, "mutations": self.mutations,
            "crossovers": self.crossovers, "mutation_prob": self.mutation_prob, "iterations": self.iterations,
            "max_tries": self.max_tries,
        }
        if self.limits:  # absent without limits: state files of searches without limits stay valid
            settings["limits"] = [limit.to_dict() for limit in self.limits]
        return settings

    def _load(self) -> bool:
        """Resume from the state file, trusting nothing in it: every config is checked against the
        space, latencies are predicted again, losses must be finite, genomes must decode."""
        if self.state_path is None or not self.state_path.is_file():
            return False
        path = self.state_path
        data = load_json(path, "search state")
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise HatError("not a HAT search state file", path)
        if data.get("settings") != self._settings():
            raise HatError("search state was written with other settings (space, constraints, seed or sizes); "
                           "use another --out or the same options", path)
        with file_content(path, "search state"):
            candidates = self._load_candidates(data["candidates"])
            state = SearchProgress.from_json(data["progress"], len(self.constraints), self.iterations)
            for genome in state.population:
                if not all(isinstance(v, int) and v in g.choices for g, v in zip(self.space.genes, genome)):
                    raise ValueError(f"genome {genome} has values outside the space")
                if self.space.decode(genome).archid not in candidates:
                    raise ValueError("the population holds a genome that was never evaluated")
            for done in state.finished:
                if not self._feasible(candidates[done["archid"]], float(done["constraint_ms"])):
                    raise ValueError(f"{done['archid']} does not meet its constraint")
            history, evaluations = list(data["history"]), int(data["evaluations"])
        self.candidates, self.history, self.evaluations, self._state = candidates, history, evaluations, state
        return True

    def _load_candidates(self, items: list[dict[str, Any]]) -> dict[str, Candidate]:
        configs = [SubTransformerConfig.from_dict(item["config"]) for item in items]
        for item, config in zip(items, configs):
            self.space.validate(config)
            if item["archid"] != config.archid:
                raise ValueError(f"archid {item['archid']} does not match its config ({config.archid})")
        latencies = self.predictor.predict(configs) if configs else []
        return {c.archid: Candidate(c.archid, c, float(ms), finite(item["loss"], f"loss of {c.archid}"),
                                    self._objectives(c))
                for item, c, ms in zip(items, configs, latencies)}

    # ---- the algorithm ------------------------------------------------------------------------
    def run(self, resume: bool = False) -> SearchResult:
        from tqdm import tqdm

        if resume:
            if self._load():
                log.info("resuming search from %s (%d evaluations so far)", self.state_path, self.evaluations)
        elif self.state_path is not None and self.state_path.is_file():
            raise HatError("a search state exists here; pass resume to continue it or use another output folder",
                           self.state_path)
        low, high = self.feasible_range()
        for constraint in self.constraints:
            if constraint < low:
                raise HatError(f"latency constraint {constraint:g} ms is below the fastest SubTransformer of "
                               f"'{self.space.name}' ({low:.2f} ms predicted); feasible range {low:.2f}-{high:.2f} ms")
            if constraint >= high:
                log.warning("constraint %.2f ms is above the slowest SubTransformer (%.2f ms): it does not bind",
                            constraint, high)
        state = self._state
        while state.constraint_index < len(self.constraints):
            constraint = self.constraints[state.constraint_index]
            rng = random.Random(f"evolution:{self.seed}:{state.constraint_index}")
            if state.rng_state is not None:
                rng.setstate(rng_state_from_json(state.rng_state))
            bar = tqdm(total=self.iterations + 1, initial=state.iteration + 1, disable=not self.progress,
                       desc=f"search <= {constraint:g} ms", unit="gen")
            if state.iteration < 0:
                self._first_generation(state, rng, constraint)
                bar.update(1)
            while state.iteration < self.iterations:
                self._next_generation(state, rng, constraint)
                bar.update(1)
            bar.close()
            best = self._best(constraint)
            assert self._feasible(best, constraint), "a returned config must satisfy its constraint and limits"
            state.finished.append({"constraint_ms": constraint, "archid": best.archid,
                                   "best_per_iteration": state.best_per_iteration,
                                   "evaluations": self.evaluations - state.evaluations_at_start})
            self._state = state = SearchProgress(constraint_index=state.constraint_index + 1, finished=state.finished)
            self._save()
        return self._result((low, high))

    def _first_generation(self, state: SearchProgress, rng: random.Random, constraint: float) -> None:
        """A population of feasible random SubTransformers, scored."""
        state.evaluations_at_start = self.evaluations
        taken: set[str] = set()
        population = []
        for _ in range(self.population_size):
            genome = self._feasible_child(lambda: self.space.sample_genome(rng), constraint, taken)
            if genome is not None:
                population.append(genome)
        if not population:
            within = "".join(f" and {limit.describe()}" for limit in self.limits)
            raise HatError(f"no SubTransformer under {constraint:g} ms{within} found in {self.max_tries} tries")
        self._evaluate(population, 0, constraint)
        self._finish_iteration(state, population, rng, constraint, 0)

    def _next_generation(self, state: SearchProgress, rng: random.Random, constraint: float) -> None:
        """The best parents plus feasible children by mutation and crossover, scored."""
        iteration = state.iteration + 1
        population = [tuple(g) for g in state.population]
        parents = self._select(population)
        taken = {self._candidate(g).archid for g in parents}
        children: list[Genome] = []
        for _ in range(self.mutations):
            child = self._feasible_child(
                lambda: mutate(self.space, rng.choice(parents), self.mutation_prob, rng), constraint, taken)
            if child is not None:
                children.append(child)
        for _ in range(self.crossovers):
            child = self._feasible_child(
                lambda: crossover(rng.choice(parents), rng.choice(parents), rng), constraint, taken)
            if child is not None:
                children.append(child)
        population = parents + children
        self._evaluate(population, iteration, constraint)
        self._finish_iteration(state, population, rng, constraint, iteration)

    def _select(self, population: list[Genome]) -> list[Genome]:
        ranked = sorted(population, key=lambda g: (self._candidate(g).loss, self._candidate(g).archid))
        return ranked[: self.parents]

    def _best(self, constraint: float) -> Candidate:
        feasible = [c for c in self.candidates.values() if c.loss is not None and self._feasible(c, constraint)]
        return min(feasible, key=lambda c: (c.loss, c.archid))

    def _finish_iteration(self, state: SearchProgress, population: list[Genome], rng: random.Random,
                          constraint: float, iteration: int) -> None:
        best = self._best(constraint)
        state.iteration = iteration
        state.population = [list(g) for g in population]
        state.rng_state = rng_state_to_json(rng.getstate())
        state.best_per_iteration.append(best.loss)
        log.info("constraint %g ms | iteration %d | best loss %.4f (%s, %.2f ms) | evaluations %d",
                 constraint, iteration, best.loss, best.archid, best.latency_ms, self.evaluations)
        self._save()

    def _result(self, feasible: tuple[float, float]) -> SearchResult:
        results = [
            ConstraintResult(item["constraint_ms"], self.candidates[item["archid"]], item["best_per_iteration"],
                             item["evaluations"])
            for item in self._state.finished
        ]
        return SearchResult(results, self.candidates, self.history, self.evaluations, feasible, self.limits)

