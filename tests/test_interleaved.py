"""Several models timed in the same rounds: warm-up, rotation, statistics."""
from __future__ import annotations

import time

import numpy as np
import pytest

from hat.errors import HatError
from hat.latency import Protocol
from hat.latency.measure import STATISTICS, TimingStats, measure_interleaved


class Recorder:
    """A workload that logs its calls and sleeps a fixed time in each part."""

    def __init__(self, name: str, calls: list, encoder_s: float = 0.0, decoder_s: float = 0.0) -> None:
        self.name, self.calls, self.encoder_s, self.decoder_s = name, calls, encoder_s, decoder_s

    def encoder(self) -> None:
        self.calls.append((self.name, "encoder"))
        time.sleep(self.encoder_s)

    def decoder(self) -> None:
        self.calls.append((self.name, "decoder"))
        time.sleep(self.decoder_s)


def test_rounds_rotate_after_warmup() -> None:
    calls: list = []
    workloads = {name: Recorder(name, calls) for name in "abc"}
    stats = measure_interleaved(workloads, Protocol(warmup=2, runs=4, trim=0.0, max_runs=4))
    warmup = [c for c in calls[:12]]
    assert warmup == [(n, p) for n in "abc" for _ in range(2) for p in ("encoder", "decoder")]
    timed = [name for name, part in calls[12:] if part == "encoder"]
    assert timed == list("abc" "bca" "cab" "abc")
    assert set(stats) == set("abc")
    assert all(s[part].n == 4 for s in stats.values() for part in ("encoder", "decoder"))


def test_times_are_attributed_to_the_right_workload() -> None:
    calls: list = []
    workloads = {"fast": Recorder("fast", calls, 0.001, 0.002), "slow": Recorder("slow", calls, 0.004, 0.012)}
    stats = measure_interleaved(workloads, Protocol(warmup=1, runs=6))
    assert stats["fast"]["encoder"].median >= 1.0 and stats["fast"]["decoder"].median >= 2.0
    assert stats["slow"]["encoder"].median >= 4.0 and stats["slow"]["decoder"].median >= 12.0
    assert stats["slow"]["decoder"].median > stats["fast"]["decoder"].median + 5.0


def test_nothing_to_measure() -> None:
    assert measure_interleaved({}, Protocol()) == {}


class ScriptedTimer:
    """Returns scripted milliseconds instead of timing: ``times(call_index)``."""

    def __init__(self, times) -> None:
        self.times, self.calls = times, 0

    def __call__(self, fn) -> float:
        fn()
        self.calls += 1
        return self.times(self.calls)


def test_rounds_stop_when_the_statistic_settles_and_go_on_while_it_moves() -> None:
    calls: list = []
    steady = measure_interleaved({"a": Recorder("a", calls)}, Protocol(warmup=0, runs=6), ScriptedTimer(lambda i: 5.0))
    assert steady["a"]["encoder"].n == 6  # settled at once: no extra rounds
    # every call faster than the one before (a machine calming down): rounds go on up to the limit
    falling = measure_interleaved({"a": Recorder("a", calls)}, Protocol(warmup=0, runs=6), ScriptedTimer(lambda i: 100.0 / i))
    assert falling["a"]["encoder"].n == 18 == Protocol(runs=6).round_limit
    capped = measure_interleaved({"a": Recorder("a", calls)}, Protocol(warmup=0, runs=6, max_runs=9),
                                 ScriptedTimer(lambda i: 100.0 / i))
    assert capped["a"]["encoder"].n == 9


def test_statistics_of_rounds() -> None:
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0, 2.5, 3.5, 1.5, 4.5]
    stats = TimingStats.of(samples, trim=0.1)
    assert stats.value("min") == 1.0 and stats.value("median") == np.median(samples)
    assert stats.value("p10") == pytest.approx(np.percentile(samples, 10))
    assert stats.value("p25") == pytest.approx(np.percentile(samples, 25))
    assert stats.value("mean") == pytest.approx(np.mean(sorted(samples)[1:-1]))  # one dropped at each end
    assert stats.to_dict("p25")["value"] == stats.p25 and set(STATISTICS) == {"min", "p10", "p25", "median", "mean"}


@pytest.mark.parametrize("bad", [dict(statistic="max"), dict(runs=10, max_runs=5), dict(settle=0.0), dict(settle=1.5)])
def test_protocol_refuses_bad_measurement_settings(bad) -> None:
    with pytest.raises(HatError, match="protocol"):
        Protocol(**bad)


def test_best_expansions_equal_a_stable_sort_of_all_scores_with_ties() -> None:
    from hat.export.beam import best_expansions

    rng = np.random.default_rng(0)
    for _ in range(500):
        rows, vocab = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        log_probs = rng.integers(-5, 1, size=(rows, vocab)).astype(np.float32)  # many ties
        log_probs[rng.random(log_probs.shape) < 0.2] = -np.inf
        scores = rng.integers(-3, 1, size=rows).astype(float)
        scores[rng.random(rows) < 0.3] = -np.inf
        count = int(rng.integers(1, 2 * vocab + 3))
        flat = (scores[:, None] + log_probs.astype(np.float64)).reshape(-1)
        expected = [int(i) for i in np.argsort(-flat, kind="stable")[:count] if np.isfinite(flat[i])]
        chosen_rows, tokens, chosen = best_expansions(scores, log_probs, count)
        assert (chosen_rows * vocab + tokens).tolist() == expected
        assert chosen.tolist() == flat[expected].tolist()
