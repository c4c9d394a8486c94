"""Sequence-level distillation on the Multi30k benchmark: the / 3 model trained on a teacher's translations.

    python experiments/multi30k_seqdistil.py --run runs/multi30k [--teacher "largest (scratch)"]

Needs a finished run of experiments/multi30k.py (its data, SuperTransformer, searched / 3 model and
measured rows). Stages, in RUN/seqdistil (recorded in stages.json; re-running resumes):
  distil   the step of `hat data distil`: the teacher translates the training set (beam 5) and its
           translations replace the targets in a copy of the data-bin
  train    the / 3 model on the distilled data on both tracks, with the benchmark's budgets and
           options: fine-tuned from the SuperTransformer, and from scratch
  measure  sacreBLEU (beam 5) on the three test sets
RESULTS.md and bleu.png compare each track's / 3 model trained on the references, with word-level
distillation (both from the benchmark's run) and on the teacher's translations. The architecture
is the same, so the benchmark's latency holds for all three.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.io import atomic_write_text, file_content, load_json
from hat.logs import log_file, setup_console
from hat.stages import StageRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multi30k import SPACE, SPLITS, TEST_SETS, Budget, measuring_worker, slug, train_options  # noqa: E402

log = logging.getLogger("seqdistil")
TARGETS = ("references", "word-level distillation", "sequence-level distillation")


@dataclasses.dataclass
class Run:
    """What a finished benchmark run provides."""

    folder: Path
    budget: Budget
    supernet: str
    config: str  # the / 3 model's architecture (YAML)
    key: str  # its constraint, e.g. '23.2ms'
    rows: list[dict]
    models: dict[str, dict]

    @classmethod
    def load(cls, folder: Path) -> "Run":
        path = folder / "stages.json"
        if not path.is_file():
            raise HatError("not found (pass --run with the output folder of experiments/multi30k.py)", path)
        stages = load_json(path, "stage record")
        if "measure" not in stages:
            raise HatError("the benchmark has not finished its measure stage; run experiments/multi30k.py first", path)
        settings = load_json(folder / "settings.json", "run settings")
        with file_content(folder / "settings.json", "run settings"):
            budget = Budget(**settings["budget"])
        with file_content(path, "stage record"):
            key = stages["search"]["scratch"]
            return cls(folder, budget, stages["supernet"]["checkpoint"], stages["search"]["configs"][key], key,
                       stages["measure"]["rows"], stages["train"]["models"])

    def row(self, name: str) -> dict:
        return next(r for r in self.rows if r["model"] == name)


class SeqDistillation:
    def __init__(self, run: Run, teacher: str, beam: int, workers: int) -> None:
        if teacher not in run.models or run.models[teacher]["role"] == "fairseq":
            names = ", ".join(repr(n) for n, m in run.models.items() if m["role"] != "fairseq")
            raise HatError(f"--teacher {teacher!r} is not one of the run's HAT models ({names})", run.folder / "stages.json")
        self.source, self.teacher, self.beam, self.workers = run, teacher, beam, workers
        self.out = run.folder / "seqdistil"
        self.out.mkdir(exist_ok=True)
        settings = {"teacher": teacher, "beam": beam, "budget": dataclasses.asdict(run.budget), "config": run.config}
        self.runner = StageRunner(self.out / "stages.json", log, settings)
        self.bin = self.out / "data-bin"

    def students(self) -> list[dict]:
        key = self.source.key
        return [{"name": f"{key} (fine-tuned, seq-distilled)", "track": "fine-tuned",
                 "updates": self.source.budget.finetune_updates, "restore": self.source.supernet},
                {"name": f"{key} (scratch, seq-distilled)", "track": "scratch",
                 "updates": self.source.budget.scratch_updates, "restore": None}]

    def run(self) -> dict[str, Any]:
        return self.runner.run([("distil", self.distil), ("train", self.train), ("measure", self.measure)])

    def distil(self) -> dict:
        from hat.data.distill import MARKER, distil_data

        checkpoint = self.source.models[self.teacher]["checkpoint"]
        log.info("the teacher %r translates the training set (beam %d)", self.teacher, self.beam)
        distil_data(checkpoint, self.source.folder / "data-bin", self.bin, beam=self.beam)
        made = load_json(self.bin / MARKER, "distillation record")
        return {"teacher": checkpoint, "translated": made["translated"], "kept": made["kept"]}

    def train(self) -> dict:
        from hat.training import train

        for student in self.students():
            log.info("training %s", student["name"])
            train(space=SPACE, data=self.bin, save_dir=self.out / "models" / slug(student["name"]),
                  subtransformer_config=self.source.config, restore_file=student["restore"],
                  reset_optimizer=student["restore"] is not None, options=train_options(self.source.budget, student["updates"]))
        return {"checkpoints": {s["name"]: str(self.out / "models" / slug(s["name"]) / "checkpoint_best.pt")
                                for s in self.students()}}

    def measure(self) -> dict:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        checkpoints = self.runner.results["train"]["checkpoints"]
        jobs = [(checkpoints[s["name"]], self.source.folder / "data-bin", self.source.config, split)
                for s in self.students() for split in SPLITS]
        log.info("BLEU of %d students on %d test sets", len(checkpoints), len(SPLITS))
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=measuring_worker, initargs=(self.out / "seqdistil.log",)) as pool:
            scores = list(pool.map(split_bleu, jobs))
        rows = []
        for i, student in enumerate(self.students()):
            mine = scores[i * len(SPLITS):(i + 1) * len(SPLITS)]
            rows.append({"model": student["name"], "track": student["track"], "bleu": dict(zip(TEST_SETS, mine))})
        return {"rows": rows}


def split_bleu(job: tuple[str, Path, str, str]) -> float:
    """sacreBLEU of one checkpoint on one test split (beam 5, as the benchmark measures)."""
    from hat.evaluation import Generation, generate_bleu
    from hat.space import SubTransformerConfig

    checkpoint, data, config, split = job
    return generate_bleu(checkpoint, data, SubTransformerConfig.from_yaml(config), Generation(split, beam=5))["bleu"]


def comparison(run: Run, students: list[dict]) -> list[dict]:
    """Per track, the / 3 model with each kind of target, then the teacher (name, track, targets, bleu)."""
    rows = []
    for track in ("fine-tuned", "scratch"):
        rows.append(dict(run.row(f"{run.key} ({track})"), targets=TARGETS[0]))
        rows.append(dict(run.row(f"{run.key} ({track}, distilled)"), targets=TARGETS[1]))
        rows.append(dict(next(s for s in students if s["track"] == track), targets=TARGETS[2]))
    return rows


def mean(row: dict) -> float:
    return sum(row["bleu"].values()) / len(row["bleu"])


def report(run: Run, teacher: str, stages: dict[str, Any], out: Path) -> str:
    """RESULTS.md (table and, per track, how each distillation compares with the references) and bleu.png."""
    rows = comparison(run, stages["measure"]["rows"])
    distil = stages["distil"]
    lines = [f"Teacher: '{teacher}' (BLEU " + " / ".join(f"{v:.2f}" for v in run.row(teacher)["bleu"].values())
             + f"); it translated {distil['translated']} training pairs ({distil['kept']} kept as they were, too long).", "",
             "| model | track | trained on | " + " | ".join(f"BLEU {n}" for n in TEST_SETS) + " | mean | vs references |",
             "| --- " * (len(TEST_SETS) + 5) + "|"]
    for row in rows:
        base = next(r for r in rows if r["track"] == row["track"] and r["targets"] == TARGETS[0])
        bleu = " | ".join(f"{row['bleu'][n]:.2f}" for n in TEST_SETS)
        lines.append(f"| {row['model']} | {row['track']} | {row['targets']} | {bleu} | {mean(row):.2f} | "
                     f"{mean(row) - mean(base):+.2f} |")
    lines.append("")
    for track in ("fine-tuned", "scratch"):
        mine = {r["targets"]: r for r in rows if r["track"] == track}
        for targets in TARGETS[1:]:
            wins = sum(mine[targets]["bleu"][n] > mine[TARGETS[0]]["bleu"][n] for n in TEST_SETS)
            lines.append(f"- {track} track, {targets}: higher BLEU than the references on {wins} of {len(TEST_SETS)} "
                         f"test sets (mean {mean(mine[targets]) - mean(mine[TARGETS[0]]):+.2f}).")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    plot(rows, out / "bleu.png")
    return text


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars: BLEU per test set for every (track, targets) pair."""
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        xs = [t + (i - (len(rows) - 1) / 2) * width for t in range(len(TEST_SETS))]
        ax.bar(xs, [row["bleu"][n] for n in TEST_SETS], width, label=f"{row['track']}, {row['targets']}",
               color=f"C{TARGETS.index(row['targets'])}", hatch="" if row["track"] == "fine-tuned" else "//",
               edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(TEST_SETS)), TEST_SETS)
    ax.set_ylabel("sacreBLEU (beam 5)")
    ax.set_title(f"Multi30k En-De, the searched {rows[0]['model'].split(' ')[0]} model: training targets compared")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="output folder of a finished experiments/multi30k.py run")
    parser.add_argument("--teacher", default="largest (scratch)", help="the run's model that translates the training set")
    parser.add_argument("--beam", type=int, default=5, help="beam size of the teacher's translations")
    parser.add_argument("--workers", type=int, default=2, help="processes computing BLEU")
    args = parser.parse_args()
    if args.beam < 1 or args.workers < 1:
        parser.error("--beam and --workers must be at least 1")
    setup_console()
    try:
        run = Run.load(args.run)
        experiment = SeqDistillation(run, args.teacher, args.beam, args.workers)
        with log_file(experiment.out / "seqdistil.log", console_shows=("seqdistil",)) as detail:
            log.info("sequence-level distillation in %s; the full log is %s", experiment.out, detail)
            stages = experiment.run()
    except HatError as err:
        print(f"multi30k_seqdistil: error: {err}", file=sys.stderr)
        return 2
    print(report(run, args.teacher, stages, experiment.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
