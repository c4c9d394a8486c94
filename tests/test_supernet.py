from __future__ import annotations

import dataclasses

import pytest
import torch

from hat import ModelDims, SuperTransformer, count_parameters, extract_subtransformer
from hat.errors import HatError
from hat.modules import reorder_incremental_state

VOCAB = 50
PAD, EOS = 1, 2


def make_supernet(space, seed=0, **kwargs):
    torch.manual_seed(seed)
    return SuperTransformer(space, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, **kwargs).eval()


def batch(seed=0, src_len=9, tgt_len=6):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (3, src_len), generator=g)
    src[1, :3] = PAD  # left-padded source, as fairseq batches it
    prev = torch.randint(3, VOCAB, (3, tgt_len), generator=g)
    prev[:, 0] = EOS
    return src, prev


def step_by_step(model, src, prev):
    encoder_out = model.encoder(src)
    state = {}
    return torch.cat([model.decoder(prev[:, : t + 1], encoder_out, state) for t in range(prev.size(1))], dim=1)


def configs_to_check(space):
    configs = [space.smallest(), space.largest()] + [space.sample(seed=s) for s in range(6)]
    for ende in space.decoder["ende_attn"]:  # every arbitrary-attention value, on every layer
        big = space.largest()
        configs.append(dataclasses.replace(big, decoder_ende_attn=(ende,) * big.decoder_layers))
    return configs


@pytest.mark.parametrize("space_fixture", ["tiny_space", "unshared_space", "elastic_encoder_space"])
def test_supernet_and_extracted_model_agree(request, space_fixture):
    space = request.getfixturevalue(space_fixture)
    supernet = make_supernet(space)
    src, prev = batch()
    for config in configs_to_check(space):
        supernet.set_active_subnet(config)
        sub = extract_subtransformer(supernet, config).eval()
        with torch.no_grad():
            full_super, full_sub = supernet(src, prev), sub(src, prev)
            steps_super, steps_sub = step_by_step(supernet, src, prev), step_by_step(sub, src, prev)
        assert full_super.shape == (3, prev.size(1), VOCAB)
        assert (full_super - full_sub).abs().max() <= 1e-5, config
        assert (steps_super - steps_sub).abs().max() <= 1e-5, config
        assert (steps_sub - full_sub).abs().max() <= 1e-5, config


def test_extracted_model_has_no_super_weights(tiny_space):
    supernet = make_supernet(tiny_space)
    config = tiny_space.smallest()
    sub = extract_subtransformer(supernet, config)
    super_ptrs = {p.data_ptr() for p in supernet.parameters()}
    assert not any(p.data_ptr() in super_ptrs for p in sub.parameters())
    assert not any("Elastic" in type(m).__name__ for m in sub.modules())
    assert len(sub.encoder.layers) == config.encoder_layers and len(sub.decoder.layers) == config.decoder_layers


@pytest.mark.parametrize("space_fixture", ["wmt_space", "unshared_space", "tiny_space"])
def test_parameter_count_matches_extracted_model(request, space_fixture):
    space = request.getfixturevalue(space_fixture)
    supernet = make_supernet(space)
    dims = ModelDims.of(supernet)
    for config in [space.smallest(), space.largest(), space.sample(seed=4)]:
        supernet.set_active_subnet(config)
        sub = extract_subtransformer(supernet, config)
        total = sum(p.numel() for p in sub.parameters())
        embeddings = sum(p.numel() for n, p in sub.named_parameters() if "embed_tokens" in n)
        assert count_parameters(config, dims) == total
        assert count_parameters(config, dims, include_embeddings=False) == total - embeddings


def test_gradients_reach_only_active_slices(tiny_space):
    supernet = make_supernet(tiny_space).train()
    config = tiny_space.smallest()  # 48-wide, FFN 64, one decoder layer
    supernet.set_active_subnet(config)
    src, prev = batch()
    supernet(src, prev).sum().backward()
    fc1 = supernet.encoder.layers[0].fc1
    assert fc1.weight.grad[:64, :48].abs().sum() > 0
    assert fc1.weight.grad[64:].abs().sum() == 0 and fc1.weight.grad[:, 48:].abs().sum() == 0
    out_proj = supernet.encoder.layers[0].self_attn.out_proj
    assert out_proj.weight.grad[48:].abs().sum() == 0
    assert supernet.encoder.layers[0].final_layer_norm.weight.grad[48:].abs().sum() == 0
    for layer in supernet.decoder.layers[1:]:  # inactive decoder layers
        assert all(p.grad is None for p in layer.parameters())
    assert supernet.encoder.embed_tokens.weight.grad[:, 48:].abs().sum() == 0


def test_arbitrary_attention_reads_the_last_k_active_encoder_layers(elastic_encoder_space):
    space = elastic_encoder_space
    supernet = make_supernet(space)
    config = dataclasses.replace(
        space.largest(), encoder_ffn_dims=(32, 32), encoder_heads=(2, 2), decoder_ende_attn=(1, -1)
    )  # encoder depth 2 of 4; decoder layer 0 attends to both, layer 1 to the last only
    supernet.set_active_subnet(config)
    seen = []
    hooks = [
        layer.encoder_attn.k_proj.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
        for layer in supernet.decoder.layers[:2]
    ]
    src, prev = batch()
    with torch.no_grad():
        encoder_out = supernet.encoder(src)
        supernet.decoder(prev, encoder_out)
    for hook in hooks:
        hook.remove()
    assert len(encoder_out.states) == 2
    assert torch.equal(seen[0], torch.cat([encoder_out.states[1], encoder_out.states[0]], dim=1))
    assert torch.equal(seen[1], encoder_out.states[1])


def test_beam_reorder_of_cache_matches_reordered_inputs(tiny_space):
    supernet = make_supernet(tiny_space)
    config = tiny_space.sample(seed=11)
    supernet.set_active_subnet(config)
    src, prev = batch()
    order = torch.tensor([2, 0, 0])
    with torch.no_grad():
        encoder_out = supernet.encoder(src)
        state = {}
        for t in range(3):
            supernet.decoder(prev[:, : t + 1], encoder_out, state)
        reorder_incremental_state(state, order)
        encoder_out = encoder_out.reorder(order)
        prev = prev[order]
        last = supernet.decoder(prev[:, :4], encoder_out, state)
        reference = supernet(src[order], prev[:, :4])[:, -1:]
    assert (last - reference).abs().max() <= 1e-5


def test_dropout_scales_with_active_width(wmt_space):
    supernet = make_supernet(wmt_space, dropout=0.3)
    supernet.set_active_subnet(wmt_space.smallest())
    assert supernet.encoder.dropout == pytest.approx(0.24)
    assert supernet.encoder.layers[0].dropout == pytest.approx(0.24)
    assert supernet.encoder.layers[0].self_attn.dropout == pytest.approx(0.1)


def test_set_active_subnet_rejects_configs_outside_the_space(tiny_space, wmt_space):
    supernet = make_supernet(tiny_space)
    with pytest.raises(HatError, match="made for space 'wmt14_en_de'"):
        supernet.set_active_subnet(wmt_space.sample(seed=0))


def test_shared_space_needs_one_vocabulary(tiny_space):
    with pytest.raises(HatError, match="joined dictionary"):
        SuperTransformer(tiny_space, src_vocab_size=10, tgt_vocab_size=12)


def test_greedy_decode_equals_the_argmax_of_full_forward_passes(tiny_space):
    """Incremental decoding (cached keys and values) picks what re-running the whole prefix picks."""
    supernet = make_supernet(tiny_space)
    with torch.no_grad():  # freshly initialised, every row picks one token; larger projections tell rows apart
        for name, parameter in supernet.named_parameters():
            if "fc" in name or "proj" in name:
                parameter.normal_(0.0, 0.3)
    src, _ = batch()
    out = supernet.greedy_decode(src, bos=EOS, eos=EOS, max_len=7)
    tokens = torch.full((3, 1), EOS)
    for _ in range(7):
        step = supernet(src, tokens)[:, -1].argmax(-1)  # no incremental state: the full prefix each time
        tokens = torch.cat([tokens, step[:, None]], dim=1)
    expected = tokens[:, 1:]
    for row in range(3):  # after a row's EOS greedy_decode pads; compare up to and including it
        ends = (expected[row] == EOS).nonzero()
        length = int(ends[0]) + 1 if len(ends) else 7
        assert out[row, :length].tolist() == expected[row, :length].tolist()
        assert (out[row, length:] == PAD).all()
    assert len(set(expected.flatten().tolist())) >= 3  # each source sentence decodes to its own tokens


@pytest.mark.parametrize("base_dim", [64, 7])
def test_positions_computed_on_the_fly_equal_the_table(base_dim):
    from hat.modules import SinusoidalPositions, sinusoidal_table

    positions = SinusoidalPositions(base_dim, padding_idx=1, max_positions=300)
    table = sinusoidal_table(302, base_dim, padding_idx=1)
    ids = torch.arange(302).view(2, 151)
    for dim in sorted({base_dim, base_dim - 2, base_dim // 2, 1}):
        assert torch.allclose(positions.embed(ids, dim), table[:, :dim][ids], atol=1e-6), dim
        positions.on_the_fly = True
        on_the_fly = positions(ids, dim)
        positions.on_the_fly = False
        assert torch.allclose(on_the_fly, positions(ids, dim), atol=1e-6), dim


def fairseq_transformer(space, vocab: int):
    """fairseq's own transformer with the space's largest architecture (shared embeddings)."""
    import argparse

    from fairseq.data import Dictionary
    from fairseq.models.transformer import TransformerModel, base_architecture

    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    largest = space.largest()
    args = argparse.Namespace()
    args.encoder_embed_dim, args.decoder_embed_dim = largest.encoder_embed_dim, largest.decoder_embed_dim
    args.encoder_ffn_embed_dim, args.decoder_ffn_embed_dim = largest.encoder_ffn_dims[0], largest.decoder_ffn_dims[0]
    args.encoder_layers, args.decoder_layers = largest.encoder_layers, largest.decoder_layers
    args.encoder_attention_heads, args.decoder_attention_heads = largest.encoder_heads[0], largest.decoder_self_heads[0]
    args.share_all_embeddings = True
    base_architecture(args)

    class Task:
        source_dictionary = target_dictionary = dictionary

    torch.manual_seed(0)
    return TransformerModel.build_model(args, Task()), len(dictionary)


def test_init_equals_fairseq_transformer_layer_by_layer(tiny_space):
    """Every parameter starts with the distribution fairseq's transformer gives it (same name, same shape):
    the same scale (max |w| and std within 15%; 25% for tensors of under 300 values) and zeros where fairseq
    has zeros. The attention gain matters most: with gain 1 on Q/K/V deep post-LN models stalled."""
    pytest.importorskip("fairseq")
    reference, vocab = fairseq_transformer(tiny_space, VOCAB)
    ours = dict(make_supernet(tiny_space).named_parameters())
    theirs = dict(reference.named_parameters())
    compared = 0
    for name, weight in theirs.items():
        if name not in ours:
            continue
        mine = ours[name].detach()
        assert mine.shape == weight.shape, name
        if weight.detach().std() == 0:  # zeros (biases) or ones (LayerNorm gains): exactly the same
            assert torch.equal(mine, weight.detach()), name
            continue
        tolerance = 0.15 if weight.numel() >= 300 else 0.25
        for statistic in (lambda w: w.abs().max(), lambda w: w.std()):
            ratio = float(statistic(mine) / statistic(weight.detach()))
            assert abs(ratio - 1) < tolerance, (name, ratio)
        compared += 1
    layers = tiny_space.max_encoder_layers + tiny_space.max_decoder_layers
    assert compared >= 10 * layers  # every linear and norm of every layer, not a handful
    assert vocab == VOCAB


