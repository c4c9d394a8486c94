"""HAT's training of the stock architecture against fairseq's own `transformer`, over several seeds.

    python experiments/multi30k_stock.py --run runs/multi30k [--seeds 1 2 3]

Needs the data of a run of experiments/multi30k.py (its prepare stage). For each seed, in
RUN/stock (one stage per seed in stages.json; re-running resumes, and more seeds can be added):
both models of the stock architecture (the search space's largest, attending to the last encoder
layer only) are trained from scratch with the benchmark's from-scratch budget and exactly the same
options (`hat train`'s defaults, the budget's, and the seed), then scored by sacreBLEU (beam 5) on
the three test sets: HAT's through its own decoder, fairseq's through fairseq-generate.
RESULTS.md and bleu.png give every seed, each model's mean and spread, and the mean of the per-seed
differences against the goal (HAT within GOAL BLEU of fairseq on each test set) with its 95%
interval, which says whether the seeds run settle the goal.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

from hat.errors import HatError
from hat.io import atomic_write_text, file_content, load_json
from hat.logs import log_file, setup_console
from hat.stages import StageRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multi30k import (SPACE, SPLITS, TEST_SETS, Budget, measuring_worker, stock_bleu,  # noqa: E402
                      train_options, train_stock_transformer)

log = logging.getLogger("stock")
GOAL = 0.3  # BLEU: the "HAT's stock architecture equals fairseq's transformer within 0.3 BLEU"
MODELS = ("HAT", "fairseq")


def load_budget(run: Path) -> Budget:
    """The budget of a benchmark run whose data is prepared."""
    path = run / "stages.json"
    if not path.is_file():
        raise HatError("not found (pass --run with the output folder of experiments/multi30k.py)", path)
    if "prepare" not in load_json(path, "stage record"):
        raise HatError("the benchmark has not prepared its data; run experiments/multi30k.py first", path)
    settings = load_json(run / "settings.json", "run settings")
    with file_content(run / "settings.json", "run settings"):
        return Budget(**settings["budget"])


def stock_config(path: Path) -> Path:
    """The stock architecture as a SubTransformer file: the largest, attending to the last encoder layer."""
    from hat.space import SearchSpace

    largest = SearchSpace.from_yaml(SPACE).largest()
    dataclasses.replace(largest, decoder_ende_attn=(-1,) * largest.decoder_layers).to_yaml(path)
    return path


class StockSeeds:
    def __init__(self, run: Path, workers: int) -> None:
        self.budget = load_budget(run)
        self.bin, self.workers = run / "data-bin", workers
        self.out = run / "stock"
        self.out.mkdir(exist_ok=True)
        self.config = stock_config(self.out / "stock-arch.yaml")
        self.runner = StageRunner(self.out / "stages.json", log, {"budget": dataclasses.asdict(self.budget)})

    def run(self, seeds: list[int]) -> dict[str, Any]:
        return self.runner.run([(f"seed {seed}", lambda seed=seed: self.seed(seed)) for seed in seeds])

    def seed(self, seed: int) -> dict:
        from hat.training import train

        options = dict(train_options(self.budget, self.budget.scratch_updates), seed=seed)
        folder = self.out / f"seed{seed}"
        log.info("seed %d: HAT's stock architecture, %d updates", seed, options["max-update"])
        train(space=SPACE, data=self.bin, save_dir=folder / "hat", subtransformer_config=self.config, options=options)
        log.info("seed %d: fairseq's transformer, %d updates", seed, options["max-update"])
        train_stock_transformer(self.bin, folder / "fairseq", options)
        return {"bleu": self.bleu(folder)}

    def bleu(self, folder: Path) -> dict[str, dict[str, float]]:
        jobs = [(model, str(folder / model.lower() / "checkpoint_best.pt"), self.bin, self.config, split)
                for model in MODELS for split in SPLITS]
        scores = pooled_bleu(jobs, self.workers, self.out / "stock.log")
        return {model: dict(zip(TEST_SETS, scores[i * len(SPLITS):(i + 1) * len(SPLITS)]))
                for i, model in enumerate(MODELS)}


def pooled_bleu(jobs: list[tuple[str, str, Path, Path, str]], workers: int, log_path: Path) -> list[float]:
    """``split_bleu`` of each job in ``workers`` single-threaded processes that log to ``log_path``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=measuring_worker, initargs=(log_path,)) as pool:
        return list(pool.map(split_bleu, jobs))


def split_bleu(job: tuple[str, str, Path, Path, str]) -> float:
    """sacreBLEU (beam 5) of one model on one test split."""
    from hat.evaluation import Generation, generate_bleu
    from hat.space import SubTransformerConfig

    model, checkpoint, data, config, split = job
    if model == "fairseq":
        return stock_bleu(checkpoint, data, split)
    return generate_bleu(checkpoint, data, SubTransformerConfig.from_yaml(config), Generation(split, beam=5))["bleu"]


def spread(values: list[float]) -> str:
    """'mean ± sample standard deviation' (the mean alone for one value)."""
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the mean of ``values`` (Student's t; at least two values)."""
    from scipy import stats

    centre, error = statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * error
    return centre - half, centre + half


def report(stages: dict[str, Any], seeds: list[int], out: Path) -> str:
    """RESULTS.md: BLEU per seed and model, means and spreads, the paired differences and the verdict."""
    bleu = {seed: stages[f"seed {seed}"]["bleu"] for seed in seeds}
    header = " | ".join(f"{m} {t}" for t in TEST_SETS for m in (*MODELS, "diff"))
    lines = [f"| seed | {header} |", "| --- " * (1 + 3 * len(TEST_SETS)) + "|"]
    for seed in seeds:
        cells = []
        for t in TEST_SETS:
            hat, fs = bleu[seed]["HAT"][t], bleu[seed]["fairseq"][t]
            cells += [f"{hat:.2f}", f"{fs:.2f}", f"{hat - fs:+.2f}"]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    cells = []
    for t in TEST_SETS:
        cells += [spread([bleu[s][m][t] for s in seeds]) for m in MODELS]
        cells.append(spread([bleu[s]["HAT"][t] - bleu[s]["fairseq"][t] for s in seeds]))
    lines += ["| mean ± sd | " + " | ".join(cells) + " |", ""]
    differences = {t: [bleu[s]["HAT"][t] - bleu[s]["fairseq"][t] for s in seeds] for t in TEST_SETS}
    gaps = {t: statistics.mean(d) for t, d in differences.items()}
    met = all(abs(gap) <= GOAL for gap in gaps.values())
    lines.append(f"- Goal (HAT within {GOAL} BLEU of fairseq's transformer on each test set, mean over "
                 f"{len(seeds)} seed{'s' * (len(seeds) > 1)}): " + " / ".join(f"{g:+.2f}" for g in gaps.values())
                 + f": {'met' if met else 'not met'}.")
    if len(seeds) > 1:
        intervals = {t: mean_interval(d) for t, d in differences.items()}
        resolved = sum(low > -GOAL and high < GOAL or low > GOAL or high < -GOAL for low, high in intervals.values())
        lines.append(f"- 95% interval of the mean difference (Student's t, {len(seeds) - 1} degrees of freedom): "
                     + " / ".join(f"[{low:+.2f}, {high:+.2f}]" for low, high in intervals.values())
                     + f"; it settles the goal (inside, or wholly outside, ±{GOAL}) on {resolved} of "
                     f"{len(TEST_SETS)} test sets.")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    plot(bleu, out / "bleu.png")
    return text


def plot(bleu: dict[int, dict[str, dict[str, float]]], path: Path) -> None:
    """Per test set, each seed's BLEU of both models (points) and their means (bars)."""
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.38
    for i, model in enumerate(MODELS):
        for j, test in enumerate(TEST_SETS):
            values = [scores[model][test] for scores in bleu.values()]
            x = j + (i - 0.5) * width
            ax.bar(x, statistics.mean(values), width, color=f"C{i}", alpha=0.45, label=model if j == 0 else None)
            ax.scatter([x] * len(values), values, color=f"C{i}", edgecolor="black", linewidth=0.5, zorder=3, s=18)
    ax.set_xticks(range(len(TEST_SETS)), TEST_SETS)
    ax.set_ylabel("sacreBLEU (beam 5)")
    ax.set_title(f"Multi30k En-De, stock architecture from scratch: seeds {', '.join(map(str, bleu))}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="output folder of a run of experiments/multi30k.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds (each trains both models)")
    parser.add_argument("--workers", type=int, default=2, help="processes computing BLEU")
    args = parser.parse_args()
    if args.workers < 1 or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error("--workers must be at least 1 and --seeds distinct non-negative integers")
    return run_study("multi30k_stock", log, lambda: StockSeeds(args.run, args.workers),
                     lambda study: report(study.run(args.seeds), args.seeds, study.out),
                     f"stock architecture over seeds {args.seeds}")


def run_study(script: str, logger: logging.Logger, make_study: Callable[[], Any], work: Callable[[Any], str],
              what: str) -> int:
    """A follow-up study's main flow: the study (with an ``out`` folder) logs its details to
    OUT/<logger>.log, ``work`` returns the report printed; bad input is one line and exit 2."""
    setup_console()
    try:
        study = make_study()
        with log_file(study.out / f"{logger.name}.log", console_shows=(logger.name,)) as detail:
            logger.info("%s in %s; the full log is %s", what, study.out, detail)
            text = work(study)
    except HatError as err:
        print(f"{script}: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
