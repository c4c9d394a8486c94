"""Multi30k En->De on real text: HAT end to end, against baselines trained the same way (issue 7).

    python experiments/multi30k.py --data ../shared/data/multi30k --out runs/multi30k [--quick]

Stages (each recorded in OUT/stages.json; re-running skips finished ones):
  prepare    joint sentencepiece vocabulary + fairseq binarization (train / val / test_2016_flickr)
  supernet   SuperTransformer training on search_spaces/multi30k_cpu.yaml
  profile    latency tables + end-to-end samples of this CPU (torch), predictor fitted on them
  search     evolutionary search for three latency constraints (inherited-weight validation loss)
  train      each found SubTransformer trained from scratch (HAT) and fine-tuned from inherited
             weights; baselines: the largest and the smallest SubTransformer, and fairseq's stock
             `transformer` of the largest SubTransformer's size, all with the same budget (the
             largest is fine-tuned too, the baseline of the fine-tuned models)
  measure    BLEU (sacreBLEU, beam 5) on test_2016_flickr, latency of every model on onnxruntime
             (batch 1, beam 5, 30 source tokens; every architecture timed in the same rounds, in
             rotating order, in several passes; each keeps its median pass)
Every run ends by rewriting OUT/RESULTS.md (table; the goal against the largest SubTransformer
and against the stock transformer) and OUT/bleu_vs_latency.png from the measured rows.
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

from hat.io import atomic_write_text
from hat.stages import StageRunner

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "multi30k_cpu.yaml"
log = logging.getLogger("multi30k")
# fairseq's legacy `transformer` stores its options as an argparse.Namespace, which torch's
# weights-only loader refuses (so fairseq could neither resume nor generate from it). That class
# only holds attributes, so it is allowed, in the processes that train and decode the stock model
# this script trained, and nothing else is.
ALLOW_NAMESPACE = "import argparse, sys, torch; torch.serialization.add_safe_globals([argparse.Namespace]);"


def stock_updates(checkpoint: Path) -> int:
    """Updates done by the stock fairseq model's checkpoint (0 when there is none)."""
    import argparse

    import torch

    if not checkpoint.is_file():
        return 0
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return int(((state.get("optimizer_history") or [{}])[-1]).get("num_updates", 0))


@dataclasses.dataclass
class Budget:
    """How much of everything. The default is the budget of the run in BENCHMARKS.md ("Multi30k").

    Measured there, on 2 CPU cores (0.43-0.97 updates/s at 4,096 tokens per update, 4k joint
    vocabulary): SuperTransformer 1,500 updates 29 min; profiling and search 8 min; 5 models x 750
    updates from scratch ~1.5 h; 4 x 400 fine-tuning updates 45 min; measuring ~5 min: about 3 h,
    plus the stock fairseq transformer's 750 updates (reused from an earlier run there, so not
    timed; ~20-30 min at those speeds). HAT trains for 40k updates on GPUs; raise budgets with
    --set on bigger machines.
    """

    vocab: int = 4000
    supernet_updates: int = 1500
    scratch_updates: int = 750
    finetune_updates: int = 400
    scratch_warmup: int = 50  # warm-up updates of from-scratch training; 0: a fifth of scratch_updates
    max_tokens: int = 4096
    samples: int = 60
    test_samples: int = 20
    iterations: int = 10
    population: int = 30
    valid_subset: int = 200
    timing_passes: int = 5  # passes of 40 interleaved onnxruntime rounds; each model's latency is its median pass
    stock_arch: int = 0  # 1: also train the stock transformer's architecture with HAT (a diagnostic baseline)


# A smoke run of every stage (its scores mean little): 52 min on 2 cores here (BENCHMARKS.md).
QUICK = Budget(vocab=4000, supernet_updates=300, scratch_updates=100, finetune_updates=50, scratch_warmup=0,
               samples=16, test_samples=6, iterations=2, population=12, valid_subset=100, timing_passes=2)


class Experiment:
    def __init__(self, data: Path, out: Path, budget: Budget, threads: int, workers: int = 2) -> None:
        self.raw, self.out, self.b, self.threads, self.workers = data, out, budget, threads, workers
        self.out.mkdir(parents=True, exist_ok=True)
        self.runner = StageRunner(out / "stages.json", log, {"budget": dataclasses.asdict(budget), "threads": threads})
        self.stages = self.runner.results
        self.bin = out / "data-bin"

    def run(self) -> None:
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("prepare", self.prepare), ("supernet", self.supernet), ("profile", self.profile),
            ("search", self.search), ("train", self.train_models), ("measure", self.measure),
        ]
        self.runner.run(steps)
        self.write_results(self.stages["measure"]["rows"])  # rebuilt from the cached rows on every run

    def train_options(self, updates: int, warmup: int = 0) -> dict:
        return {"max-update": updates, "max-tokens": self.b.max_tokens, "lr": 1e-3,
                "warmup-updates": warmup or min(4000, updates // 5),
                "dropout": 0.2, "log-interval": 50, "no-epoch-checkpoints": True, "keep-last-epochs": 1,
                "num-workers": 0, "validate-interval-updates": max(updates // 10, 50)}

    def prepare(self) -> dict:
        from hat.data.prepare import prepare_data

        for name in ("train", "val", "test_2016_flickr"):
            for lang in ("en", "de"):
                if not (self.raw / f"{name}.{lang}").is_file():
                    raise SystemExit(f"{self.raw / f'{name}.{lang}'}: not found (pass --data with the Multi30k folder)")
        prepare_data(src="en", tgt="de", train=self.raw / "train", valid=self.raw / "val",
                     test=self.raw / "test_2016_flickr", out=self.bin, vocab_size=self.b.vocab, workers=2)
        return {"vocab": sum(1 for _ in (self.bin / "dict.en.txt").open()) + 4}

    def supernet(self) -> dict:
        from hat.training import train

        last = train(space=SPACE, data=self.bin, save_dir=self.out / "supernet",
                     options=self.train_options(self.b.supernet_updates))
        return {"checkpoint": str(last.with_name("checkpoint_best.pt"))}

    def profile(self) -> dict:
        from hat.export.ort_backend import OnnxBackend
        from hat.latency import LatencyCollector, LatencyDataset, Protocol
        from hat.pipeline import fit_predictor, profile
        from hat.space import SearchSpace

        space = SearchSpace.from_yaml(SPACE)
        protocol = Protocol(vocab=self.stages["prepare"]["vocab"], warmup=2, runs=6, threads=self.threads)
        # the runtime the models deploy on: every constraint below is onnxruntime fp32 milliseconds
        collector = LatencyCollector(space, protocol, self.out / "latency", backend=OnnxBackend("fp32"))
        profile(collector, self.b.samples, self.b.test_samples)
        predictor, _ = fit_predictor(self.out / "latency" / "dataset.csv", self.out / "latency")
        predictor.save(self.out / "predictor.json")
        return {"predictor": predictor.kind, "test": predictor.evaluate(LatencyDataset.load(self.out / "latency" / "test.csv"))}

    def search(self) -> dict:
        from hat.latency import LatencyPredictor
        from hat.pipeline import feasible_range
        from hat.search import EvolutionarySearch, InheritedLossFitness
        from hat.search.evaluators import ProcessPoolEvaluator
        from hat.search.outputs import write_search_outputs
        from hat.space import SearchSpace

        space = SearchSpace.from_yaml(SPACE)
        predictor = LatencyPredictor.load(self.out / "predictor.json")
        fitness = InheritedLossFitness(self.stages["supernet"]["checkpoint"], self.bin, valid_subset=self.b.valid_subset,
                                       threads=self.threads)
        low, high = feasible_range(space, predictor)
        constraints = [round(low + q * (high - low), 1) for q in (0.15, 0.3, 0.5)]
        folder = self.out / "search"
        folder.mkdir(exist_ok=True)
        p = self.b.population
        evaluator = ProcessPoolEvaluator(fitness, self.workers) if self.workers > 1 else None
        search = EvolutionarySearch(space, fitness, predictor, constraints, population=p, parents=p // 5,
                                    mutations=2 * p // 5, crossovers=2 * p // 5, iterations=self.b.iterations,
                                    evaluator=evaluator, state_path=folder / "state.json")
        try:
            result = search.run(resume=(folder / "state.json").is_file())
        finally:
            if evaluator is not None:
                evaluator.close()
        summary = write_search_outputs(result, folder, runtime=predictor.runtime, space=space)
        return {"constraints": constraints, "configs": {f"{r['constraint_ms']:g}ms": str(folder / r["config_file"])
                                                        for r in summary["results"]}}

    def train_models(self) -> dict:
        from hat.space import SearchSpace
        from hat.training import train

        space = SearchSpace.from_yaml(SPACE)
        configs = dict(self.stages["search"]["configs"])
        largest = space.largest()
        # 'stock-arch': the stock transformer's architecture (the largest, attending to the last
        # encoder layer only) trained by HAT, which separates HAT's training from fairseq's
        stock_arch = dataclasses.replace(largest, decoder_ende_attn=(-1,) * largest.decoder_layers)
        for name, config in (("largest", largest), ("smallest", space.smallest()), ("stock-arch", stock_arch)):
            path = self.out / "search" / f"{name}.yaml"
            config.to_yaml(path)  # stock-arch.yaml is also the stock transformer's export, so always written
            if name != "stock-arch" or self.b.stock_arch:
                configs[name] = str(path)
        checkpoints = {}
        for name, config in configs.items():
            scratch = self.out / "models" / f"{name}-scratch"
            train(space=SPACE, data=self.bin, save_dir=scratch, subtransformer_config=config,
                  options=self.train_options(self.b.scratch_updates, self.b.scratch_warmup))
            checkpoints[f"{name} (scratch)"] = {"checkpoint": str(scratch / "checkpoint_best.pt"), "config": config}
            if name.endswith("ms") or name == "largest":  # the largest too: a baseline for the fine-tuned ones
                tuned = self.out / "models" / f"{name}-finetuned"
                train(space=SPACE, data=self.bin, save_dir=tuned, subtransformer_config=config,
                      restore_file=self.stages["supernet"]["checkpoint"], reset_optimizer=True,
                      options=self.train_options(self.b.finetune_updates))
                checkpoints[f"{name} (fine-tuned)"] = {"checkpoint": str(tuned / "checkpoint_best.pt"), "config": config}
        checkpoints["fairseq transformer"] = self.stock_transformer(largest)
        return {"models": checkpoints}

    def stock_transformer(self, largest) -> dict:
        save = self.out / "models" / "fairseq-transformer"
        options = self.train_options(self.b.scratch_updates, self.b.scratch_warmup)
        result = {"checkpoint": str(save / "checkpoint_best.pt"), "config": None, "stock": True}
        if stock_updates(save / "checkpoint_last.pt") >= options["max-update"]:
            return result  # done (fairseq would resume it and take one more update)
        from hat.training import stock_transformer_argv

        argv = [str(self.bin), "--save-dir", str(save), *stock_transformer_argv(largest),
                "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr-scheduler", "inverse_sqrt",
                "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--cpu"]
        for key, value in options.items():
            argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
        subprocess.run([sys.executable, "-c", f"{ALLOW_NAMESPACE} from hat.training import parse_train_argv, "
                        "run_fairseq_train; run_fairseq_train(parse_train_argv(sys.argv[1:]))", *argv], check=True)
        return result

    def measure(self) -> dict:
        """BLEU and an onnxruntime export of every model (one at a time), then the latency of all
        architectures timed in the same rounds, so a slow spell of the machine falls on all of them alike."""
        done = self.out / "measured"
        done.mkdir(exist_ok=True)
        rows = [self.quality(name, entry, done) for name, entry in self.stages["train"]["models"].items()]
        latency_file = done / "latency.json"
        latencies = json.loads(latency_file.read_text()) if latency_file.is_file() else {}
        if set(latencies) != {r["model"] for r in rows} or any("passes_ms" not in v for v in latencies.values()):
            latencies = self.time_exports(rows)  # not measured yet, not these models, or by the one-pass protocol
            atomic_write_text(latency_file, json.dumps(latencies, indent=1))
        for row in rows:
            row.update(latencies[row["model"]])
        return {"rows": rows}

    def time_exports(self, rows: list[dict]) -> dict[str, dict]:
        """onnxruntime latency of every row: one export per distinct architecture (a scratch model and
        its fine-tuned twin run the same graph), all timed in the same rounds, in
        ``timing_passes`` passes of 40 rounds; each row gets its architecture's median pass."""
        from hat.export.runtime import load_runtime
        from hat.export.verify import measure_interleaved, runtime_workload
        from hat.latency import Protocol

        protocol = Protocol(vocab=self.stages["prepare"]["vocab"], warmup=3, runs=40, threads=self.threads)
        first = {}
        for r in rows:
            first.setdefault(r["config"], r["model_dir"])
        log.info("timing %d architectures (%d models) interleaved: %d passes of %d rounds",
                 len(first), len(rows), self.b.timing_passes, protocol.runs)
        workloads = {arch: runtime_workload(load_runtime(Path(model_dir), "onnxruntime", threads=self.threads), protocol)
                     for arch, model_dir in first.items()}
        passes = [measure_interleaved(workloads, protocol) for _ in tqdm(range(self.b.timing_passes), desc="timing passes")]
        combined = combine_passes(passes)
        return {r["model"]: combined[r["config"]] for r in rows}

    def quality(self, name: str, entry: dict, done: Path) -> dict[str, Any]:
        """BLEU on test_2016_flickr and the onnxruntime export of one trained model (cached in ``done``)."""
        from hat.evaluation import evaluate
        from hat.export.model_dir import export_model
        from hat.space import SubTransformerConfig

        slug = name.replace(" ", "_").replace("(", "").replace(")", "")
        if (done / f"{slug}.json").is_file():  # measured before an interruption
            return json.loads((done / f"{slug}.json").read_text())
        row: dict[str, Any] = {"model": name, "model_dir": str(self.out / "exported" / slug)}
        if entry.get("stock"):
            row["bleu"] = self.stock_bleu(entry["checkpoint"])
            # HAT does not export fairseq's own model; its architecture is the largest
            # SubTransformer with standard encoder-decoder attention (last encoder layer), so
            # that architecture is exported (supernet weights: latency does not depend on them)
            export_model(self.stages["supernet"]["checkpoint"], self.out / "search" / "stock-arch.yaml", self.bin,
                         row["model_dir"], onnx=True)
            row["config"] = "fairseq transformer (latency of the same architecture)"
        else:
            config = SubTransformerConfig.from_yaml(entry["config"])
            row["bleu"] = evaluate(entry["checkpoint"], self.bin, config, split="test", beam=5)["bleu"]
            model_dir = export_model(entry["checkpoint"], entry["config"], self.bin, row["model_dir"], onnx=True)
            row["config"] = config.summary()
            row["parameters"] = json.loads((model_dir / "manifest.json").read_text())["parameters"]
        atomic_write_text(done / f"{slug}.json", json.dumps(row))
        return row

    def stock_bleu(self, checkpoint: str) -> float:
        """BLEU of the stock fairseq model through fairseq-generate, detokenized like ours."""
        import sacrebleu

        from hat.evaluation import sentencepiece_decoder

        code = f"{ALLOW_NAMESPACE} from fairseq_cli.generate import cli_main; sys.argv[0] = 'fairseq-generate'; cli_main()"
        proc = subprocess.run([sys.executable, "-c", code, str(self.bin), "--path", checkpoint, "--gen-subset", "test",
                               "--beam", "5", "--batch-size", "64", "--max-len-a", "1.2", "--max-len-b", "10", "--cpu"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"fairseq-generate failed on {checkpoint}:\n{proc.stderr[-2000:]}")
        detok = sentencepiece_decoder(self.bin)
        hyps, refs = {}, {}
        for line in proc.stdout.splitlines():
            if line.startswith("H-"):
                sid, _, text = line[2:].split("\t", 2)
                hyps[int(sid)] = detok(text.split())
            elif line.startswith("T-"):
                sid, text = line[2:].split("\t", 1)
                refs[int(sid)] = detok(text.split())
        order = sorted(hyps)
        return sacrebleu.metrics.BLEU().corpus_score([hyps[i] for i in order], [[refs[i] for i in order]]).score

    def write_results(self, rows: list[dict]) -> None:
        largest = next((r for r in rows if r["model"] == "largest (scratch)"), None)
        lines = ["| model | BLEU (test_2016_flickr) | onnxruntime latency (ms) | faster than largest | parameters | architecture |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            latency = f"{r['latency_ms']:.1f}" if r.get("latency_ms") else "n/a"
            speedup = f"{largest['latency_ms'] / r['latency_ms']:.2f}x" if largest and r.get("latency_ms") else "n/a"
            params = f"{r['parameters']:,}" if r.get("parameters") else "n/a"
            architecture = r.get("config", "").replace("|", "\\|")  # a config summary has a '|' between encoder and decoder
            lines.append(f"| {r['model']} | {r['bleu']:.2f} | {latency} | {speedup} | {params} | {architecture} |")
        stock = next((r for r in rows if r["model"] == "fairseq transformer"), None)
        for kind in ("scratch", "fine-tuned"):
            searched = [r for r in rows if r["model"].endswith(f"ms ({kind})") and r.get("latency_ms")]
            for base in (next((r for r in rows if r["model"] == f"largest ({kind})"), None), stock):
                if base and base.get("latency_ms"):
                    lines.append("\n" + goal_line(kind, searched, base))
        atomic_write_text(self.out / "RESULTS.md", "\n".join(lines) + "\n")
        self.plot(rows)
        print("\n".join(lines))

    def plot(self, rows: list[dict]) -> None:
        from hat.plots import pyplot

        plt = pyplot()
        if plt is None:
            return
        fig, ax = plt.subplots(figsize=(7, 4.5))
        points = [r for r in rows if r.get("latency_ms")]
        boxes: list[tuple[float, float, float, float]] = []  # labels drawn so far, in approximate points
        for r in sorted(points, key=lambda r: (r["latency_ms"], r["bleu"])):
            marker = "*" if "ms (" in r["model"] else "o"
            ax.scatter(r["latency_ms"], r["bleu"], marker=marker, s=60 if marker == "*" else 30)
            offset = label_offset(r, points, boxes)
            ax.annotate(r["model"], (r["latency_ms"], r["bleu"]), fontsize=7, xytext=(4, offset), textcoords="offset points")
        ax.set_xlabel(f"onnxruntime latency (ms, batch 1, beam 5, 30 tokens, {self.threads} thread(s))")
        ax.set_ylabel("BLEU (test_2016_flickr)")
        ax.set_title("Multi30k En-De: searched SubTransformers (*) and baselines")
        fig.tight_layout()
        fig.savefig(self.out / "bleu_vs_latency.png", dpi=120)
        plt.close(fig)


def label_offset(row: dict, points: list[dict], boxes: list[tuple[float, float, float, float]]) -> int:
    """Vertical offset (points) for ``row``'s label that overlaps the fewest labels placed so far
    (their boxes, appended to ``boxes``). Positions are mapped to an axes of ~420 x 250 points."""
    xs, ys = [r["latency_ms"] for r in points], [r["bleu"] for r in points]
    scale_x = 420 / max(max(xs) - min(xs), 1e-9)
    scale_y = 250 / max(max(ys) - min(ys), 1e-9)
    x, y = (row["latency_ms"] - min(xs)) * scale_x + 4, (row["bleu"] - min(ys)) * scale_y
    width = 3.6 * len(row["model"])

    def overlap(box: tuple[float, float, float, float]) -> float:
        return sum(max(0.0, min(box[2], b[2]) - max(box[0], b[0])) * max(0.0, min(box[3], b[3]) - max(box[1], b[1]))
                   for b in boxes)

    candidates = [(x, y + dy, x + width, y + dy + 7, dy) for dy in (3, -10, 12, -19, 21)]
    best = min(candidates, key=lambda c: overlap(c[:4]))
    boxes.append(best[:4])
    return best[4]


def combine_passes(passes: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One latency per workload from several timing passes (``measure_interleaved`` results): the
    median pass (encoder + decoder trimmed means; the lower middle one for an even count), so one
    slow or fast spell cannot set it. The per-pass totals are kept in ``passes_ms``."""
    combined = {}
    for name in passes[0]:
        totals = [p[name]["encoder"].mean + p[name]["decoder"].mean for p in passes]
        middle = sorted(range(len(passes)), key=lambda i: totals[i])[(len(passes) - 1) // 2]
        chosen = passes[middle][name]
        combined[name] = {"latency_ms": totals[middle], "encoder_ms": chosen["encoder"].mean,
                          "decoder_ms": chosen["decoder"].mean, "decoder_iqr_ms": chosen["decoder"].iqr,
                          "passes_ms": totals}
    return combined


def speedup_range(base: dict, row: dict) -> str:
    """' (per pass 2.55-2.70x)': the spread of base/row latency over the timing passes, when recorded."""
    if not (base.get("passes_ms") and row.get("passes_ms")) or len(base["passes_ms"]) != len(row["passes_ms"]):
        return ""
    ratios = [b / r for b, r in zip(base["passes_ms"], row["passes_ms"])]
    return f" (per pass {min(ratios):.2f}-{max(ratios):.2f}x)"


def goal_line(kind: str, searched: list[dict], base: dict) -> str:
    """The issue's goal against one baseline: the best searched model (``kind`` track) at >= 2.5x
    lower latency than ``base`` must be within 0.5 BLEU of it."""
    fast = [r for r in searched if base["latency_ms"] / r["latency_ms"] >= 2.5]
    if not fast:
        return f"Goal ({kind} vs {base['model']}): no searched model is >= 2.5x faster."
    best = max(fast, key=lambda r: r["bleu"])
    verdict = "met" if best["bleu"] >= base["bleu"] - 0.5 else "not met"
    return (f"Goal ({kind} vs {base['model']}; within 0.5 BLEU at >= 2.5x lower latency): '{best['model']}' "
            f"{best['bleu']:.2f} BLEU vs {base['bleu']:.2f} ({best['bleu'] - base['bleu']:+.2f}) at "
            f"{base['latency_ms'] / best['latency_ms']:.2f}x lower latency{speedup_range(base, best)}: {verdict}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "multi30k")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "multi30k")
    parser.add_argument("--quick", action="store_true", help="a reduced smoke run of every stage (its scores mean little)")
    parser.add_argument("--threads", type=int, default=1, help="threads per latency measurement / fitness worker")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers for the search's fitness evaluations")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"override one budget field ({', '.join(f.name for f in dataclasses.fields(Budget))})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    budget = QUICK if args.quick else Budget()
    fields = {f.name for f in dataclasses.fields(Budget)}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in fields or not value.isdigit():
            parser.error(f"--set {item}: expected FIELD=INTEGER with FIELD one of {sorted(fields)}")
        budget = dataclasses.replace(budget, **{key: int(value)})
    if budget.stock_arch not in (0, 1):
        parser.error(f"--set stock_arch={budget.stock_arch}: expected 0 (skip) or 1 (train it)")
    if budget.timing_passes < 1:
        parser.error("--set timing_passes=0: at least one timing pass is needed")
    log.info("budget: %s", budget)
    Experiment(args.data, args.out, budget, args.threads, args.workers).run()


if __name__ == "__main__":
    main()
