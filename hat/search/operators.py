"""Genetic operators on genomes (see :class:`hat.space.SearchSpace` for the genome layout)."""
from __future__ import annotations

import random

from hat.space import Genome, SearchSpace


def mutate(space: SearchSpace, genome: Genome, probability: float, rng: random.Random) -> Genome:
    """Each gene is redrawn uniformly from its choices with ``probability`` (HAT: 0.3)."""
    return tuple(
        rng.choice(gene.choices) if rng.random() < probability else value for gene, value in zip(space.genes, genome)
    )


def crossover(first: Genome, second: Genome, rng: random.Random) -> Genome:
    """Uniform crossover: each gene from either parent with equal probability."""
    return tuple(a if rng.random() < 0.5 else b for a, b in zip(first, second))
