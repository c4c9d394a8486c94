from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from hat.cli import main
from tests.conftest import ROOT, SPACES

HAT_CONFIG = ROOT / "tests" / "data" / "HAT_wmt14ende_xeon_137.9ms.yml"


def test_space_show_json(capsys):
    assert main(["space", "show", str(SPACES / "wmt14_en_de.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["size"] == 417_846_678_672_384 and data["decoder"]["layers"] == [1, 2, 3, 4, 5, 6]


def test_space_sample_is_deterministic_and_valid(capsys, tmp_path):
    args = ["space", "sample", str(SPACES / "tiny.yaml"), "--n", "3", "--seed", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    docs = list(yaml.safe_load_all(first))
    assert len(docs) == 3 and all(d["space"] == "tiny" for d in docs)
    assert main(args + ["--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == 3
    assert main(["space", "check", str(SPACES / "tiny.yaml"), str(files[0])]) == 0


def test_space_check_hat_config_with_counts(capsys):
    args = ["space", "check", str(SPACES / "wmt14_en_de.yaml"), str(HAT_CONFIG), "--src-vocab", "32768", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] and data["parameters"] - data["parameters_without_embeddings"] == 32768 * 512


@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize(
    "config_text, message",
    [
        (None, "config file not found"),
        ("encoder_embed_dim: [", "malformed YAML"),
        ("encoder_embed_dim: 512\nfoo: 1\n", "unknown config key(s): foo"),
    ],
)
def test_space_check_bad_input_is_one_line_exit_2(tmp_path, config_text, message):
    config = tmp_path / "c.yaml"
    if config_text is not None:
        config.write_text(config_text)
    proc = subprocess.run(
        [sys.executable, "-m", "hat", "space", "check", str(SPACES / "tiny.yaml"), str(config)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hat: error: ") and message in lines[0]
    assert str(config) in lines[0] and "Traceback" not in proc.stderr


def test_space_check_config_outside_space(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(HAT_CONFIG.read_text())
    assert main(["space", "check", str(SPACES / "tiny.yaml"), str(config)]) == 2
    err = capsys.readouterr().err
    assert "encoder_embed_dim = 512 is not in space 'tiny' (allowed: 64, 48)" in err and str(config) in err


def test_core_does_not_import_fairseq():
    code = "import sys, hat, hat.cli; hat.cli.build_parser(); assert 'fairseq' not in sys.modules, 'fairseq imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_option_of_every_command_has_help_and_help_runs(capsys):
    """--help works everywhere, and no option is left without a help text."""
    import argparse

    from hat.cli import build_parser

    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:  # noqa: SLF001 - argparse keeps subcommands here
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for sub in action.choices.values():
                    yield from parsers(sub)

    for parser in parsers(build_parser()):
        missing = [a.option_strings or a.dest for a in parser._actions if not a.help]  # noqa: SLF001
        assert not missing, f"{parser.prog}: {missing}"
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["--help"])
        assert exit_.value.code == 0
    assert "default: 125" in capsys.readouterr().out  # search's population shows its default


def test_space_check_flops_as_hat_published_them(capsys):
    """HAT's README lists 1.87 GFLOPs and 30.47 M parameters for this Xeon model."""
    args = ["space", "check", str(SPACES / "wmt14_en_de.yaml"), str(HAT_CONFIG), "--flops"]
    assert main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flops_length"] == 30 and round(data["flops"] / 1e9, 2) == 1.87
    assert round(data["parameters_without_embeddings"] / 1e6, 2) == 30.47
    assert main(args) == 0
    assert "FLOPs: 1.87 G" in capsys.readouterr().out
