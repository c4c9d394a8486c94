"""The README's pipeline block, run as a user would: every command of it, budgets scaled down."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Budget flags of the README -> test-sized ones; anything else runs as written.
SCALE = [
    (r"(hat data synthetic --out \S+ --prepare)", r"\1 --train 1500 --valid 60 --test 40"),
    (r"--max-update 1500", "--max-update 20"),
    (r"--max-update 500", "--max-update 4"),
    (r"--samples 200 --test-samples 100", "--samples 10 --test-samples 4 --runs 2 --warmup 1"),
    (r"(--workers 2)", r"\1 --population 6 --parents 2 --mutations 2 --crossovers 2 --iterations 1 --valid-subset 20"),
    (r"(hat verify .*)", r"\1 --runs 2"),
]


def pipeline_commands() -> list[str]:
    """The fenced block under 'The pipeline from the command line', one command a line, no comments."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The pipeline from the command line"):]
    block = section[section.index("```bash") + 7: section.index("```", section.index("```bash") + 7)]
    joined = re.sub(r"\\\n\s*", "", block)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def constraints(workdir: Path) -> tuple[float, float]:
    """Two budgets inside this machine's feasible range (the README's 12 and 18 ms are for ours)."""
    from hat.latency import LatencyPredictor
    from hat.search import EvolutionarySearch
    from hat.space import SearchSpace

    predictor = LatencyPredictor.load(workdir / "p.json")
    low, high = EvolutionarySearch(SearchSpace.from_yaml("tiny"), None, predictor, [1.0]).feasible_range()
    return round(low + 0.5 * (high - low), 1), round(low + 0.8 * (high - low), 1)


@pytest.mark.slow
def test_readme_pipeline_runs_as_written(tmp_path):
    commands = pipeline_commands()
    assert len(commands) == 11 and all(c.startswith(("hat ", "echo ")) for c in commands), commands
    hat = f"{sys.executable} -m hat"
    budget: tuple[float, float] | None = None
    for command in commands:
        for pattern, replacement in SCALE:
            command = re.sub(pattern, replacement, command)
        if budget is not None:
            command = command.replace("--latency-constraint 12 18", f"--latency-constraint {budget[0]:g} {budget[1]:g}")
            command = command.replace("best_12ms.yaml", f"best_{budget[0]:g}ms.yaml")
            command = command.replace("--constraint 12 ", f"--constraint {budget[0]:g} ")
        done = subprocess.run(re.sub(r"(^|\| )hat ", rf"\1{hat} ", command), shell=True, cwd=tmp_path,
                              capture_output=True, text=True)
        allowed = (0, 1) if command.startswith("hat verify") else (0,)  # verify: 1 means over budget
        assert done.returncode in allowed, f"{command}\n{done.stderr[-3000:]}"
        if command.startswith("hat predictor fit"):
            budget = constraints(tmp_path)
        if command.startswith("echo"):
            assert done.stdout.strip(), "no translation"
    for produced in ("data/syn/bin/dict.en.txt", "ckpt/checkpoint_best.pt", "latency/mycpu/tiny/tables.json",
                     "latency/mycpu/tiny/test.csv", "p.json", "pvm.png", "runs/search/summary.json",
                     "runs/search/pareto.png", "ft/checkpoint_best.pt", "ft/train.log", "model/manifest.json",
                     "model/decoder_step.int8.onnx"):
        assert (tmp_path / produced).is_file(), produced
    summary = json.loads((tmp_path / "runs/search/summary.json").read_text())
    assert summary["latency_runtime"]["backend"] == "onnxruntime"  # the README profiles the deployed runtime
