"""Search benchmarks on the tiny space (issue 5), using a finished `hat demo` run's SuperTransformer,
data and predictor.

- the full default search (population 125 = 25 + 50 + 50, 30 iterations) under the demo's constraints:
  wall time and fitness evaluations (HAT's loop needs 125 x 30 = 3,750 per constraint);
- the same search on 2 local worker processes: speedup, and identical results;
- random search with the same evaluation budget per constraint.

    python experiments/bench_search.py --run runs/demo --valid-subset 200
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hat.latency import LatencyPredictor
from hat.search import EvolutionarySearch, InheritedLossFitness, ProcessPoolEvaluator, random_search
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs/demo", help="a finished hat demo folder")
    parser.add_argument("--valid-subset", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    stages = json.loads((args.run / "stages.json").read_text())
    constraints = stages["search"]["constraints"]
    space = SearchSpace.from_yaml(ROOT / "search_spaces/tiny.yaml")
    predictor = LatencyPredictor.load(args.run / "predictor.json")
    fitness = InheritedLossFitness(args.run / "supernet/checkpoint_best.pt", args.run / "data/bin",
                                   valid_subset=args.valid_subset, seed=args.seed, threads=1)
    fitness.load()

    start = time.time()
    serial = EvolutionarySearch(space, fitness, predictor, constraints, seed=args.seed, progress=False).run()
    serial_time = time.time() - start

    evaluator = ProcessPoolEvaluator(fitness, args.workers)
    try:
        start = time.time()
        parallel = EvolutionarySearch(space, fitness, predictor, constraints, seed=args.seed, progress=False,
                                      evaluator=evaluator).run()
        parallel_time = time.time() - start
    finally:
        evaluator.close()
    identical = parallel.history == serial.history

    rows = []
    for item in serial.results:
        baseline = random_search(space, fitness, predictor, item.constraint_ms, item.evaluations, seed=args.seed)
        rows.append({"constraint_ms": item.constraint_ms, "evaluations": item.evaluations,
                     "evolution_loss": item.best.loss, "random_loss": baseline.loss,
                     "evolution_latency_ms": item.best.latency_ms, "random_latency_ms": baseline.latency_ms})
    summary = {"serial_s": serial_time, "parallel_s": parallel_time, "workers": args.workers,
               "speedup": serial_time / parallel_time, "identical": identical,
               "evaluations": serial.evaluations, "rows": rows}
    print(json.dumps(summary, indent=2))
    print(f"\nserial {serial_time:.1f} s, {args.workers} worker processes {parallel_time:.1f} s: speedup "
          f"{serial_time / parallel_time:.2f}x, identical results: {identical}; {serial.evaluations} evaluations in all")
    print("\n| constraint (ms) | evaluations (HAT: 3,750) | evolution loss | random loss (same budget) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['constraint_ms']:g} | {r['evaluations']} | {r['evolution_loss']:.4f} | {r['random_loss']:.4f} |")


if __name__ == "__main__":
    main()
