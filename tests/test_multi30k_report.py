"""The Multi30k benchmark: its model plan, the goal verdicts on three test sets, table, plot, timing."""
from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETS = ("test_2016_flickr", "test_2017_flickr", "test_2018_flickr")


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def multi30k():
    return load("multi30k")


@pytest.fixture(scope="module")
def report():
    return load("multi30k_report")


def row(model: str, bleu: float | tuple, latency: float, track: str = "scratch", role: str = "searched", **extra) -> dict:
    scores = bleu if isinstance(bleu, tuple) else (bleu,) * 3
    return {"model": model, "track": track, "role": role, "bleu": dict(zip(SETS, scores)), "latency_ms": latency,
            "config": "enc 256 | dec 256", "parameters": 1000, **extra}


def test_track_goal_needs_the_speedup_and_every_test_set(report):
    base = row("largest (scratch)", 20.0, 60.0, role="largest")
    rows = [base, row("30ms (scratch)", 25.0, 30.0),  # only 2x faster
            row("20ms (scratch)", (19.6, 19.9, 19.5), 20.0),  # 3x, worst set -0.50: met
            row("19ms (scratch)", (21.0, 21.0, 19.4), 19.0),  # 3.16x, but -0.60 on the last set
            row("18ms (fine-tuned)", 30.0, 18.0, track="fine-tuned")]  # the other track does not count
    line = report.track_goal(rows, "scratch")
    assert "'20ms (scratch)' at 3.00x" in line and "(-0.40, -0.10, -0.50): met." in line
    rows[2] = row("20ms (scratch)", (19.6, 19.9, 19.4), 20.0)
    line = report.track_goal(rows, "scratch")
    assert line.endswith("not met.") and "'20ms (scratch)'" in line  # -0.60 worst, ties 19ms: the first is kept
    assert "no searched model" in report.track_goal([base, row("30ms (scratch)", 25.0, 30.0)], "scratch")
    assert "no largest model" in report.track_goal(rows, "fine-tuned")


def test_stock_goal_checks_each_test_set(report):
    fairseq = row("fairseq transformer (scratch)", (21.0, 20.0, 19.0), 50.0, role="fairseq")
    close = row("stock-arch (scratch)", (21.2, 19.8, 19.3), 50.0, role="stock-arch")
    assert report.stock_goal([fairseq, close]).endswith("(+0.20, -0.20, +0.30): met.")
    far = row("stock-arch (scratch)", (21.2, 19.6, 19.0), 50.0, role="stock-arch")
    assert report.stock_goal([fairseq, far]).endswith("not met.")
    assert "not measured" in report.stock_goal([fairseq])


def test_pareto_goal_compares_front_models_with_the_stock_transformer(report):
    stock = row("fairseq transformer (scratch)", 22.0, 50.0, role="fairseq")
    front = [row("10ms (fine-tuned)", 23.0, 10.0, track="fine-tuned"), row("20ms (fine-tuned)", 24.0, 20.0, track="fine-tuned")]
    dominated = row("20ms (scratch)", 18.0, 20.0)  # off the front: its loss to the stock model does not count
    assert [r["model"] for r in report.pareto_front(front + [dominated])] == ["10ms (fine-tuned)", "20ms (fine-tuned)"]
    assert report.pareto_goal([stock, dominated, *front]).endswith(": met.")
    slow = row("54ms (fine-tuned)", 30.0, 54.0, track="fine-tuned")  # 50 >= 54 / 1.1: similar latency, compared
    loser = row("8ms (scratch)", (21.0, 23.0, 23.0), 8.0)  # on the front (fastest), loses on one set
    line = report.pareto_goal([stock, loser, slow, *front])
    assert "'54ms (fine-tuned)' (+8.00 worst set)" in line and line.endswith("not met (8ms (scratch)).")
    far = row("60ms (fine-tuned)", 30.0, 60.0, track="fine-tuned")  # 50 < 60 / 1.1: faster stock, not compared
    assert "60ms" not in report.pareto_goal([stock, far])


def test_report_table_goals_and_plot(report, tmp_path):
    rows = [row("largest (scratch)", 20.0, 60.0, role="largest", passes_ms=[60.0, 66.0]),
            row("largest (fine-tuned)", 24.0, 60.0, track="fine-tuned", role="largest", passes_ms=[60.0, 66.0]),
            row("20ms (scratch)", 19.8, 20.0, passes_ms=[20.0, 20.0]),
            row("20ms (fine-tuned)", 23.9, 20.0, track="fine-tuned", passes_ms=[20.0, 20.0]),
            row("fairseq transformer (scratch)", 20.5, 55.0, role="fairseq", passes_ms=[55.0, 55.0]),
            row("stock-arch (scratch)", 20.3, 55.0, role="stock-arch", passes_ms=[55.0, 55.0])]
    text = report.write_report(rows, tmp_path, SETS, threads=1)
    assert text == (tmp_path / "RESULTS.md").read_text()
    assert "| 20ms (fine-tuned) | fine-tuned | 23.90 | 23.90 | 23.90 | 20.0 | 3.00x (per pass 3.00-3.30x) |" in text
    assert "fine-tuned track" in text and "'20ms (fine-tuned)' at 3.00x (per pass 3.00-3.30x)" in text
    assert "BLEU 20.30 / 20.30 / 20.30 vs 20.50 / 20.50 / 20.50 (-0.20, -0.20, -0.20): met." in text
    assert (tmp_path / "bleu_vs_latency.png").stat().st_size > 10_000


def test_labels_of_close_points_do_not_overlap(report):
    points = [dict(row("86.9ms (scratch)", 0, 24.1), score=19.46), dict(row("86.9ms (fine-tuned)", 0, 23.9), score=19.36),
              dict(row("largest", 0, 60.0), score=10.0)]
    boxes: list = []
    offsets = [report.label_offset(r, points, boxes) for r in points]
    assert offsets[0] != offsets[1]
    (a, b) = boxes[:2]
    assert min(a[3], b[3]) <= max(a[1], b[1]) or min(a[2], b[2]) <= max(a[0], b[0])  # disjoint boxes


def timing(encoder: float, decoder: float):
    from hat.latency.protocol import TimingStats

    return {"encoder": TimingStats(encoder, encoder, 0.0, 0.0, 40), "decoder": TimingStats(decoder, decoder, 0.0, 1.5, 40)}


def test_latency_is_the_median_pass_not_the_mean(report):
    # the second pass hit a slow spell: the mean total would be 26.7 ms, the median pass is 11 ms
    passes = [{"a": timing(2.0, 8.0)}, {"a": timing(5.0, 55.0)}, {"a": timing(2.0, 9.0)}]
    combined = report.combine_passes(passes)["a"]
    assert combined["latency_ms"] == 11.0 and combined["encoder_ms"] == 2.0 and combined["decoder_ms"] == 9.0
    assert combined["passes_ms"] == [10.0, 60.0, 11.0]


def test_plan_follows_the_rule(multi30k, tmp_path):
    """Both tracks, the baselines, distillation at the / 3 constraint, and the budgets of each."""
    budget = multi30k.Budget(supernet_updates=500, finetune_updates=160, validations=4)
    experiment = multi30k.Experiment(tmp_path / "data", tmp_path / "out", budget, threads=1)
    experiment.stages["search"] = {"configs": {"60ms": "a.yaml", "40ms": "b.yaml", "30ms": "c.yaml"}, "scratch": "40ms"}
    experiment.stages["select"] = {"configs": {"60ms": "a2.yaml", "40ms": "b2.yaml", "30ms": "c2.yaml"},
                                   "checkpoints": {"60ms": "a2.pt", "40ms": "b2.pt", "30ms": "c2.pt"}}
    plan = {m["name"]: m for m in experiment.plan()}
    assert sorted(plan) == sorted([
        "60ms (fine-tuned)", "40ms (fine-tuned)", "30ms (fine-tuned)", "largest (fine-tuned)", "smallest (fine-tuned)",
        "40ms (fine-tuned, distilled)", "40ms (fine-tuned, seq-distilled)", "40ms (scratch)",
        "40ms (scratch, distilled)", "40ms (scratch, seq-distilled)", "largest (scratch)",
        "stock-arch (scratch)", "fairseq transformer (scratch)"])
    targets = {name: m["targets"] for name, m in plan.items() if m["targets"] != "references"}
    assert targets == {"40ms (fine-tuned, distilled)": "word-level distillation",
                       "40ms (scratch, distilled)": "word-level distillation",
                       "40ms (fine-tuned, seq-distilled)": "sequence-level distillation",
                       "40ms (scratch, seq-distilled)": "sequence-level distillation"}
    assert {plan[name]["config"] for name in targets} == {plan["40ms (scratch)"]["config"]} == {"b2.yaml"}
    # the selected finalists: the fine-tuned track keeps their training, the scratch track their architecture
    assert [(plan[f"{k} (fine-tuned)"]["config"], plan[f"{k} (fine-tuned)"]["trained"]) for k in ("60ms", "40ms", "30ms")] \
        == [("a2.yaml", "a2.pt"), ("b2.yaml", "b2.pt"), ("c2.yaml", "c2.pt")]
    assert [name for name, m in plan.items() if "trained" in m] == ["60ms (fine-tuned)", "40ms (fine-tuned)", "30ms (fine-tuned)"]
    assert plan[multi30k.SEQ_TEACHER]["track"] == "scratch" and plan[multi30k.SEQ_TEACHER]["role"] == "largest"
    assert plan["fairseq transformer (scratch)"]["config"] == plan["stock-arch (scratch)"]["config"]
    from hat.space import SubTransformerConfig

    stock = SubTransformerConfig.from_yaml(plan["stock-arch (scratch)"]["config"])
    largest = SubTransformerConfig.from_yaml(plan["largest (scratch)"]["config"])
    assert stock.decoder_ende_attn == (-1,) * largest.decoder_layers and dataclasses.replace(stock, decoder_ende_attn=largest.decoder_ende_attn) == largest
    assert budget.scratch_updates == 660
    assert experiment.train_options(budget.scratch_updates)["validate-interval-updates"] == 165
    assert multi30k.slug("40ms (fine-tuned, distilled)") == "40ms_fine-tuned_distilled"


def test_the_supernet_trains_by_the_sandwich_rule_for_its_budget(multi30k, tmp_path, monkeypatch):
    import hat.training

    calls: list[dict] = []
    monkeypatch.setattr(hat.training, "train", lambda **kw: calls.append(kw) or Path(kw["save_dir"]) / "checkpoint_last.pt")
    experiment = multi30k.Experiment(tmp_path / "data", tmp_path / "out", multi30k.Budget(supernet_updates=7), threads=1)
    result = experiment.supernet()
    assert [(c["sampler"], c["options"]["max-update"]) for c in calls] == [("sandwich", 7)]
    assert result["checkpoint"] == str(tmp_path / "out" / "supernet" / "checkpoint_best.pt")


def test_students_of_the_teacher_train_after_it_on_its_translations(multi30k, tmp_path, monkeypatch):
    """Sequence-level distillation needs the trained teacher: its students come last, on the
    distilled data-bin; every other model trains on the references, and the record keeps the plan's order."""
    import hat.training

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(hat.training, "train", lambda **kw: calls.append((kw["save_dir"].name, Path(kw["data"]).name)))
    experiment = multi30k.Experiment(tmp_path / "data", tmp_path / "out", multi30k.Budget(), threads=1)
    experiment.stages["supernet"] = {"checkpoint": "super.pt"}
    experiment.stages["search"] = {"configs": {"60ms": "a.yaml", "40ms": "b.yaml"}, "scratch": "40ms"}
    experiment.stages["select"] = {"configs": {"60ms": "a.yaml", "40ms": "b.yaml"},
                                   "checkpoints": {"60ms": "fa.pt", "40ms": "fb.pt"}}
    monkeypatch.setattr(experiment, "stock_transformer", lambda save: calls.append((save.name, "fairseq")))

    def distil(teacher: str) -> dict:
        calls.append(("distil", Path(teacher).parent.name))
        return {"teacher": multi30k.SEQ_TEACHER, "data": str(tmp_path / "seq-bin"), "translated": 9, "kept": 1}

    monkeypatch.setattr(experiment, "distil", distil)
    result = experiment.train_models()
    assert calls[-3:] == [("distil", "largest_scratch"), ("40ms_fine-tuned_seq-distilled", "seq-bin"),
                          ("40ms_scratch_seq-distilled", "seq-bin")]
    assert all(data in ("data-bin", "fairseq") for _, data in calls[:-3]) and len(calls) == 11  # not the 2 finalists
    assert list(result["models"]) == [m["name"] for m in experiment.plan()]
    assert result["models"]["40ms (fine-tuned)"]["checkpoint"] == "fb.pt"
    assert result["seq_distillation"]["translated"] == 9


def test_select_fine_tunes_each_finalist_once_and_keeps_the_lowest_fine_tuned_loss(multi30k, tmp_path, monkeypatch):
    """The finalists of every constraint are fine-tuned with the fine-tuned track's budget (an
    architecture finalist under two constraints once); each constraint keeps its lowest fine-tuned
    validation loss, even where the search picked another; a re-run reuses every score."""
    import csv

    import hat.evaluation
    import hat.training
    from hat.space import SearchSpace

    space = SearchSpace.from_yaml(multi30k.SPACE)
    configs = [space.largest(), space.smallest(), *(space.sample(seed) for seed in range(3))]
    rows = [(30.0, configs[0], 28.0, 5.0), (30.0, configs[1], 10.0, 4.0), (30.0, configs[2], 20.0, 4.5),
            (20.0, configs[1], 10.0, 4.0), (20.0, configs[3], 19.0, 4.2)]
    tuned = {configs[0].archid: 3.0, configs[1].archid: 3.5, configs[2].archid: 3.1, configs[3].archid: 3.4}
    out = tmp_path / "out"
    (out / "search").mkdir(parents=True)
    with (out / "search" / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["constraint_ms", "iteration", "archid", "latency_ms", "loss", "config"])
        writer.writeheader()
        for constraint, config, latency, loss in rows:
            writer.writerow({"constraint_ms": constraint, "iteration": 0, "archid": config.archid, "latency_ms": latency,
                             "loss": loss, "config": config.to_json()})
    configs[1].to_yaml(out / "search" / "best_30ms.yaml")
    configs[1].to_yaml(out / "search" / "best_20ms.yaml")
    trained: list[tuple[str, int]] = []
    monkeypatch.setattr(hat.training, "train", lambda **kw: trained.append(
        (kw["save_dir"].name, kw["options"]["max-update"], kw["restore_file"], kw["reset_optimizer"])))
    monkeypatch.setattr(hat.evaluation, "evaluate", lambda checkpoint, data, config, **kw: {"loss": tuned[config.archid]})
    experiment = multi30k.Experiment(tmp_path / "data", out, multi30k.Budget(finetune_updates=9), threads=1)
    experiment.stages["supernet"] = {"checkpoint": "super.pt"}
    experiment.stages["search"] = {"configs": {"30ms": str(out / "search" / "best_30ms.yaml"),
                                               "20ms": str(out / "search" / "best_20ms.yaml")}}
    result = experiment.select()
    assert sorted(trained) == sorted((c.archid, 9, "super.pt", True) for c in configs[:4])  # configs[1] once
    assert {k: Path(v).parent.name for k, v in result["checkpoints"].items()} == {
        "30ms": configs[0].archid, "20ms": configs[3].archid}
    assert {k: Path(v).stem for k, v in result["configs"].items()} == {"30ms": configs[0].archid, "20ms": configs[3].archid}
    picks = {k: [r["archid"] for r in rows if r["search_pick"]] for k, rows in result["finalists"].items()}
    assert picks == {"30ms": [configs[1].archid], "20ms": [configs[1].archid]}
    assert [r["latency_ms"] for r in result["finalists"]["30ms"]] == [10.0, 20.0, 28.0]
    trained.clear()
    assert experiment.select() == result and trained == []  # resumed from the kept scores


def test_models_of_one_architecture_are_timed_once(multi30k, tmp_path, monkeypatch):
    """A scratch model and its fine-tuned twin share a graph, and fairseq's transformer is timed
    as HAT's export of its architecture: one workload, one latency."""
    import hat.export.runtime as runtime
    import hat.export.verify as verify

    timed: list[list[str]] = []
    monkeypatch.setattr(runtime, "load_runtime", lambda model_dir, *a, **k: str(model_dir))
    monkeypatch.setattr(verify, "runtime_workload", lambda rt, protocol: rt)

    def fake_interleaved(workloads, protocol):
        timed.append(sorted(workloads))
        return {name: timing(1.0, 10.0 if "big" in name else 4.0) for name in workloads}

    monkeypatch.setattr(verify, "measure_interleaved", fake_interleaved)
    experiment = multi30k.Experiment(tmp_path / "data", tmp_path / "out", multi30k.Budget(timing_passes=3), threads=1)
    experiment.stages["prepare"] = {"vocab": 100}
    rows = [dict(row("largest (scratch)", 20.0, 0.0), config="big", model_dir="d/a"),
            dict(row("largest (fine-tuned)", 21.0, 0.0), config="big", model_dir="d/b"),
            dict(row("fairseq transformer (scratch)", 21.0, 0.0), config="big"),
            dict(row("20ms (scratch)", 19.0, 0.0), config="small", model_dir="d/c")]
    latencies = experiment.time_exports(rows)
    assert timed == [["big", "small"]] * 3  # 3 passes over 2 architectures, not 4 models
    assert latencies["largest (scratch)"] == latencies["largest (fine-tuned)"] == latencies["fairseq transformer (scratch)"]
    assert latencies["largest (scratch)"]["latency_ms"] == 11.0 and latencies["20ms (scratch)"]["latency_ms"] == 5.0


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_missing_data_is_one_line_and_exit_2(tmp_path):
    proc = run_script("multi30k", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"multi30k: error: {tmp_path / 'nowhere' / 'train.en'}: not found " \
                                                    "(pass --data with the Multi30k folder)"
    assert "Traceback" not in proc.stderr
    assert "Traceback" in (tmp_path / "out" / "multi30k.log").read_text()  # the details are in the log file


@pytest.mark.parametrize("script", ["multi30k_stock", "multi30k_budget"])
def test_follow_up_scripts_need_a_benchmark_run(script, tmp_path):
    proc = run_script(script, "--run", str(tmp_path))
    assert (proc.returncode, proc.stderr.strip()) == (2, f"{script}: error: {tmp_path / 'stages.json'}: "
                                                         "not found (pass --run with the output folder of experiments/multi30k.py)")


def test_fairseqs_transformer_validates_on_every_sentence_like_hats(multi30k, data_bin):
    """The stock comparison trains fairseq's own translation task in a subprocess; patched like HAT's
    task, it batches every validation sentence (fairseq drops a last batch that is not a multiple of 8)."""
    code = f"""import sys; {multi30k.KEEP_EVERY_BATCH}
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
argv = [sys.argv[1], "--task", "translation", "--arch", "transformer", "-s", "en", "-t", "de"]
cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), input_args=argv))
task = tasks.setup_task(cfg.task)
task.load_dataset("valid")
dataset = task.dataset("valid")
batches = task.get_batch_iterator(dataset, max_tokens=300, required_batch_size_multiple=8).next_epoch_itr(shuffle=False)
print(sum(len(batch["id"]) for batch in batches), len(dataset))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(data_bin)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen, total = map(int, proc.stdout.split())
    assert seen == total == 60


def test_fitness_rank_needs_a_benchmark_run(tmp_path):
    proc = run_script("bench_fitness_rank", "--run", str(tmp_path), "--constraint", "20", "--out", str(tmp_path / "out"))
    assert (proc.returncode, proc.stderr.strip()) == (2, f"bench_fitness_rank: error: {tmp_path / 'stages.json'}: "
                                                         "not found (pass --run with the output folder of experiments/multi30k.py)")
    assert not (tmp_path / "out").exists()


def test_fitness_rank_refuses_empty_bins(tmp_path):
    proc = run_script("bench_fitness_rank", "--run", str(tmp_path), "--constraint", "20", "--bins", "0",
                      "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "bench_fitness_rank.py: error: --bins, --per-bin and --workers must be at least 1")


def history_row(constraint: float, archid: str, latency: float, loss: float) -> dict:
    from hat.space import SearchSpace

    config = SearchSpace.from_yaml(ROOT / "search_spaces" / "tiny.yaml").smallest()
    return {"constraint_ms": constraint, "iteration": 0, "archid": archid, "latency_ms": latency, "loss": loss,
            "config": config.to_json()}


def test_fitness_rank_keeps_the_best_candidates_of_each_latency_bin(tmp_path):
    import csv

    rank = load("bench_fitness_rank")
    history = tmp_path / "history.csv"
    rows = [history_row(30, "other", 25.0, 1.0), history_row(20, "a", 10.0, 5.0), history_row(20, "b", 10.5, 4.0),
            history_row(20, "c", 11.0, 4.5), history_row(20, "d", 19.0, 6.0), history_row(20, "e", 20.0, 6.5),
            history_row(20, "f", 14.0, 3.0)]
    with history.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    candidates = rank.explored(history, 20.0)
    assert sorted(candidates) == ["a", "b", "c", "d", "e", "f"]  # another constraint's rows are not candidates
    # bins of 10-15 and 15-20 ms: the 2 lowest losses of each (the top edge in the last), by latency
    assert [c["archid"] for c in rank.pick(candidates, bins=2, per_bin=2)] == ["b", "f", "d", "e"]
    assert rank.kendall([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == "-1.000"
    assert rank.kendall([1.0], [2.0]).startswith("undefined")  # one candidate: no NaN in the report
    with pytest.raises(rank.HatError, match="no SubTransformer was searched under 25 ms"):
        rank.explored(history, 25.0)


def test_sampler_benchmark_refuses_a_missing_checkpoint_before_training(data_bin, tmp_path):
    proc = run_script("bench_sampler", "--data", str(data_bin), "--checkpoint", str(tmp_path / "none.pt"),
                      "--out", str(tmp_path / "out"))
    expected = f"bench_sampler: error: {tmp_path / 'none.pt'}: checkpoint not found"
    assert (proc.returncode, proc.stderr.strip()) == (2, expected)
    assert not (tmp_path / "out").exists()


def test_sampler_benchmark_refuses_a_foreign_checkpoint_before_training(data_bin, tmp_path):
    foreign = tmp_path / "notes.pt"
    foreign.write_text("not a checkpoint")
    proc = run_script("bench_sampler", "--data", str(data_bin), "--checkpoint", str(foreign), "--out", str(tmp_path / "out"))
    line = proc.stderr.strip()
    assert proc.returncode == 2 and line.startswith("bench_sampler: error: ") and "notes.pt: " in line
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_sampler_benchmark_with_nothing_to_train_or_score_is_an_error(tmp_path):
    proc = run_script("bench_sampler", "--data", str(tmp_path), "--samplers")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "bench_sampler.py: error: nothing to score: give --samplers to train or --checkpoint to score")


def test_distilled_models_are_compared_with_their_architecture_on_the_references(report, tmp_path):
    rows = [row("60ms (fine-tuned)", 15.0, 40.0, track="fine-tuned"),  # one architecture can win two constraints
            row("40ms (fine-tuned)", 20.0, 40.0, track="fine-tuned"),
            row("40ms (fine-tuned, distilled)", (20.5, 19.0, 20.1), 40.0, track="fine-tuned",
                targets="word-level distillation"),
            row("40ms (fine-tuned, seq-distilled)", 21.0, 40.0, track="fine-tuned",
                targets="sequence-level distillation"),
            row("40ms (scratch)", 18.0, 40.0),
            row("40ms (scratch, seq-distilled)", (18.5, 17.5, 18.0), 40.0, targets="sequence-level distillation"),
            row("largest (scratch)", (30.0, 28.0, 26.0), 120.0, role="largest"),
            row("largest (fine-tuned)", (30.0, 28.0, 26.0), 120.0, track="fine-tuned", role="largest")]
    lines = report.distillation_lines(rows)
    assert lines == [
        "Distillation, fine-tuned track, word-level distillation: '40ms (fine-tuned, distilled)' against "
        "'40ms (fine-tuned)', BLEU 20.50 / 19.00 / 20.10 vs 20.00 / 20.00 / 20.00 (+0.50, -1.00, +0.10), "
        "mean -0.13: higher on 2 of 3 test sets.",
        "Distillation, fine-tuned track, sequence-level distillation: '40ms (fine-tuned, seq-distilled)' against "
        "'40ms (fine-tuned)', BLEU 21.00 / 21.00 / 21.00 vs 20.00 / 20.00 / 20.00 (+1.00, +1.00, +1.00), "
        "mean +1.00: higher on 3 of 3 test sets.",
        "Distillation, scratch track, sequence-level distillation: '40ms (scratch, seq-distilled)' against "
        "'40ms (scratch)', BLEU 18.50 / 17.50 / 18.00 vs 18.00 / 18.00 / 18.00 (+0.50, -0.50, +0.00), "
        "mean +0.00: higher on 1 of 3 test sets."]
    # distillation is allowed on both tracks: the goal takes the best of the / 3 model's variants
    assert "'40ms (fine-tuned, seq-distilled)' at 3.00x" in report.track_goal(rows, "fine-tuned")
    text = report.write_report(rows, tmp_path, SETS, threads=1)
    assert text.endswith(lines[-1] + "\n") and (tmp_path / "bleu_vs_latency.png").stat().st_size > 10_000


def test_stock_study_reports_seeds_spreads_and_the_mean_gap(tmp_path):
    stock = load("multi30k_stock")

    def scores(hat: tuple, fairseq: tuple) -> dict:
        return {"bleu": {"HAT": dict(zip(SETS, hat)), "fairseq": dict(zip(SETS, fairseq))}}

    stages = {"seed 1": scores((10.0, 7.0, 5.0), (10.5, 7.0, 5.5)), "seed 2": scores((11.0, 7.4, 6.0), (10.9, 7.2, 5.9))}
    text = stock.report(stages, [1, 2], tmp_path)
    assert "| 1 | 10.00 | 10.50 | -0.50 | 7.00 | 7.00 | +0.00 | 5.00 | 5.50 | -0.50 |" in text
    assert "| mean ± sd | 10.50 ± 0.71 | 10.70 ± 0.28 | -0.20 ± 0.42 |" in text
    assert text.splitlines()[-2] == ("- Goal (HAT within 0.3 BLEU of fairseq's transformer on each test set, mean over "
                                     "2 seeds): -0.20 / +0.10 / -0.20: met.")
    assert text.splitlines()[-1] == ("- 95% interval of the mean difference (Student's t, 1 degrees of freedom): "
                                     "[-4.01, +3.61] / [-1.17, +1.37] / [-4.01, +3.61]; it settles the goal (inside, "
                                     "or wholly outside, ±0.3) on 0 of 3 test sets.")
    stages["seed 2"] = scores((11.0, 7.4, 5.6), (10.9, 7.2, 5.9))
    assert stock.report(stages, [1, 2], tmp_path).splitlines()[-2].endswith("-0.20 / +0.10 / -0.40: not met.")
    steady = {f"seed {s}": scores((10.1, 8.0, 5.0), (10.0, 7.0, 5.0)) for s in (1, 2, 3)}  # no spread at all
    assert stock.report(steady, [1, 2, 3], tmp_path).splitlines()[-1].endswith(
        "[+0.10, +0.10] / [+1.00, +1.00] / [+0.00, +0.00]; it settles the goal (inside, or wholly outside, ±0.3) "
        "on 3 of 3 test sets.")
    assert (tmp_path / "bleu.png").stat().st_size > 10_000


def test_fairseq_transformer_gets_exactly_the_options_of_hat_training(multi30k, tmp_path, monkeypatch):
    """The stock comparison differs only in model code: HAT's defaults (attention dropout, weight
    decay, warm-up start, ...) reach fairseq's transformer, and the budget's options override them."""
    from hat.training import DEFAULTS, options_to_argv

    calls = []
    monkeypatch.setattr(multi30k.subprocess, "run", lambda argv, **kw: calls.append(argv))
    options = multi30k.train_options(multi30k.Budget(), 480) | {"seed": 3}
    multi30k.train_stock_transformer(tmp_path / "bin", tmp_path / "save", options)
    argv = calls[0][calls[0].index("--arch"):]
    expected = options_to_argv({**DEFAULTS, **options})
    assert " ".join(expected) in " ".join(argv)
    for flag, value in (("--attention-dropout", "0.1"), ("--weight-decay", "0.0001"), ("--seed", "3"),
                        ("--max-tokens", "2048"), ("--dropout", "0.2")):
        assert argv[argv.index(flag) + 1] == value


def budget_run(tmp_path: Path, multi30k, measured: bool = True) -> Path:
    """A benchmark run's records as the budget study reads them (no trained files)."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"budget": dataclasses.asdict(multi30k.Budget())}))
    models = {"largest (scratch)": {"config": "search/largest.yaml", "checkpoint": "models/largest/best.pt"},
              "24.3ms (scratch)": {"config": "search/c.yaml", "checkpoint": "models/c/best.pt"}}
    stages = {"prepare": {"seconds": 1}, "search": {"scratch": "24.3ms", "seconds": 1},
              "train": {"models": models, "seconds": 1}}
    if measured:
        stages["measure"] = {"rows": [{"model": name, "bleu": dict(zip(SETS, (20.0 + i, 15.0, 12.0)))}
                                      for i, name in enumerate(models)], "seconds": 1}
    (run / "stages.json").write_text(json.dumps(stages))
    return run


def test_budget_study_trains_both_scratch_models_at_each_multiple(multi30k, tmp_path, monkeypatch):
    import hat.training

    budget = load("multi30k_budget")
    calls = []
    monkeypatch.setattr(hat.training, "train", lambda **kw: calls.append(kw))
    monkeypatch.setattr(budget.BudgetStudy, "valid_loss", lambda self, checkpoint, config: 5.0)
    monkeypatch.setattr(budget.BudgetStudy, "bleu", lambda self, checkpoint, config: dict.fromkeys(SETS, 1.0))
    study = budget.BudgetStudy(budget_run(tmp_path, multi30k), workers=1)
    stages = study.run([2, 4])
    assert [(c["subtransformer_config"], c["options"]["max-update"], c["options"]["warmup-updates"]) for c in calls] == [
        ("search/largest.yaml", 1920, 384), ("search/c.yaml", 1920, 384),
        ("search/largest.yaml", 3840, 768), ("search/c.yaml", 3840, 768)]
    assert all("restore_file" not in c for c in calls)  # from scratch
    assert len({str(c["save_dir"]) for c in calls}) == 4
    assert stages["x1 largest (scratch)"]["bleu"][SETS[0]] == 20.0  # the run's own measurement
    assert stages["x1 24.3ms (scratch)"]["checkpoint"] == "models/c/best.pt"
    study.run([2, 4])
    assert len(calls) == 4  # resumed: nothing retrained
    text = budget.report(stages, [2, 4], list(study.models), study.out)
    assert "| 960 (1x) | 5.000 | 5.000 | 20.00 | 21.00 | -1.00 | 15.00 | 15.00 | +0.00 | 12.00 | 12.00 | +0.00 |" in text
    assert "| 3,840 (4x) | 5.000 | 5.000 | 1.00 | 1.00 | +0.00 |" in text
    assert (study.out / "bleu_vs_updates.png").stat().st_size > 10_000


def test_budget_study_needs_a_measured_run(multi30k, tmp_path):
    run = budget_run(tmp_path, multi30k, measured=False)
    proc = run_script("multi30k_budget", "--run", str(run))
    assert (proc.returncode, proc.stderr.strip()) == (2, f"multi30k_budget: error: {run / 'stages.json'}: the benchmark "
                                                         "has not measured its models; finish experiments/multi30k.py first")


def test_budget_study_names_a_run_record_without_its_scratch_models(multi30k, tmp_path):
    import json

    run = budget_run(tmp_path, multi30k)
    stages = json.loads((run / "stages.json").read_text())
    del stages["train"]["models"]["largest (scratch)"]
    (run / "stages.json").write_text(json.dumps(stages))
    proc = run_script("multi30k_budget", "--run", str(run))
    assert (proc.returncode, proc.stderr.strip()) == (2, f"multi30k_budget: error: {run / 'stages.json'}: not a record of "
                                                         "this benchmark's from-scratch track (no 'largest (scratch)')")
