"""Which statistic of interleaved rounds to report, measured: repeated sittings, quiet and loud.

SubTransformers of the WMT14 space on onnxruntime fp32 (1 thread, the composed graphs the
collector times) are measured in several sittings, alternately with the machine otherwise quiet
and with a *loud neighbour* (a process doing matrix products on the other core, as a shared
machine's other tenants do). For each statistic the script reports how much a model's value moves
between sittings (CV), how far the loud sittings move it from the quiet ones, and how stable the
ranking is, and how far below a model's median round the statistic lies (a low statistic
predicts a run a little faster than the typical one). Then the adaptive rule (more rounds while the
statistic moves) is compared with a fixed number of rounds.

The rule for the default: the statistic that ranks the models most alike from one sitting to the
next (highest mean Kendall τ over every pair of sittings, quiet and loud): a predictor is fitted
to rank SubTransformers for the search, and the ranking is what a loud neighbour disturbs.

    python experiments/bench_measure.py --models 12 --sittings 6 --runs 6 --out runs/bench_measure
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import time
from pathlib import Path

import numpy as np

from hat.export.ort_backend import OnnxBackend
from hat.export.ort_worker import BeamWorkload
from hat.export.runtime import OnnxRuntimeModel
from hat.latency.measure import STATISTICS, measure_interleaved
from hat.latency.protocol import Protocol
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def neighbour(stop: multiprocessing.Event) -> None:
    """A loud neighbour: matrix products on one core until told to stop."""
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    a = np.random.default_rng(0).standard_normal((700, 700))
    while not stop.is_set():
        a = np.tanh(a @ a.T / 700)


def workloads(space: SearchSpace, count: int, protocol: Protocol, seed: int) -> dict:
    backend = OnnxBackend("fp32")
    rng = random.Random(seed)
    configs = [space.smallest(), space.largest()] + [space.sample(rng=rng) for _ in range(count - 2)]
    out = {}
    for config in configs:
        encoder, decoder = backend.model_graphs(space, config, protocol.vocab, protocol.seed)
        out[config.archid] = BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, protocol.threads), protocol)
    return out


def sitting(work: dict, protocol: Protocol, loud: bool) -> dict:
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=neighbour, args=(stop,)) if loud else None
    if process:
        process.start()
        time.sleep(1.0)
    rounds = {}
    try:
        start = time.time()
        stats = measure_interleaved(work, protocol)
        seconds = time.time() - start
    finally:
        if process:
            stop.set()
            process.join()
    for name, parts in stats.items():
        rounds[name] = parts["encoder"].n
    return {"loud": loud, "seconds": seconds, "rounds": rounds,
            "values": {s: {name: parts["encoder"].value(s) + parts["decoder"].value(s) for name, parts in stats.items()}
                       for s in STATISTICS}}


def summarise(sittings: list[dict]) -> dict:
    from scipy.stats import kendalltau

    names = list(sittings[0]["values"]["mean"])
    quiet = [s for s in sittings if not s["loud"]]
    loud = [s for s in sittings if s["loud"]]
    out = {}
    for statistic in STATISTICS:
        table = np.array([[s["values"][statistic][n] for n in names] for s in sittings])  # sittings x models
        q = np.array([[s["values"][statistic][n] for n in names] for s in quiet])
        l_ = np.array([[s["values"][statistic][n] for n in names] for s in loud])
        taus = [kendalltau(table[i], table[j]).statistic for i in range(len(table)) for j in range(i + 1, len(table))]
        out[statistic] = {
            "cv_all_pct": float(100 * np.mean(table.std(axis=0) / table.mean(axis=0))),
            "cv_quiet_pct": float(100 * np.mean(q.std(axis=0) / q.mean(axis=0))) if len(q) > 1 else None,
            "loud_shift_pct": float(100 * np.mean(l_.mean(axis=0) / q.mean(axis=0) - 1)) if len(q) and len(l_) else None,
            "kendall_tau_min": float(min(taus)) if taus else None,
            "kendall_tau_mean": float(np.mean(taus)) if taus else None,
            "below_median_pct": float(100 * np.mean(1 - q / np.array([[s["values"]["median"][n] for n in names]
                                                                      for s in quiet]))) if len(q) else None,
        }
    return out


def chosen_statistic(summary: dict) -> str:
    """The rule in the module docstring: the highest mean Kendall τ between sittings."""
    return max(STATISTICS, key=lambda s: summary[s]["kendall_tau_mean"])


def plot(summary: dict, path: Path) -> None:
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(STATISTICS))
    ax.bar(x - 0.2, [summary[s]["cv_all_pct"] for s in STATISTICS], 0.4, label="CV across all sittings")
    ax.bar(x + 0.2, [abs(summary[s]["loud_shift_pct"] or 0) for s in STATISTICS], 0.4, label="|loud - quiet| shift")
    ax.set_xticks(x, STATISTICS)
    ax.set_ylabel("%")
    ax.set_title("statistics of interleaved rounds (onnxruntime fp32, WMT14 space)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/wmt14_en_de.yaml")
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--sittings", type=int, default=6, help="half of them with a loud neighbour")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--adaptive-statistic", default=None, choices=STATISTICS,
                        help="statistic the adaptive rule watches (default: the one the rule above chooses)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_measure")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    space = SearchSpace.from_yaml(args.space)
    fixed = Protocol(warmup=3, runs=args.runs, max_runs=args.runs)
    work = workloads(space, args.models, fixed, seed=0)
    sittings = [sitting(work, fixed, loud=i % 2 == 1) for i in range(args.sittings)]
    summary = summarise(sittings)
    statistic = args.adaptive_statistic or chosen_statistic(summary)
    adaptive = Protocol(warmup=3, runs=args.runs, statistic=statistic)
    adaptive_sittings = [sitting(work, adaptive, loud=i % 2 == 1) for i in range(args.sittings)]
    adaptive_summary = summarise(adaptive_sittings)[statistic]
    adaptive_summary["mean_rounds"] = float(np.mean([np.mean(list(s["rounds"].values())) for s in adaptive_sittings]))
    adaptive_summary["seconds_per_sitting"] = float(np.mean([s["seconds"] for s in adaptive_sittings]))
    fixed_seconds = float(np.mean([s["seconds"] for s in sittings]))
    result = {"models": args.models, "sittings": args.sittings, "runs": args.runs, "fixed": summary,
              "fixed_seconds_per_sitting": fixed_seconds, "chosen": chosen_statistic(summary),
              "adaptive_statistic": statistic, "adaptive": adaptive_summary}
    (args.out / "bench_measure.json").write_text(json.dumps(result, indent=2))
    plot(summary, args.out / "statistics.png")
    print(f"{args.models} models, {args.sittings} sittings (every second one loud), {args.runs} rounds each:")
    print("| statistic | CV across sittings | CV, quiet sittings | loud vs quiet | Kendall τ between sittings "
          "(min / mean) | below the median |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, m in summary.items():
        print(f"| {name} | {m['cv_all_pct']:.2f}% | {m['cv_quiet_pct']:.2f}% | {m['loud_shift_pct']:+.2f}% | "
              f"{m['kendall_tau_min']:.3f} / {m['kendall_tau_mean']:.3f} | {m['below_median_pct']:.2f}% |")
    a = adaptive_summary
    print(f"| {statistic}, adaptive ({a['mean_rounds']:.1f} rounds on average, {a['seconds_per_sitting']:.1f} s vs "
          f"{fixed_seconds:.1f} s a sitting) | {a['cv_all_pct']:.2f}% | {a['cv_quiet_pct']:.2f}% | "
          f"{a['loud_shift_pct']:+.2f}% | {a['kendall_tau_min']:.3f} / {a['kendall_tau_mean']:.3f} | "
          f"{a['below_median_pct']:.2f}% |")
    print(f"chosen by the rule: {result['chosen']}")


if __name__ == "__main__":
    main()
