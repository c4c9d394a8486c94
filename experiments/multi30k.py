"""Multi30k En->De on real text: HAT's searched models against the baselines, trained the same way.

    python experiments/multi30k.py --data ../shared/data/multi30k --out runs/multi30k [--quick]

Stages (each recorded in OUT/stages.json; re-running resumes after the last finished one, and a
killed training resumes from its last checkpoint):
  prepare    joint sentencepiece vocabulary + fairseq binarization (train / val / three test sets)
  supernet   SuperTransformer training on search_spaces/multi30k_cpu.yaml, SUPERNET_SAMPLER: every
             update trains the largest, the smallest and one sampled SubTransformer
  profile    latency tables + end-to-end samples on onnxruntime fp32 (the deployed runtime); predictor
  search     evolutionary search (inherited-weight validation loss) under constraints fixed by rule:
             the largest SubTransformer's measured latency / 2, / 3 and / 4 (DIVISORS), less the
             winners' tolerance; winners measured, predictor refitted and search re-run while off;
             a constraint no SubTransformer can meet is dropped and recorded
  select     each constraint's FINALISTS finalists (the lowest inherited loss in each of equal bands
             of the latency the search explored, hat.search.finalists), each fine-tuned as the
             fine-tuned track does; the lowest fine-tuned validation loss is the constraint's model
  train      fine-tuned track: every selected model (its finalist's training), the largest and the
             smallest, each fine-tuned from the SuperTransformer for finetune_updates; from-scratch track, for
             supernet_updates + finetune_updates: the / 3 model, the largest, the stock
             architecture (the largest attending to the last encoder layer) and fairseq's own
             `transformer` of it, with the same options; the / 3 model again on both tracks with
             word-level distillation from the SuperTransformer's largest SubTransformer, and with
             sequence-level distillation: 'largest (scratch)' translates the training set (beam 5,
             `hat data distil`'s step) and the / 3 model learns from its translations
  measure    sacreBLEU (beam 5) on test_2016_flickr, test_2017_flickr and test_2018_flickr;
             onnxruntime latency of every architecture (batch 1, beam 5, 30 source tokens; all
             timed in the same rounds, in rotating order, in several passes; each keeps its median pass)
Every run ends by rewriting OUT/RESULTS.md (table and goals) and OUT/bleu_vs_latency.png from the
measured rows (experiments/multi30k_report.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from hat.data.prepare import test_split
from hat.errors import HatError
from hat.io import atomic_write_text
from hat.logs import log_file, setup_console
from hat.stages import StageRunner
from hat.training import Distillation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multi30k_report import combine_passes, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "multi30k_cpu.yaml"
log = logging.getLogger("multi30k")
# fairseq's legacy `transformer` stores its options as an argparse.Namespace, which torch's
# weights-only loader refuses (so fairseq could neither resume nor generate from it). That class
# only holds attributes, so it is allowed, in the processes that train and decode the stock model
# this script trained, and nothing else is.
ALLOW_NAMESPACE = "import argparse, sys, torch; torch.serialization.add_safe_globals([argparse.Namespace]);"
# fairseq's translation task batching every sentence, as HAT's task does (fairseq#5036): both models
# of the stock comparison then validate on the same sentences
KEEP_EVERY_BATCH = ("from fairseq.tasks.translation import TranslationTask; from hat.data.batches import keep_every_batch; "
                    "_load = TranslationTask.load_dataset; TranslationTask.load_dataset = lambda self, split, **kw: "
                    "(_load(self, split, **kw), keep_every_batch(self.datasets[split]))[0];")


def stock_updates(checkpoint: Path) -> int:
    """Updates done by the stock fairseq model's checkpoint (0 when there is none)."""
    import argparse

    import torch

    if not checkpoint.is_file():
        return 0
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return int(((state.get("optimizer_history") or [{}])[-1]).get("num_updates", 0))


# The benchmark's rule, fixed before any result: the searched latency constraints are the largest
# SubTransformer's measured deployed latency divided by DIVISORS and by 1 + WINNER_TOLERANCE; the
# search's winners are measured and, while one is off its prediction by more than WINNER_TOLERANCE,
# the predictor is refitted with them and the search re-run (at most WINNER_ROUNDS times), so a
# chosen model meets its divisor as measured, not only as predicted. A constraint below the
# fastest SubTransformer's predicted latency is unreachable in the space: it is dropped from that
# round's search and recorded. The from-scratch track (and distillation on both tracks) is run at
# SCRATCH_DIVISOR.
DIVISORS = (2, 3, 4)
SCRATCH_DIVISOR = 3
WINNER_TOLERANCE = 0.03
WINNER_ROUNDS = 2
FINALISTS = 4  # per constraint, fine-tuned and compared by validation loss (the select stage)
STAGES = ("prepare", "supernet", "profile", "search", "select", "train", "measure")
# What a model learns from: the references, word-level distillation from the SuperTransformer's
# largest SubTransformer, or the translations of SEQ_TEACHER (sequence-level distillation).
TARGETS = ("references", "word-level distillation", "sequence-level distillation")
SEQ_TEACHER = "largest (scratch)"
# HAT samples one SubTransformer per update. The budget counts updates, and for the same number the
# sandwich rule's SuperTransformer, at three passes per update, has far better inherited weights
# (for the same wall time HAT's sampler does better; BENCHMARKS.md).
SUPERNET_SAMPLER = "sandwich"
TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2018_flickr")
SPLITS = tuple(test_split(i) for i in range(len(TEST_SETS)))  # their fairseq splits: test, test1, test2


@dataclasses.dataclass
class Budget:
    """How much of everything; the default is sized to the 2-core build machine (time in BENCHMARKS.md).

    From-scratch models train for ``supernet_updates + finetune_updates`` updates: the total a
    fine-tuned SubTransformer cost. HAT trains for 40k updates on GPUs; raise budgets with --set
    on bigger machines.
    """

    vocab: int = 4000
    supernet_updates: int = 680
    finetune_updates: int = 280
    max_tokens: int = 2048
    validations: int = 4  # validations per training run (the best one's checkpoint is kept)
    samples: int = 60
    test_samples: int = 20
    iterations: int = 8
    population: int = 24
    valid_subset: int = 200
    timing_passes: int = 5  # passes of 40 interleaved onnxruntime rounds; each model's latency is its median pass
    test_lines: int = 0  # sentences of each test set scored (0: all)
    train_lines: int = 0  # training pairs used (0: all)

    @property
    def scratch_updates(self) -> int:
        return self.supernet_updates + self.finetune_updates


# A smoke run of every stage (its scores mean nothing).
QUICK = Budget(vocab=1000, supernet_updates=30, finetune_updates=10, validations=1, samples=10, test_samples=5,
               iterations=1, population=8, valid_subset=50, timing_passes=2, test_lines=40, train_lines=2000)


def train_options(budget: Budget, updates: int) -> dict:
    """fairseq options of every model the benchmark trains for ``updates`` updates."""
    return {"max-update": updates, "max-tokens": budget.max_tokens, "lr": 1e-3,
            "warmup-updates": max(1, updates // 5), "dropout": 0.2, "log-interval": 50,
            "no-epoch-checkpoints": True, "keep-last-epochs": 1, "num-workers": 0,
            "validate-interval-updates": max(1, updates // budget.validations)}


class Experiment:
    def __init__(self, data: Path, out: Path, budget: Budget, threads: int, workers: int = 2) -> None:
        self.raw, self.out, self.b, self.threads, self.workers = data, out, budget, threads, workers
        self.out.mkdir(parents=True, exist_ok=True)
        settings = {"budget": dataclasses.asdict(budget), "threads": threads, "divisors": DIVISORS,
                    "scratch_divisor": SCRATCH_DIVISOR, "winner_tolerance": WINNER_TOLERANCE,
                    "winner_rounds": WINNER_ROUNDS, "distillation": dataclasses.asdict(Distillation()),
                    "stock_transformer_options": "hat-train-defaults", "seq_distillation_teacher": SEQ_TEACHER,
                    "supernet_sampler": SUPERNET_SAMPLER, "finalists": FINALISTS}
        self.runner = StageRunner(out / "stages.json", log, settings)
        self.stages = self.runner.results
        self.bin = out / "data-bin"

    def run(self, stop_after: str | None = None) -> None:
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("prepare", self.prepare), ("supernet", self.supernet), ("profile", self.profile),
            ("search", self.search), ("select", self.select), ("train", self.train_models), ("measure", self.measure),
        ]
        if stop_after is not None:
            steps = steps[:[name for name, _ in steps].index(stop_after) + 1]
        self.runner.run(steps)
        if "measure" in self.stages:  # rebuilt from the cached rows on every run
            print(write_report(self.stages["measure"]["rows"], self.out, TEST_SETS, self.threads))

    def train_options(self, updates: int) -> dict:
        return train_options(self.b, updates)

    def prepare(self) -> dict:
        from hat.data.prepare import prepare_data

        for name in ("train", "val", *TEST_SETS):
            for lang in ("en", "de"):
                if not (self.raw / f"{name}.{lang}").is_file():
                    raise HatError("not found (pass --data with the Multi30k folder)", self.raw / f"{name}.{lang}")
        tests = [self.cut(name, self.b.test_lines) for name in TEST_SETS]
        prepare_data(src="en", tgt="de", train=self.cut("train", self.b.train_lines), valid=self.raw / "val", test=tests,
                     out=self.bin, vocab_size=self.b.vocab, workers=2)
        return {"vocab": sum(1 for _ in (self.bin / "dict.en.txt").open()) + 4}

    def cut(self, name: str, lines: int) -> Path:
        """The prefix of raw corpus ``name`` (.en/.de), or of a copy cut to its first ``lines`` pairs (0: all)."""
        if not lines:
            return self.raw / name
        cut = self.out / "cut"
        cut.mkdir(exist_ok=True)
        for lang in ("en", "de"):
            text = (self.raw / f"{name}.{lang}").read_text(encoding="utf-8").splitlines()[:lines]
            atomic_write_text(cut / f"{name}.{lang}", "\n".join(text) + "\n")
        return cut / name

    def supernet(self) -> dict:
        from hat.training import train

        last = train(space=SPACE, data=self.bin, save_dir=self.out / "supernet", sampler=SUPERNET_SAMPLER,
                     options=self.train_options(self.b.supernet_updates))
        return {"checkpoint": str(last.with_name("checkpoint_best.pt"))}

    def collector(self) -> Any:
        """Measures SubTransformers on the runtime the models deploy on (onnxruntime fp32)."""
        from hat.export.ort_backend import OnnxBackend
        from hat.latency import LatencyCollector, Protocol
        from hat.space import SearchSpace

        protocol = Protocol(vocab=self.stages["prepare"]["vocab"], warmup=2, runs=6, threads=self.threads)
        return LatencyCollector(SearchSpace.from_yaml(SPACE), protocol, self.out / "latency", backend=OnnxBackend("fp32"),
                                progress=False)

    def profile(self) -> dict:
        from hat.latency import LatencyDataset
        from hat.pipeline import fit_predictor, profile

        profile(self.collector(), self.b.samples, self.b.test_samples)
        predictor, _ = fit_predictor(self.out / "latency" / "dataset.csv", self.out / "latency")
        predictor.save(self.out / "predictor.json")
        return {"predictor": predictor.kind, "test": predictor.evaluate(LatencyDataset.load(self.out / "latency" / "test.csv"))}

    def search(self) -> dict:
        from hat.latency import LatencyPredictor
        from hat.pipeline import search_with_measured_winners
        from hat.search.outputs import write_search_outputs
        from hat.space import SearchSpace

        space, collector = SearchSpace.from_yaml(SPACE), self.collector()
        first = LatencyPredictor.load(self.out / "predictor.json")
        largest = collector.collect_datasets({"largest.csv": [space.largest()]})["largest.csv"]
        largest_ms = float(first.labels(largest)[0])  # measured, at the predictor's reference speed
        constraints = [round(largest_ms / (d * (1 + WINNER_TOLERANCE)), 1) for d in DIVISORS]
        unreachable: dict[str, list[float]] = {}
        predictor, result, rounds = search_with_measured_winners(
            self.search_round(space, constraints, unreachable), self.refit, first, collector, rounds=WINNER_ROUNDS,
            tolerance=WINNER_TOLERANCE)
        summary = write_search_outputs(result, self.out / "search", runtime=predictor.runtime, space=space)
        configs = {f"{r['constraint_ms']:g}ms": str(self.out / "search" / r["config_file"]) for r in summary["results"]}
        scratch = f"{constraints[DIVISORS.index(SCRATCH_DIVISOR)]:g}ms"
        if scratch not in configs:
            raise HatError(f"the / {SCRATCH_DIVISOR} constraint ({scratch}) is unreachable: no model for the scratch track",
                           SPACE)
        return {"largest_measured_ms": largest_ms, "constraints": dict(zip(map(str, DIVISORS), constraints)),
                "rounds": rounds, "unreachable": unreachable, "configs": configs,
                "scratch": scratch}

    def search_round(self, space: Any, constraints: list[float],
                     unreachable: dict[str, list[float]]) -> Callable[[Any, int], Any]:
        """One resumable evolution per round (search/round<r>/state.json); every round shares one store of losses.

        A constraint below the fastest SubTransformer's latency under the round's predictor cannot be
        met by any model of the space: that round searches without it and records it in ``unreachable``."""
        from hat.search import EvolutionarySearch, InheritedLossFitness
        from hat.search.evaluators import ProcessPoolEvaluator
        from hat.search.objectives import feasible_range
        from hat.search.store import SearchStore

        fitness = InheritedLossFitness(self.stages["supernet"]["checkpoint"], self.bin, valid_subset=self.b.valid_subset,
                                       threads=self.threads)
        (self.out / "search").mkdir(exist_ok=True)
        store = SearchStore(self.out / "search" / "scored.jsonl", fitness=fitness.describe(), space=space)
        p = self.b.population

        def run_search(predictor: Any, round_: int) -> Any:
            state = self.out / "search" / f"round{round_}" / "state.json"
            state.parent.mkdir(exist_ok=True)
            fastest = feasible_range(space, predictor)[0]
            reachable = [c for c in constraints if c >= fastest]
            if len(reachable) < len(constraints):
                unreachable[f"round{round_}"] = [c for c in constraints if c < fastest]
                log.warning("round %d: %s ms below the fastest SubTransformer (%.2f ms predicted): searched without it",
                            round_, ", ".join(f"{c:g}" for c in unreachable[f"round{round_}"]), fastest)
            if not reachable:
                raise HatError(f"no constraint is reachable: the fastest SubTransformer is {fastest:.2f} ms", SPACE)
            evaluator = ProcessPoolEvaluator(fitness, self.workers) if self.workers > 1 else None
            search = EvolutionarySearch(space, fitness, predictor, reachable, population=p, parents=p // 5,
                                        mutations=2 * p // 5, crossovers=2 * p // 5, iterations=self.b.iterations,
                                        evaluator=evaluator, state_path=state, store=store)
            try:
                return search.run(resume=state.is_file())
            finally:
                if evaluator is not None:
                    evaluator.close()

        return run_search

    def refit(self, round_: int) -> Any:
        """The predictor of ``round_``, fitted on every row measured so far (read back when it exists)."""
        from hat.latency import LatencyPredictor
        from hat.pipeline import fit_predictor

        path = self.out / f"predictor_round{round_}.json"
        if not path.is_file():
            predictor, _ = fit_predictor(self.out / "latency" / "dataset.csv", self.out / "latency")
            predictor.save(path)
        return LatencyPredictor.load(path)

    def select(self) -> dict:
        """Each constraint's finalists fine-tuned for ``finetune_updates`` from the SuperTransformer
        (one training per architecture, resumed if interrupted) and scored by validation loss on the
        whole validation set; the lowest is the constraint's model. Scores are kept per finalist."""
        import csv

        from hat.search.finalists import write_finalists
        from hat.space import SubTransformerConfig

        configs = self.stages["search"]["configs"]
        history_file = self.out / "search" / "history.csv"
        if not history_file.is_file():
            raise HatError("not found (the search stage's history; delete stages.json's 'search' entry to redo it)",
                           history_file)
        with history_file.open(newline="") as handle:
            history = list(csv.DictReader(handle))
        index = write_finalists(history, [float(key[:-2]) for key in configs], FINALISTS, self.out / "search")
        finalists: dict[str, list[dict]] = {}
        for constraint, entries in tqdm(index.items(), desc="fine-tuning finalists"):
            key = f"{constraint}ms"
            pick = SubTransformerConfig.from_yaml(configs[key]).archid
            finalists[key] = [dict(entry, **self.fine_tune_finalist(self.out / "search" / entry["config_file"]),
                                   search_pick=entry["archid"] == pick) for entry in entries]
        chosen = {key: min(rows, key=lambda r: (r["tuned_loss"], r["archid"])) for key, rows in finalists.items()}
        for key, row in chosen.items():
            log.info("%s: finalist %s chosen (%.2f ms predicted, fine-tuned loss %.3f)%s", key, row["archid"],
                     row["latency_ms"], row["tuned_loss"], " = the search's pick" if row["search_pick"] else "")
        return {"finalists": finalists, "configs": {key: row["config"] for key, row in chosen.items()},
                "checkpoints": {key: row["checkpoint"] for key, row in chosen.items()}}

    def fine_tune_finalist(self, config_file: Path) -> dict:
        """One finalist fine-tuned as the fine-tuned track does, and its validation loss (kept)."""
        from hat.evaluation import evaluate
        from hat.io import load_json
        from hat.space import SubTransformerConfig
        from hat.training import train

        save = self.out / "finalists" / config_file.stem  # one training per architecture
        record = save / "selection.json"
        if not record.is_file():
            train(space=SPACE, data=self.bin, save_dir=save, subtransformer_config=config_file,
                  restore_file=self.stages["supernet"]["checkpoint"], reset_optimizer=True,
                  options=self.train_options(self.b.finetune_updates))
            config = SubTransformerConfig.from_yaml(config_file)
            loss = evaluate(save / "checkpoint_best.pt", self.bin, config, split="valid", bleu=False)["loss"]
            atomic_write_text(record, json.dumps({"tuned_loss": loss}))
        return {"tuned_loss": load_json(record, "finalist's score")["tuned_loss"], "config": str(config_file),
                "checkpoint": str(save / "checkpoint_best.pt")}

    def baseline_configs(self) -> dict[str, str]:
        """YAML files of the largest and smallest SubTransformers and of the stock architecture
        (the largest, attending to the last encoder layer only, as fairseq's transformer does)."""
        from hat.space import SearchSpace

        space = SearchSpace.from_yaml(SPACE)
        largest = space.largest()
        stock = dataclasses.replace(largest, decoder_ende_attn=(-1,) * largest.decoder_layers)
        files = {}
        (self.out / "search").mkdir(exist_ok=True)
        for name, config in (("largest", largest), ("smallest", space.smallest()), ("stock-arch", stock)):
            files[name] = str(self.out / "search" / f"{name}.yaml")
            config.to_yaml(files[name])
        return files

    def plan(self) -> list[dict]:
        """Every model of the benchmark: name, track, role, config file, training targets (TARGETS)."""
        search, selected = self.stages["search"], self.stages["select"]
        base = self.baseline_configs()
        key = search["scratch"]
        tuned = [{"name": f"{k} (fine-tuned)", "role": "searched", "config": path,
                  "trained": selected["checkpoints"][k]} for k, path in selected["configs"].items()]
        search = {**search, "configs": selected["configs"]}
        tuned += [{"name": f"{k} (fine-tuned)", "role": k, "config": base[k]} for k in ("largest", "smallest")]
        tuned += [{"name": f"{key} (fine-tuned, distilled)", "role": "searched", "config": search["configs"][key],
                   "targets": TARGETS[1]},
                  {"name": f"{key} (fine-tuned, seq-distilled)", "role": "searched", "config": search["configs"][key],
                   "targets": TARGETS[2]}]
        scratch = [{"name": f"{key} (scratch)", "role": "searched", "config": search["configs"][key]},
                   {"name": f"{key} (scratch, distilled)", "role": "searched", "config": search["configs"][key],
                    "targets": TARGETS[1]},
                   {"name": f"{key} (scratch, seq-distilled)", "role": "searched", "config": search["configs"][key],
                    "targets": TARGETS[2]},
                   {"name": SEQ_TEACHER, "role": "largest", "config": base["largest"]},
                   {"name": "stock-arch (scratch)", "role": "stock-arch", "config": base["stock-arch"]},
                   {"name": "fairseq transformer (scratch)", "role": "fairseq", "config": base["stock-arch"]}]
        return ([{"targets": TARGETS[0], **m, "track": "fine-tuned"} for m in tuned]
                + [{"targets": TARGETS[0], **m, "track": "scratch"} for m in scratch])

    def train_models(self) -> dict:
        """The fine-tuned track (``finetune_updates`` from the SuperTransformer), then the from-scratch
        track (``supernet_updates + finetune_updates`` from random initialisation); last, once the
        teacher is trained, its translations of the training set and the models that learn from them.
        Word-level distilled models learn from the SuperTransformer's largest SubTransformer."""
        from hat.training import train

        supernet = self.stages["supernet"]["checkpoint"]
        plan = self.plan()
        models: dict[str, dict] = {}
        distilled: dict[str, Any] = {}
        for model in tqdm(sorted(plan, key=lambda m: m["targets"] == TARGETS[2]), desc="training models"):
            save = self.out / "models" / slug(model["name"])
            data = self.bin
            if model["targets"] == TARGETS[2]:
                distilled = distilled or self.distil(models[SEQ_TEACHER]["checkpoint"])
                data = Path(distilled["data"])
            word_level = model["targets"] == TARGETS[1]
            if "trained" in model:  # a finalist fine-tuned by the select stage
                models[model["name"]] = dict(model, checkpoint=model["trained"])
                continue
            if model["role"] == "fairseq":
                self.stock_transformer(save)
            elif model["track"] == "fine-tuned":
                train(space=SPACE, data=data, save_dir=save, subtransformer_config=model["config"],
                      restore_file=supernet, reset_optimizer=True, options=self.train_options(self.b.finetune_updates),
                      distill=Distillation() if word_level else None)
            else:
                train(space=SPACE, data=data, save_dir=save, subtransformer_config=model["config"],
                      options=self.train_options(self.b.scratch_updates),
                      distill=Distillation(teacher=supernet) if word_level else None)
            models[model["name"]] = dict(model, checkpoint=str(save / "checkpoint_best.pt"))
        return {"models": {m["name"]: models[m["name"]] for m in plan}, "seq_distillation": distilled}

    def distil(self, teacher: str) -> dict:
        """The training set translated by ``teacher`` (beam 5) as a data-bin (kept once written)."""
        from hat.data.distill import MARKER, distil_data
        from hat.io import load_json

        out = self.out / "seq-distilled-bin"
        log.info("%s translates the training set for sequence-level distillation", SEQ_TEACHER)
        distil_data(teacher, self.bin, out, beam=5)
        made = load_json(out / MARKER, "distillation record")
        return {"teacher": SEQ_TEACHER, "data": str(out), "translated": made["translated"], "kept": made["kept"]}

    def stock_transformer(self, save: Path) -> None:
        """fairseq's own ``transformer`` of the stock architecture, with the from-scratch options."""
        train_stock_transformer(self.bin, save, self.train_options(self.b.scratch_updates))

    def measure(self) -> dict:
        """BLEU on the three test sets and an onnxruntime export of every model (``workers``
        models at a time, one thread each), then the latency of all architectures timed alone, in
        the same rounds, so a slow spell of the machine falls on all of them alike."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        done = self.out / "measured"
        done.mkdir(exist_ok=True)
        models = list(self.stages["train"]["models"].values())
        jobs = [(model, self.out, self.bin, done) for model in models]
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=measuring_worker, initargs=(self.out / "multi30k.log",)) as pool:
            rows = list(tqdm(pool.map(model_quality, jobs), total=len(jobs), desc="BLEU and export"))
        latency_file = done / "latency.json"
        latencies = json.loads(latency_file.read_text()) if latency_file.is_file() else {}
        if set(latencies) != {r["model"] for r in rows}:
            latencies = self.time_exports(rows)
            atomic_write_text(latency_file, json.dumps(latencies, indent=1))
        for row in rows:
            row.update(latencies[row["model"]])
        return {"rows": rows}

    def time_exports(self, rows: list[dict]) -> dict[str, dict]:
        """onnxruntime latency of every row: one export per distinct architecture (models of one
        architecture run the same graph), all timed in the same rounds, in ``timing_passes`` passes
        of 40 rounds; each row gets its architecture's median pass."""
        from hat.export.runtime import load_runtime
        from hat.export.verify import measure_interleaved, runtime_workload
        from hat.latency import Protocol

        protocol = Protocol(vocab=self.stages["prepare"]["vocab"], warmup=3, runs=40, threads=self.threads)
        first = {}
        for r in rows:
            if r.get("model_dir"):
                first.setdefault(r["config"], r["model_dir"])
        log.info("timing %d architectures (%d models) interleaved: %d passes of %d rounds",
                 len(first), len(rows), self.b.timing_passes, protocol.runs)
        workloads = {arch: runtime_workload(load_runtime(Path(model_dir), "onnxruntime", threads=self.threads), protocol)
                     for arch, model_dir in first.items()}
        passes = [measure_interleaved(workloads, protocol) for _ in tqdm(range(self.b.timing_passes), desc="timing passes")]
        combined = combine_passes(passes)
        return {r["model"]: combined[r["config"]] for r in rows}


def train_stock_transformer(data: Path, save: Path, options: dict) -> None:
    """fairseq's own ``transformer`` of the stock architecture (the space's largest, uniform), trained
    with exactly the options HAT's models get (``hat train``'s defaults updated by ``options``), so
    that the two differ only in their model code. Resumes from ``save``; does nothing once done."""
    from hat.space import SearchSpace
    from hat.training import DEFAULTS, options_to_argv, stock_transformer_argv

    options = {**DEFAULTS, **options, "cpu": True}
    if stock_updates(save / "checkpoint_last.pt") >= options["max-update"]:
        return  # done (fairseq would resume it and take one more update)
    largest = SearchSpace.from_yaml(SPACE).largest()
    argv = [str(data), "--save-dir", str(save), *stock_transformer_argv(largest), *options_to_argv(options)]
    save.mkdir(parents=True, exist_ok=True)
    with (save / "train.log").open("a") as detail:
        subprocess.run([sys.executable, "-c", f"{ALLOW_NAMESPACE} {KEEP_EVERY_BATCH} from hat.training import "
                        "parse_train_argv, run_fairseq_train; run_fairseq_train(parse_train_argv(sys.argv[1:]))", *argv],
                       check=True, stdout=detail, stderr=subprocess.STDOUT)


def measuring_worker(log_path: Path) -> None:
    """A measuring worker computes on one thread (and so do the programs it starts); it logs INFO and
    above to ``log_path`` and warnings (not library notices) to the console, whatever level a
    library sets on the root logger."""
    import os

    import torch

    from hat.logs import FORMAT

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    detail = logging.FileHandler(log_path, encoding="utf-8")
    detail.setLevel(logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.addFilter(lambda record: record.name != "py.warnings")  # library notices: the file only
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (detail, console):
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    logging.captureWarnings(True)


def model_quality(job: tuple[dict, Path, Path, Path]) -> dict[str, Any]:
    """BLEU on every test set and, for HAT's models, the onnxruntime export of one trained model
    (cached in ``done``). fairseq's transformer is timed as HAT's export of the same architecture."""
    from hat.evaluation import Generation, generate_bleu
    from hat.export.model_dir import export_model
    from hat.space import SubTransformerConfig

    model, out, data, done = job
    cached = done / f"{slug(model['name'])}.json"
    if cached.is_file():  # measured before an interruption
        return json.loads(cached.read_text())
    config = SubTransformerConfig.from_yaml(model["config"])
    row: dict[str, Any] = {"model": model["name"], "track": model["track"], "role": model["role"],
                           "targets": model["targets"], "config": config.summary()}
    if model["role"] == "fairseq":
        row["bleu"] = {name: stock_bleu(model["checkpoint"], data, split) for name, split in zip(TEST_SETS, SPLITS)}
    else:
        row["bleu"] = {name: generate_bleu(model["checkpoint"], data, config, Generation(split, beam=5))["bleu"]
                       for name, split in zip(TEST_SETS, SPLITS)}
        row["model_dir"] = str(out / "exported" / slug(model["name"]))
        export_model(model["checkpoint"], model["config"], data, row["model_dir"], onnx=True)
        row["parameters"] = json.loads((Path(row["model_dir"]) / "manifest.json").read_text())["parameters"]
    atomic_write_text(cached, json.dumps(row))
    return row


def stock_bleu(checkpoint: str, data: Path, split: str) -> float:
    """BLEU of the stock fairseq model through fairseq-generate, detokenized like ours."""
    import sacrebleu

    from hat.evaluation import sentencepiece_decoder

    code = f"{ALLOW_NAMESPACE} from fairseq_cli.generate import cli_main; sys.argv[0] = 'fairseq-generate'; cli_main()"
    proc = subprocess.run([sys.executable, "-c", code, str(data), "--path", checkpoint, "--gen-subset", split,
                           "--beam", "5", "--batch-size", "64", "--max-len-a", "1.2", "--max-len-b", "10", "--cpu",
                           "--required-batch-size-multiple", "1"],  # else fairseq drops the last batch (fairseq#5036)
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"multi30k: error: {checkpoint}: fairseq-generate failed:\n{proc.stderr[-2000:]}")
    detok = sentencepiece_decoder(data)
    hyps, refs = {}, {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            sid, _, text = line[2:].split("\t", 2)
            hyps[int(sid)] = detok(text.split())
        elif line.startswith("T-"):
            sid, text = line[2:].split("\t", 1)
            refs[int(sid)] = detok(text.split())
    order = sorted(hyps)
    expected = split_sentences(data, split)
    if len(order) != expected:
        raise SystemExit(f"multi30k: error: {checkpoint}: fairseq-generate translated {len(order)} of the "
                         f"{expected} sentences of '{split}'")
    return sacrebleu.metrics.BLEU().corpus_score([hyps[i] for i in order], [[refs[i] for i in order]]).score


def split_sentences(data: Path, split: str) -> int:
    """Sentences in a binarized split of the benchmark's data (en-de)."""
    from fairseq.data import data_utils

    return len(data_utils.load_indexed_dataset(str(data / f"{split}.en-de.en"), None))


def slug(name: str) -> str:
    """A model's folder name: '29.6ms (fine-tuned, distilled)' -> '29.6ms_fine-tuned_distilled'."""
    return "_".join(name.replace("(", " ").replace(")", " ").replace(",", " ").split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "multi30k")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "multi30k")
    parser.add_argument("--quick", action="store_true", help="a reduced smoke run of every stage (its scores mean little)")
    parser.add_argument("--threads", type=int, default=1, help="threads per latency measurement / fitness worker")
    parser.add_argument("--workers", type=int, default=2, help="processes for the search's fitness evaluations and for BLEU")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"override one budget field ({', '.join(f.name for f in dataclasses.fields(Budget))})")
    parser.add_argument("--stop-after", choices=STAGES, help="stop after this stage (a later run resumes)")
    args = parser.parse_args()
    budget = QUICK if args.quick else Budget()
    fields = {f.name for f in dataclasses.fields(Budget)}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in fields or not value.isdigit():
            parser.error(f"--set {item}: expected FIELD=INTEGER with FIELD one of {sorted(fields)}")
        budget = dataclasses.replace(budget, **{key: int(value)})
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be at least 1")
    if budget.validations < 1 or budget.supernet_updates < 1 or budget.finetune_updates < 1:
        parser.error("--set: validations, supernet_updates and finetune_updates must be at least 1")
    if budget.timing_passes < 1:
        parser.error("--set timing_passes=0: at least one timing pass is needed")
    setup_console()
    args.out.mkdir(parents=True, exist_ok=True)
    with log_file(args.out / "multi30k.log", console_shows=("multi30k",)) as detail:
        log.info("Multi30k benchmark in %s; the full log is %s", args.out, detail)
        log.info("budget: %s", budget)
        try:
            Experiment(args.data, args.out, budget, args.threads, args.workers).run(args.stop_after)
        except HatError as err:
            logging.getLogger("hat.detail.multi30k").info("stopped", exc_info=True)
            print(f"multi30k: error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
