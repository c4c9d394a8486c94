"""How far a larger model's latency moves against the small reference model from one window to the next.

The smallest and the largest SubTransformer of a space (composed onnxruntime graphs, random
weights, the numpy beam loop, 1 thread) are timed interleaved in ``--passes`` passes of
``--rounds`` rounds, ``--pause`` seconds apart. Interleaving cancels what slows both alike; the
ratio largest / smallest per pass shows what it cannot cancel.

    python experiments/bench_window_noise.py --space search_spaces/tiny.yaml --vocab 152 --passes 10
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hat.latency import Protocol
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from hat.export.ort_backend import OnnxBackend
    from hat.export.ort_worker import BeamWorkload
    from hat.export.runtime import OnnxRuntimeModel
    from hat.latency.measure import measure_interleaved

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "tiny.yaml")
    parser.add_argument("--vocab", type=int, default=152, help="target vocabulary (the demo's is 152)")
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between passes")
    args = parser.parse_args()
    space = SearchSpace.from_yaml(args.space)
    protocol = Protocol(src_len=30, beam=5, vocab=args.vocab, warmup=2, runs=args.rounds, max_runs=args.rounds)
    backend = OnnxBackend("fp32")
    workloads = {}
    for name, config in (("smallest", space.smallest()), ("largest", space.largest())):
        encoder, decoder = backend.model_graphs(space, config, protocol.vocab, protocol.seed)
        workloads[name] = BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, 1), protocol)
    print("| time | smallest (ms) | largest (ms) | largest / smallest |")
    print("| --- | --- | --- | --- |")
    ratios = []
    for index in range(args.passes):
        stats = measure_interleaved(workloads, protocol)
        ms = {name: sum(stats[name][p].value(protocol.statistic) for p in ("encoder", "decoder")) for name in stats}
        ratios.append(ms["largest"] / ms["smallest"])
        print(f"| {time.strftime('%H:%M:%S')} | {ms['smallest']:.2f} | {ms['largest']:.2f} | {ratios[-1]:.3f} |", flush=True)
        if index + 1 < args.passes:
            time.sleep(args.pause)
    print(f"ratio {min(ratios):.3f}-{max(ratios):.3f} (median {np.median(ratios):.3f}, "
          f"{100 * (max(ratios) / min(ratios) - 1):.0f}% apart)")


if __name__ == "__main__":
    main()
