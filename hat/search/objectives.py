"""Objectives a search can bound besides predicted latency: named, cheap functions of a config.

A :class:`Limit` is an objective with an upper bound. The evolution keeps only candidates within
every limit and reports every objective's value, so a new objective (peak memory, energy) needs
a function here, not a change to the search.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hat.errors import HatError
from hat.space import SearchSpace, SubTransformerConfig

BYTES_PER_WEIGHT = {"fp32": 4, "int8": 1}
SUFFIXES = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}


@dataclass(frozen=True)
class Objective:
    """``measure(config)`` -> a value where smaller is better, in ``unit``."""

    name: str
    unit: str
    measure: Callable[[SubTransformerConfig], float]


@dataclass(frozen=True)
class Limit:
    """Keep ``objective`` at or under ``bound``."""

    objective: Objective
    bound: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.bound) or self.bound <= 0:
            raise HatError(f"the bound on {self.objective.name} must be a positive number, got {self.bound}")

    @property
    def name(self) -> str:
        return self.objective.name

    def holds(self, value: float) -> bool:
        return value <= self.bound

    def describe(self) -> str:
        return f"{self.name} <= {self.bound:g} {self.objective.unit}"

    def to_dict(self) -> dict:
        return {"objective": self.name, "unit": self.objective.unit, "bound": self.bound}


def parameters(dims: object) -> Objective:
    """Parameters of the SubTransformer with the model's vocabulary (``dims``: :class:`hat.subtransformer.ModelDims`)."""
    from hat.subtransformer import count_parameters

    return Objective("parameters", "parameters", lambda config: float(count_parameters(config, dims)))


def weights_mb(dims: object, precision: str = "fp32") -> Objective:
    """Megabytes (10^6 bytes) of the weights as ``hat export`` stores them at ``precision``."""
    from hat.subtransformer import count_parameters

    if precision not in BYTES_PER_WEIGHT:
        raise HatError(f"unknown precision '{precision}' (fp32 or int8)")
    size = BYTES_PER_WEIGHT[precision] / 1e6
    return Objective(f"weights_mb_{precision}", "MB", lambda config: count_parameters(config, dims) * size)


def memory_mb(dims: object, precision: str = "fp32", src_len: int = 30, tgt_len: int = 30, beam: int = 5) -> Objective:
    """Megabytes a deployed model holds at its peak of a beam search (``beam`` hypotheses, ``src_len``
    source tokens, ``tgt_len`` steps): its weights at ``precision``, the decoder's key/value caches
    (self-attention over the steps, encoder-decoder attention over the encoder layers each decoder
    layer reads), the encoder outputs those layers read, and one step's logits, all in float32."""
    from hat.space.config import ende_attn_layers
    from hat.subtransformer import count_parameters

    if precision not in BYTES_PER_WEIGHT:
        raise HatError(f"unknown precision '{precision}' (fp32 or int8)")
    qkv, vocab = dims.qkv_dim, dims.tgt_vocab_size

    def measure(config: SubTransformerConfig) -> float:
        reads = [ende_attn_layers(e) for e in config.decoder_ende_attn]
        caches = sum(2 * beam * (tgt_len + n * src_len) * qkv for n in reads)
        floats = caches + max(reads) * src_len * config.encoder_embed_dim + beam * vocab
        return (count_parameters(config, dims) * BYTES_PER_WEIGHT[precision] + 4 * floats) / 1e6

    return Objective(f"memory_mb_{precision}", "MB", measure)


def flops(space: object) -> Objective:
    """FLOPs as HAT reports them (:func:`hat.space.flops.count_flops`) at the space's ``flops_length``."""
    from hat.space.flops import count_flops

    return Objective("flops", "FLOPs", lambda config: float(count_flops(config, space.qkv_dim, space.flops_length)))


def parse_count(text: str) -> float:
    """``"20M"`` -> 2e7; plain numbers and K/M/G suffixes (for ``--max-params`` and ``--max-flops``)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMG]?)\s*", text, flags=re.IGNORECASE)
    if not match:
        raise HatError(f"'{text}' is not a count (a number, optionally with K, M or G)")
    value = float(match.group(1)) * SUFFIXES[match.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise HatError(f"'{text}' must be a positive count")
    return value


def feasible_range(space: SearchSpace, predictor: Any, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Predicted latency range of ``space``: its smallest and largest configs plus a seeded sample."""
    rng = random.Random(f"range:{seed}")
    configs = [space.smallest(), space.largest()] + [space.sample(rng=rng) for _ in range(samples)]
    predicted = predictor.predict(configs)
    return float(np.min(predicted)), float(np.max(predicted))
