from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# A small space with separate embeddings and different encoder/decoder widths, and one with an
# elastic encoder depth: both exercise paths the tiny space does not.
UNSHARED_SPACE = """
name: unshared_test
qkv_dim: 16
share_all_embeddings: false
encoder: {embed_dim: [24, 16], layers: [3], ffn_dim: [32, 16], heads: [4, 2]}
decoder: {embed_dim: [20, 12], layers: [1, 2, 3], ffn_dim: [40, 8], self_heads: [4, 2], cross_heads: [4, 2], ende_attn: [-1, 1, 2]}
"""

ELASTIC_ENCODER_SPACE = """
name: elastic_encoder_test
qkv_dim: 16
share_all_embeddings: true
encoder: {embed_dim: [16, 12], layers: [2, 3, 4], ffn_dim: [32, 16], heads: [2, 1]}
decoder: {embed_dim: [16, 8], layers: [1, 2], ffn_dim: [32, 16], self_heads: [2, 1], cross_heads: [2, 1], ende_attn: [-1, 1]}
"""


# Tests using these fixtures prepare data or train a model: they belong to the slow tier.
SLOW_FIXTURES = {"data_bin", "trained", "exported"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: prepares data, trains, exports or runs for seconds "
                                       "(the unit tier is `pytest -m \"not slow\"`)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# The README's `hat profile --space tiny` exports these layer pieces (they do not depend on the
# vocabulary); a background process exports them into this run's cache from the start, on CPU
# the other tests leave idle, so that test finds them as a second profile on one machine would.
PREFETCH = """
import torch
from hat.export.ort_backend import cache_dir, table_pieces
from hat.export.pieces import LAYER_KINDS, PieceCache
from hat.space import SearchSpace
torch.set_num_threads(1)
space = SearchSpace.from_yaml("tiny")
cache = PieceCache(cache_dir(), space, vocab=400)  # $HAT_CACHE_DIR: the session's folder
for key in table_pieces(space):
    if key[0] in LAYER_KINDS:
        cache.path(key)
"""


def prefetch_tiny_pieces() -> subprocess.Popen:
    lower_priority = (lambda: os.nice(10)) if hasattr(os, "nice") else None
    return subprocess.Popen([sys.executable, "-c", PREFETCH], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=lower_priority)


@pytest.fixture(scope="session", autouse=True)
def piece_cache(tmp_path_factory, request) -> Path:
    """Exported onnxruntime pieces go to one folder of this test session (never the user's cache)."""
    path = tmp_path_factory.mktemp("onnx_pieces")
    old = os.environ.get("HAT_CACHE_DIR")
    os.environ["HAT_CACHE_DIR"] = str(path)
    readme = any(item.path.name == "test_readme.py" for item in request.session.items)
    prefetch = prefetch_tiny_pieces() if readme else None
    yield path
    if prefetch is not None:
        prefetch.kill()
        prefetch.wait()
    if old is None:
        del os.environ["HAT_CACHE_DIR"]
    else:
        os.environ["HAT_CACHE_DIR"] = old


@pytest.fixture
def tiny_space() -> SearchSpace:
    return SearchSpace.from_yaml(SPACES / "tiny.yaml")


@pytest.fixture
def wmt_space() -> SearchSpace:
    return SearchSpace.from_yaml(SPACES / "wmt14_en_de.yaml")


@pytest.fixture
def unshared_space(tmp_path: Path) -> SearchSpace:
    return SearchSpace.from_yaml(write_space(tmp_path, UNSHARED_SPACE))


@pytest.fixture
def elastic_encoder_space(tmp_path: Path) -> SearchSpace:
    return SearchSpace.from_yaml(write_space(tmp_path, ELASTIC_ENCODER_SPACE))


TRAIN_OPTIONS = {"max-tokens": 1536, "warmup-updates": 10, "lr": 2e-3, "log-interval": 10,
                 "no-epoch-checkpoints": True, "dropout": 0.1, "num-workers": 0}


@pytest.fixture(scope="session")
def data_bin(tmp_path_factory) -> Path:
    """A small synthetic corpus, prepared (sentencepiece + fairseq binarization)."""
    pytest.importorskip("fairseq")
    from hat.data.prepare import prepare_data
    from hat.data.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("synthetic")
    generate_corpus(root / "raw", train=1500, valid=60, test=40, seed=3)
    return prepare_data(src="en", tgt="de", train=root / "raw" / "train", valid=root / "raw" / "valid",
                        test=root / "raw" / "test", out=root / "bin", vocab_size=400)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_bin) -> dict:
    """A tiny SuperTransformer: 2 updates (kept as early.pt), then the same run resumed to 30."""
    import shutil

    from hat.training import train

    save = tmp_path_factory.mktemp("ckpt")
    space = SPACES / "tiny.yaml"
    train(space=space, data=data_bin, save_dir=save, options={**TRAIN_OPTIONS, "max-update": 2})
    early = save / "early.pt"
    shutil.copy(save / "checkpoint_last.pt", early)
    train(space=space, data=data_bin, save_dir=save, options={**TRAIN_OPTIONS, "max-update": 30})
    return {"early": early, "last": save / "checkpoint_last.pt", "save": save}


@pytest.fixture(scope="session")
def exported(trained, data_bin, tmp_path_factory) -> Path:
    """A SubTransformer of ``trained`` as ``hat export --onnx --quantize int8`` writes it (read-only)."""
    pytest.importorskip("onnxruntime")
    from hat.export.model_dir import export_model

    out = tmp_path_factory.mktemp("export")
    config_file = out / "sub.yaml"
    SearchSpace.from_yaml(SPACES / "tiny.yaml").sample(seed=4).to_yaml(config_file)
    return export_model(trained["last"], config_file, data_bin, out / "model", onnx=True, quantize="int8")
