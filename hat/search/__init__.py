"""Evolutionary search under latency constraints."""
from hat.search.evaluators import RayEvaluator, SerialEvaluator
from hat.search.evolution import Candidate, ConstraintResult, EvolutionarySearch, SearchResult, random_search
from hat.search.fitness import InheritedLossFitness

__all__ = [
    "Candidate", "ConstraintResult", "EvolutionarySearch", "InheritedLossFitness", "RayEvaluator", "SearchResult",
    "SerialEvaluator", "random_search",
]
