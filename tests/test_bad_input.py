"""Bad input to every ``hat`` command: one line ``hat: error: ...`` and exit code 2, nothing else.

Each case builds one broken file or option in a fresh folder and runs the command in-process.
The shared fixtures (a data-bin, a 30-update SuperTransformer, a predictor, an exported model)
are built once; the cases themselves take seconds.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from hat.latency import LatencyDataset, LatencyPredictor
from hat.latency.features import hat_features
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "search_spaces" / "tiny.yaml"
BINARY = bytes(range(256)) * 4


@pytest.fixture(scope="module")
def world(trained, data_bin, exported, tmp_path_factory) -> dict[str, Path]:
    """The good files every case starts from."""
    root = tmp_path_factory.mktemp("world")
    space = SearchSpace.from_yaml(TINY)
    configs = [space.sample(seed=i) for i in range(40)]
    features = np.array([hat_features(c) for c in configs])
    total = features[:, 0] * 0.01 + features[:, 3] * 0.002 + 1.0
    meta = {"space": space.name, "space_fingerprint": space.fingerprint, "space_spec": space.to_dict()}
    predictor = root / "predictor.json"
    LatencyPredictor("linear").fit(LatencyDataset(features, 0.1 * total, 0.9 * total, configs, meta)).save(predictor)
    sub = root / "sub.yaml"
    configs[3].to_yaml(sub)
    return {"root": root, "checkpoint": trained["last"], "save": trained["save"], "data": data_bin,
            "predictor": predictor, "sub": sub, "model": exported}


def run_hat(argv: list, capsys, monkeypatch, stdin: bytes | None = None) -> tuple[int, str, str]:
    from hat.cli import main

    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stdin)})())
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def copy(path: Path, tmp: Path) -> Path:
    target = tmp / path.name
    (shutil.copytree if path.is_dir() else shutil.copy)(path, target)
    return target


def write(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def edit_json(path: Path, change: Callable[[dict], None]) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def alias_bomb(tmp: Path) -> Path:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}]" for i in range(1, 9)]
    return write(tmp, "bomb.yaml", "\n".join(lines) + "\nname: x\n")


def space_with(tmp: Path, old: str, new: str) -> Path:
    return write(tmp, "space.yaml", TINY.read_text().replace(old, new))


def data_with(w: dict, tmp: Path, change: Callable[[Path], None]) -> Path:
    data = copy(w["data"], tmp)
    change(data)
    return data


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


@dataclass
class Case:
    name: str
    argv: Callable[[dict, Path], list]  # (world, tmp) -> argv
    names: str | None = None  # text the error line must contain (a file name, an option)
    stdin: bytes | None = None


def model_copy(w: dict, tmp: Path, change: Callable[[Path], None] | None = None) -> Path:
    model = copy(w["model"], tmp)
    if change:
        change(model)
    return model


def state_with_foreign_config(w: dict, tmp: Path) -> list:
    """A finished search's state.json, edited to hold a config outside the space with loss 0."""
    from hat.cli import main

    out = tmp / "search"
    args = ["search", "--space", TINY, "--checkpoint", w["checkpoint"], "--data", w["data"], "--predictor",
            w["predictor"], "--latency-constraint", "1000", "--population", "4", "--parents", "2", "--mutations", "1",
            "--crossovers", "1", "--iterations", "1", "--valid-subset", "8", "--out", out]
    assert main([str(a) for a in args]) == 0

    def poison(state: dict) -> None:
        state["candidates"][0]["config"]["encoder_embed_dim"] = 999
        state["candidates"][0]["loss"] = 0.0
        state["progress"]["constraint_index"] = 0
    edit_json(out / "state.json", poison)
    return args + ["--resume"]


SEARCH = ["search", "--space", TINY, "--latency-constraint", "1000", "--population", "4", "--parents", "2",
          "--mutations", "1", "--crossovers", "1", "--iterations", "1"]

CASES = [
    # space
    Case("space: missing file", lambda w, t: ["space", "show", t / "nope.yaml"], "nope.yaml"),
    Case("space: binary file", lambda w, t: ["space", "show", write(t, "s.yaml", BINARY)], "s.yaml"),
    Case("space: alias bomb", lambda w, t: ["space", "show", alias_bomb(t)], "aliases"),
    Case("space: 20000 layers", lambda w, t: ["space", "show", space_with(t, "layers: [1, 2, 3]", "layers: [20000]")],
         "space.yaml"),
    Case("space: flops_length 0", lambda w, t: ["space", "show", space_with(t, "qkv_dim: 64", "qkv_dim: 64\nflops_length: 0")],
         "flops_length"),
    Case("space: a 5000-digit number", lambda w, t: ["space", "show", write(t, "s.yaml", "9" * 5000)], "s.yaml"),
    Case("space: a list", lambda w, t: ["space", "show", write(t, "s.yaml", "- 1\n- 2\n")], "s.yaml"),
    Case("space sample: --n 0", lambda w, t: ["space", "sample", TINY, "--n", "0"], "--n"),
    Case("space sample: --out is a file", lambda w, t: ["space", "sample", TINY, "--out", write(t, "f", "x")], "f"),
    Case("space check: config outside the space",
         lambda w, t: ["space", "check", TINY, write(t, "c.yaml", w["sub"].read_text().replace(
             "encoder_embed_dim: 64", "encoder_embed_dim: 999").replace("encoder_embed_dim: 48",
                                                                        "encoder_embed_dim: 999"))], "c.yaml"),
    Case("space check: binary config", lambda w, t: ["space", "check", TINY, write(t, "c.yaml", BINARY)], "c.yaml"),
    Case("space check: --src-vocab 0", lambda w, t: ["space", "check", TINY, w["sub"], "--src-vocab", "0"],
         "--src-vocab"),
    # data
    Case("data synthetic: --out is a file", lambda w, t: ["data", "synthetic", "--out", write(t, "f", "x")], "f"),
    Case("data synthetic: --train 0", lambda w, t: ["data", "synthetic", "--out", t / "o", "--train", "0"], "--train"),
    Case("data prepare: --workers 0", lambda w, t: ["data", "prepare", "--src", "en", "--tgt", "de", "--train",
                                                    t / "x", "--valid", t / "x", "--out", t / "o", "--workers", "0"],
         "--workers"),
    Case("data prepare: a language code that is a path",
         lambda w, t: ["data", "prepare", "--src", "../../en", "--tgt", "de", "--train", t / "x", "--valid", t / "x",
                       "--out", t / "o"], "../../en"),
    Case("data prepare: non-UTF-8 text", lambda w, t: ["data", "prepare", "--src", "en", "--tgt", "de", "--train",
                                                       non_utf8_corpus(t), "--valid", t / "tr", "--out", t / "o"],
         "tr.en"),
    Case("data distil: a data folder without the split",
         lambda w, t: ["data", "distil", "--checkpoint", w["checkpoint"], "--data", w["data"], "--out", t / "o",
                       "--split", "nosuch"], "split 'nosuch' not found"),
    # train
    Case("train: distillation without a teacher",
         lambda w, t: ["train", "--space", TINY, "--data", w["data"], "--save-dir", t / "s", "--distill-alpha", "0.5"],
         "needs a teacher"),
    Case("train: --distill-alpha above 1",
         lambda w, t: ["train", "--space", TINY, "--data", w["data"], "--save-dir", t / "s", "--distill-alpha", "2"],
         "--distill-alpha"),
    Case("train: user-dir in --fairseq-config",
         lambda w, t: ["train", "--space", TINY, "--data", w["data"], "--save-dir", t / "s",
                       "--fairseq-config", write(t, "cfg.yaml", f"user-dir: {t}\n")], "cfg.yaml"),
    Case("train: --user-dir passed through",
         lambda w, t: ["train", "--space", TINY, "--data", w["data"], "--save-dir", t / "s", "--user-dir", t],
         "--user-dir"),
    Case("train: an option fairseq does not know",
         lambda w, t: ["train", "--space", TINY, "--data", w["data"], "--save-dir", t / "s", "--no-such-flag"],
         "--no-such-flag"),
    Case("train: binary --fairseq-config", lambda w, t: ["train", "--space", TINY, "--data", w["data"], "--save-dir", t / "s",
                                                 "--fairseq-config", write(t, "cfg.yaml", BINARY)], "cfg.yaml"),
    Case("train: --save-dir is a file", lambda w, t: ["train", "--space", TINY, "--data", w["data"],
                                                      "--save-dir", write(t, "f", "x")], "f"),
    Case("train: binary data description",
         lambda w, t: ["train", "--space", TINY, "--save-dir", t / "s", "--data",
                       data_with(w, t, lambda d: (d / "hat_data.json").write_bytes(BINARY))], "hat_data.json"),
    Case("train: data description of the wrong shape",
         lambda w, t: ["train", "--space", TINY, "--save-dir", t / "s", "--data",
                       data_with(w, t, lambda d: (d / "hat_data.json").write_text('{"src": ["../x"]}'))],
         "hat_data.json"),
    Case("train: garbled dictionary",
         lambda w, t: ["train", "--space", TINY, "--save-dir", t / "s", "--data",
                       data_with(w, t, lambda d: (d / "dict.en.txt").write_text("one two three four\n"))],
         "dict.en.txt"),
    Case("train: binary dictionary",
         lambda w, t: ["train", "--space", TINY, "--save-dir", t / "s", "--data",
                       data_with(w, t, lambda d: (d / "dict.de.txt").write_bytes(BINARY))], "dict.de.txt"),
    Case("train: truncated .bin",
         lambda w, t: ["train", "--space", TINY, "--save-dir", t / "s", "--data",
                       data_with(w, t, lambda d: truncate(d / "train.en-de.de.bin"))], "train.en-de.de.bin"),
    Case("train: no valid split",
         lambda w, t: ["train", "--space", TINY, "--save-dir", t / "s", "--data",
                       data_with(w, t, lambda d: (d / "valid.en-de.en.idx").unlink())], "valid"),
    # evaluate
    Case("import-hat: checkpoint is text", lambda w, t: ["import-hat", write(t, "h.pt", "hello"), "--data", w["data"],
                                                        "--out", t / "o.pt"], "/h.pt: "),  # the path, not just the name
    Case("import-hat: one of ours, not HAT's", lambda w, t: ["import-hat", w["checkpoint"], "--data", w["data"],
                                                            "--out", t / "o.pt"], "no args namespace"),
    Case("average: a checkpoint is binary noise", lambda w, t: ["average", "--inputs", w["checkpoint"],
                                                                write(t, "n.pt", BINARY), "--out", t / "o.pt"], "/n.pt: "),
    Case("average: a single checkpoint", lambda w, t: ["average", "--inputs", w["checkpoint"], "--out", t / "o.pt"],
         "at least 2"),
    Case("evaluate: --device cuda:99", lambda w, t: ["evaluate", "--checkpoint", w["checkpoint"], "--data", w["data"],
                                                     "--device", "cuda:99"], "--device cuda:99"),
    Case("evaluate: --device tpu", lambda w, t: ["evaluate", "--checkpoint", w["checkpoint"], "--data", w["data"],
                                                 "--device", "tpu"], "--device tpu"),
    Case("search: --fp16 on the CPU",
         lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"], "--predictor", w["predictor"],
                               "--out", t, "--fp16"], "--fp16"),
    Case("evaluate: --beam 0", lambda w, t: ["evaluate", "--checkpoint", w["checkpoint"], "--data", w["data"],
                                             "--beam", "0"], "--beam"),
    Case("evaluate: --max-tokens 1", lambda w, t: ["evaluate", "--checkpoint", w["checkpoint"], "--data", w["data"],
                                                   "--max-tokens", "1", "--no-bleu"], "--max-tokens"),
    Case("evaluate: checkpoint is text", lambda w, t: ["evaluate", "--checkpoint", write(t, "c.pt", "hello"),
                                                       "--data", w["data"]], "/c.pt: "),
    Case("evaluate: truncated test split",
         lambda w, t: ["evaluate", "--checkpoint", w["checkpoint"], "--no-bleu", "--data",
                       data_with(w, t, lambda d: truncate(d / "test.en-de.en.bin"))], "test.en-de.en.bin"),
    # profile
    Case("profile: --src-len 5000", lambda w, t: ["profile", "--space", TINY, "--src-len", "5000"], "--src-len"),
    Case("profile: --threads 0", lambda w, t: ["profile", "--space", TINY, "--threads", "0"], "--threads"),
    Case("profile: unknown provider", lambda w, t: ["profile", "--space", TINY, "--provider", "NoSuchExecutionProvider",
                                                    "--out", t / "o"], "NoSuchExecutionProvider"),
    Case("profile: --out is a file", lambda w, t: ["profile", "--space", TINY, "--out", write(t, "f", "x")], "f"),
    Case("profile: unreachable Ray", lambda w, t: ["profile", "--space", TINY, "--ray-address", "127.0.0.1:1",
                                                   "--ray-resource", "rpi4", "--out", t / "o"], "127.0.0.1:1"),
    Case("profile: corrupt reference.csv",
         lambda w, t: ["profile", "--space", TINY, "--samples", "1", "--no-tables", "--out", write(
             t, "o/reference.csv", "stage,index,encoder_ms,decoder_ms,accepted\nx,0,abc,1,1\n").parent],
         "reference.csv"),
    # predictor
    Case("predictor fit: a row of 0 ms",
         lambda w, t: ["predictor", "fit", "--out", t / "p.json", "--data",
                       write(t, "d.csv", zero_row_dataset())], "d.csv"),
    Case("predictor fit: --out is a folder", lambda w, t: ["predictor", "fit", "--data", t / "d.csv", "--out", t],
         "is a folder"),
    Case("predictor fit: binary dataset", lambda w, t: ["predictor", "fit", "--data", write(t, "d.csv", BINARY),
                                                        "--out", t / "p.json"], "d.csv"),
    Case("predictor fit: tables of the wrong shape",
         lambda w, t: ["predictor", "fit", "--data", write(t, "d.csv", zero_row_dataset(1.0)), "--out", t / "p.json",
                       "--tables", write(t, "tables.json", json.dumps(
                           {"format": "hat-latency-tables-v1", "tables": [1, 2]}))], "tables.json"),
    Case("predictor predict: NaN parameter",
         lambda w, t: ["predictor", "predict", "--config", w["sub"], "--predictor",
                       edit_json(copy(w["predictor"], t), lambda p: p["params"].update(intercept=float("nan")))],
         "predictor.json"),
    Case("predictor predict: negative predictions",
         lambda w, t: ["predictor", "predict", "--config", w["sub"], "--predictor",
                       edit_json(copy(w["predictor"], t), lambda p: p["params"].update(intercept=-1e6))],
         "predictor.json"),
    Case("predictor predict: info of the wrong shape",
         lambda w, t: ["predictor", "predict", "--config", w["sub"], "--predictor",
                       edit_json(copy(w["predictor"], t), lambda p: p.update(info=[1]))], "predictor.json"),
    Case("predictor predict: config of another space",
         lambda w, t: ["predictor", "predict", "--predictor", w["predictor"], "--config",
                       write(t, "c.yaml", (ROOT / "tests/data/HAT_wmt14ende_xeon_137.9ms.yml").read_text())],
         "c.yaml"),
    Case("predictor eval: --plot is a folder",
         lambda w, t: ["predictor", "eval", "--predictor", w["predictor"], "--data", t / "d.csv", "--plot", t],
         "is a folder"),
    # search
    Case("search: --workers -1", lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"],
                                                       "--predictor", w["predictor"], "--out", t, "--workers", "-1"],
         "--workers"),
    Case("search: --latency-constraint nan",
         lambda w, t: ["search", "--space", TINY, "--checkpoint", w["checkpoint"], "--data", w["data"],
                       "--predictor", w["predictor"], "--out", t, "--latency-constraint", "nan"], "--latency-constraint"),
    Case("search: --out is a file", lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"],
                                                          "--predictor", w["predictor"], "--out", write(t, "f", "x")],
         "f"),
    Case("search: binary state.json",
         lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"], "--predictor", w["predictor"],
                               "--resume", "--out", write(t, "state.json", BINARY).parent], "state.json"),
    Case("search: state.json edited to hold a config outside the space", state_with_foreign_config, "state.json"),
    Case("search: --max-params 20X",
         lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"], "--predictor", w["predictor"],
                               "--out", t, "--max-params", "20X"], "--max-params"),
    Case("search: --max-flops -2G",
         lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"], "--predictor", w["predictor"],
                               "--out", t, "--max-flops", "-2G"], "--max-flops"),
    Case("search: scored.jsonl of another fitness",
         lambda w, t: SEARCH + ["--checkpoint", w["checkpoint"], "--data", w["data"], "--predictor", w["predictor"],
                               "--out", write(t, "scored.jsonl", '{"format": "hat-search-store-v1", "fitness": '
                                                                  '{"kind": "other"}}\n').parent],
         "scored.jsonl"),
    # export / translate / verify
    Case("export: --out is a file", lambda w, t: ["export", "--checkpoint", w["checkpoint"], "--data", w["data"],
                                                  "--out", write(t, "f", "x")], "f"),
    Case("export: corrupt sentencepiece model",
         lambda w, t: ["export", "--checkpoint", w["checkpoint"], "--out", t / "m", "--data",
                       data_with(w, t, lambda d: (d / "spm.joint.model").write_bytes(BINARY))], "spm.joint.model"),
    Case("translate: --lenpen nan", lambda w, t: ["translate", "--model", w["model"], "--lenpen", "nan"], "--lenpen"),
    Case("translate: non-UTF-8 stdin", lambda w, t: ["translate", "--model", w["model"]], "stdin",
         stdin=b"the dog \xff\xfe sees\n"),
    Case("translate: non-UTF-8 --input", lambda w, t: ["translate", "--model", w["model"], "--input",
                                                       write(t, "in.txt", b"\xff\xfe\n")], "in.txt"),
    Case("translate: edited config.yaml",
         lambda w, t: ["translate", "--model", model_copy(w, t, lambda m: (m / "config.yaml").write_text(
             (m / "config.yaml").read_text() + "\n"))], "config.yaml"),
    Case("translate: corrupt sentencepiece model",
         lambda w, t: ["translate", "--model", model_copy(w, t, lambda m: (m / "spm.src.model").write_bytes(BINARY))],
         "spm.src.model"),
    Case("translate: manifest of the wrong shape",
         lambda w, t: ["translate", "--model", model_copy(w, t, lambda m: edit_json(
             m / "manifest.json", lambda d: d.update(sentencepiece={"src": "../../etc/passwd"})))], "manifest.json"),
    Case("verify: --constraint nan", lambda w, t: ["verify", "--model", w["model"], "--predictor", w["predictor"],
                                                   "--constraint", "nan"], "--constraint"),
    Case("verify: --constraint 0", lambda w, t: ["verify", "--model", w["model"], "--predictor", w["predictor"],
                                                 "--constraint", "0"], "--constraint"),
    Case("verify: --tolerance -1", lambda w, t: ["verify", "--model", w["model"], "--predictor", w["predictor"],
                                                 "--tolerance", "-1"], "--tolerance"),
    Case("verify: edited config.yaml",
         lambda w, t: ["verify", "--predictor", w["predictor"], "--model", model_copy(
             w, t, lambda m: (m / "config.yaml").write_text((m / "config.yaml").read_text() + "# x\n"))],
         "config.yaml"),
    # demo
    Case("demo: --threads 0", lambda w, t: ["demo", "--out", t, "--threads", "0"], "--threads"),
    Case("demo: --out is a file", lambda w, t: ["demo", "--out", write(t, "f", "x")], "f"),
    Case("demo: stages.json of the wrong shape",
         lambda w, t: ["demo", "--out", write(t, "stages.json", '{"data": {"vocab": 3}}').parent], "stages.json"),
]


def non_utf8_corpus(tmp: Path) -> Path:
    write(tmp, "tr.en", b"\xff\xfe a\n")
    write(tmp, "tr.de", "a\n")
    return tmp / "tr"


def zero_row_dataset(first_ms: float = 0.0) -> str:
    """Our CSV format, 12 rows of HAT features; the first row's latency is ``first_ms``."""
    from hat.latency.dataset import HAT_FEATURES, LATENCY_COLUMNS

    rows = [",".join(HAT_FEATURES + LATENCY_COLUMNS[:2])]
    for i in range(12):
        features = [512, 6, 2048, 8, 512, 1 + i % 6, 2048, 8, 8, 1]
        latency = [first_ms, first_ms] if i == 0 else [1.0 + i, 10.0 + i]
        rows.append(",".join(map(str, features + latency)))
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_exit_2(case, world, tmp_path, capsys, monkeypatch):
    argv = case.argv(world, tmp_path)
    code, out, err = run_hat(argv, capsys, monkeypatch, case.stdin)
    errors = [line for line in err.splitlines() if line.startswith("hat: error:")]
    assert code == 2, f"exit {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    assert len(errors) == 1, err[-2000:]
    assert case.names in errors[0], errors[0]


def test_bad_input_runs_every_command():
    """The table covers every command of the CLI."""
    from hat.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    covered = {case.name.split(":")[0].split()[0] for case in CASES}
    assert set(commands) <= covered | {"predictor"}, set(commands) - covered
