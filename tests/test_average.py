from __future__ import annotations

import shutil

import torch

from hat.checkpoints import load_supernet, read_checkpoint
from hat.cli import main


def test_average_of_checkpoints_is_the_mean_of_their_weights(trained, tmp_path, capsys):
    early, last = read_checkpoint(trained["early"])["model"], read_checkpoint(trained["last"])["model"]
    out = tmp_path / "avg.pt"
    assert main(["average", "--inputs", str(trained["early"]), str(trained["last"]), "--out", str(out)]) == 0
    averaged = read_checkpoint(out)
    for key, value in early.items():
        if key != "_extra_state":
            assert torch.allclose(averaged["model"][key], (value + last[key]) / 2, atol=1e-6), key
    assert averaged["model"]["_extra_state"] == last["_extra_state"] and averaged["last_optimizer_state"] is None
    assert load_supernet(out).num_updates == load_supernet(trained["last"]).num_updates
    save = tmp_path / "save"
    save.mkdir()
    for name, source in (("checkpoint1.pt", "early"), ("checkpoint2.pt", "early"), ("checkpoint_3_90.pt", "last"),
                         ("checkpoint_last.pt", "last")):
        shutil.copy(trained[source], save / name)
    capsys.readouterr()
    assert main(["average", "--save-dir", str(save), "--last", "2", "--out", str(tmp_path / "last2.pt")]) == 0
    assert "checkpoint2.pt .. checkpoint_3_90.pt" in capsys.readouterr().out
    assert main(["average", "--save-dir", str(save), "--last", "4", "--out", str(tmp_path / "x.pt")]) == 2
    assert "needs 4 epoch or update checkpoints, found 3" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["average", "--inputs", str(trained["last"]), str(tmp_path / "junk.pt"), "--out", str(tmp_path / "y.pt")]) == 2
    assert "junk.pt" in capsys.readouterr().err and not (tmp_path / "y.pt").exists()
