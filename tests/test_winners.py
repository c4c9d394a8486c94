"""The search's winners are measured; a predictor that under-estimates them is refitted and the search re-run."""
from __future__ import annotations

import numpy as np

from hat.latency import LatencyCollector, LatencyDataset, Protocol
from hat.pipeline import best_candidates, search_with_measured_winners
from hat.search import EvolutionarySearch
from hat.search.store import SearchStore
from hat.space import SubTransformerConfig

PROTOCOL = Protocol(src_len=4, beam=2, vocab=50, warmup=1, runs=3, threads=1, max_runs=3)


def true_ms(config: dict) -> float:
    """The target's latency: width and depth cost time; wide decoder FFNs cost 30% more than they look."""
    ffn = sum(config["decoder_ffn_dims"][:config["decoder_layers"]]) / 256
    base = 1.0 + 0.5 * config["decoder_layers"] + 0.2 * ffn + sum(config["encoder_ffn_dims"]) / 768
    return base * (1.3 if max(config["decoder_ffn_dims"][:config["decoder_layers"]]) == 256 else 1.0)


class TargetRunner:
    """Fake measurements of the target: ``true_ms`` split half and half over encoder and decoder."""

    def __init__(self) -> None:
        self.measured: list[str] = []

    def __call__(self, worker, protocol, payload):
        if not payload["items"]:
            return {"device": {"backend": "torch", "threads": 1}, "results": []}
        results = []
        for item in payload["items"]:
            half = true_ms(item["config"]) / 2
            stats = {"median": half, "mean": half, "std": 0.0, "iqr": 0.0, "n": 3, "value": half}
            results.append({"encoder": dict(stats), "decoder": dict(stats)})
        self.measured += [SubTransformerConfig.from_dict(i["config"]).archid for i in payload["items"][:-1]]
        return {"device": {}, "results": results}


class ScaledPredictor:
    """Predicts ``true_ms`` exactly, except for the configs ``blind`` to the wide-FFN cost (unless refitted)."""

    def __init__(self, knows_ffn_cost: bool) -> None:
        self.knows = knows_ffn_cost

    def predict(self, configs):
        return np.array([true_ms(c.to_dict(include_space=False)) / (1.0 if self.knows else self._blind(c))
                         for c in configs])

    @staticmethod
    def _blind(config) -> float:
        return 1.3 if max(config.decoder_ffn_dims[:config.decoder_layers]) == 256 else 1.0

    def predict_dataset(self, data: LatencyDataset):
        return self.predict(data.configs)

    def labels(self, data: LatencyDataset):
        return data.total_ms


def fitness(config) -> float:
    """Bigger is better, as validation loss usually is."""
    return 10.0 - sum(config.decoder_ffn_dims[:config.decoder_layers]) / 256 - config.decoder_layers


def test_winners_off_their_prediction_are_measured_the_predictor_refitted_and_the_search_rerun(tiny_space, tmp_path):
    runner = TargetRunner()
    collector = LatencyCollector(tiny_space, PROTOCOL, tmp_path, runner=runner, chunk_size=4, progress=False)
    collector.collect_dataset(6, seed=0)
    store = SearchStore(tmp_path / "scored.jsonl")
    refits: list[int] = []

    def run_search(predictor, round_):
        return EvolutionarySearch(tiny_space, fitness, predictor, [3.5], seed=0, population=12, parents=4,
                                  mutations=4, crossovers=4, iterations=4, store=store,
                                  state_path=tmp_path / f"round{round_}.json").run(resume=True)

    def refit(round_):
        refits.append(round_)
        return ScaledPredictor(knows_ffn_cost=True)

    before = len(runner.measured)
    predictor, result, rounds = search_with_measured_winners(run_search, refit, ScaledPredictor(False), collector,
                                                             rounds=2, top=3, tolerance=0.03)
    assert refits == [1] and len(rounds) == 2
    # round 0's winners looked 1.3x faster than they are: the search had picked what the predictor got wrong
    assert rounds[0]["worst_error"] < -0.2 and rounds[0]["best_errors"][0] < -0.2
    assert abs(rounds[1]["worst_error"]) < 1e-3 and rounds[1]["best"] != rounds[0]["best"]
    assert result.results[0].best.latency_ms <= 3.5
    assert true_ms(result.results[0].best.config.to_dict(include_space=False)) <= 3.5 + 1e-6
    data = LatencyDataset.load(tmp_path / "dataset.csv")
    new = set(runner.measured[before:])
    assert len(data) == 6 + len(new) and len(new) > rounds[0]["measured"]  # both rounds' winners were added
    assert {c.archid for c in best_candidates(result, 3)} <= {c.archid for c in data.configs}
    # a run resumed from the same files measures nothing again
    measured = len(runner.measured)
    search_with_measured_winners(run_search, refit, ScaledPredictor(False), collector, rounds=2, top=3, tolerance=0.03)
    assert len(runner.measured) == measured
