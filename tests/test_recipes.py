"""HAT's four task recipes run end to end at toy scale (experiments/recipe.py --toy), one run per behaviour."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from hat.io import load_yaml
from tests.conftest import ROOT
from tests.corpus_archives import write_iwslt14

RECIPES = sorted((ROOT / "experiments" / "recipes").glob("*.yaml"))
pytestmark = pytest.mark.slow


def test_the_four_hat_tasks_have_recipes_with_hat_settings():
    tasks = {load_yaml(path, "recipe")["task"] for path in RECIPES}
    assert tasks == {"iwslt14_de_en", "wmt14_en_de", "wmt14_en_fr", "wmt19_en_de"}
    iwslt = load_yaml(ROOT / "experiments" / "recipes" / "iwslt14_de_en.yaml", "recipe")
    assert iwslt["average_last"] == 10 and iwslt["supertransformer"]["dropout"] == 0.375
    assert iwslt["generation"] == {"beam": 5, "lenpen": 1.0} and iwslt["bleu"] == "hat"


# What a toy run from RAW text reads of a recipe only as names: its task, languages, prose and archives.
NAMING_KEYS = {"task", "source", "target", "corpus", "downloads", "full_scale"}


def toy_behaviour(path) -> str:
    """Everything of a recipe a toy run from RAW text depends on (two recipes equal here run alike)."""
    spec = load_yaml(path, "recipe")
    return json.dumps({key: value for key, value in spec.items() if key not in NAMING_KEYS}, sort_keys=True)


# One end-to-end run per distinct behaviour (the three WMT recipes differ only in names and downloads).
DISTINCT = list({toy_behaviour(path): path for path in reversed(RECIPES)}.values())[::-1]


def test_recipes_that_share_a_toy_run_differ_only_in_names():
    assert [path.stem for path in DISTINCT] == ["iwslt14_de_en", "wmt14_en_de"]
    keys = {key for path in RECIPES for key in load_yaml(path, "recipe")}
    assert NAMING_KEYS < keys and {"space", "data", "supertransformer", "search"} <= keys  # the rest is compared


@pytest.mark.parametrize("recipe", DISTINCT, ids=[path.stem for path in DISTINCT])
def test_recipe_runs_end_to_end_at_toy_scale(recipe, tmp_path):
    from hat.data.synthetic import generate_corpus

    spec = load_yaml(recipe, "recipe")
    raw = tmp_path / "raw"
    generate_corpus(raw, train=600, valid=30, test=20, seed=3)
    for split in ("train", "valid", "test"):  # the synthetic corpus is en-de; other pairs reuse its German side
        for lang, origin in ((spec["source"], "en" if spec["source"] == "en" else "de"),
                             (spec["target"], "en" if spec["target"] == "en" else "de")):
            if not (raw / f"{split}.{lang}").exists():
                shutil.copy(raw / f"{split}.{origin}", raw / f"{split}.{lang}")
    out = tmp_path / "out"
    corpus = ["--raw", str(raw)]
    if spec["task"] == "iwslt14_de_en":  # this one starts from downloads laid out as wit3 publishes them
        read = lambda split, lang: (raw / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()  # noqa: E731
        write_iwslt14(tmp_path / "downloads", train=list(zip(read("train", "de"), read("train", "en"))),
                      test=list(zip(read("test", "de"), read("test", "en"))))
        corpus = ["--downloads", str(tmp_path / "downloads")]
    cmd = [sys.executable, str(ROOT / "experiments" / "recipe.py"), str(recipe), *corpus, "--out", str(out), "--toy"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "RESULTS.json").read_text())
    assert results["task"] == spec["task"] and len(results["models"]) == 1
    stages = json.loads((out / "stages.json").read_text())
    assert list(stages) == ["corpus"] * (corpus[0] == "--downloads") + [
        "prepare", "supernet", "latency", "search", "train", "average", "evaluate"]
    for name, model in results["models"].items():
        assert 0 <= model["bleu"] <= 100 and model["loss"] > 0
        if spec["average_last"]:
            assert model["checkpoint"].endswith("averaged.pt")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)  # resumes: every stage done
    assert again.returncode == 0 and json.loads((out / "RESULTS.json").read_text()) == results
