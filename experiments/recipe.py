"""HAT's recipe for one of its tasks, end to end: data, SuperTransformer, latency, search, the
searched SubTransformers trained from scratch, checkpoint averaging and BLEU as HAT reports it.

    python experiments/recipe.py experiments/recipes/iwslt14_de_en.yaml (--raw RAW | --downloads DIR) \
        --out OUT [--predictor PREDICTOR.json] [--constraint MS ...] [--toy]

RAW holds {train,valid,test}.{SRC,TGT} prepared from the corpus the recipe names; with
``--downloads DIR`` (the archives as the recipe's ``downloads`` section names them) a first stage
``corpus`` extracts them into OUT/raw (hat.data.corpus). Stages (each recorded in
OUT/stages.json; re-running skips finished ones):
  prepare    sentencepiece + fairseq binarization with the recipe's vocabulary
  supernet   the SuperTransformer with HAT's training settings
  latency    the given predictor, or one profiled here (onnxruntime fp32, 1 thread)
  search     HAT's evolutionary search under each constraint (default: the largest
             SubTransformer's predicted latency / 1.5 and / 2)
  train      each searched SubTransformer trained from scratch with HAT's settings
  average    the last N checkpoints of each averaged (the recipe's average_last; 0: none)
  evaluate   BLEU on the test split with the recipe's beam and length penalty, as HAT scores it
OUT/RESULTS.json holds the figures. ``--toy`` keeps every stage but runs it at toy scale (the tiny
space, a few updates, a small search, the torch backend) so that the recipe is tested on a CPU.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from hat.io import atomic_write_json, load_yaml
from hat.stages import StageRunner

log = logging.getLogger("recipe")
TOY_TRAINING = {"max-update": 4, "max-tokens": 1536, "update-freq": 1, "warmup-updates": 2, "lr": 2e-3,
                "fp16": False, "save-interval-updates": 2, "keep-interval-updates": 10, "num-workers": 0,
                "keep-last-epochs": None, "save-interval": None}
TOY_SEARCH = {"population": 8, "parents": 2, "mutations": 3, "crossovers": 3, "iterations": 1, "mutation_prob": 0.3}


def load_recipe(path: Path, toy: bool) -> dict[str, Any]:
    recipe = load_yaml(path, "recipe")
    if toy:
        recipe = {**recipe, "space": "tiny", "data": {**recipe["data"], "vocab_size": 400, "joined_dictionary": True},
                  "supertransformer": {**recipe["supertransformer"], **TOY_TRAINING},
                  "subtransformer": {**recipe["subtransformer"], **TOY_TRAINING}, "search": TOY_SEARCH,
                  "average_last": min(recipe["average_last"], 2), "generation": {**recipe["generation"], "beam": 2}}
    return recipe


def default_constraints(space: Any, predictor: Any, toy: bool) -> list[float]:
    """The largest SubTransformer's predicted latency / 1.5 and / 2; at toy scale (where a tiny
    space's latencies are mostly overhead) the middle and the top tenth of its feasible range."""
    from hat.pipeline import feasible_range

    if toy:
        low, high = feasible_range(space, predictor)
        return [round(low + 0.9 * (high - low), 3)]
    largest = float(predictor.predict([space.largest()])[0])
    return [round(largest / 1.5, 2), round(largest / 2, 2)]


class Recipe:
    def __init__(self, recipe: dict[str, Any], raw: Path | None, out: Path, predictor: Path | None,
                 constraints: list[float] | None, toy: bool, downloads: Path | None = None) -> None:
        from hat.shipped import space_file

        self.r, self.raw, self.out, self.toy, self.downloads = recipe, raw or out / "raw", out, toy, downloads
        self.space = space_file(recipe["space"])
        self.data = out / "data"
        self.predictor, self.constraints = predictor, constraints
        self.runner = StageRunner(out / "stages.json", log, settings={**recipe, "toy": toy, "raw": str(self.raw),
                                                                         "downloads": str(downloads)})

    def run(self) -> dict[str, Any]:
        corpus = [("corpus", self.corpus)] if self.downloads else []
        stages = self.runner.run([*corpus, ("prepare", self.prepare), ("supernet", self.supernet), ("latency", self.latency),
                                  ("search", self.search), ("train", self.train), ("average", self.average),
                                  ("evaluate", self.evaluate)])
        results = {"task": self.r["task"], "toy": self.toy, "models": stages["evaluate"]["models"],
                   "constraints_ms": stages["search"]["constraints"], "runtime": stages["search"]["runtime"]}
        atomic_write_json(self.out / "RESULTS.json", results)
        return results

    def corpus(self) -> dict:
        from hat.data.corpus import extract_corpus

        stats = extract_corpus(self.r["downloads"], self.r["source"], self.r["target"], self.downloads, self.raw,
                               recipe=self.r["task"])
        return {"pairs": stats, "summary": ", ".join(f"{split} {s['pairs']:,} pairs ({s['dropped']:,} dropped)"
                                                     for split, s in stats.items())}

    def prepare(self) -> dict:
        from hat.data.prepare import prepare_data

        d = self.r["data"]
        prepare_data(src=self.r["source"], tgt=self.r["target"], train=self.raw / "train", valid=self.raw / "valid",
                     test=self.raw / "test", out=self.data, bpe=d["bpe"], vocab_size=d["vocab_size"],
                     joined_dictionary=d["joined_dictionary"])
        return {"summary": f"data-bin in {self.data}"}

    def supernet(self) -> dict:
        from hat.training import train

        last = train(space=self.space, data=self.data, save_dir=self.out / "supernet",
                     options=self.r["supertransformer"])
        return {"checkpoint": str(last), "summary": f"SuperTransformer {last}"}

    def latency(self) -> dict:
        if self.predictor is not None:
            return {"predictor": str(self.predictor), "summary": f"predictor {self.predictor}"}
        from hat.latency import LatencyCollector, Protocol
        from hat.pipeline import fit_predictor, measure_backend, profile, target_vocabulary
        from hat.space import SearchSpace

        vocab = target_vocabulary(self.data, None)
        protocol = Protocol(src_len=4, beam=2, vocab=vocab, warmup=1, runs=2) if self.toy else Protocol(vocab=vocab)
        backend = measure_backend("torch" if self.toy else "onnxruntime")
        folder = self.out / "latency"
        profile(LatencyCollector(SearchSpace.from_yaml(self.space), protocol, folder, backend=backend, progress=False),
                samples=10 if self.toy else 100, test_samples=0 if self.toy else 100, tables=not self.toy)
        predictor, _ = fit_predictor(folder / "dataset.csv", None if self.toy else folder,
                                     kind="linear" if self.toy else "auto")
        predictor.save(folder / "predictor.json")
        return {"predictor": str(folder / "predictor.json"), "summary": f"profiled here: {folder}"}

    def search(self) -> dict:
        from hat.latency import LatencyPredictor
        from hat.latency.runtime_info import describe_runtime
        from hat.search import EvolutionarySearch, InheritedLossFitness
        from hat.search.outputs import write_search_outputs
        from hat.space import SearchSpace

        space = SearchSpace.from_yaml(self.space)
        predictor = LatencyPredictor.load(self.runner.results["latency"]["predictor"])
        constraints = self.constraints or default_constraints(space, predictor, self.toy)
        fitness = InheritedLossFitness(self.runner.results["supernet"]["checkpoint"], self.data, valid_subset=500)
        settings = self.r["search"]
        search = EvolutionarySearch(space, fitness, predictor, constraints, population=settings["population"],
                                    parents=settings["parents"], mutations=settings["mutations"],
                                    crossovers=settings["crossovers"], mutation_prob=settings["mutation_prob"],
                                    iterations=settings["iterations"], state_path=self.out / "search" / "state.json")
        (self.out / "search").mkdir(parents=True, exist_ok=True)
        result = search.run(resume=(self.out / "search" / "state.json").is_file())
        summary = write_search_outputs(result, self.out / "search", runtime=predictor.runtime, space=space)
        configs = {f"{r['constraint_ms']:g}ms": str(self.out / "search" / r["config_file"]) for r in summary["results"]}
        return {"constraints": constraints, "configs": configs, "runtime": describe_runtime(predictor.runtime),
                "summary": f"{len(configs)} SubTransformers under {constraints} ms"}

    def train(self) -> dict:
        from hat.training import train

        checkpoints = {}
        for name, config in self.runner.results["search"]["configs"].items():
            options = dict(self.r["subtransformer"])
            checkpoints[name] = str(train(space=self.space, data=self.data, save_dir=self.out / "train" / name,
                                          subtransformer_config=config, options=options))
        return {"checkpoints": checkpoints, "summary": f"{len(checkpoints)} SubTransformers trained from scratch"}

    def average(self) -> dict:
        from hat.checkpoints import average_checkpoints, epoch_checkpoints

        n, averaged = self.r["average_last"], {}
        for name, last in self.runner.results["train"]["checkpoints"].items():
            averaged[name] = (str(average_checkpoints(epoch_checkpoints(Path(last).parent, n),
                                                      Path(last).with_name("averaged.pt"))) if n else last)
        return {"checkpoints": averaged, "summary": f"last {n} checkpoints averaged" if n else "no averaging"}

    def evaluate(self) -> dict:
        from hat.evaluation import BleuScoring, evaluate

        g, models = self.r["generation"], {}
        for name, checkpoint in self.runner.results["average"]["checkpoints"].items():
            result = evaluate(checkpoint, self.data, split="test", beam=g["beam"], lenpen=g["lenpen"],
                              scoring=BleuScoring(style=self.r["bleu"]))
            models[name] = {"bleu": result["bleu"], "loss": result["loss"], "archid": result["archid"],
                            "checkpoint": checkpoint}
        return {"models": models, "summary": ", ".join(f"{n}: BLEU {m['bleu']:.2f}" for n, m in models.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="experiments/recipes/TASK.yaml")
    corpus = parser.add_mutually_exclusive_group(required=True)
    corpus.add_argument("--raw", type=Path, help="folder with {train,valid,test}.{SRC,TGT}")
    corpus.add_argument("--downloads", type=Path, help="folder with the downloaded corpus files the recipe names")
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    parser.add_argument("--predictor", type=Path, help="latency predictor of the target device (default: profile here)")
    parser.add_argument("--constraint", type=float, nargs="+", help="latency constraints in ms")
    parser.add_argument("--toy", action="store_true", help="every stage at toy scale (for a CPU test)")
    args = parser.parse_args(argv)
    from hat.logs import log_file, setup_console

    setup_console()
    args.out.mkdir(parents=True, exist_ok=True)
    from hat.errors import HatError

    with log_file(args.out / "recipe.log", console_shows=("recipe",)) as detail:
        log.info("recipe %s in %s; the full log is %s", args.recipe.stem, args.out, detail)
        try:
            results = Recipe(load_recipe(args.recipe, args.toy), args.raw, args.out, args.predictor, args.constraint,
                             args.toy, args.downloads).run()
        except HatError as err:
            print(f"recipe: error: {err}", file=sys.stderr)
            return 2
    for name, model in results["models"].items():
        print(f"<= {name} ({results['runtime']}): BLEU {model['bleu']:.2f} -> {model['checkpoint']}")
    print(f"results: {args.out / 'RESULTS.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
