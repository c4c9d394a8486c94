"""Latency-predictor benchmarks (BENCHMARKS.md, issue 4).

1. HAT's published Titan Xp CSV, seeded 80/20 split: our default predictor (chosen by `hat predictor fit`)
   vs HAT's MLP recipe (10 averaged features, 3x400 ReLU, Adam lr 1e-5, 5,000 steps, batch 128).
2. Fitting time: `fit_auto` (what `hat predictor fit` runs), HAT's MLP recipe, and the default MLP
   recipe (three seeds, with held-out accuracy).
3. Prediction throughput of the default predictor (configs/s).

    python experiments/bench_predictor.py --hat-csv ../shared/data/hat_latency/iwslt14deen_gpu_titanxp_all.csv
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from hat.latency import LatencyDataset, LatencyPredictor
from hat.latency.predictor import HAT_MLP, MlpRecipe, fit_auto, split_indices
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hat-csv", type=Path, default=ROOT.parent / "shared/data/hat_latency/iwslt14deen_gpu_titanxp_all.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throughput-predictor", type=Path, help="predictor JSON for the throughput test "
                                                                  "(default: the one fitted here)")
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/wmt14_en_de.yaml")
    args = parser.parse_args()

    data = LatencyDataset.load(args.hat_csv, fmt="hat")
    train, test = split_indices(len(data), 0.2, args.seed)
    start = time.perf_counter()
    ours, selection = fit_auto(data.subset(train), None, seed=args.seed)
    print(f"fit_auto on {len(train)} rows (5-fold CV of ridge and MLP, then the refit): "
          f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    hat_mlp = LatencyPredictor("mlp", mlp=HAT_MLP).fit(data.subset(train), seed=args.seed)
    print(f"HAT's MLP recipe, one fit: {time.perf_counter() - start:.1f} s")
    for seed in (0, 1, 2):
        start = time.perf_counter()
        mlp = LatencyPredictor("mlp").fit(data.subset(train), seed=seed)
        m = mlp.evaluate(data.subset(test))
        print(f"default MLP recipe {MlpRecipe()}, seed {seed}: {time.perf_counter() - start:.1f} s, held-out MAPE "
              f"{m['mape_pct']:.2f}%, within ±10% {100 * m['within_10pct']:.1f}%, Kendall tau {m['kendall_tau']:.3f}")
    results = {"ours": {"model": ours.kind, **ours.evaluate(data.subset(test))},
               "hat_mlp": hat_mlp.evaluate(data.subset(test)), "train_rows": len(train), "test_rows": len(test)}
    print(json.dumps(results, indent=2))
    print("\n| predictor | RMSE (ms) | MAPE | within ±5% | within ±10% | Kendall τ |\n| --- | --- | --- | --- | --- | --- |")
    for name, m in (("ours (" + ours.kind + ")", results["ours"]), ("HAT MLP recipe", results["hat_mlp"])):
        print(f"| {name} | {m['rmse_ms']:.2f} | {m['mape_pct']:.2f}% | {100 * m['within_5pct']:.1f}% | "
              f"{100 * m['within_10pct']:.1f}% | {m['kendall_tau']:.3f} |")

    space = SearchSpace.from_yaml(args.space)
    predictor = LatencyPredictor.load(args.throughput_predictor) if args.throughput_predictor else ours
    rng = random.Random(args.seed)
    configs = [space.sample(rng=rng) for _ in range(100_000)]
    predictor.predict(configs[:100])
    start = time.perf_counter()
    predictor.predict(configs)
    elapsed = time.perf_counter() - start
    print(f"\nthroughput ({predictor.kind}): {len(configs) / elapsed:,.0f} configs/s "
          f"({len(configs):,} configs in {elapsed:.3f} s)")


if __name__ == "__main__":
    main()
