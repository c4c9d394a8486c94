"""Evolutionary search under latency constraints."""
from hat.search.evaluators import ProcessPoolEvaluator, RayEvaluator, SerialEvaluator, make_evaluator
from hat.search.evolution import Candidate, ConstraintResult, EvolutionarySearch, SearchResult, random_search
from hat.search.fitness import InheritedLossFitness

__all__ = [
    "Candidate", "ConstraintResult", "EvolutionarySearch", "InheritedLossFitness", "ProcessPoolEvaluator", "RayEvaluator",
    "SearchResult", "SerialEvaluator", "make_evaluator", "random_search",
]
