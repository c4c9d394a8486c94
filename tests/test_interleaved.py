"""Several models timed in the same rounds: warm-up, rotation, statistics."""
from __future__ import annotations

import time

from hat.export.verify import measure_interleaved
from hat.latency import Protocol


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
    stats = measure_interleaved(workloads, Protocol(warmup=2, runs=4, trim=0.0))
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
