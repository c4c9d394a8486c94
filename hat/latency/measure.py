"""How latency is measured, whatever runs the model: interleaved rounds, adaptive length, statistics.

A *workload* is anything with ``encoder`` and ``decoder`` attributes, each a zero-argument callable
that runs that part once, or ``None``. The collector (torch or onnxruntime workers, here or on a
Ray node), ``hat verify``, ``hat demo`` and ``experiments/`` all time workloads through
:func:`measure_interleaved`. This module imports neither torch nor onnxruntime.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np

# Statistics a protocol can summarise its rounds with (BENCHMARKS.md compares them on repeated runs).
STATISTICS = ("min", "p10", "p25", "median", "mean")


@dataclass(frozen=True)
class TimingStats:
    """Statistics of repeated timings of one part, in milliseconds (``mean`` is trimmed)."""

    median: float
    mean: float
    std: float
    iqr: float
    n: int
    minimum: float = float("nan")
    p10: float = float("nan")
    p25: float = float("nan")

    @classmethod
    def of(cls, samples_ms: Any, trim: float) -> "TimingStats":
        x = np.sort(np.asarray(samples_ms, dtype=float))
        cut = int(len(x) * trim)
        kept = x[cut: len(x) - cut] if len(x) - 2 * cut > 0 else x
        p10, q1, q3 = np.percentile(x, [10, 25, 75])
        return cls(float(np.median(x)), float(kept.mean()), float(x.std()), float(q3 - q1), len(x),
                   float(x[0]), float(p10), float(q1))

    def value(self, statistic: str) -> float:
        """The statistic a protocol names: ``min``, ``p10``, ``p25``, ``median`` or ``mean``."""
        return {"min": self.minimum, "p10": self.p10, "p25": self.p25, "median": self.median,
                "mean": self.mean}[statistic]

    def to_dict(self, statistic: str) -> dict[str, float]:
        """The stats, with ``value`` = the protocol's statistic (what tables and datasets use)."""
        return {**asdict(self), "value": self.value(statistic)}


def time_ms(fn: Callable[[], object]) -> float:
    """Wall-clock milliseconds of one call."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def _parts(workload: Any) -> list[Callable[[], object] | None]:
    return [getattr(workload, "encoder", None), getattr(workload, "decoder", None)]


def _round(names: list, workloads: Mapping[Any, Any], samples: dict, shift: int, timer: Callable) -> None:
    for name in names[shift:] + names[:shift]:
        for part, fn in zip(("encoder", "decoder"), _parts(workloads[name])):
            if fn is not None:
                samples[name][part].append(timer(fn))


def _settled(samples: dict, protocol: Any, block: int) -> bool:
    """Every workload's statistic moved less than ``protocol.settle`` over the last ``block`` rounds."""
    for parts in samples.values():
        for values in parts.values():
            if not values:
                continue
            now = TimingStats.of(values, protocol.trim).value(protocol.statistic)
            before = TimingStats.of(values[:-block], protocol.trim).value(protocol.statistic)
            if abs(now - before) > protocol.settle * now:
                return False
    return True


def measure_interleaved(workloads: Mapping[Any, Any], protocol: Any,
                        timer: Callable[[Callable[[], object]], float] = time_ms) -> dict[Any, dict[str, TimingStats | None]]:
    """Time several workloads in the same rounds; ``{name: {"encoder": stats, "decoder": stats}}``.

    Each workload gets ``protocol.warmup`` untimed runs. Then each round times every workload once,
    in an order rotated by one each round, so a slow spell of a shared machine falls on all of them
    alike. After ``protocol.runs`` rounds, blocks of ``runs // 2`` more rounds follow (up to
    ``protocol.round_limit``) while some workload's statistic still moves by more than
    ``protocol.settle`` from one block to the next: a noisy machine gets more rounds.
    """
    names = list(workloads)
    if not names:
        return {}
    for name in names:
        for _ in range(protocol.warmup):
            for fn in _parts(workloads[name]):
                if fn is not None:
                    fn()
    samples: dict[Any, dict[str, list[float]]] = {name: {"encoder": [], "decoder": []} for name in names}
    rounds = 0
    while rounds < protocol.runs:
        _round(names, workloads, samples, rounds % len(names), timer)
        rounds += 1
    block = max(1, protocol.runs // 2)
    while rounds + block <= protocol.round_limit and not (rounds > block and _settled(samples, protocol, block)):
        for _ in range(block):
            _round(names, workloads, samples, rounds % len(names), timer)
            rounds += 1
    return {name: {part: TimingStats.of(values, protocol.trim) if values else None for part, values in parts.items()}
            for name, parts in samples.items()}


def results_of(stats: dict[Any, dict[str, TimingStats | None]], names: list, statistic: str) -> list[dict[str, Any]]:
    """Plain-data results in ``names`` order: ``{"encoder": stats dict or None, "decoder": ...}``."""
    return [{part: (value.to_dict(statistic) if value is not None else None) for part, value in stats[name].items()}
            for name in names]


def total_ms(result: Mapping[str, Any]) -> float:
    """Encoder + decoder milliseconds of one plain-data result (the protocol's statistic)."""
    return sum(_value(part) for part in (result.get("encoder"), result.get("decoder")) if part is not None)


def _value(stats: Mapping[str, Any]) -> float:
    return float(stats["value"] if "value" in stats else stats["mean"])
