"""Does the from-scratch gap between the largest and the ÷3 model close with more training?

    python experiments/multi30k_budget.py --run runs/multi30k [--scales 2 4]

Needs a run of experiments/multi30k.py that has finished its train and measure stages. Its
from-scratch track trains 'largest (scratch)' and the SCRATCH_DIVISOR constraint's model
('<C>ms (scratch)') for the budget's ``supernet_updates + finetune_updates`` updates; this study
trains both architectures again from scratch for SCALE times that many updates (the same options
otherwise: `train_options`, so warm-up and validations scale with the updates, and the same seed),
then scores each by validation loss on the whole validation set and sacreBLEU (beam 5) on the
three test sets. Scale 1 is the run's own models, re-validated, with the BLEU its measure stage
recorded. In RUN/budget (one stage per model and scale in stages.json; re-running resumes, and more
scales can be added): RESULTS.md and bleu_vs_updates.png give each model's figures and the gap
(largest − ÷3) per test set at each scale, against the track goal's 0.5 BLEU.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.io import atomic_write_text, load_json
from hat.stages import StageRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multi30k import SPACE, SPLITS, TEST_SETS, train_options  # noqa: E402
from multi30k_stock import load_budget, pooled_bleu, run_study  # noqa: E402

log = logging.getLogger("budget")
GOAL = 0.5  # BLEU: the track goal's largest allowed loss of the ÷3 model against the largest
LARGEST = "largest (scratch)"


def scratch_models(run: Path) -> dict[str, dict[str, Any]]:
    """The run's two plain from-scratch models: name -> config, checkpoint and measured BLEU."""
    stages = load_json(run / "stages.json", "stage record")
    if "measure" not in stages:
        raise HatError("the benchmark has not measured its models; finish experiments/multi30k.py first",
                       run / "stages.json")
    try:
        constrained = f"{stages['search']['scratch']} (scratch)"
        trained = stages["train"]["models"]
        bleu = {row["model"]: row["bleu"] for row in stages["measure"]["rows"]}
        return {name: {"config": trained[name]["config"], "checkpoint": trained[name]["checkpoint"],
                       "bleu": bleu[name]} for name in (LARGEST, constrained)}
    except (KeyError, TypeError) as err:
        raise HatError(f"not a record of this benchmark's from-scratch track (no {err})", run / "stages.json") from None


class BudgetStudy:
    def __init__(self, run: Path, workers: int) -> None:
        self.budget = load_budget(run)
        self.bin, self.workers = run / "data-bin", workers
        self.models = scratch_models(run)
        self.out = run / "budget"
        self.out.mkdir(exist_ok=True)
        self.runner = StageRunner(self.out / "stages.json", log, {"budget": dataclasses.asdict(self.budget)})

    def updates(self, scale: int) -> int:
        return self.budget.scratch_updates * scale

    def run(self, scales: list[int]) -> dict[str, Any]:
        stages = [(stage_name(1, name), lambda name=name: self.of_run(name)) for name in self.models]
        stages += [(stage_name(scale, name), lambda scale=scale, name=name: self.train(scale, name))
                   for scale in scales for name in self.models]
        return self.runner.run(stages)

    def of_run(self, name: str) -> dict[str, Any]:
        """Scale 1: the run's own model, re-validated; its BLEU as the run measured it."""
        model = self.models[name]
        return {"updates": self.updates(1), "checkpoint": model["checkpoint"], "bleu": model["bleu"],
                "valid_loss": self.valid_loss(model["checkpoint"], model["config"])}

    def train(self, scale: int, name: str) -> dict[str, Any]:
        from hat.training import train

        model, updates = self.models[name], self.updates(scale)
        save = self.out / f"x{scale}" / ("largest" if name == LARGEST else "constrained")
        log.info("%s from scratch: %d updates (%dx)", name, updates, scale)
        train(space=SPACE, data=self.bin, save_dir=save, subtransformer_config=model["config"],
              options=train_options(self.budget, updates))
        checkpoint = str(save / "checkpoint_best.pt")
        return {"updates": updates, "checkpoint": checkpoint, "bleu": self.bleu(checkpoint, model["config"]),
                "valid_loss": self.valid_loss(checkpoint, model["config"])}

    def valid_loss(self, checkpoint: str, config_file: str) -> float:
        from hat.evaluation import evaluate
        from hat.space import SubTransformerConfig

        config = SubTransformerConfig.from_yaml(config_file)
        return evaluate(checkpoint, self.bin, config, split="valid", bleu=False)["loss"]

    def bleu(self, checkpoint: str, config_file: str) -> dict[str, float]:
        jobs = [("HAT", checkpoint, self.bin, Path(config_file), split) for split in SPLITS]
        return dict(zip(TEST_SETS, pooled_bleu(jobs, self.workers, self.out / "budget.log")))


def stage_name(scale: int, name: str) -> str:
    return f"x{scale} {name}"


def report(stages: dict[str, Any], scales: list[int], names: list[str], out: Path) -> str:
    """RESULTS.md: each model's loss and BLEU per scale, and the gap (largest − constrained) per test set."""
    largest, constrained = names
    header = " | ".join(f"{who} {t}" for t in TEST_SETS for who in ("largest", "÷3", "gap"))
    lines = [f"| updates | valid loss largest | valid loss ÷3 | {header} |", "| --- " * (3 + 3 * len(TEST_SETS)) + "|"]
    for scale in [1, *scales]:
        big, small = stages[stage_name(scale, largest)], stages[stage_name(scale, constrained)]
        cells = [f"{big['updates']:,} ({scale}x)", f"{big['valid_loss']:.3f}", f"{small['valid_loss']:.3f}"]
        for t in TEST_SETS:
            cells += [f"{big['bleu'][t]:.2f}", f"{small['bleu'][t]:.2f}", f"{big['bleu'][t] - small['bleu'][t]:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"(models: '{largest}' and '{constrained}'; gap: largest − ÷3 BLEU; the track goal allows "
                 f"{GOAL}; valid loss: label-smoothed, bits per token, on the whole validation set)")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    plot(stages, [1, *scales], names, out / "bleu_vs_updates.png")
    return text


def plot(stages: dict[str, Any], scales: list[int], names: list[str], path: Path) -> None:
    """BLEU against updates, one panel per test set, one line per model."""
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(TEST_SETS), figsize=(11, 3.8), sharey=True)
    for ax, test in zip(axes, TEST_SETS):
        for i, name in enumerate(names):
            rows = [stages[stage_name(scale, name)] for scale in scales]
            ax.plot([r["updates"] for r in rows], [r["bleu"][test] for r in rows], "o-", color=f"C{i}", label=name)
        updates = [stages[stage_name(scale, names[0])]["updates"] for scale in scales]
        ax.set_xscale("log", base=2)
        ax.set_xticks(updates, [f"{u:,}" for u in updates])
        ax.minorticks_off()
        ax.set_title(test)
        ax.set_xlabel("updates (2,048 tokens each), log scale")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("sacreBLEU (beam 5)")
    axes[0].legend()
    fig.suptitle("Multi30k En-De from scratch: the largest and the ÷3 model at growing budgets")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="output folder of a run of experiments/multi30k.py")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4],
                        help="multiples of the run's from-scratch updates to train both models for")
    parser.add_argument("--workers", type=int, default=2, help="processes computing BLEU")
    args = parser.parse_args()
    if args.workers < 1 or len(set(args.scales)) != len(args.scales) or min(args.scales) < 2:
        parser.error("--workers must be at least 1 and --scales distinct integers of at least 2")
    scales = sorted(args.scales)
    return run_study("multi30k_budget", log, lambda: BudgetStudy(args.run, args.workers),
                     lambda study: report(study.run(scales), scales, list(study.models), study.out),
                     f"from-scratch budgets x{scales}")


if __name__ == "__main__":
    raise SystemExit(main())
