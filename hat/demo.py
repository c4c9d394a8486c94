"""``hat demo``: the whole pipeline on the embedded synthetic corpus, sized for a 2-core CPU.

synthetic corpus -> data-bin -> tiny SuperTransformer -> latency tables and end-to-end samples of
this CPU -> predictor -> evolutionary search under three constraints -> ONNX export (fp32, int8)
-> translations, BLEU and measured-vs-predicted latency -> runs/demo/REPORT.md.
Each stage records its result in ``stages.json``; re-running skips finished stages.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from hat.search.evolution import EvolutionSettings
from hat.shipped import shipped_dir
from hat.stages import StageRunner

log = logging.getLogger("hat.demo")
SPACE = shipped_dir("search_spaces") / "tiny.yaml"


@dataclass
class DemoSettings:
    out: Path = Path("runs/demo")
    space: Path = SPACE
    train_pairs: int = 20000
    lexicon_fraction: float = 0.5
    updates: int = 1500
    max_tokens: int = 4096
    lr: float = 3e-3
    threads: int = 1
    precision: str = "fp32"  # the deployed onnxruntime weights the demo profiles and searches under
    samples: int = 60
    test_samples: int = 20
    runs: int = 8
    constraint_quantiles: tuple[float, ...] = (0.25, 0.5, 0.75)
    search: EvolutionSettings = EvolutionSettings(population=50, parents=10, mutations=20, crossovers=20, iterations=10)
    winner_rounds: int = 0  # searches again, after measuring the winners and refitting, at most this often
    winners_measured: int = 3  # per constraint: the best candidates measured after each search
    winner_tolerance: float = 0.03  # stop once each constraint's chosen model is this close to its prediction
    verify_passes: int = 7  # the median of this many verify passes per model, each beside the reference, in turns
    valid_subset: int = 200
    seed: int = 1

    @classmethod
    def quick(cls, **overrides) -> "DemoSettings":
        """A smaller run: fewer pairs, updates, measured models and generations."""
        search = EvolutionSettings(population=16, parents=4, mutations=6, crossovers=6, iterations=3)
        return cls(**{**dict(train_pairs=5000, updates=300, samples=24, test_samples=8, runs=4, search=search,
                             verify_passes=3, valid_subset=100), **overrides})


class Demo:
    def __init__(self, settings: DemoSettings) -> None:
        self.s = settings
        self.out = Path(settings.out)
        self.out.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in asdict(settings).items() if k != "out"}
        self.runner = StageRunner(self.out / "stages.json", log, settings)
        self.stages = self.runner.results
        self._check_stage_record()

    def _check_stage_record(self) -> None:
        """The fields later stages read from ``stages.json``, checked before any stage runs."""
        from hat.io import file_content, finite

        with file_content(self.runner.state_file, "stage record"):
            if "data" in self.stages:
                finite(self.stages["data"]["vocab"], "data.vocab", positive=True)
            for result in self.stages.get("search", {}).get("results", []):
                finite(result["constraint_ms"], "search.results.constraint_ms", positive=True)
                if Path(result["config_file"]).name != result["config_file"]:
                    raise ValueError(f"config_file {result['config_file']!r} is not a file name")
            if "search" in self.stages and not isinstance(self.stages["search"]["results"], list):
                raise ValueError("search.results must be a list")
            for path in self.stages.get("export", {}).get("models", {}).values():
                if not isinstance(path, str):
                    raise ValueError("export.models must map names to folders")

    # paths
    @property
    def data(self) -> Path:
        return self.out / "data" / "bin"

    @property
    def checkpoint(self) -> Path:
        return self.out / "supernet" / "checkpoint_best.pt"

    @property
    def latency_dir(self) -> Path:
        return self.out / "latency"

    @property
    def predictor(self) -> Path:
        """The predictor the chosen models are verified against: refitted with the measured winners."""
        return self.out / "predictor.json"

    def round_predictor(self, round_: int) -> Path:
        return self.latency_dir / f"predictor_round{round_}.json"

    def run(self) -> Path:
        stages: list[tuple[str, Callable[[], dict]]] = [
            ("data", self.stage_data), ("train", self.stage_train), ("profile", self.stage_profile),
            ("predictor", self.stage_predictor), ("search", self.stage_search), ("export", self.stage_export),
            ("evaluate", self.stage_evaluate), ("report", self.stage_report),
        ]
        from hat.logs import log_file

        total = time.time()
        with log_file(self.out / "demo.log", console_shows=("hat.demo",)) as detail:
            log.info("hat demo in %s; the full log is %s", self.out, detail)
            self.runner.run(stages)
        log.info("demo finished in %.1f s (this run)", time.time() - total)
        return self.out / "REPORT.md"

    def summary_lines(self) -> list[str]:
        """The chosen models in a few lines: constraint, predicted and measured latency, BLEU."""
        lines = []
        evaluate = self.stages.get("evaluate", {})
        for row in evaluate.get("models", []):
            lines.append(f"  {row['name']:>8}: predicted {row['predicted_ms']:.1f} ms, measured {row['measured_ms']:.1f} ms "
                         f"on {evaluate.get('runtime', 'onnxruntime')} (at the machine's speed "
                         f"{100 * (row.get('normalised_error') or row['relative_error']):+.1f}%), "
                         f"BLEU {row['bleu_' + self.s.precision]:.1f}")
        return lines

    # ---- stages ---------------------------------------------------------------------------------
    def stage_data(self) -> dict:
        from hat.data.prepare import prepare_data
        from hat.data.synthetic import generate_corpus

        raw = self.out / "data" / "raw"
        counts = generate_corpus(raw, train=self.s.train_pairs, valid=500, test=500, seed=self.s.seed,
                                 lexicon_fraction=self.s.lexicon_fraction)
        prepare_data(src="en", tgt="de", train=raw / "train", valid=raw / "valid", test=raw / "test", out=self.data,
                     vocab_size=1000)
        vocab = sum(1 for _ in (self.data / "dict.en.txt").open()) + 4
        return {"pairs": counts, "vocab": vocab, "summary": f"{counts['train']} synthetic pairs, vocabulary {vocab}"}

    def stage_train(self) -> dict:
        from hat.checkpoints import load_supernet
        from hat.training import train

        train(space=self.s.space, data=self.data, save_dir=self.out / "supernet",
              options={"max-update": self.s.updates, "max-tokens": self.s.max_tokens, "lr": self.s.lr,
                       "warmup-updates": 150, "dropout": 0.1, "log-interval": 100, "no-epoch-checkpoints": True,
                       "validate-interval-updates": 300, "seed": self.s.seed, "num-workers": 0})
        loaded = load_supernet(self.checkpoint)
        return {"updates": loaded.num_updates, "summary": f"{loaded.num_updates} updates"}

    def stage_profile(self) -> dict:
        from hat.latency import reference_noise
        from hat.pipeline import profile

        collector = self._collector()
        test = profile(collector, self.s.samples, self.s.test_samples, seed=self.s.seed)
        noise = reference_noise(self.latency_dir)
        return {"noise": {**noise, "steady_tolerance": collector.steady_tolerance}, "summary": f"tables + {self.s.samples}+{len(test)} SubTransformers measured "
                                           f"(reference CV {100 * noise['cv']:.1f}%, {noise['remeasured']} chunk(s) "
                                           f"measured again)"}

    def _collector(self):
        """The demo's measurements: deployed onnxruntime graphs at the demo's precision, on this CPU."""
        from hat.export.ort_backend import OnnxBackend
        from hat.latency import LatencyCollector, Protocol
        from hat.space import SearchSpace

        protocol = Protocol(src_len=30, beam=5, vocab=self.stages["data"]["vocab"], warmup=2, runs=self.s.runs,
                            threads=self.s.threads, seed=self.s.seed)
        return LatencyCollector(SearchSpace.from_yaml(self.s.space), protocol, self.latency_dir,
                                backend=OnnxBackend(self.s.precision), chunk_size=8)

    def stage_predictor(self) -> dict:
        from hat.latency import LatencyDataset
        from hat.pipeline import fit_predictor
        from hat.plots import predicted_vs_measured

        predictor, scores = fit_predictor(self.latency_dir / "dataset.csv", self.latency_dir, seed=self.s.seed)
        predictor.save(self.round_predictor(0))
        test = LatencyDataset.load(self.latency_dir / "test.csv")
        test_scores = predictor.evaluate(test)
        predicted_vs_measured(predictor.predict_dataset(test), predictor.labels(test), self.out / "predicted_vs_measured.png",
                              f"{predictor.kind} predictor, {len(test)} held-out SubTransformers")
        selection = predictor.info["selection"]
        return {"model": predictor.kind, "selection": scores, "test": test_scores,
                "folds": selection["folds"], "tolerance": selection["tolerance"],
                "summary": f"'{predictor.kind}' chosen; held-out MAPE {test_scores['mape_pct']:.1f}%, "
                           f"within ±10% {100 * test_scores['within_10pct']:.0f}%"}

    def stage_search(self) -> dict:
        """The evolution under constraints fixed from the first predictor; then the winners are measured,
        and while one is off its prediction the predictor is refitted with them and the search re-run."""
        from hat.latency import LatencyDataset, LatencyPredictor
        from hat.pipeline import feasible_range, search_with_measured_winners
        from hat.search.outputs import write_search_outputs
        from hat.space import SearchSpace

        space = SearchSpace.from_yaml(self.s.space)
        first = LatencyPredictor.load(self.round_predictor(0))
        low, high = feasible_range(space, first)
        constraints = [round(low + q * (high - low), 1) for q in self.s.constraint_quantiles]
        predictor, result, rounds = search_with_measured_winners(
            self._search_round(space, constraints), self._refit, first, self._collector(),
            rounds=self.s.winner_rounds, top=self.s.winners_measured, tolerance=self.s.winner_tolerance)
        predictor.save(self.predictor)
        summary = write_search_outputs(result, self.out / "search", runtime=predictor.runtime, space=space)
        test = predictor.evaluate(LatencyDataset.load(self.latency_dir / "test.csv"))
        return {"constraints": constraints, "feasible_range_ms": [low, high], "evaluations": result.evaluations,
                "results": summary["results"], "runtime": summary["latency_unit"], "rounds": rounds,
                "predictor_test": test,
                "summary": f"constraints {constraints} ms ({summary['latency_unit']}), {len(rounds)} search round(s), "
                           f"chosen models within {max(abs(100 * e) for e in rounds[-1]['best_errors']):.1f}% of "
                           f"prediction as profiled"}

    def _search_round(self, space, constraints: list[float]):
        """``run_search(predictor, round)``: one resumable evolution; all rounds share one store of losses."""
        from hat.search import EvolutionarySearch, InheritedLossFitness
        from hat.search.store import SearchStore

        fitness = InheritedLossFitness(self.checkpoint, self.data, valid_subset=self.s.valid_subset, seed=self.s.seed,
                                       threads=self.s.threads)
        (self.out / "search").mkdir(exist_ok=True)
        store = SearchStore(self.out / "search" / "scored.jsonl", fitness=fitness.describe(), space=space)

        def run_search(predictor, round_: int):
            state = self.out / "search" / f"round{round_}" / "state.json"
            state.parent.mkdir(exist_ok=True)
            search = EvolutionarySearch(space, fitness, predictor, constraints, seed=self.s.seed,
                                        **asdict(self.s.search), state_path=state, store=store)
            return search.run(resume=state.is_file())

        return run_search

    def _refit(self, round_: int):
        """The predictor of ``round_``: fitted on every row measured so far (read back when it exists)."""
        from hat.latency import LatencyPredictor
        from hat.pipeline import fit_predictor

        path = self.round_predictor(round_)
        if not path.is_file():
            predictor, _ = fit_predictor(self.latency_dir / "dataset.csv", self.latency_dir, seed=self.s.seed)
            predictor.save(path)
        return LatencyPredictor.load(path)

    def stage_export(self) -> dict:
        from hat.export.model_dir import export_model
        from hat.space import SearchSpace

        models = {}
        space = SearchSpace.from_yaml(self.s.space)
        largest = self.out / "search" / "largest.yaml"
        space.largest().to_yaml(largest)
        chosen = [(f"{r['constraint_ms']:g}ms", self.out / "search" / r["config_file"]) for r in self.stages["search"]["results"]]
        for name, config in chosen + [("largest", largest)]:
            target = self.out / "models" / name
            export_model(self.checkpoint, config, self.data, target, onnx=True, quantize="int8")
            models[name] = str(target)
        return {"models": models, "summary": f"{len(models)} models exported (ONNX fp32 + int8)"}

    def stage_evaluate(self) -> dict:
        """BLEU of each model at both precisions; deployed latency against the prediction (``hat verify``,
        on the predictor's runtime), and for comparison the other precision and PyTorch eager."""
        from hat.export.model_dir import read_manifest
        from hat.export.verify import median_pass, verify_model
        from hat.latency.runtime_info import describe_runtime, runtime_of

        models = self.stages["export"]["models"]
        passes: dict[str, list[dict]] = {name: [] for name in models}
        for _ in range(self.s.verify_passes):  # the models in turn, so each one's passes are spread over minutes
            for name, model_dir in models.items():
                passes[name].append(verify_model(model_dir, self.predictor))
        rows = []
        for name, model_dir in models.items():
            manifest = read_manifest(model_dir)
            report = median_pass(passes[name])
            row = {"name": name, "archid": manifest["archid"], "parameters": manifest["parameters"],
                   "flops": self._flops(model_dir, manifest),
                   "predicted_ms": report["predicted_ms"], "measured_ms": report["measured_ms"],
                   "relative_error": report["relative_error"], "machine_factor": report.get("machine_factor"),
                   "normalised_error": report.get("normalised_error"),
                   "pass_errors": [one.get("normalised_error", one["relative_error"]) for one in report.get("passes", [])]}
            row.update(self._translate_and_time(model_dir, report))
            rows.append(row)
        worst = max(abs(r["normalised_error"] if r["normalised_error"] is not None else r["relative_error"]) for r in rows)
        runtime = describe_runtime(runtime_of(json_info(self.predictor)))
        return {"models": rows, "runtime": runtime,
                "summary": f"BLEU and latency of {len(rows)} models; on {runtime} predicted vs measured within "
                           f"{100 * worst:.1f}% at the machine's speed"}

    def _flops(self, model_dir: str, manifest: dict) -> int:
        """FLOPs of an exported model as HAT counts them, at the demo space's FLOPs length."""
        from hat.space import SearchSpace, SubTransformerConfig
        from hat.space.flops import count_flops

        config = SubTransformerConfig.from_yaml(Path(model_dir) / manifest["config"])
        return count_flops(config, manifest["dims"]["qkv_dim"], SearchSpace.from_yaml(self.s.space).flops_length)

    def _translate_and_time(self, model_dir: str, report: dict) -> dict:
        """BLEU at fp32 and int8 and the latency of the runtimes the predictor was not fitted on."""
        import sacrebleu

        from hat.export.runtime import Translator, load_runtime
        from hat.export.verify import measure_runtime
        from hat.latency import Protocol

        raw = self.out / "data" / "raw"
        sources = (raw / "test.en").read_text().splitlines()
        references = (raw / "test.de").read_text().splitlines()
        protocol = Protocol(**report["protocol"])
        row: dict = {}
        for precision in ("fp32", "int8"):
            translator = Translator(model_dir, "onnxruntime", precision, threads=self.s.threads)
            hypotheses = [translator.translate(s, beam=5) for s in sources]
            # the synthetic corpus is tokenized text: sacreBLEU is told so instead of warning
            row[f"bleu_{precision}"] = sacrebleu.metrics.BLEU(force=True).corpus_score(hypotheses, [references]).score
            if precision == self.s.precision:
                row[f"measured_ort_{precision}_ms"] = report["measured_ms"]
            else:
                stats = measure_runtime(translator.runtime, protocol)
                row[f"measured_ort_{precision}_ms"] = sum(stats[p].value(protocol.statistic) for p in ("encoder", "decoder"))
            if precision == "fp32":
                row["examples"] = [{"source": s, "translation": h, "reference": r}
                                   for s, h, r in list(zip(sources, hypotheses, references))[:3]]
        stats = measure_runtime(load_runtime(model_dir, "torch", threads=self.s.threads), protocol)
        row["measured_torch_ms"] = sum(stats[p].value(protocol.statistic) for p in ("encoder", "decoder"))
        return row

    def stage_report(self) -> dict:
        from hat.demo_report import write_report

        path = write_report(self.out, self.stages, asdict(self.s))
        return {"report": str(path), "summary": f"report at {path}"}


def json_info(predictor_path: Path) -> dict:
    """A predictor file's ``info`` (what its milliseconds were measured on)."""
    from hat.latency import LatencyPredictor

    return LatencyPredictor.load(predictor_path).info


def run_demo(settings: DemoSettings | None = None) -> Path:
    return Demo(settings or DemoSettings()).run()
