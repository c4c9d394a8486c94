"""Does inherited validation loss rank SubTransformers as they rank once fine-tuned?

    python experiments/bench_fitness_rank.py --run runs/multi30k_v8 --constraint 24.4 --out runs/bench_fitness_rank_v8

Reads a finished search of experiments/multi30k.py (RUN/search/history.csv: every SubTransformer
the evolution scored under ``--constraint``, with its predicted latency and inherited loss). The
latency range it explored is cut into ``--bins`` equal bins and, in each, the ``--per-bin``
candidates with the lowest inherited loss are kept (the search's own pick is the best of its bin).
Each is fine-tuned from the run's SuperTransformer exactly as the benchmark fine-tunes its models
(its budget's ``finetune_updates`` and options), then scored: validation loss of the inherited and
of the fine-tuned weights on the whole validation set (label-smoothed, bits per token) and
sacreBLEU (beam 5) on the three test sets. RESULTS.md gives every candidate and Kendall's tau
between the inherited loss and each fine-tuned measure; rank.png draws them. Each candidate's
scores are kept in OUT/rows, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.io import atomic_write_text, load_json
from hat.logs import log_file, setup_console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multi30k import SPACE, SPLITS, TEST_SETS, measuring_worker, train_options  # noqa: E402
from multi30k_stock import load_budget  # noqa: E402

log = logging.getLogger("fitness_rank")


def explored(history: Path, constraint: float) -> dict[str, dict[str, Any]]:
    """Every SubTransformer the search scored under ``constraint``: archid -> latency, loss, config."""
    from hat.search.finalists import scored_under

    if not history.is_file():
        raise HatError("not found (the run's search stage has not finished)", history)
    with history.open(newline="") as handle:
        candidates = scored_under(csv.DictReader(handle), constraint)
    if not candidates:
        raise HatError(f"no SubTransformer was searched under {constraint:g} ms", history)
    return {c.archid: {"archid": c.archid, "latency_ms": c.latency_ms, "search_loss": c.loss,
                       "config": c.config.to_dict()} for c in candidates}


def pick(candidates: dict[str, dict[str, Any]], bins: int, per_bin: int) -> list[dict[str, Any]]:
    """The ``per_bin`` lowest-loss candidates of each of ``bins`` equal bins of predicted latency
    (:func:`hat.search.finalists.spread_finalists`), fastest first."""
    from hat.search.finalists import Finalist, spread_finalists
    from hat.space import SubTransformerConfig

    finalists = [Finalist(c["archid"], c["latency_ms"], c["search_loss"], SubTransformerConfig.from_dict(c["config"]))
                 for c in candidates.values()]
    return [candidates[f.archid] for f in spread_finalists(finalists, bins, per_bin)]


def fine_tune(candidate: dict[str, Any], supernet: str, run: Path, out: Path, budget: Any) -> Path:
    """The benchmark's fine-tuning of one candidate (resumed by fairseq if interrupted)."""
    from hat.space import SubTransformerConfig
    from hat.training import train

    folder = out / "models" / candidate["archid"]
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    SubTransformerConfig.from_dict(candidate["config"]).to_yaml(config)
    train(space=SPACE, data=run / "data-bin", save_dir=folder, subtransformer_config=config, restore_file=supernet,
          reset_optimizer=True, options=train_options(budget, budget.finetune_updates))
    return folder / "checkpoint_best.pt"


def score(job: tuple[dict[str, Any], str, str, Path]) -> dict[str, Any]:
    """Inherited and fine-tuned validation loss and test BLEU of one candidate."""
    from hat.evaluation import Generation, evaluate, generate_bleu
    from hat.space import SubTransformerConfig

    candidate, supernet, tuned, data = job
    config = SubTransformerConfig.from_dict(candidate["config"])
    row = dict(candidate)
    row["inherited_loss"] = evaluate(supernet, data, config, split="valid", bleu=False)["loss"]
    row["tuned_loss"] = evaluate(tuned, data, config, split="valid", bleu=False)["loss"]
    row["bleu"] = {name: generate_bleu(tuned, data, config, Generation(split, beam=5))["bleu"]
                   for name, split in zip(TEST_SETS, SPLITS)}
    return row


def kendall(x: list[float], y: list[float]) -> str:
    """Kendall's tau as text; undefined (not NaN) for fewer than 2 candidates or constant values."""
    import math

    from scipy.stats import kendalltau

    tau = float(kendalltau(x, y).statistic) if len(x) > 1 else math.nan
    return f"{tau:+.3f}" if math.isfinite(tau) else "undefined (fewer than 2 candidates, or all values equal)"


def report(rows: list[dict[str, Any]], chosen: str, out: Path) -> str:
    """RESULTS.md: every candidate and the rank agreement of inherited loss with the fine-tuned scores."""
    lines = ["| archid | predicted ms | inherited loss (search subset) | inherited loss | fine-tuned loss | "
             + " | ".join(f"BLEU {t}" for t in TEST_SETS) + " |", "| --- " * (5 + len(TEST_SETS)) + "|"]
    for r in rows:
        mark = " (search's pick)" if r["archid"] == chosen else ""
        lines.append(f"| {r['archid']}{mark} | {r['latency_ms']:.2f} | {r['search_loss']:.3f} | "
                     f"{r['inherited_loss']:.3f} | {r['tuned_loss']:.3f} | "
                     + " | ".join(f"{r['bleu'][t]:.2f}" for t in TEST_SETS) + " |")
    inherited = [r["inherited_loss"] for r in rows]
    mean_bleu = [statistics.mean(r["bleu"].values()) for r in rows]
    lines += ["", f"Kendall tau, inherited loss against fine-tuned loss: {kendall(inherited, [r['tuned_loss'] for r in rows])}",
              f"Kendall tau, inherited loss against mean test BLEU: {kendall(inherited, mean_bleu)} "
              "(negative: lower loss, higher BLEU)",
              f"Kendall tau, predicted latency against fine-tuned loss: "
              f"{kendall([r['latency_ms'] for r in rows], [r['tuned_loss'] for r in rows])}"]
    best = min(rows, key=lambda r: r["tuned_loss"])
    lines.append(f"Lowest fine-tuned loss: {best['archid']} ({best['latency_ms']:.2f} ms predicted, "
                 f"{best['tuned_loss']:.3f}); the search's pick: {chosen}")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    draw(rows, chosen, out / "rank.png")
    return text


def draw(rows: list[dict[str, Any]], chosen: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    latency = [r["latency_ms"] for r in rows]
    points = left.scatter([r["inherited_loss"] for r in rows], [r["tuned_loss"] for r in rows], c=latency)
    right.scatter(latency, [statistics.mean(r["bleu"].values()) for r in rows], c=latency)
    for r in rows:
        if r["archid"] == chosen:
            left.annotate("search's pick", (r["inherited_loss"], r["tuned_loss"]))
            right.annotate("search's pick", (r["latency_ms"], statistics.mean(r["bleu"].values())))
    left.set(xlabel="inherited validation loss (bits/token)", ylabel="fine-tuned validation loss (bits/token)")
    right.set(xlabel="predicted latency (ms)", ylabel="mean BLEU of the 3 test sets, fine-tuned")
    figure.colorbar(points, ax=right, label="predicted latency (ms)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="output folder of experiments/multi30k.py")
    parser.add_argument("--constraint", type=float, required=True, help="a constraint (ms) the run searched under")
    parser.add_argument("--bins", type=int, default=6)
    parser.add_argument("--per-bin", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes scoring candidates")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if min(args.bins, args.per_bin, args.workers) < 1:
        parser.error("--bins, --per-bin and --workers must be at least 1")
    try:
        budget = load_budget(args.run)
        candidates = explored(args.run / "search" / "history.csv", args.constraint)
        summary = load_json(args.run / "search" / "summary.json", "search summary")
    except HatError as error:
        print(f"bench_fitness_rank: error: {error}", file=sys.stderr)
        return 2
    chosen = next((r["archid"] for r in summary["results"] if abs(r["constraint_ms"] - args.constraint) < 1e-6), "")
    args.out.mkdir(parents=True, exist_ok=True)
    setup_console()
    with log_file(args.out / "fitness_rank.log", console_shows=("fitness_rank",)):
        rows = run(args, candidates, chosen, budget)
    print(report(rows, chosen, args.out))
    return 0


def run(args: argparse.Namespace, candidates: dict[str, dict[str, Any]], chosen: str, budget: Any) -> list[dict]:
    """Fine-tune the picked candidates one after the other, then score them in parallel (rows kept)."""
    picked = pick(candidates, args.bins, args.per_bin)
    if chosen and chosen not in {c["archid"] for c in picked}:
        picked.append(candidates[chosen])
    log.info("%d of %d searched SubTransformers under %g ms", len(picked), len(candidates), args.constraint)
    supernet = load_json(args.run / "stages.json", "stage record")["supernet"]["checkpoint"]
    rows_dir = args.out / "rows"
    rows_dir.mkdir(exist_ok=True)
    jobs = []
    for candidate in picked:
        if not (rows_dir / f"{candidate['archid']}.json").is_file():
            log.info("fine-tuning %s (%.2f ms predicted)", candidate["archid"], candidate["latency_ms"])
            tuned = fine_tune(candidate, supernet, args.run, args.out, budget)
            jobs.append((candidate, supernet, str(tuned), args.run / "data-bin"))
    log.info("scoring %d fine-tuned candidates", len(jobs))
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=measuring_worker, initargs=(args.out / "fitness_rank.log",)) as pool:
        for row in pool.map(score, jobs):
            atomic_write_text(rows_dir / f"{row['archid']}.json", json.dumps(row))
    return sorted((json.loads((rows_dir / f"{c['archid']}.json").read_text()) for c in picked),
                  key=lambda r: r["latency_ms"])

if __name__ == "__main__":
    sys.exit(main())
