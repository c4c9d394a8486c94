"""Training on fairseq through the plugin, on a small synthetic corpus (CPU, tens of updates)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fairseq")

from hat.checkpoints import load_supernet, read_checkpoint  # noqa: E402
from hat.data.batches import load_batches  # noqa: E402
from hat.errors import HatError  # noqa: E402
from hat.evaluation import validation_loss  # noqa: E402
from hat.space import SearchSpace  # noqa: E402
from tests.conftest import SPACES, TRAIN_OPTIONS, write_space  # noqa: E402

def test_prepare_writes_fairseq_data_bin(data_bin):
    for name in ("dict.en.txt", "dict.de.txt", "spm.joint.model", "hat_data.json", "train.en-de.en.bin", "test.en-de.de.idx"):
        assert (data_bin / name).is_file(), name
    assert (data_bin / "dict.en.txt").read_text() == (data_bin / "dict.de.txt").read_text()  # joined


def test_synthetic_corpus_is_deterministic(tmp_path):
    from hat.data.synthetic import generate_corpus

    generate_corpus(tmp_path / "a", train=50, valid=5, test=5, seed=9)
    generate_corpus(tmp_path / "b", train=50, valid=5, test=5, seed=9)
    assert (tmp_path / "a" / "train.de").read_text() == (tmp_path / "b" / "train.de").read_text()


def test_resume_continues_the_update_count_and_losses_fall(trained, data_bin):
    early, last = load_supernet(trained["early"]), load_supernet(trained["last"])
    assert early.num_updates == 2 and last.num_updates == 30
    batches = load_batches(data_bin, "valid")
    for pick in ("largest", "smallest"):
        config = getattr(early.space, pick)()
        early.supernet.set_active_subnet(config)
        last.supernet.set_active_subnet(config)
        before, after = validation_loss(early.supernet, batches), validation_loss(last.supernet, batches)
        assert math.isfinite(after) and after < before - 0.5, (pick, before, after)


def test_rerunning_a_finished_training_changes_nothing(trained, data_bin, tmp_path):
    """Without the check fairseq resumes, takes one more update and rewrites the checkpoint."""
    import shutil

    from hat.checkpoints import file_sha256
    from hat.training import train

    save = tmp_path / "done"
    shutil.copytree(trained["save"], save)
    before = file_sha256(save / "checkpoint_last.pt")
    last = train(space=SPACES / "tiny.yaml", data=data_bin, save_dir=save, options={**TRAIN_OPTIONS, "max-update": 30})
    assert file_sha256(last) == before and load_supernet(last).num_updates == 30


def test_update_sampling_is_a_function_of_seed_and_update(tiny_space):
    from hat.space import update_configs

    per_update = [update_configs(tiny_space, "uniform", 1, n)[0].archid for n in range(40)]
    assert len(set(per_update)) > 30
    assert per_update == [update_configs(tiny_space, "uniform", 1, n)[0].archid for n in range(40)]
    assert per_update != [update_configs(tiny_space, "uniform", 2, n)[0].archid for n in range(40)]
    sandwich = update_configs(tiny_space, "sandwich", 1, 7)
    assert sandwich[:2] == [tiny_space.largest(), tiny_space.smallest()] and sandwich[2].archid == per_update[7]


class NoOptimizer:
    """What fairseq's train_step needs of an optimizer when the test only looks at gradients."""

    def backward(self, loss):
        loss.backward()


def plugin_task(data_bin: Path, sampler: str = "uniform", **overrides):
    """(cfg, task, model, criterion, one validation batch) of the plugin, built as fairseq-train builds them."""
    from fairseq import options, tasks as fairseq_tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from hat.training import build_train_argv, load_plugin

    load_plugin()
    argv = build_train_argv(space=SPACES / "tiny.yaml", data=data_bin, save_dir="/nonexistent", sampler=sampler,
                            options={**TRAIN_OPTIONS, **overrides})
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), input_args=argv))
    task = fairseq_tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("valid")
    sample = next(iter(task.get_batch_iterator(task.dataset("valid"), max_tokens=512).next_epoch_itr(shuffle=False)))
    return cfg, task, model, criterion, sample


def test_train_step_activates_the_update_config(data_bin, tiny_space):
    """Every micro-batch of an update (train_step replays) trains the same sampled SubTransformer."""
    from hat.space import update_configs

    cfg, task, model, criterion, sample = plugin_task(data_bin)
    for update in (3, 3, 4):
        task.train_step(sample, model, criterion, NoOptimizer(), update)
        assert model.supernet.active_config == update_configs(model.space, "uniform", cfg.task.seed, update)[0]
    _, _, log = task.valid_step(sample, model, criterion)
    assert log["loss_largest"] == log["loss"] and "loss_smallest" in log


@pytest.mark.parametrize("max_tokens", [300, 512, 2048])
def test_every_sentence_is_batched_with_fairseqs_batch_size_multiple(data_bin, max_tokens):
    """fairseq drops a last batch whose size is not a multiple of --required-batch-size-multiple (8 by
    default; fairseq#5036), so validation skipped the longest sentences. The plugin's datasets keep it;
    the other batches are fairseq's own."""
    from fairseq.data import FairseqDataset

    _, task, _, _, _ = plugin_task(data_bin)
    dataset = task.dataset("valid")
    indices = dataset.ordered_indices()
    fairseqs = FairseqDataset.batch_by_size(dataset, indices, max_tokens, None, 8)
    ours = dataset.batch_by_size(indices, max_tokens=max_tokens, required_batch_size_multiple=8)
    assert [list(b) for b in ours[:len(fairseqs)]] == [list(b) for b in fairseqs]
    assert np.array_equal(np.concatenate(ours), indices)  # every sentence, in fairseq's order
    assert sum(map(len, fairseqs)) < len(indices) or max_tokens != 300  # the case the fix is for does occur
    itr = task.get_batch_iterator(dataset, max_tokens=max_tokens, required_batch_size_multiple=8)
    seen = sorted(i for batch in itr.next_epoch_itr(shuffle=False) for i in batch["id"].tolist())
    assert seen == list(range(len(dataset)))


def test_sandwich_train_step_accumulates_the_three_subtransformers(data_bin, tiny_space):
    """One sandwich update = the largest, the smallest and the sampled SubTransformer, each forward and
    backward on the same batch: its loss and gradients are the sums of the three separate passes."""
    from hat.space import update_configs

    cfg, task, model, criterion, sample = plugin_task(data_bin, "sandwich", **{"dropout": 0.0, "attention-dropout": 0.0})
    model.zero_grad()
    loss, sample_size, log = task.train_step(sample, model, criterion, NoOptimizer(), 5)
    together = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    configs = update_configs(model.space, "sandwich", cfg.task.seed, 5)
    assert configs[:2] == [tiny_space.largest(), tiny_space.smallest()] and len(configs) == 3
    model.zero_grad()
    losses, sizes, nlls = [], [], []
    for config in configs:
        model.set_active_subnet(config)
        single, size, single_log = criterion(model, sample)
        single.backward()
        losses.append(float(single))
        sizes.append(size)
        nlls.append(float(single_log["nll_loss"]))
    assert float(loss) == pytest.approx(sum(losses), rel=1e-5) and sample_size == sum(sizes)
    assert log["loss"] == pytest.approx(sum(losses), rel=1e-5)
    # fairseq logs nll_loss / ntokens: the per-token mean of the three passes
    assert log["nll_loss"] / log["ntokens"] == pytest.approx(sum(nlls) / (3 * sample["ntokens"]), rel=1e-5)
    separate = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert together.keys() == separate.keys() and len(together) > 20
    for name, grad in together.items():
        assert torch.allclose(grad, separate[name], rtol=1e-4, atol=1e-7), name
    assert task._idle_parameters == []  # the largest uses every weight: nothing is left idle


def test_fairseq_generate_with_the_plugin(trained, data_bin):
    from hat.training import PLUGIN_DIR

    generate = Path(sys.executable).with_name("fairseq-generate")
    proc = subprocess.run(
        [str(generate), str(data_bin), "--user-dir", str(PLUGIN_DIR), "--path", str(trained["last"]),
         "--task", "hat_translation", "--gen-subset", "test", "--beam", "2", "--batch-size", "16", "--cpu",
         "--max-len-b", "20"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    hypotheses = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 40


def test_evaluate_returns_finite_loss_and_bleu(trained, data_bin, capsys):
    import json

    from hat.cli import main

    assert main(["evaluate", "--checkpoint", str(trained["last"]), "--data", str(data_bin), "--beam", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert math.isfinite(result["loss"]) and 0.0 <= result["bleu"] <= 100.0 and result["sentences"] == 40


def test_bleu_of_a_split_with_sentences_the_model_cannot_take_is_refused(data_bin, tmp_path):
    """fairseq would skip them and BLEU would score the rest; HAT names the split and the count instead."""
    from hat.evaluation import Generation, generate_bleu
    from hat.training import train

    last = train(space=SPACES / "tiny.yaml", data=data_bin, save_dir=tmp_path / "short",
                 options={**TRAIN_OPTIONS, "max-update": 1, "max-source-positions": 16, "max-target-positions": 16,
                          "disable-validation": True})
    with pytest.raises(HatError, match=r"split 'test': \d+ sentence\(s\) longer than the model takes "
                                       r"\(16 source / 16 target tokens\), sentence #\d+ first") as refused:
        generate_bleu(last, data_bin, None, Generation("test", beam=1))
    assert str(refused.value).startswith(f"{data_bin}: ")
    # sequence-level distillation translates what the model takes and keeps the other references
    from hat.data.distill import distil_data

    info = json.loads((distil_data(last, data_bin, tmp_path / "distilled", split="valid", beam=1)
                       / "distilled.json").read_text())
    assert info["kept"] > 0 and info["translated"] > 0 and info["translated"] + info["kept"] == 60


def test_checkpoint_of_another_space_is_refused(trained, tmp_path, data_bin):
    from hat.training import train

    other = SearchSpace.from_yaml(write_space(tmp_path, (SPACES / "tiny.yaml").read_text().replace("ffn_dim: [256, 128, 64]\n  heads", "ffn_dim: [256, 128]\n  heads", 1), "other.yaml"))
    with pytest.raises(HatError, match="trained on space 'tiny'"):
        load_supernet(trained["last"], other)
    with pytest.raises(HatError, match="trained on space 'tiny'"):
        train(space=tmp_path / "other.yaml", data=data_bin, save_dir=tmp_path / "x", restore_file=trained["last"],
              options={**TRAIN_OPTIONS, "max-update": 1})


def test_fixed_subtransformer_finetunes_from_inherited_weights(trained, data_bin, tmp_path, tiny_space):
    from hat.training import train

    config = tiny_space.smallest()
    config_file = tmp_path / "sub.yaml"
    config.to_yaml(config_file)
    last = train(space=SPACES / "tiny.yaml", data=data_bin, save_dir=tmp_path / "ft", subtransformer_config=config_file,
                 restore_file=trained["last"], reset_optimizer=True, options={**TRAIN_OPTIONS, "max-update": 5})
    config_file.unlink()  # the checkpoint carries its config, not the path of the YAML file
    loaded = load_supernet(last)
    assert loaded.fixed_config == config and loaded.num_updates == 5


def test_distillation_loss_is_the_tempered_kl_over_target_tokens():
    pytest.importorskip("fairseq")
    from hat.training import load_plugin

    load_plugin()
    distillation_loss = sys.modules["fairseq_plugin.criterions"].distillation_loss
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    target = torch.tensor([[4, 5, 1], [6, 1, 1]])  # 1 = padding
    for temperature in (1.0, 2.0):
        p = torch.softmax(teacher / temperature, -1)
        kl = (p * (p.log() - torch.log_softmax(student / temperature, -1))).sum(-1)
        expected = kl[target.ne(1)].sum() * temperature**2
        assert torch.allclose(distillation_loss(student, teacher, target, 1, temperature), expected, atol=1e-6)
    assert float(distillation_loss(teacher, teacher, target, 1, 2.0)) == pytest.approx(0.0, abs=1e-6)


def test_finetuning_with_distillation_from_the_supertransformer(trained, data_bin, tmp_path, tiny_space):
    """The teacher defaults to the restore file's largest SubTransformer; its weights stay out of the
    student's checkpoint; distillation changes what the student learns."""
    from hat.training import Distillation, train

    config_file = tmp_path / "sub.yaml"
    tiny_space.smallest().to_yaml(config_file)
    common = dict(space=SPACES / "tiny.yaml", data=data_bin, subtransformer_config=config_file,
                  restore_file=trained["last"], reset_optimizer=True, options={**TRAIN_OPTIONS, "max-update": 6})
    plain = train(save_dir=tmp_path / "plain", **common)
    distilled = train(save_dir=tmp_path / "distilled", distill=Distillation(alpha=0.5, temperature=2.0), **common)
    assert "distill_loss" in (tmp_path / "distilled" / "train.log").read_text()
    assert distilled.stat().st_size < 1.1 * plain.stat().st_size  # no teacher inside
    a, b = load_supernet(plain).supernet.state_dict(), load_supernet(distilled).supernet.state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)
    with pytest.raises(HatError, match="needs a teacher"):
        train(save_dir=tmp_path / "none", distill=Distillation(), **{**common, "restore_file": None})


def test_sequence_level_distillation_data_holds_the_teachers_translations(trained, data_bin, tmp_path, capsys):
    from fairseq.data import data_utils

    from hat.cli import main
    from hat.evaluation import Generation, generate

    out = tmp_path / "distilled"
    assert main(["data", "distil", "--checkpoint", str(trained["last"]), "--data", str(data_bin), "--out", str(out),
                 "--split", "valid", "--beam", "2"]) == 0
    assert "translating valid: 100%" in capsys.readouterr().err  # a long split shows its progress
    info = json.loads((out / "distilled.json").read_text())
    assert info["translated"] + info["kept"] == 60 and info["translated"] > 50
    _, hypotheses, _ = generate(trained["last"], data_bin, None, Generation("valid", beam=2))
    new = data_utils.load_indexed_dataset(str(out / "valid.en-de.de"), None, "mmap")
    old = data_utils.load_indexed_dataset(str(data_bin / "valid.en-de.de"), None, "mmap")
    assert all(torch.equal(new[i], hypotheses[i].long()) for i in hypotheses)
    assert sum(not torch.equal(new[i], old[i]) for i in hypotheses) > len(hypotheses) // 2
    for name in ("valid.en-de.en.bin", "train.en-de.de.bin", "dict.de.txt"):
        assert (out / name).read_bytes() == (data_bin / name).read_bytes()
    # the new folder trains like any other
    from hat.training import train

    last = train(space=SPACES / "tiny.yaml", data=out, save_dir=tmp_path / "ckpt", options={**TRAIN_OPTIONS, "max-update": 2})
    assert load_supernet(last).num_updates == 2
    assert main(["data", "distil", "--checkpoint", str(trained["last"]), "--data", str(data_bin), "--out", str(out),
                 "--split", "valid"]) == 0  # finished: returned as it is


def test_lost_config_of_an_old_checkpoint_is_refused_not_replaced(trained, tmp_path):
    """A checkpoint that names a SubTransformer YAML (older format) whose file is gone is refused."""
    state = torch.load(trained["last"], weights_only=True)
    state["cfg"]["task"]["subtransformer_config"] = str(tmp_path / "moved.yaml")
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(HatError, match="cannot be recovered"):
        load_supernet(tmp_path / "old.pt")


@pytest.mark.parametrize(
    "source, target, message",
    [
        ("a b\nc d\n", "x y\n", "has 2 lines but"),
        ("a b\n\nc d\n", "x y\nz\nw\n", "1 pair\\(s\\) with an empty side, first at line 2"),
    ],
)
def test_prepare_refuses_misaligned_or_empty_input(tmp_path, source, target, message):
    from hat.data.prepare import prepare_data

    (tmp_path / "train.en").write_text(source)
    (tmp_path / "train.de").write_text(target)
    with pytest.raises(HatError, match=message):
        prepare_data(src="en", tgt="de", train=tmp_path / "train", valid=tmp_path / "train", test=None,
                     out=tmp_path / "bin")
    assert not (tmp_path / "bin").exists()  # nothing written half-way


def test_prepare_unknown_language_suffix_lists_what_exists(tmp_path, capsys):
    from hat.cli import main

    (tmp_path / "train.en").write_text("a\n")
    (tmp_path / "train.de").write_text("b\n")
    code = main(["data", "prepare", "--src", "en", "--tgt", "fr", "--train", str(tmp_path / "train"),
                 "--valid", str(tmp_path / "train"), "--out", str(tmp_path / "bin")])
    assert code == 2
    assert "train file for language 'fr' not found (found: train.de, train.en)" in capsys.readouterr().err


def test_prepare_skip_empty_drops_pairs(tmp_path):
    from hat.data.prepare import read_parallel

    (tmp_path / "t.en").write_text("a b\n\nc d\n")
    (tmp_path / "t.de").write_text("x y\nz\nw\n")
    source, target = read_parallel(tmp_path / "t", "en", "de", "train", skip_empty=True)
    assert source == ["a b", "c d"] and target == ["x y", "w"]


def test_inactive_parameters_are_exactly_those_without_gradient(tiny_space):
    import torch

    from hat.supernet import SuperTransformer

    torch.manual_seed(0)
    model = SuperTransformer(tiny_space, src_vocab_size=40, tgt_vocab_size=40, dropout=0.0)
    src, tgt = torch.randint(4, 40, (2, 7)), torch.randint(4, 40, (2, 5))
    for config in [tiny_space.smallest(), tiny_space.largest(), *(tiny_space.sample(seed=s) for s in range(6))]:
        model.zero_grad(set_to_none=True)
        model.set_active_subnet(config)
        model(src, tgt).sum().backward()
        without_grad = {id(p) for p in model.parameters() if p.grad is None}
        assert without_grad == {id(p) for p in model.inactive_parameters()}, config.summary()


def test_two_process_cpu_training_equals_one_process_with_update_freq(data_bin, tmp_path):
    """DDP with inactive parameters: 2 gloo processes train exactly like 1 process with --update-freq 2."""
    import torch

    common = ["--space", str(SPACES / "tiny.yaml"), "--data", str(data_bin), "--max-update", "6",
              "--max-tokens", "768", "--dropout", "0", "--attention-dropout", "0", "--warmup-updates", "3",
              "--lr", "2e-3", "--no-epoch-checkpoints", "--num-workers", "0", "--seed", "4"]
    runs = {"ddp": ["--distributed-world-size", "2"], "single": ["--update-freq", "2"]}
    procs = {name: subprocess.Popen([sys.executable, "-m", "hat", "train", "--save-dir", str(tmp_path / name), *common,
                                     *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name, extra in runs.items()}  # side by side: most of each run is starting up
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name} run failed:\n{stderr[-3000:]}"
    ddp, single = (load_supernet(tmp_path / name / "checkpoint_last.pt") for name in runs)
    assert ddp.num_updates == single.num_updates == 6
    ddp_state, single_state = ddp.supernet.state_dict(), single.supernet.state_dict()
    # key biases get gradients that are exactly zero in exact arithmetic (softmax ignores them), i.e.
    # float noise, which Adam's normalisation amplifies; every other tensor must agree
    tensors = [k for k, v in single_state.items() if torch.is_tensor(v) and v.is_floating_point()
               and not k.endswith("k_proj.bias")]
    worst = max((ddp_state[k] - single_state[k]).abs().max().item() for k in tensors)
    assert worst < 1e-4, worst  # without the fix in optimizer_step: ~3e-3


def test_a_second_training_in_the_same_process_saves_its_own_best(trained, data_bin, tmp_path):
    """fairseq remembers the best loss across runs in one process; each training must start afresh."""
    from hat.training import train

    train(space=SPACES / "tiny.yaml", data=data_bin, save_dir=tmp_path, options={**TRAIN_OPTIONS, "max-update": 2})
    assert (tmp_path / "checkpoint_best.pt").is_file()


def _fairseq_preprocess(raw: Path, out: Path, src: str, tgt: str) -> Path:
    """A data-bin made by fairseq's own preprocessing (no hat_data.json), as a user brings it."""
    from fairseq import options
    from fairseq_cli import preprocess

    argv = ["--source-lang", src, "--target-lang", tgt, "--trainpref", str(raw / "train"),
            "--validpref", str(raw / "valid"), "--destdir", str(out), "--joined-dictionary", "--workers", "1",
            "--dataset-impl", "mmap"]
    preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    return out


def test_own_data_bins_train_in_their_direction(data_bin, tmp_path):
    """fairseq's en-de folder trains en->de and its de-en folder de->en; a folder with both needs a choice."""
    import shutil

    from hat.training import train

    raw = data_bin.parent / "raw"
    options = {**{k: v for k, v in TRAIN_OPTIONS.items() if k != "warmup-updates"}, "max-update": 1}
    for src, tgt in (("en", "de"), ("de", "en")):
        folder = _fairseq_preprocess(raw, tmp_path / f"{src}-{tgt}", src, tgt)
        last = train(space=SPACES / "tiny.yaml", data=folder, save_dir=tmp_path / f"ckpt-{src}-{tgt}", options=options)
        assert load_supernet(last).langs == (src, tgt)
        # no --warmup-updates given: 10% of max-update (here at least 1), not fairseq's 4,000
        assert read_checkpoint(last)["cfg"]["lr_scheduler"]["warmup_updates"] == 1
    both = tmp_path / "en-de"
    for path in (tmp_path / "de-en").glob("*.de-en.*"):
        shutil.copy(path, both)
    with pytest.raises(HatError, match="several language pairs"):
        train(space=SPACES / "tiny.yaml", data=both, save_dir=tmp_path / "x", options=options)
    last = train(space=SPACES / "tiny.yaml", data=both, save_dir=tmp_path / "chosen", options=options,
                 extra_args=["--source-lang", "de", "--target-lang", "en"])
    assert load_supernet(last).langs == ("de", "en")



def test_prepare_binarizes_several_test_sets_in_order(tmp_path):
    """Test prefixes become fairseq's splits test, test1, test2, each with its own sentences."""
    from fairseq.data import data_utils

    from hat.data.prepare import prepare_data

    for name, numbers in (("train", range(12)), ("valid", range(3)), ("a", range(2)), ("b", range(2, 6)),
                          ("c", range(6, 11))):
        (tmp_path / f"{name}.en").write_text("".join(f"the dog {i}\n" for i in numbers))
        (tmp_path / f"{name}.de").write_text("".join(f"der hund {i}\n" for i in numbers))
    out = prepare_data(src="en", tgt="de", train=tmp_path / "train", valid=tmp_path / "valid", bpe="none",
                       test=[tmp_path / "a", tmp_path / "b", tmp_path / "c"], out=tmp_path / "bin")
    meta = json.loads((out / "hat_data.json").read_text())
    assert meta["pairs"] == {"train": 12, "valid": 3, "test": 2, "test1": 4, "test2": 5}
    from fairseq.data import Dictionary

    words = Dictionary.load(str(out / "dict.de.txt"))
    test1 = data_utils.load_indexed_dataset(str(out / "test1.en-de.de"), words)
    assert [words.string(test1[i]) for i in range(len(test1))] == [f"der hund {i}" for i in range(2, 6)]
