from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from hat.errors import HatError
from hat.latency import LatencyDataset, LatencyPredictor
from hat.latency.features import hat_features
from hat.search import EvolutionarySearch, InheritedLossFitness, random_search
from hat.space import SearchSpace

SMALL = dict(population=20, parents=5, mutations=8, crossovers=8, iterations=4)


class ToyPredictor:
    """Latency grows with every width and depth (enough structure for the search)."""

    def predict(self, configs):
        return np.array([c.encoder_embed_dim * 0.05 + sum(c.decoder_ffn_dims) * 0.01 + 3 * c.decoder_layers
                         + sum(c.encoder_ffn_dims) * 0.005 for c in configs])


class ToyFitness:
    """Bigger is better, with an interaction the search has to find; counts its calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.seen, self.fail_after = 0, [], fail_after

    def __call__(self, config) -> float:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.seen.append(config.archid)
        return (10 - 0.02 * config.decoder_embed_dim - 0.004 * sum(config.decoder_ffn_dims)
                - 0.5 * config.decoder_layers + 0.2 * sum(v == 2 for v in config.decoder_ende_attn)
                - 0.001 * sum(config.encoder_ffn_dims))


def run(space, fitness=None, constraints=(12.0, 16.0), seed=0, **kwargs):
    search = EvolutionarySearch(space, fitness or ToyFitness(), ToyPredictor(), list(constraints), seed=seed,
                                progress=False, **{**SMALL, **kwargs})
    return search, search.run()


def test_same_seed_same_result_and_constraints_hold(tiny_space):
    (_, first), (_, second) = run(tiny_space), run(tiny_space)
    assert [r.best.archid for r in first.results] == [r.best.archid for r in second.results]
    assert first.history == second.history
    for item in first.results:
        assert item.best.latency_ms <= item.constraint_ms
        assert len(item.best_loss_per_iteration) == SMALL["iterations"] + 1
        assert all(b >= a for a, b in zip(item.best_loss_per_iteration[1:], item.best_loss_per_iteration))  # elitist
    (_, other) = run(tiny_space, seed=1)
    assert other.history != first.history


def test_duplicates_and_parents_are_never_evaluated_twice(tiny_space):
    fitness = ToyFitness()
    _, result = run(tiny_space, fitness)
    assert fitness.calls == result.evaluations == len(set(fitness.seen)) == len(result.history)
    # HAT's loop would evaluate population * (iterations + 1) per constraint.
    assert result.evaluations < 2 * SMALL["population"] * (SMALL["iterations"] + 1)
    assert sum(r.evaluations for r in result.results) == result.evaluations


def test_pareto_front_is_non_dominated(tiny_space):
    _, result = run(tiny_space)
    front = result.pareto_front()
    assert front and all(a.latency_ms <= b.latency_ms and a.loss > b.loss for a, b in zip(front, front[1:]))
    evaluated = [c for c in result.candidates.values() if c.loss is not None]
    for point in front:
        assert not any(c.latency_ms < point.latency_ms and c.loss < point.loss for c in evaluated)


def test_infeasible_constraint_is_reported_with_the_range(tiny_space):
    search = EvolutionarySearch(tiny_space, ToyFitness(), ToyPredictor(), [1.0], progress=False, **SMALL)
    with pytest.raises(HatError, match=r"below the fastest SubTransformer .* feasible range \d+\.\d+-\d+\.\d+ ms"):
        search.run()


def test_resume_after_kill_gives_the_uninterrupted_result(tiny_space, tmp_path):
    _, reference = run(tiny_space)
    state = tmp_path / "state.json"
    killed = EvolutionarySearch(tiny_space, ToyFitness(fail_after=150), ToyPredictor(), [12.0, 16.0], seed=0,
                                state_path=state, progress=False, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    assert json.loads(state.read_text())["evaluations"] > 0  # progress was saved before the kill
    with pytest.raises(HatError, match="pass resume"):
        EvolutionarySearch(tiny_space, ToyFitness(), ToyPredictor(), [12.0, 16.0], seed=0, state_path=state,
                           progress=False, **SMALL).run()
    fitness = ToyFitness()
    resumed = EvolutionarySearch(tiny_space, fitness, ToyPredictor(), [12.0, 16.0], seed=0, state_path=state,
                                 progress=False, **SMALL).run(resume=True)
    assert [r.best.archid for r in resumed.results] == [r.best.archid for r in reference.results]
    assert resumed.history == reference.history and resumed.evaluations == reference.evaluations
    assert fitness.calls < reference.evaluations  # finished work was not redone
    with pytest.raises(HatError, match="other settings"):
        EvolutionarySearch(tiny_space, ToyFitness(), ToyPredictor(), [12.0, 17.0], seed=0, state_path=state,
                           progress=False, **SMALL).run(resume=True)


def test_limits_on_other_objectives_hold_bind_and_resume(tiny_space, tmp_path):
    """A limit is a named function with a bound: every evaluated candidate and every result meets it,
    it changes what wins when it binds, and the search resumes with it."""
    from hat.search import Limit, Objective
    from hat.search.objectives import parameters
    from hat.subtransformer import ModelDims, count_parameters

    dims = ModelDims.for_space(tiny_space, 100, 100)
    _, free = run(tiny_space, constraints=(16.0,))
    free_params = count_parameters(free.results[0].best.config, dims)
    limit = Limit(parameters(dims), 0.9 * free_params)
    decoder_ffn = Limit(Objective("decoder_ffn", "units", lambda c: float(sum(c.decoder_ffn_dims))), 300)
    state = tmp_path / "state.json"
    search, limited = run(tiny_space, constraints=(16.0,), limits=[limit, decoder_ffn], state_path=state)
    best = limited.results[0].best
    assert best.objectives == {"parameters": count_parameters(best.config, dims),
                               "decoder_ffn": sum(best.config.decoder_ffn_dims)}
    assert best.archid != free.results[0].best.archid  # the limit binds
    assert all(c.objectives["parameters"] <= limit.bound and c.objectives["decoder_ffn"] <= 300
               for c in limited.candidates.values() if c.loss is not None)
    assert {"parameters", "decoder_ffn"} <= set(limited.history[0])
    resumed = EvolutionarySearch(tiny_space, ToyFitness(), ToyPredictor(), [16.0], seed=0, state_path=state,
                                 progress=False, limits=[limit, decoder_ffn], **SMALL).run(resume=True)
    assert resumed.history == limited.history
    with pytest.raises(HatError, match="other settings"):
        EvolutionarySearch(tiny_space, ToyFitness(), ToyPredictor(), [16.0], seed=0, state_path=state,
                           progress=False, limits=[limit], **SMALL).run(resume=True)
    with pytest.raises(HatError, match="parameters <= 1 parameters"):
        run(tiny_space, constraints=(16.0,), limits=[Limit(parameters(dims), 1)])


def test_store_shares_losses_between_searches_and_survives_a_torn_line(tiny_space, tmp_path):
    from hat.search.store import SearchStore

    path = tmp_path / "scored.jsonl"
    fitness = {"kind": "toy", "version": 1}
    store = SearchStore(path, fitness=fitness, space=tiny_space)
    first = ToyFitness()
    _, evolution = run(tiny_space, first, constraints=(16.0,), store=store)
    assert len(store) == first.calls == evolution.evaluations
    # random search scores only what the store does not hold, and finds what it finds alone
    plain = random_search(tiny_space, ToyFitness(), ToyPredictor(), 16.0, 30, seed=0)
    counting = ToyFitness()
    shared = random_search(tiny_space, counting, ToyPredictor(), 16.0, 30, seed=0, store=store)
    assert (shared.archid, shared.loss) == (plain.archid, plain.loss)
    assert counting.calls == len(store) - evolution.evaluations
    again = ToyFitness()
    assert random_search(tiny_space, again, ToyPredictor(), 16.0, 30, seed=0, store=store).archid == plain.archid
    assert again.calls == 0
    # a second search with the same fitness reads the journal and evaluates nothing it holds
    with path.open("a") as handle:
        handle.write('{"archid": "torn')  # a kill in the middle of a write
    reopened = SearchStore(path, fitness=fitness, space=tiny_space)
    assert len(reopened) == len(store) and path.read_text().endswith("\n")
    again = ToyFitness()
    _, repeated = run(tiny_space, again, constraints=(16.0,), store=reopened)
    assert again.calls == 0 and repeated.history == evolution.history
    with pytest.raises(HatError, match="another fitness"):
        SearchStore(path, fitness={"kind": "toy", "version": 2})
    path.write_text(path.read_text().replace('"loss": ', '"loss": "x', 1))
    with pytest.raises(HatError, match="scored.jsonl: search store has unexpected content"):
        SearchStore(path, fitness=fitness)


def test_counts_parse_with_suffixes():
    from hat.search.objectives import parse_count

    assert parse_count("20M") == 2e7 and parse_count("1.5k") == 1500 and parse_count("3e6") == 3e6
    for bad in ("", "-5", "20X", "nan", "0"):
        with pytest.raises(HatError):
            parse_count(bad)


def test_evolution_beats_random_search_with_the_same_budget(tiny_space):
    _, result = run(tiny_space, constraints=(12.0,), iterations=8)
    item = result.results[0]
    baseline = random_search(tiny_space, ToyFitness(), ToyPredictor(), 12.0, item.evaluations, seed=0)
    assert baseline.latency_ms <= 12.0
    assert item.best.loss <= baseline.loss


# ---- with a real (tiny) SuperTransformer -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory) -> Path:
    """A linear predictor fitted on a parameter-count proxy of latency (no timing needed here)."""
    space = SearchSpace.from_yaml(Path(__file__).parents[1] / "search_spaces" / "tiny.yaml")
    configs = [space.sample(seed=i) for i in range(60)]
    features = np.array([hat_features(c) for c in configs])
    total = ToyPredictor().predict(configs)
    data = LatencyDataset(features, 0.1 * total, 0.9 * total, configs, {"space": space.name,
                                                                         "space_fingerprint": space.fingerprint})
    path = tmp_path_factory.mktemp("predictor") / "p.json"
    LatencyPredictor("linear").fit(data).save(path)
    return path


def test_inherited_loss_matches_fairseq_criterion(trained, data_bin, tiny_space):
    """Our loss is fairseq's label_smoothed_cross_entropy 'loss', to the float."""
    from fairseq import checkpoint_utils

    from hat.training import load_plugin

    load_plugin()
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(trained["last"])],
                                                                    arg_overrides={"data": str(data_bin)})
    model = models[0].eval()
    config = tiny_space.sample(seed=5)
    model.set_active_subnet(config)
    task.load_dataset("valid")
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

    criterion = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    total, size = 0.0, 0
    import torch

    with torch.no_grad():
        for sample in task.get_batch_iterator(task.dataset("valid"), max_tokens=4096).next_epoch_itr(shuffle=False):
            loss, sample_size, _ = criterion(model, sample)
            total, size = total + float(loss), size + sample_size
    ours = InheritedLossFitness(trained["last"], data_bin)(config)
    assert ours == pytest.approx(total / size / math.log(2), rel=1e-5)


def test_parallel_search_equals_serial_and_survives_a_dead_worker(trained, data_bin, tiny_space, tiny_predictor, tmp_path):
    from hat.search import ProcessPoolEvaluator

    predictor = LatencyPredictor.load(tiny_predictor)
    lo, hi = EvolutionarySearch(tiny_space, None, predictor, [1.0]).feasible_range()
    constraint = lo + 0.5 * (hi - lo)
    settings = dict(population=8, parents=3, mutations=3, crossovers=3, iterations=2)
    fitness = InheritedLossFitness(trained["last"], data_bin, valid_subset=30, seed=1)
    serial = EvolutionarySearch(tiny_space, fitness, predictor, [constraint], seed=0, progress=False, **settings).run()
    evaluator = ProcessPoolEvaluator(DyingOnce(fitness, tmp_path / "died"), workers=2)
    try:
        parallel = EvolutionarySearch(tiny_space, fitness, predictor, [constraint], seed=0, evaluator=evaluator,
                                      progress=False, **settings).run()
    finally:
        evaluator.close()
    assert (tmp_path / "died").exists()  # a worker really died mid-search
    assert parallel.history == serial.history
    assert parallel.results[0].best.archid == serial.results[0].best.archid


def test_ray_evaluator_on_a_named_cluster_equals_serial(trained, data_bin, tiny_space):
    """The cluster path: the test starts the 'cluster' itself, as a user's ``ray start`` would."""
    ray = pytest.importorskip("ray")
    from hat.search import RayEvaluator

    fitness = InheritedLossFitness(trained["last"], data_bin, valid_subset=20, seed=1)
    configs = [tiny_space.sample(seed=i) for i in range(4)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        evaluator = RayEvaluator(fitness, workers=2, address="auto")
        losses = evaluator(configs)
        evaluator.close()
    finally:
        ray.shutdown()
    assert losses == [fitness(c) for c in configs]


class DyingOnce:
    """Kills its worker process on the first call (once per marker file); the evaluator restarts it and retries."""

    def __init__(self, fitness, marker: Path) -> None:
        self.fitness, self.marker = fitness, marker

    def __call__(self, config) -> float:
        if not self.marker.exists():
            self.marker.write_text("x")
            os._exit(1)
        return self.fitness(config)


def test_search_cli_writes_configs_history_summary_and_plots(trained, data_bin, tiny_predictor, tmp_path, capsys):
    from hat.cli import main
    from hat.space import SubTransformerConfig

    space_file = Path(__file__).parents[1] / "search_spaces" / "tiny.yaml"
    predictor = LatencyPredictor.load(tiny_predictor)
    space = SearchSpace.from_yaml(space_file)
    lo, hi = EvolutionarySearch(space, None, predictor, [1.0]).feasible_range()
    constraints = [f"{lo + 0.3 * (hi - lo):.2f}", f"{lo + 0.7 * (hi - lo):.2f}"]
    out = tmp_path / "search"
    args = ["search", "--space", str(space_file), "--checkpoint", str(trained["last"]), "--data", str(data_bin),
            "--predictor", str(tiny_predictor), "--latency-constraint", *constraints, "--population", "8",
            "--parents", "3", "--mutations", "3", "--crossovers", "3", "--iterations", "2", "--valid-subset", "20",
            "--random-search", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["results"]) == 2 and len(summary["random_search"]) == 2
    assert summary["latency_runtime"] == predictor.runtime  # what the milliseconds are
    for item in summary["results"]:
        assert (out / item["config_file"]).read_text().startswith(
            f"# best SubTransformer under {item['constraint_ms']:g} ms on {summary['latency_unit']}")
        config = SubTransformerConfig.from_yaml(out / item["config_file"])
        space.validate(config)
        assert float(predictor.predict([config])[0]) <= item["constraint_ms"]
    assert (out / "history.csv").read_text().count("\n") == summary["evaluations"] + 1
    for png in ("pareto.png", "best_loss.png"):
        assert (out / png).stat().st_size > 5000
    assert main(args + ["--resume"]) == 0  # a finished search resumes to the same result
    assert json.loads((out / "summary.json").read_text())["results"] == summary["results"]
    from hat.space.flops import count_flops

    for item in summary["results"] + summary["pareto_front"]:  # FLOPs reported even when not limited
        config = SubTransformerConfig.from_dict(item["config"]) if "config" in item else None
        assert item["flops"] > 0 and (config is None or item["flops"] == count_flops(config, space.qkv_dim))
    limited = args[:-1] + [str(tmp_path / "limited"), "--max-params", "250k", "--max-size-mb", "0.9",
                           "--max-flops", "12M", "--max-memory-mb", "50", "--json", "--finalists", "3"]
    capsys.readouterr()
    assert main(limited) == 0
    report = json.loads(capsys.readouterr().out)
    for item in report["results"]:  # finalists: the search's pick among them, each a config within the constraint
        finalists = report["finalists"][f"{item['constraint_ms']:g}"]
        assert 1 <= len(finalists) <= 3 and item["archid"] in [f["archid"] for f in finalists]
        assert [f["latency_ms"] for f in finalists] == sorted(f["latency_ms"] for f in finalists)
        for finalist in finalists:
            config = SubTransformerConfig.from_yaml(tmp_path / "limited" / finalist["config_file"])
            assert config.archid == finalist["archid"] and finalist["loss"] >= item["loss"]
            assert float(predictor.predict([config])[0]) <= item["constraint_ms"]
    assert json.loads((tmp_path / "limited" / "finalists" / "finalists.json").read_text()) == report["finalists"]
    assert [limit["objective"] for limit in report["limits"]] == ["parameters", "weights_mb_fp32", "flops",
                                                                  "memory_mb_fp32"]
    for item in report["results"]:
        assert item["parameters"] <= 250_000 and item["weights_mb_fp32"] <= 0.9 and item["flops"] <= 12e6
        assert item["weights_mb_fp32"] < item["memory_mb_fp32"] <= 50
        assert item["weights_mb_fp32"] == pytest.approx(4 * item["parameters"] / 1e6)
        assert item["flops"] == count_flops(SubTransformerConfig.from_dict(item["config"]), space.qkv_dim)
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(space_file.read_text().replace("embed_dim: [64, 48]", "embed_dim: [64, 32]", 1))
    assert main(args[:2] + [str(other)] + args[3:-1] + [str(tmp_path / "s2")]) == 2
    assert "trained on space 'tiny'" in capsys.readouterr().err


def test_search_cli_measures_its_winners_on_the_profiled_device_and_refits(trained, data_bin, tmp_path, capsys):
    from hat.cli import main
    from hat.latency import LatencyCollector, Protocol
    from hat.latency.dataset import write_dataset
    from hat.pipeline import fit_predictor, target_vocabulary

    space_file = Path(__file__).parents[1] / "search_spaces" / "tiny.yaml"
    space = SearchSpace.from_yaml(space_file)
    profile = tmp_path / "profile"
    protocol = Protocol(src_len=4, beam=2, vocab=target_vocabulary(data_bin, None), warmup=1, runs=3, max_runs=3)
    LatencyCollector(space, protocol, profile, backend="torch", progress=False).collect_dataset(12, seed=0)
    predictor, _ = fit_predictor(profile / "dataset.csv", None, kind="linear")
    predictor.save(tmp_path / "p.json")
    lo, hi = EvolutionarySearch(space, None, predictor, [1.0]).feasible_range()
    args = ["search", "--space", str(space_file), "--checkpoint", str(trained["last"]), "--data", str(data_bin),
            "--predictor", str(tmp_path / "p.json"), "--latency-constraint", f"{lo + 0.6 * (hi - lo):.3f}",
            "--population", "8", "--parents", "3", "--mutations", "3", "--crossovers", "3", "--iterations", "1",
            "--valid-subset", "20", "--measure-winners", str(profile), "--winner-rounds", "1",
            "--winner-tolerance", "0.0001", "--out", str(tmp_path / "search")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    rounds = summary["winner_rounds"]
    assert [r["round"] for r in rounds] == [0, 1]  # a tolerance no measurement meets: every round is run
    assert summary["predictor"] == str(tmp_path / "search" / "predictor_round1.json")
    measured = {row["archid"] for row in LatencyDataset.load(profile / "dataset.csv").rows}
    assert len(measured) > 12 and all(archid in measured for r in rounds for archid in r["best"])
    assert summary["results"][0]["archid"] == rounds[-1]["best"][0]
    assert "winners measured" in capsys.readouterr().out
    # a profile measured on another machine is not re-measured here without --ray-resource
    data = LatencyDataset.load(profile / "dataset.csv")
    write_dataset(profile / "dataset.csv", {**data.meta, "device": {**data.meta["device"], "cpu": "Cortex-A72"}},
                  data.rows)
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "elsewhere")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hat: error: ") and "Cortex-A72" in error and "--ray-resource" in error
    assert len(error.splitlines()) == 1
