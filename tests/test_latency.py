from __future__ import annotations

import csv
import sys
import subprocess
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hat.errors import HatError
from hat.latency import LatencyCollector, LatencyDataset, LatencyPredictor, LatencyTables, Protocol, reference_noise
from hat.latency.collector import run_here
from hat.latency.workloads import TorchBackend
from hat.latency.dataset import write_dataset
from hat.latency.features import HAT_FEATURES, hat_features, structural_features
from hat.latency.predictor import MlpRecipe, fit_auto, split_indices
from hat.latency.tables import table_entries
from hat.latency.timers import make_timer
from hat.space import SearchSpace
from tests.conftest import ROOT, write_space

MICRO = """
name: micro_latency
qkv_dim: 8
share_all_embeddings: true
encoder: {embed_dim: [16, 8], layers: [2], ffn_dim: [16, 8], heads: [2, 1]}
decoder: {embed_dim: [16, 8], layers: [1, 2], ffn_dim: [16], self_heads: [2], cross_heads: [2, 1], ende_attn: [-1, 1]}
"""
FAST = Protocol(src_len=4, beam=2, vocab=50, warmup=1, runs=3, threads=1, max_runs=3)
HAT_CSV = ROOT.parent / "shared" / "data" / "hat_latency" / "iwslt14deen_gpu_titanxp_all.csv"


FAST_MLP = MlpRecipe(hidden=(16,), steps=50)


@pytest.fixture
def micro(tmp_path) -> SearchSpace:
    return SearchSpace.from_yaml(write_space(tmp_path, MICRO))


class CountingRunner:
    """Local measurements, counting items; optionally dies after some chunks (a killed run)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.items, self.calls, self.fail_after = 0, 0, fail_after

    def __call__(self, worker, protocol, payload):
        if not payload["items"]:  # the device describing itself
            return run_here(worker, protocol, payload)
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.items += len(payload["items"]) - 1  # minus the reference model
        return run_here(worker, protocol, payload)


def test_tables_cover_every_layer_config_and_estimate_sums(micro, tmp_path):
    tables = LatencyCollector(micro, FAST, tmp_path, progress=False).collect_tables()
    expected = table_entries(micro)
    assert len(expected["encoder_layer"]) == 2 * 2 * 2 and len(expected["decoder_layer"]) == 2 * 2 * 2 * 2
    for name, entries in expected.items():
        assert set(tables.tables[name]) == {key for key, _ in entries}
        assert all(e["mean"] > 0 and e["n"] == FAST.runs for e in tables.tables[name].values())
    reloaded = LatencyTables.load(tmp_path / "tables.json")
    reloaded.check_complete(micro)
    config = micro.sample(seed=1)
    enc, dec = reloaded.estimate(config)
    assert enc == pytest.approx(
        reloaded.entry_ms("encoder_embedding", f"e{config.encoder_embed_dim}")
        + sum(reloaded.entry_ms("encoder_layer", f"e{config.encoder_embed_dim}_f{f}_h{h}")
              for f, h in zip(config.encoder_ffn_dims, config.encoder_heads)))
    assert dec > 0


def test_dataset_rows_header_and_resume_after_kill(micro, tmp_path):
    killed = CountingRunner(fail_after=1)
    # retries=0: counts below must not depend on this machine's noise (re-measuring has its own test)
    collector = LatencyCollector(micro, FAST, tmp_path, runner=killed, chunk_size=2, retries=0, progress=False)
    with pytest.raises(KeyboardInterrupt):
        collector.collect_dataset(5, seed=0)
    partial = LatencyDataset.load(tmp_path / "dataset.csv")
    assert len(partial) == 2  # the finished chunk survived, written atomically
    resumed = CountingRunner()
    collector = LatencyCollector(micro, FAST, tmp_path, runner=resumed, chunk_size=2, retries=0, progress=False)
    data = collector.collect_dataset(5, seed=0)
    assert resumed.items == 3 and len(data) == 5
    assert [c.archid for c in data.configs] == [c.archid for c in collector.sample_configs(5, 0)]
    assert data.meta["space_fingerprint"] == micro.fingerprint and data.meta["protocol"] == FAST.to_dict()
    assert data.meta["device"]["threads"] == 1 and "torch" in data.meta["device"]
    assert np.allclose(data.features, np.array([hat_features(c) for c in data.configs]))
    assert (data.encoder_ms > 0).all() and (data.decoder_ms > 0).all()
    reference = list(csv.DictReader((tmp_path / "reference.csv").open()))
    assert sum(r["accepted"] == "1" for r in reference) == 3  # one kept reference timing per chunk


class ScriptedRunner:
    """Fake timings: every workload 1 ms per part; the reference slowed down by ``slow[call]`` on some calls."""

    def __init__(self, slow: dict[int, float]) -> None:
        self.slow, self.calls = slow, 0

    def __call__(self, worker, protocol, payload):
        if not payload["items"]:
            return {"device": {"backend": "torch", "threads": 1}, "results": []}
        factor = self.slow.get(self.calls, 1.0)
        self.calls += 1
        stats = {"median": factor, "mean": factor, "std": 0.0, "iqr": 0.0, "n": 3, "value": factor}
        return {"device": {}, "results": [{"encoder": dict(stats), "decoder": dict(stats)} for _ in payload["items"]]}


def test_a_chunk_measured_while_the_machine_was_busy_is_measured_again(micro, tmp_path):
    runner = ScriptedRunner(slow={2: 1.6})  # the third chunk's first attempt runs 1.6x slow
    collector = LatencyCollector(micro, FAST, tmp_path, runner=runner, chunk_size=2, progress=False)
    data = collector.collect_dataset(8, seed=0)
    assert runner.calls == 5 and len(data) == 8  # 4 chunks + 1 repeat
    assert np.allclose(data.total_ms, 2.0) and {r["reference_ms"] for r in data.rows} == {"2.0000"}
    reference = list(csv.DictReader((tmp_path / "reference.csv").open()))
    assert [r["accepted"] for r in reference] == ["1", "1", "0", "1", "1"]
    assert reference_noise(tmp_path)["remeasured"] == 1
    # a machine that stays busy: after `retries` repeats the last attempt is kept (with a warning)
    stubborn = ScriptedRunner(slow={1: 1.6, 2: 1.6, 3: 1.6})
    data = LatencyCollector(micro, FAST, tmp_path / "busy", runner=stubborn, chunk_size=2, retries=2,
                            progress=False).collect_dataset(4, seed=0)
    assert stubborn.calls == 4 and np.allclose(data.total_ms, [2.0, 2.0, 3.2, 3.2])


class DriftingRunner:
    """Fake timings of a machine that speeds up: every workload of call ``c`` takes ``2 - 0.1 c`` ms per part."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, worker, protocol, payload):
        if not payload["items"]:
            return {"device": {"backend": "torch", "threads": 1}, "results": []}
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        factor = 2.0 - 0.1 * self.calls
        self.calls += 1
        stats = {"median": factor, "mean": factor, "std": 0.0, "iqr": 0.0, "n": 3, "value": factor}
        return {"device": {}, "results": [{"encoder": dict(stats), "decoder": dict(stats)} for _ in payload["items"]]}


def test_training_and_test_sets_are_measured_side_by_side_and_resume(micro, tmp_path):
    from hat.pipeline import profile

    def collector(runner):
        return LatencyCollector(micro, FAST, tmp_path, runner=runner, chunk_size=2, retries=0, progress=False)

    with pytest.raises(KeyboardInterrupt):
        profile(collector(DriftingRunner(fail_after=2)), samples=8, test_samples=4, tables=False)
    first = {name: len(LatencyDataset.load(tmp_path / name)) for name in ("dataset.csv", "test.csv")}
    assert first == {"dataset.csv": 3, "test.csv": 1}  # two finished chunks of mixed rows survived
    resumed = DriftingRunner()
    test = profile(collector(resumed), samples=8, test_samples=4, tables=False)
    assert resumed.calls == 4  # only the 8 unfinished rows, in chunks of 2
    train, tested = LatencyDataset.load(tmp_path / "dataset.csv"), LatencyDataset.load(tmp_path / "test.csv")
    assert len(train) == 8 and [c.archid for c in tested.configs] == [c.archid for c in test]
    # the machine sped up during each run; measured in turns, both sets saw it alike
    assert np.ptp(train.total_ms) >= 0.5 and np.ptp(tested.total_ms) >= 0.3
    assert train.total_ms.mean() == pytest.approx(tested.total_ms.mean(), rel=0.03)


def test_resuming_with_another_protocol_is_refused(micro, tmp_path):
    LatencyCollector(micro, FAST, tmp_path, progress=False).collect_dataset(1)
    other = Protocol(**{**FAST.to_dict(), "src_len": 6})
    with pytest.raises(HatError, match="another protocol"):
        LatencyCollector(micro, other, tmp_path, progress=False).collect_dataset(1)


def _edit_header(path: Path, edit) -> None:
    first, rest = path.read_text().split("\n", 1)
    meta = json.loads(first.removeprefix("# hat-latency "))
    edit(meta)
    path.write_text(f"# hat-latency {json.dumps(meta)}\n{rest}")


def test_resuming_into_rows_timed_on_graphs_built_another_way_is_refused(micro, tmp_path):
    from hat.export.compose import COMPOSE_VERSION
    from hat.export.ort_backend import OnnxBackend
    from hat.latency.collector import recorded_graphs

    assert OnnxBackend.graphs == f"composed-{COMPOSE_VERSION}" != "composed-1"
    data = LatencyCollector(micro, FAST, tmp_path, progress=False).collect_dataset(1)
    assert data.meta["graphs"] == "eager"
    # a torch file from before files recorded their graphs was timed as now: it resumes
    _edit_header(tmp_path / "dataset.csv", lambda meta: meta.pop("graphs"))
    assert len(LatencyCollector(micro, FAST, tmp_path, progress=False).collect_dataset(2)) == 2
    # an onnxruntime file from before composing kept the pieces' shapes does not
    legacy = {"reference": {"backend": "onnxruntime"}, "device": {"backend": "onnxruntime"}}
    assert recorded_graphs(legacy) == "composed-1" and recorded_graphs({**legacy, "graphs": "x"}) == "x"
    assert recorded_graphs({"reference": "onnxruntime", "device": {"backend": "torch"}}) == "eager"  # malformed part skipped
    _edit_header(tmp_path / "dataset.csv", lambda meta: meta.update(graphs="composed-1"))
    with pytest.raises(HatError, match="built as 'composed-1', not 'eager'.*use a new --out"):
        LatencyCollector(micro, FAST, tmp_path, progress=False).collect_dataset(3)


def _synthetic_dataset(space: SearchSpace, n: int, seed: int = 0) -> LatencyDataset:
    """Latencies that are an exact positive linear function of the structural features."""
    configs = [space.sample(seed=seed * 10_000 + i) for i in range(n)]
    features = np.array([hat_features(c) for c in configs])
    weights = np.linspace(0.5, 2.0, len(structural_features(features[:1])[0]))
    total = structural_features(features) @ weights + 3.0
    return LatencyDataset(features, 0.2 * total, 0.8 * total, configs)


def test_linear_predictor_recovers_a_linear_latency_model(wmt_space, tmp_path):
    data = _synthetic_dataset(wmt_space, 300)
    train, test = split_indices(len(data), 0.2, 0)
    predictor = LatencyPredictor("linear").fit(data.subset(train))
    scores = predictor.evaluate(data.subset(test))
    assert scores["mape_pct"] < 1.0 and scores["within_5pct"] == 1.0 and scores["kendall_tau"] > 0.95
    path = tmp_path / "p.json"
    predictor.save(path)
    loaded = LatencyPredictor.load(path)
    assert np.array_equal(loaded.predict(data.configs), predictor.predict(data.configs))
    assert json.loads(path.read_text())["format"] == "hat-latency-predictor-v1"


def test_mlp_and_table_predictors_round_trip(micro, tmp_path):
    tables = LatencyCollector(micro, FAST, tmp_path, progress=False).collect_tables()
    data = _synthetic_dataset(micro, 40)
    for kind in ("mlp", "table", "linear"):
        predictor = LatencyPredictor(kind, tables=tables).fit(data)
        predictor.save(tmp_path / f"{kind}.json")
        again = LatencyPredictor.load(tmp_path / f"{kind}.json")
        assert np.allclose(again.predict(data.configs), predictor.predict(data.configs), rtol=1e-6)
    model, scores = fit_auto(data, tables, seed=0, mlp=FAST_MLP)
    assert set(scores) == {"linear", "mlp", "table"}
    refit = LatencyPredictor(model.kind, tables=tables, mlp=FAST_MLP).fit(data, seed=0)
    assert np.allclose(model.predict(data.configs), refit.predict(data.configs), rtol=1e-9)  # refitted on all rows
    assert not np.allclose(model.predict(data.configs), LatencyPredictor(model.kind, tables=tables, mlp=FAST_MLP)
                           .fit(data.subset(np.arange(20)), seed=0).predict(data.configs), rtol=1e-6)


def test_fit_auto_cross_validates_every_row_and_prefers_the_simpler_kind(micro, tmp_path):
    tables = LatencyCollector(micro, FAST, tmp_path, progress=False).collect_tables()
    data = _synthetic_dataset(micro, 30)
    _, scores = fit_auto(data, tables, seed=0, mlp=FAST_MLP, folds=5)
    assert all(s["n"] == len(data) for s in scores.values())  # each row predicted once, out of fold
    best = min(scores, key=lambda k: scores[k]["mape_pct"])
    strict, _ = fit_auto(data, tables, seed=0, mlp=FAST_MLP, tolerance=0.0)
    assert strict.kind == best
    lenient, _ = fit_auto(data, tables, seed=0, mlp=FAST_MLP, tolerance=1e9)
    assert lenient.kind == "table"  # the simplest kind wins whenever it is within the tolerance
    assert lenient.info["selection"]["chosen"] == "table" and lenient.info["selection"]["folds"] == 5


def test_table_sum_predictor_is_the_sum(micro, tmp_path):
    tables = LatencyCollector(micro, FAST, tmp_path, progress=False).collect_tables()
    configs = [micro.sample(seed=i) for i in range(5)]
    predictor = LatencyPredictor("table", tables=tables)
    assert np.allclose(predictor.predict(configs), [sum(tables.estimate(c)) for c in configs])


def test_predictor_refuses_configs_of_another_space(micro, tiny_space, tmp_path):
    tables = LatencyCollector(micro, FAST, tmp_path, progress=False).collect_tables()
    predictor = LatencyPredictor("table", tables=tables)
    with pytest.raises(HatError, match="no entry"):
        predictor.predict([tiny_space.sample(seed=0)])
    predictor.fit(_synthetic_dataset(micro, 12))
    with pytest.raises(HatError, match="fitted for space 'micro_latency'"):
        predictor.check_space(tiny_space)


@pytest.mark.skipif(not HAT_CSV.is_file(), reason="shared HAT latency data not present")
def test_reads_hats_published_csv():
    data = LatencyDataset.load(HAT_CSV, fmt="hat")
    assert len(data) == 2000 and data.configs is None and data.features.shape == (2000, 10)
    assert (data.total_ms > 0).all()


def _hat_csv(tmp_path: Path, rows: list[str], header: str | None = None) -> Path:
    header = header or ",".join(HAT_FEATURES + ("latency_mean_encoder", "latency_mean_decoder",
                                                "latency_std_encoder", "latency_std_decoder"))
    path = tmp_path / "data.csv"
    path.write_text("\n".join([header] + rows) + "\n")
    return path


GOOD_ROW = "640,6,2048,6,512,3,1024,4,4,2,5.5,120.0,0.1,0.5"


@pytest.mark.parametrize(
    "rows, header, message",
    [
        ([], None, "header but no rows"),
        ([GOOD_ROW.replace("120.0", "nan")], None, "line 2: latency_mean_decoder = nan"),
        ([GOOD_ROW, GOOD_ROW.replace("5.5", "-1")], None, "line 3: latency_mean_encoder = -1"),
        ([GOOD_ROW, "640,6,2048"], None, "line 3: wrong number of fields"),
        ([GOOD_ROW.replace("5.5", "fast")], None, "is not a number"),
        ([GOOD_ROW], "encoder_embed_dim,encoder_layer_num", "missing column"),
    ],
)
def test_bad_latency_csvs(tmp_path, rows, header, message):
    path = _hat_csv(tmp_path, rows, header)
    with pytest.raises(HatError, match=message) as info:
        LatencyDataset.load(path, fmt="hat")
    assert str(path) in str(info.value)


def test_empty_and_corrupt_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(HatError, match="empty"):
        LatencyDataset.load(empty)
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(HatError, match="not valid JSON"):
        LatencyPredictor.load(bad)
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(HatError, match="not a HAT latency predictor"):
        LatencyPredictor.load(bad)
    tables = tmp_path / "tables.json"
    tables.write_text(json.dumps({"format": "hat-latency-tables-v1", "space": "x", "space_fingerprint": "y",
                                  "protocol": {}, "device": {}, "tables": {"encoder_layer": {"e1": {"mean": -3}}}}))
    with pytest.raises(HatError, match="e1 mean must be a finite number >= 0"):
        LatencyTables.load(tables)


def test_tables_of_another_space_are_refused(micro, tiny_space, tmp_path):
    LatencyCollector(micro, FAST, tmp_path, progress=False).collect_tables()
    with pytest.raises(HatError, match="measured for space 'micro_latency'"):
        LatencyCollector(tiny_space, FAST, tmp_path, progress=False).collect_tables()


def test_cuda_backend_is_refused_cleanly_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by test_cuda_timing")
    with pytest.raises(HatError, match="needs a CUDA GPU"):
        make_timer("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_timing(micro):
    backend = TorchBackend("cuda")
    payload = backend.payload(micro, FAST, [{"kind": "model", "config": micro.smallest().to_dict(include_space=False)}])
    results = backend.worker(FAST.to_dict(), payload)["results"]
    assert results[0]["encoder"]["value"] > 0 and results[0]["decoder"]["value"] > 0


def test_profile_and_predictor_cli(micro, tmp_path, capsys):
    from hat.cli import main

    space_file = write_space(tmp_path, MICRO, "space2.yaml")
    out = tmp_path / "lt"
    args = ["profile", "--space", str(space_file), "--backend", "torch", "--samples", "12", "--test-samples", "3", "--src-len", "4",
            "--beam", "2", "--vocab", "50", "--warmup", "1", "--runs", "3", "--out", str(out)]
    assert main(args) == 0
    assert (out / "tables.json").is_file() and (out / "dataset.csv").is_file() and (out / "test.csv").is_file()
    train_ids = {r["archid"] for r in LatencyDataset.load(out / "dataset.csv").rows}
    assert not train_ids & {r["archid"] for r in LatencyDataset.load(out / "test.csv").rows}
    assert main(["predictor", "fit", "--data", str(out / "dataset.csv"), "--tables", str(out),
                 "--model", "linear", "--out", str(tmp_path / "p.json")]) == 0
    capsys.readouterr()
    assert main(["predictor", "eval", "--predictor", str(tmp_path / "p.json"), "--data", str(out / "test.csv"),
                 "--json", "--plot", str(tmp_path / "pvm.png")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"n", "rmse_ms", "mape_pct", "within_5pct", "within_10pct", "kendall_tau"}
    assert (tmp_path / "pvm.png").stat().st_size > 1000
    config = tmp_path / "c.yaml"
    micro.sample(seed=2).to_yaml(config)
    assert main(["predictor", "predict", "--predictor", str(tmp_path / "p.json"), "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] > 0


@pytest.mark.slow
def test_ray_runner_measures_on_the_node_with_the_resource(micro, tmp_path):
    ray = pytest.importorskip("ray")
    from hat.latency import ray_runner

    ray.init(num_cpus=1, resources={"testdev": 1}, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(HatError, match="advertises resource 'rpi4'.*testdev"):
            ray_runner("auto", "rpi4")
        runner = ray_runner("auto", "testdev")
        data = LatencyCollector(micro, FAST, tmp_path, runner=runner, chunk_size=2, progress=False).collect_dataset(3)
        assert len(data) == 3 and (data.total_ms > 0).all()
    finally:
        ray.shutdown()


ORT_SPACE = """
name: micro_ort
qkv_dim: 8
share_all_embeddings: true
encoder: {embed_dim: [8], layers: [2], ffn_dim: [8], heads: [1]}
decoder: {embed_dim: [8], layers: [1, 2], ffn_dim: [8, 16], self_heads: [1], cross_heads: [1], ende_attn: [-1, 1]}
"""


@pytest.mark.slow
def test_onnxruntime_tables_dataset_and_predictor(piece_cache, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from hat.cli import main

    space_file = write_space(tmp_path, ORT_SPACE, "space_ort.yaml")
    out = tmp_path / "ort"
    base = ["profile", "--space", str(space_file), "--src-len", "4", "--beam", "2", "--vocab", "50", "--warmup", "1",
            "--runs", "3", "--backend", "onnxruntime", "--out", str(out)]
    assert main(base + ["--samples", "10", "--precision", "int8"]) == 0
    data = LatencyDataset.load(out / "dataset.csv")
    device = data.meta["device"]
    assert len(data) == 10 and device["backend"] == "onnxruntime" and device["precision"] == "int8"
    assert "onnxruntime" in device and "torch" not in device  # described by the torch-free worker
    assert (data.total_ms > 0).all() and data.meta["reference"]["backend"] == "onnxruntime"
    tables = LatencyTables.load(out / "tables.json")
    tables.check_complete(SearchSpace.from_yaml(space_file))
    assert all(entry["value"] > 0 for entries in tables.tables.values() for entry in entries.values())
    assert list(piece_cache.rglob("int8/*.onnx"))
    for int8 in piece_cache.rglob("int8"):  # every int8 piece was quantized from an fp32 one
        assert {p.name for p in int8.glob("*.onnx")} <= {p.name for p in (int8.parent / "fp32").glob("*.onnx")}
    assert main(["predictor", "fit", "--data", str(out / "dataset.csv"), "--tables", str(out), "--model", "table",
                 "--out", str(tmp_path / "p.json")]) == 0
    from hat.export.compose import COMPOSE_VERSION

    predictor = LatencyPredictor.load(tmp_path / "p.json")
    runtime = predictor.runtime
    assert (runtime["backend"], runtime["precision"], runtime["vocab"], runtime["beam"]) == ("onnxruntime", "int8", 50, 2)
    assert predictor.info["graphs"] == f"composed-{COMPOSE_VERSION}"  # the composer that built the timed models
    # hat verify gauges the machine with the reference model, rebuilt on the predictor's runtime
    from hat.export.verify import reference_workload
    from hat.latency.measure import measure_interleaved

    reference = predictor.info["reference"]
    assert (reference["backend"], reference["precision"]) == ("onnxruntime", "int8")
    protocol = Protocol(**predictor.info["protocol"])
    stats = measure_interleaved({"r": reference_workload(reference, protocol, predictor.info["space_spec"])}, protocol)
    now = stats["r"]["encoder"].value(protocol.statistic) + stats["r"]["decoder"].value(protocol.statistic)
    assert reference["total_ms"] / 3 < now < reference["total_ms"] * 3
    assert main(base + ["--samples", "1", "--precision", "int8", "--backend", "torch"]) == 2  # onnxruntime options only


def test_composed_decoder_layers_may_attend_to_different_encoder_layers(piece_cache, tmp_path):
    """One composed graph holds cross keys of several lengths (1 and 2 x src_len here): each decoder
    layer's length keeps its own name in the graph's shapes, so onnxruntime runs the beam loop."""
    pytest.importorskip("onnxruntime")
    import dataclasses

    from hat.export.ort_backend import OnnxBackend
    from hat.export.ort_worker import BeamWorkload
    from hat.export.runtime import OnnxRuntimeModel

    space = SearchSpace.from_yaml(write_space(tmp_path, ORT_SPACE, "space_ort.yaml"))
    config = dataclasses.replace(space.largest(), decoder_ende_attn=(-1, 1))
    encoder, decoder = OnnxBackend("fp32").model_graphs(space, config, FAST.vocab)
    workload = BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, 1), FAST)
    workload.decoder()  # beam steps over both layers' cross keys


@pytest.mark.slow  # a subprocess that composes and times graphs: about 20 s
def test_onnxruntime_worker_imports_neither_torch_nor_fairseq(piece_cache, micro, tmp_path):
    """The measuring side of --backend onnxruntime: graphs built here, timed where only numpy and
    onnxruntime can be imported (no torch, fairseq, pyyaml, scipy or onnx)."""
    pytest.importorskip("onnxruntime")
    import pickle  # our own payload, written and read by this test only

    from hat.export.ort_backend import OnnxBackend

    space = SearchSpace.from_yaml(write_space(tmp_path, ORT_SPACE, "space_ort.yaml"))
    backend = OnnxBackend("fp32")
    items = [{"kind": "model", "config": space.largest().to_dict(include_space=False)},
             {"kind": "decoder_layer", "args": [8, 8, 16, 1, 1, 1]}, {"kind": "encoder_layer", "args": [8, 8, 1]}]
    (tmp_path / "payload.pkl").write_bytes(pickle.dumps((FAST.to_dict(), backend.payload(space, FAST, items))))
    script = (
        "import sys, pickle, json\n"
        "for name in ('torch', 'fairseq', 'yaml', 'scipy', 'onnx'):\n"
        "    sys.modules[name] = None  # the device has numpy and onnxruntime only\n"
        "from hat.export.ort_worker import measure_onnx_items\n"
        f"protocol, payload = pickle.loads(open({str(tmp_path / 'payload.pkl')!r}, 'rb').read())\n"
        "out = measure_onnx_items(protocol, payload)\n"
        "assert not any(m == 'torch' or m.startswith(('torch.', 'fairseq')) for m in sys.modules if sys.modules[m])\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    model, decoder_layer, encoder_layer = out["results"]
    assert model["encoder"]["value"] > 0 and model["decoder"]["value"] > 0
    assert decoder_layer["encoder"] is None and decoder_layer["decoder"]["value"] > 0
    assert encoder_layer["decoder"] is None and encoder_layer["encoder"]["value"] > 0
    assert out["device"]["backend"] == "onnxruntime" and "torch" not in out["device"]


def test_separate_test_set_is_disjoint_deterministic_and_independent_of_its_size(tiny_space, tmp_path):
    from hat.pipeline import separate_test_configs

    collector = LatencyCollector(tiny_space, FAST, tmp_path, progress=False)
    train = {c.archid for c in collector.sample_configs(30, 3)}
    test = separate_test_configs(collector, 30, 40, 3)  # more than the first pool of 30 + 2 x 40 can hold
    assert len(test) == 40 and not train & {c.archid for c in test}
    assert [c.archid for c in test] == [c.archid for c in separate_test_configs(collector, 30, 40, 3)]
    assert [c.archid for c in separate_test_configs(collector, 30, 5, 3)] == [c.archid for c in test[:5]]


def test_fit_checks_refuse_tables_and_data_of_different_spaces_and_too_few_rows(micro, tmp_path):
    from hat.pipeline import check_fit_inputs

    other = SearchSpace.from_yaml(write_space(tmp_path, MICRO.replace("[16], self_heads", "[16, 8], self_heads"), "other.yaml"))
    tables = LatencyCollector(other, FAST, tmp_path, progress=False).collect_tables()
    data = _synthetic_dataset(micro, 12)
    data.meta = {"space": micro.name, "space_fingerprint": micro.fingerprint}
    with pytest.raises(HatError, match="tables were measured for space 'micro_latency', the dataset for"):
        check_fit_inputs(data, tables, "data.csv", "tables.json")
    check_fit_inputs(data, None, "data.csv", None)
    with pytest.raises(HatError, match="at least 10 rows"):
        check_fit_inputs(data.subset(np.arange(9)), None, "data.csv", None)


def test_fitting_at_reference_speed_takes_the_machines_drift_out(wmt_space, tmp_path):
    """Rows measured while the machine ran 0.8-1.25x its usual speed, each with the reference model
    timed in its chunk: scaled to one machine speed, the latencies are the model's own again."""
    from hat.latency.records import dataset_row
    from hat.pipeline import evaluate_predictor, fit_predictor

    shipped = LatencyDataset.load(ROOT / "latency_tables" / "intel-xeon-processor_1t_ort" / "wmt14_en_de" / "dataset.csv")
    rng = np.random.default_rng(0)

    def rows(n: int, seed: int) -> list:
        data, out = _synthetic_dataset(wmt_space, n, seed), []
        for config, enc, dec in zip(data.configs, data.encoder_ms, data.decoder_ms):
            speed = rng.uniform(0.8, 1.25)
            result = {part: {"value": v * speed, "mean": v * speed, "std": 0.0, "median": v * speed, "iqr": 0.0}
                      for part, v in (("encoder", enc), ("decoder", dec))}
            out.append(dataset_row(config, result, 6, 100.0 * speed))
        return out

    write_dataset(tmp_path / "dataset.csv", shipped.meta, rows(120, 1))
    write_dataset(tmp_path / "test.csv", shipped.meta, rows(60, 2))
    auto, _ = fit_predictor(tmp_path / "dataset.csv", kind="linear")  # onnxruntime data: reference speed
    measured, _ = fit_predictor(tmp_path / "dataset.csv", kind="linear", labels="measured")
    assert auto.info["labels"] == "reference_speed" and measured.info["labels"] == "measured"
    good, noisy = auto.evaluate(LatencyDataset.load(tmp_path / "test.csv")), measured.evaluate(LatencyDataset.load(tmp_path / "test.csv"))
    assert good["mape_pct"] < 0.5 and good["kendall_tau"] > 0.99
    assert noisy["mape_pct"] > 3 and noisy["kendall_tau"] < 0.95
    auto.save(tmp_path / "p.json")
    reloaded, scores = evaluate_predictor(tmp_path / "p.json", tmp_path / "test.csv", plot=tmp_path / "p.png")
    assert reloaded.info["labels"] == "reference_speed" and scores == pytest.approx(good)
    if HAT_CSV.is_file():
        with pytest.raises(HatError, match="reference timing"):  # HAT's CSVs have no reference column
            fit_predictor(HAT_CSV, kind="linear", labels="reference_speed")
