from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from hat import ModelDims, count_parameters
from hat.space import SearchSpace, SubTransformerConfig
from hat.space.flops import count_flops
from hat.subtransformer import SubTransformer
from tests.conftest import ROOT, SPACES

PUBLISHED = json.loads((ROOT / "tests" / "data" / "hat_published_models.json").read_text())["models"]


@pytest.mark.parametrize("model", PUBLISHED, ids=[m["name"] for m in PUBLISHED])
def test_flops_and_parameters_match_hat_published_figures(model):
    space = SearchSpace.from_yaml(SPACES / f"{model['space']}.yaml")
    config = SubTransformerConfig.from_dict(model["config"])
    space.validate(config)
    flops = count_flops(config, space.qkv_dim, space.flops_length)
    assert flops / 1e9 == pytest.approx(model["published_flops_g"], rel=0.02)
    assert abs(flops / 1e9 - model["published_flops_g"]) <= 0.0051 + 0.002 * model["published_flops_g"]  # rounding
    dims = ModelDims.for_space(space, 0, 0)
    assert count_parameters(config, dims, include_embeddings=False) / 1e6 == pytest.approx(
        model["published_params_m"], abs=0.0051)


def test_iwslt_counts_at_23_tokens_and_wmt_at_30():
    assert SearchSpace.from_yaml(SPACES / "iwslt14_de_en.yaml").flops_length == 23
    wmt = SearchSpace.from_yaml(SPACES / "wmt14_en_de.yaml")
    assert wmt.flops_length == 30 and "flops_length" not in wmt.to_dict()


def _torch_flops(model: SubTransformer, src_len: int, tgt_len: int) -> tuple[int, int]:
    """FLOPs torch counts in one teacher-forced forward pass, and the vocabulary of the logits."""
    src = torch.randint(4, 40, (1, src_len))
    prev = torch.randint(4, 40, (1, tgt_len))
    # the math kernel runs attention as matrix products the counter sees (the fused CPU kernel is not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(src, prev)
    return counter.get_total_flops(), logits.size(-1)


@pytest.mark.parametrize("space_fixture", ["tiny_space", "unshared_space"])
def test_flops_equal_torch_operator_count_of_the_extracted_model(request, space_fixture):
    space = request.getfixturevalue(space_fixture)
    dims = ModelDims.for_space(space, 40, 40)
    configs = [space.smallest(), space.largest()] + [space.sample(seed=s) for s in range(6)]
    assert {e for c in configs for e in c.decoder_ende_attn} >= {-1, 1}  # arbitrary attention is covered
    for config in configs:
        model = SubTransformer(config, dims).eval()
        for src_len, tgt_len in ((7, 5), (30, 30)):
            counted, vocab = _torch_flops(model, src_len, tgt_len)
            output_projection = 2 * tgt_len * config.decoder_embed_dim * vocab
            assert counted - output_projection == count_flops(config, space.qkv_dim, src_len, tgt_len), config
