"""Evolutionary search under latency constraints and limits on other objectives."""
from hat.search.evaluators import ProcessPoolEvaluator, RayEvaluator, SerialEvaluator, make_evaluator
from hat.search.evolution import EvolutionarySearch, EvolutionSettings
from hat.search.fitness import InheritedLossFitness
from hat.search.objectives import Limit, Objective
from hat.search.random_search import random_search
from hat.search.results import Candidate, ConstraintResult, SearchResult

__all__ = [
    "Candidate", "ConstraintResult", "EvolutionarySearch", "EvolutionSettings", "InheritedLossFitness", "Limit", "Objective",
    "ProcessPoolEvaluator", "RayEvaluator", "SearchResult", "SerialEvaluator", "make_evaluator", "random_search",
]
