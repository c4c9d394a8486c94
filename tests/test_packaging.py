"""A normal (non-editable) install: the wheel carries the shipped spaces and latency tables."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The wheel built from this checkout, installed (without dependencies) into its own folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                            "-w", str(work / "dist")], capture_output=True, text=True, cwd=work)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((work / "dist").glob("hat_nas-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                              str(work / "site"), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    return {**os.environ, "PYTHONPATH": str(work / "site")}


def hat(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hat", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.mark.slow
def test_wheel_runs_shipped_spaces_and_predictors_outside_the_checkout(installed, tmp_path):
    where = subprocess.run([sys.executable, "-c", "import hat; print(hat.__file__)"], capture_output=True, text=True,
                           env=installed, cwd=tmp_path)
    assert installed["PYTHONPATH"] in where.stdout, where.stdout + where.stderr  # not the checkout
    shown = hat(installed, "space", "show", "wmt14_en_de", "--json", cwd=tmp_path)
    assert shown.returncode == 0 and '"name": "wmt14_en_de"' in shown.stdout, shown.stderr[-2000:]
    sample = hat(installed, "space", "sample", "tiny", "--n", "1", "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr[-2000:]
    config = next((tmp_path / "c").glob("*.yaml"))
    predicted = hat(installed, "predictor", "predict", "--predictor", "intel-xeon-processor_1t/tiny", "--config",
                    str(config), "--json", cwd=tmp_path)
    assert predicted.returncode == 0 and '"latency_ms"' in predicted.stdout, predicted.stderr[-2000:]
    version = hat(installed, "--version", cwd=tmp_path)
    assert version.stdout.strip().startswith("hat 0."), version
    unknown = hat(installed, "space", "show", "no_such_space", cwd=tmp_path)
    assert unknown.returncode == 2 and "shipped: iwslt14_de_en" in unknown.stderr, unknown.stderr
