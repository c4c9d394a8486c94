from __future__ import annotations

import pytest
import torch

from hat import ModelDims, count_parameters
from hat.search.objectives import memory_mb, weights_mb
from hat.space import ende_attn_layers
from hat.subtransformer import SubTransformer
from hat.tokens import EOS


def _decode_caches(model: SubTransformer, beam: int, src_len: int, steps: int) -> int:
    """Floats held in the key/value caches after ``steps`` incremental steps over ``beam`` rows."""
    src = torch.randint(4, 50, (beam, src_len))
    state: dict = {}
    tokens = torch.full((beam, 1), EOS)
    with torch.no_grad():
        encoder_out = model.encoder(src)
        for _ in range(steps):
            logits = model.decoder(tokens, encoder_out, state)[:, -1]
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return sum(t.numel() for cache in state.values() for name, t in cache.items() if name != "cross_padding_mask")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_peak_memory_counts_what_a_beam_search_holds(unshared_space, precision):
    dims = ModelDims.for_space(unshared_space, 50, 60)
    beam, src_len, steps = 3, 7, 4
    objective = memory_mb(dims, precision, src_len=src_len, tgt_len=steps, beam=beam)
    configs = [unshared_space.largest(), unshared_space.smallest()] + [unshared_space.sample(seed=s) for s in range(4)]
    for config in configs:
        cache = _decode_caches(SubTransformer(config, dims).eval(), beam, src_len, steps)
        encoder_states = max(ende_attn_layers(e) for e in config.decoder_ende_attn) * src_len * config.encoder_embed_dim
        weights = weights_mb(dims, precision).measure(config) * 1e6
        assert objective.measure(config) * 1e6 == pytest.approx(weights + 4 * (cache + encoder_states + beam * 60))
    assert memory_mb(dims).measure(unshared_space.largest()) > memory_mb(dims).measure(unshared_space.smallest())
    assert weights_mb(dims, precision).measure(configs[0]) == pytest.approx(
        count_parameters(configs[0], dims) * (4 if precision == "fp32" else 1) / 1e6)
