"""Profiling on onnxruntime, measured: its cost against the torch backend, and its fidelity.

1. Wall time of the latency tables plus ``--models`` SubTransformers of the WMT14 space with the
   torch backend and with the onnxruntime fp32 backend, one after the other in one sitting; the
   onnxruntime run starts from an empty piece cache (every piece exported); ``--warm`` runs it
   again from the warm cache.
2. The composed graphs the collector times against the graphs ``hat export`` writes
   (:func:`hat.export.graphs.export_onnx`) for the same configs: their latencies interleaved in
   the same rounds (beam loop, 1 thread).

    python experiments/bench_ort_profile.py --models 40 --fidelity-models 4 --out runs/bench_ort_profile

``--models 0`` measures the fidelity part alone.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from hat.latency import LatencyCollector, Protocol
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def profile_seconds(space: SearchSpace, protocol: Protocol, backend, models: int, out: Path) -> float:
    start = time.time()
    collector = LatencyCollector(space, protocol, out, backend=backend, progress=False)
    collector.collect_tables()
    collector.collect_dataset(models, seed=0)
    return time.time() - start


def cost(space: SearchSpace, protocol: Protocol, models: int, work: Path, warm: bool) -> dict:
    from hat.export.ort_backend import OnnxBackend

    torch_s = profile_seconds(space, protocol, "torch", models, work / "torch")
    cold_s = profile_seconds(space, protocol, OnnxBackend("fp32", cache=work / "pieces"), models, work / "ort_cold")
    result = {"torch_s": torch_s, "onnxruntime_cold_s": cold_s, "cold_over_torch": cold_s / torch_s}
    if warm:
        warm_s = profile_seconds(space, protocol, OnnxBackend("fp32", cache=work / "pieces"), models, work / "ort_warm")
        result.update(onnxruntime_warm_s=warm_s, warm_over_torch=warm_s / torch_s)
    return result


def fidelity(space: SearchSpace, protocol: Protocol, count: int, work: Path) -> list[dict]:
    from hat.export.graphs import export_onnx
    from hat.export.ort_backend import OnnxBackend
    from hat.export.ort_worker import BeamWorkload
    from hat.export.runtime import OnnxRuntimeModel
    from hat.latency.measure import measure_interleaved
    from hat.latency.workloads import build_model

    backend = OnnxBackend("fp32", cache=work / "pieces")
    rng = random.Random(1)
    configs = [space.smallest(), space.largest()] + [space.sample(rng=rng) for _ in range(count - 2)]
    workloads = {}
    for config in configs:
        encoder, decoder = backend.model_graphs(space, config, protocol.vocab, protocol.seed)
        workloads[(config.archid, "composed")] = BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, 1), protocol)
        folder = work / "exported" / config.archid
        folder.mkdir(parents=True, exist_ok=True)
        export_onnx(build_model(space, config, protocol, "cpu"), str(folder / "e.onnx"), str(folder / "d.onnx"))
        workloads[(config.archid, "exported")] = BeamWorkload(
            OnnxRuntimeModel(folder / "e.onnx", folder / "d.onnx", 1, 1), protocol)
    stats = measure_interleaved(workloads, Protocol(**{**protocol.to_dict(), "runs": 40, "max_runs": 40}))
    rows = []
    for config in configs:
        ms = {kind: sum(stats[(config.archid, kind)][p].value(protocol.statistic) for p in ("encoder", "decoder"))
              for kind in ("composed", "exported")}
        rows.append({"archid": config.archid, **ms, "ratio": ms["composed"] / ms["exported"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/wmt14_en_de.yaml")
    parser.add_argument("--models", type=int, default=40, help="SubTransformers of the cost part (0: skip it)")
    parser.add_argument("--fidelity-models", type=int, default=4)
    parser.add_argument("--warm", action="store_true", help="also profile again from the warm piece cache")
    parser.add_argument("--vocab", type=int, default=32768, help="target vocabulary of the measured graphs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_ort_profile")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace.from_yaml(args.space)
    protocol = Protocol(threads=1, warmup=2, runs=6, max_runs=12, vocab=args.vocab)  # as the shipped WMT tables were measured
    with tempfile.TemporaryDirectory(prefix="hat_bench_") as tmp:
        work = Path(tmp)
        os.environ["HAT_CACHE_DIR"] = str(work / "pieces")
        result = {"cost": cost(space, protocol, args.models, work, args.warm) if args.models else None,
                  "fidelity": fidelity(space, protocol, args.fidelity_models, work)}
    (args.out / "bench_ort_profile.json").write_text(json.dumps(result, indent=2))
    c = result["cost"]
    if c is not None:
        print(f"tables + {args.models} SubTransformers, {space.name}, 1 thread:")
        warm = f" | {c['onnxruntime_warm_s']:.0f} s ({c['warm_over_torch']:.2f}x)" if "onnxruntime_warm_s" in c else ""
        print("| torch | onnxruntime fp32, empty piece cache" + (" | onnxruntime fp32, warm cache" if warm else "") + " |")
        print("| --- | --- |" + (" --- |" if warm else ""))
        print(f"| {c['torch_s']:.0f} s | {c['onnxruntime_cold_s']:.0f} s ({c['cold_over_torch']:.2f}x){warm} |")
    print("\ncomposed (profiled) vs exported (deployed) graphs, interleaved, 40 rounds:")
    print("| archid | composed (ms) | exported (ms) | ratio |")
    print("| --- | --- | --- | --- |")
    for r in result["fidelity"]:
        print(f"| {r['archid']} | {r['composed']:.2f} | {r['exported']:.2f} | {r['ratio']:.3f} |")
    ratios = np.array([r["ratio"] for r in result["fidelity"]])
    print(f"mean ratio {ratios.mean():.3f}, range {ratios.min():.3f}-{ratios.max():.3f}")


if __name__ == "__main__":
    main()
