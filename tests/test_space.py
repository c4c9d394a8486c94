from __future__ import annotations

import itertools
import random

import pytest

from hat.errors import HatError
from hat.space import SearchSpace
from tests.conftest import ELASTIC_ENCODER_SPACE, SPACES, write_space


def test_wmt_space_size_is_exact(wmt_space):
    assert wmt_space.size() == 417_846_678_672_384
    assert wmt_space.super_embed_dim == 640 and wmt_space.qkv_dim == 512 and wmt_space.share_all_embeddings


def test_iwslt_space_has_separate_embeddings_and_its_choices():
    space = SearchSpace.from_yaml(SPACES / "iwslt14_de_en.yaml")
    assert not space.share_all_embeddings
    assert space.encoder["ffn_dim"] == (2048, 1024, 512) and space.decoder["cross_heads"] == (4, 2)


MICRO_SPACE = """
name: micro
qkv_dim: 8
share_all_embeddings: true
encoder: {embed_dim: [8, 4], layers: [2, 3], ffn_dim: [8, 4], heads: [2, 1]}
decoder: {embed_dim: [8], layers: [1, 2], ffn_dim: [8, 4], self_heads: [2], cross_heads: [2, 1], ende_attn: [-1, 1]}
"""


def test_size_matches_brute_force_enumeration(tmp_path):
    # Distinct configs reachable from all genomes (inactive genes vary freely) == size().
    space = SearchSpace.from_yaml(write_space(tmp_path, MICRO_SPACE))
    seen = {space.decode(g).archid for g in itertools.product(*(gene.choices for gene in space.genes))}
    assert len(seen) == space.size()


def test_sampling_is_deterministic_and_valid(tiny_space):
    a = [tiny_space.sample(rng=random.Random(7)) for _ in range(3)]
    b = [tiny_space.sample(rng=random.Random(7)) for _ in range(3)]
    assert a == b
    many = [tiny_space.sample(seed=s) for s in range(200)]
    assert len({c.archid for c in many}) > 150
    for config in many:
        tiny_space.validate(config)
    # Depth is uniform over its choices (HAT's sampling): every decoder depth appears.
    assert {c.decoder_layers for c in many} == set(tiny_space.decoder["layers"])


def test_largest_and_smallest(wmt_space):
    big, small = wmt_space.largest(), wmt_space.smallest()
    assert big.decoder_layers == 6 and set(big.encoder_ffn_dims) == {3072} and set(big.decoder_ende_attn) == {2}
    assert small.decoder_layers == 1 and small.encoder_embed_dim == 512 and small.decoder_ende_attn == (-1,)


def test_genome_round_trip(wmt_space):
    rng = random.Random(0)
    for _ in range(50):
        config = wmt_space.sample(rng=rng)
        genome = wmt_space.encode(config, rng=rng)
        assert len(genome) == len(wmt_space.genes)
        assert wmt_space.decode(genome) == config


def test_elastic_encoder_depth_needs_enough_layers_for_ende_attention(tmp_path):
    text = ELASTIC_ENCODER_SPACE.replace("layers: [2, 3, 4]", "layers: [1, 2]")
    with pytest.raises(HatError, match="last 2 encoder layers but encoder.layers allows only 1"):
        SearchSpace.from_yaml(write_space(tmp_path, text))


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nqkv_dim: [1\n", "malformed YAML"),
        ("", "search space file is empty"),
        (ELASTIC_ENCODER_SPACE + "colour: blue\n", "unknown key"),
        (ELASTIC_ENCODER_SPACE.replace("qkv_dim: 16", "qkv_dim: 15"), "not divisible by 2 heads"),
        (ELASTIC_ENCODER_SPACE.replace("ffn_dim: [32, 16], heads", "ffn_dim: [], heads"), "non-empty list"),
        (ELASTIC_ENCODER_SPACE.replace("ende_attn: [-1, 1]", "ende_attn: [-1, 0]"), "0 is not valid"),
        (ELASTIC_ENCODER_SPACE.replace("self_heads", "slf_heads"), "unknown decoder key"),
    ],
)
def test_bad_space_files_give_one_line_errors_naming_the_file(tmp_path, text, message):
    path = write_space(tmp_path, text)
    with pytest.raises(HatError, match=message) as info:
        SearchSpace.from_yaml(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(HatError, match="search space file not found"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")
