"""Cost of the numpy beam loop alone (the part of deployed latency that is not the graphs).

A stand-in model returns precomputed log-probabilities instantly, so only the beam loop is timed:
30 steps at beam 5 over a 32,768-word vocabulary, EOS refused until the last step, as profiling
runs it. ``--baseline FILE`` times another version of ``hat/export/beam.py`` (for example one
taken from git history) interleaved with the current one.

    python experiments/bench_beam.py --rounds 30
    git show f8ebb7a:hat/export/beam.py > /tmp/beam_old.py
    python experiments/bench_beam.py --rounds 30 --baseline /tmp/beam_old.py
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import time
from pathlib import Path

import numpy as np

from hat.export import beam as current


class Precomputed:
    """Log-probabilities drawn once; each step returns a fixed slice (no model cost)."""

    def __init__(self, vocab: int, rows: int = 64, seed: int = 0) -> None:
        table = np.random.default_rng(seed).standard_normal((rows, vocab)).astype(np.float32)
        self.table = table - np.log(np.exp(table).sum(axis=1, keepdims=True))

    def encode(self, src_tokens: np.ndarray) -> dict:
        return {}

    def step(self, tokens: np.ndarray, position: int, state: dict) -> np.ndarray:
        return self.table[(position * 7 + np.arange(tokens.shape[0])) % len(self.table)]

    def reorder(self, state: dict, rows: np.ndarray) -> dict:
        return state


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("beam_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_decode(module, model: Precomputed, steps: int, beam: int) -> tuple[float, list[int]]:
    """One decode of exactly ``steps`` steps (older versions counted the EOS in ``min_len``)."""
    counts_eos = "step < min_len - 1" in inspect.getsource(module.beam_decode)
    start = time.perf_counter()
    out = module.beam_decode(model, {}, steps, beam=beam, min_len=steps if counts_eos else steps - 1)
    return 1000 * (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--baseline", type=Path, help="another beam.py to time interleaved with the current one")
    args = parser.parse_args()
    model = Precomputed(args.vocab)
    versions = {"current": current}
    if args.baseline:
        versions["baseline"] = load_module(args.baseline)
    times: dict[str, list[float]] = {name: [] for name in versions}
    outputs = {}
    for name, module in versions.items():  # warm-up
        outputs[name] = one_decode(module, model, args.steps, args.beam)[1]
    for _ in range(args.rounds):
        for name, module in versions.items():
            times[name].append(one_decode(module, model, args.steps, args.beam)[0])
    print(f"beam loop alone: {args.steps} steps, beam {args.beam}, vocabulary {args.vocab:,}, {args.rounds} "
          "interleaved rounds")
    for name, values in times.items():
        print(f"  {name}: median {np.median(values):.1f} ms ({np.median(values) / args.steps:.2f} ms/step), "
              f"min {np.min(values):.1f} ms")
    if args.baseline:
        ratio = np.median(times["baseline"]) / np.median(times["current"])
        same = outputs["baseline"] == outputs["current"]
        print(f"  baseline / current: {ratio:.2f}x; same hypothesis: {same}")


if __name__ == "__main__":
    main()
