"""No code runs from a crafted file, whatever torch defaults to; no network listener for local work;
files keep the user's permissions; a missing extra is one line."""
from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
import torch

from hat.errors import HatError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "search_spaces" / "tiny.yaml"


class Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def unsafe_torch(monkeypatch):
    """torch as an old version (< 2.6, full unpickling by default) with the opt-out variable set."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(torch.serialization, "_default_to_weights_only", lambda pickle_module: False)


@pytest.fixture
def crafted(tmp_path, unsafe_torch) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "crafted.pt"
    torch.save({"model": Payload(marker), "cfg": {}}, path)
    with pytest.warns(Warning), open(path, "rb") as handle:  # the file is live: a plain torch.load runs it
        torch.load(handle)
    assert marker.exists()
    marker.unlink()
    return path, marker


def hat(argv: list, capsys) -> tuple[int, str]:
    from hat.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_fairseq_reads_checkpoints_weights_only_once_hat_is_loaded(crafted):
    pytest.importorskip("fairseq")
    from fairseq import checkpoint_utils

    from hat.training import load_plugin

    path, marker = crafted
    load_plugin()
    with pytest.raises(HatError, match="cannot read checkpoint safely"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    with pytest.raises(HatError, match="cannot read checkpoint safely"):
        checkpoint_utils.load_model_ensemble_and_task([str(path)])
    assert not marker.exists()


def test_a_refused_checkpoint_is_named_by_its_path_with_what_was_refused(crafted):
    from hat.checkpoints import read_checkpoint

    path, marker = crafted
    with pytest.raises(HatError) as refused:
        read_checkpoint(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: cannot read checkpoint safely (a weights-only load refused it: ")
    assert "open" in message and "(1)" not in message and "weights_only` set to `False`" not in message  # no advice to unpickle
    assert not marker.exists()


@pytest.mark.parametrize("route", ["config restore-file", "finetune-from-model", "evaluate", "search", "export"])
def test_no_command_unpickles_a_crafted_checkpoint(route, crafted, data_bin, tmp_path, capsys):
    path, marker = crafted
    train = ["train", "--space", TINY, "--data", data_bin, "--save-dir", tmp_path / "save"]
    argv = {
        "config restore-file": train + ["--fairseq-config", _write(tmp_path / "c.yaml", f"restore-file: {path}\n")],
        "finetune-from-model": train + ["--finetune-from-model", path],
        "evaluate": ["evaluate", "--checkpoint", path, "--data", data_bin],
        "search": ["search", "--space", TINY, "--checkpoint", path, "--data", data_bin, "--predictor", path,
                   "--latency-constraint", "5", "--out", tmp_path / "s"],
        "export": ["export", "--checkpoint", path, "--data", data_bin, "--out", tmp_path / "m"],
    }[route]
    code, err = hat(argv, capsys)
    assert code == 2 and "cannot read checkpoint safely" in err, err[-2000:]
    assert not marker.exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_aliases_are_refused_everywhere(tmp_path):
    from hat.space import SearchSpace, SubTransformerConfig
    from hat.training import load_options_file

    text = "a: &x [1, 2]\nb: *x\n"
    for load in (SearchSpace.from_yaml, SubTransformerConfig.from_yaml, load_options_file):
        with pytest.raises(HatError, match="aliases"):
            load(_write(tmp_path / "f.yaml", text))


def test_space_names_never_escape_the_output_folder(tmp_path, capsys):
    space = _write(tmp_path / "evil.yaml", TINY.read_text().replace("name: tiny", "name: ../../escaped"))
    out = tmp_path / "a" / "b"
    code, err = hat(["space", "sample", space, "--n", "2", "--out", out], capsys)
    assert code == 0, err
    written = sorted(p for p in tmp_path.rglob("*.yaml") if p.name != "evil.yaml")
    assert len(written) == 2 and all(p.parent == out for p in written)


def test_local_parallel_search_starts_no_ray(trained, data_bin, monkeypatch, tmp_path):
    """--workers without --ray-address uses local processes: Ray (which listens on every interface) never starts."""
    import hat.ray_cluster
    from hat.cli import main

    def refuse(address):
        raise AssertionError(f"Ray was joined ({address}) though no cluster was named")

    monkeypatch.setattr(hat.ray_cluster, "connect", refuse)
    predictor = tmp_path / "p.json"
    _fit_toy_predictor(predictor)
    code = main([str(a) for a in ["search", "--space", TINY, "--checkpoint", trained["last"], "--data", data_bin,
                                  "--predictor", predictor, "--latency-constraint", "1000", "--population", "4",
                                  "--parents", "2", "--mutations", "2", "--crossovers", "0", "--iterations", "1",
                                  "--valid-subset", "8", "--workers", "2", "--out", tmp_path / "s"]])
    assert code == 0
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def _fit_toy_predictor(path: Path) -> None:
    import numpy as np

    from hat.latency import LatencyDataset, LatencyPredictor
    from hat.latency.features import hat_features
    from hat.space import SearchSpace

    space = SearchSpace.from_yaml(TINY)
    configs = [space.sample(seed=i) for i in range(30)]
    features = np.array([hat_features(c) for c in configs])
    total = features[:, 0] * 0.01 + 1.0
    meta = {"space": space.name, "space_fingerprint": space.fingerprint, "space_spec": space.to_dict()}
    LatencyPredictor("linear").fit(LatencyDataset(features, 0.1 * total, 0.9 * total, configs, meta)).save(path)


def test_unreachable_ray_cluster_fails_fast(capsys):
    import time

    pytest.importorskip("ray")
    start = time.time()
    code, err = hat(["profile", "--space", TINY, "--ray-address", "127.0.0.1:1", "--ray-resource", "rpi4"], capsys)
    assert code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in err
    assert time.time() - start < 15


def test_written_files_respect_the_umask(tmp_path):
    from hat.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_non_finite_numbers_are_never_written(tmp_path):
    from hat.io import atomic_write_json

    with pytest.raises(HatError, match="non-finite"):
        atomic_write_json(tmp_path / "a.json", {"loss": float("nan")})
    assert not (tmp_path / "a.json").exists()


def test_missing_extra_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the 'onnx' extra were not installed
    model = tmp_path / "m"
    model.mkdir()
    from hat.export import runtime

    monkeypatch.setattr(runtime, "read_manifest", lambda d: {"onnx": {"fp32": {"encoder": "e", "decoder_step": "d"}},
                                                              "dims": {"padding_idx": 1}})
    for name in ("e", "d"):
        (model / name).write_text("x")
    code, err = hat(["translate", "--model", model], capsys)
    assert code == 2 and err.count("\n") == 1 and "pip install 'hat-nas[onnx]'" in err, err


def test_missing_matplotlib_skips_plots_with_a_warning(monkeypatch, tmp_path, caplog):
    import numpy as np

    from hat.plots import predicted_vs_measured

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    predicted_vs_measured(np.ones(3), np.ones(3), tmp_path / "p.png", "t")
    assert not (tmp_path / "p.png").exists()
    assert "matplotlib is not installed" in caplog.text


def test_rerunning_a_finished_training_changes_nothing(trained, data_bin, tmp_path, capsys):
    """However max-update is given (here fairseq's own flag form), a finished run is finished."""
    from hat.io import file_sha256

    save = tmp_path / "save"
    shutil.copytree(trained["save"], save)
    before = file_sha256(save / "checkpoint_last.pt")
    code, err = hat(["train", "--space", TINY, "--data", data_bin, "--save-dir", save, "--max-update", "30"], capsys)
    assert code == 0, err[-2000:]
    assert file_sha256(save / "checkpoint_last.pt") == before


def test_a_torch_without_safe_loading_is_refused(monkeypatch, tmp_path):
    from hat import checkpoints

    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    torch.save({"x": torch.zeros(1)}, tmp_path / "c.pt")
    with pytest.raises(HatError, match="install torch >= 2.6"):
        checkpoints.read_checkpoint(tmp_path / "c.pt")
