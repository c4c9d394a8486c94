"""Checkpoints in the layout of HAT's fairseq fork: built here from its source's names and shapes,
imported, and compared with a forward pass written from HAT's layer code (post-norm layers,
packed query/key/value rows, leading slices, arbitrary encoder-decoder attention)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from fairseq.modules import SinusoidalPositionalEmbedding
from fairseq.utils import make_positions

from hat.errors import HatError
from hat.hat_import import import_hat_checkpoint
from hat.space import SearchSpace, SubTransformerConfig, ende_attn_layers
from tests.conftest import SPACES

VOCAB, PAD = 40, 1


def hat_args(space: SearchSpace, wider_ffn: int = 0, sub: SubTransformerConfig | None = None) -> argparse.Namespace:
    """``args`` as HAT's train.py stores them for a SuperTransformer of ``space`` (its option names)."""
    e, d = space.encoder, space.decoder
    args = argparse.Namespace(
        arch="transformersuper", share_all_embeddings=space.share_all_embeddings, qkv_dim=space.qkv_dim,
        encoder_embed_dim=max(e["embed_dim"]), decoder_embed_dim=max(d["embed_dim"]),
        encoder_ffn_embed_dim=max(e["ffn_dim"]) + wider_ffn, decoder_ffn_embed_dim=max(d["ffn_dim"]) + wider_ffn,
        encoder_layers=max(e["layers"]), decoder_layers=max(d["layers"]), encoder_normalize_before=False,
        decoder_normalize_before=False, activation_fn="relu", vocab_original_scaling=False,
        encoder_embed_choice=list(e["embed_dim"]), decoder_embed_choice=list(d["embed_dim"]),
        encoder_layer_num_choice=list(e["layers"]), decoder_layer_num_choice=list(d["layers"]),
        encoder_ffn_embed_dim_choice=list(e["ffn_dim"]), decoder_ffn_embed_dim_choice=list(d["ffn_dim"]),
        encoder_self_attention_heads_choice=list(e["heads"]), decoder_self_attention_heads_choice=list(d["self_heads"]),
        decoder_ende_attention_heads_choice=list(d["cross_heads"]), decoder_arbitrary_ende_attn_choice=list(d["ende_attn"]),
        max_source_positions=1024, max_target_positions=1024, source_lang="en", target_lang="de",
    )
    hat_fields = {"encoder_embed_dim": "encoder_embed_dim_subtransformer", "decoder_embed_dim": "decoder_embed_dim_subtransformer",
                  "encoder_layers": "encoder_layer_num_subtransformer", "decoder_layers": "decoder_layer_num_subtransformer",
                  "encoder_ffn_dims": "encoder_ffn_embed_dim_all_subtransformer",
                  "decoder_ffn_dims": "decoder_ffn_embed_dim_all_subtransformer",
                  "encoder_heads": "encoder_self_attention_heads_all_subtransformer",
                  "decoder_self_heads": "decoder_self_attention_heads_all_subtransformer",
                  "decoder_cross_heads": "decoder_ende_attention_heads_all_subtransformer",
                  "decoder_ende_attn": "decoder_arbitrary_ende_attn_all_subtransformer"}
    for ours, theirs in hat_fields.items():
        setattr(args, theirs, (sub.to_dict(include_space=False)[ours]) if sub is not None else None)
    return args


def hat_weights(args: argparse.Namespace, seed: int = 0, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    """Random weights under HAT's names and super shapes (TransformerSuperModel's state dict)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    q, w = args.qkv_dim, {}
    enc, dec = args.encoder_embed_dim, args.decoder_embed_dim
    w["encoder.embed_tokens.weight"] = rand(vocab, enc)
    w["decoder.embed_tokens.weight"] = w["encoder.embed_tokens.weight"] if args.share_all_embeddings else rand(vocab, dec)
    for side, dim, layers, ffn in (("encoder", enc, args.encoder_layers, args.encoder_ffn_embed_dim),
                                   ("decoder", dec, args.decoder_layers, args.decoder_ffn_embed_dim)):
        w[f"{side}.version"] = torch.tensor([3.0])
        w[f"{side}.embed_positions._float_tensor"] = torch.zeros(1)
        for i in range(layers):
            p = f"{side}.layers.{i}"
            blocks = ["self_attn"] + (["encoder_attn"] if side == "decoder" else [])
            for block in blocks:
                kv_dim = enc if block == "encoder_attn" else dim
                if kv_dim == dim:
                    w[f"{p}.{block}.in_proj_weight"] = rand(3 * q, dim)
                else:
                    w[f"{p}.{block}.q_proj_weight"] = rand(q, dim)
                    w[f"{p}.{block}.k_proj_weight"] = rand(q, kv_dim)
                    w[f"{p}.{block}.v_proj_weight"] = rand(q, kv_dim)
                w[f"{p}.{block}.in_proj_bias"] = rand(3 * q)
                w[f"{p}.{block}.out_proj.weight"], w[f"{p}.{block}.out_proj.bias"] = rand(dim, q), rand(dim)
                w[f"{p}.{block}_layer_norm.weight"], w[f"{p}.{block}_layer_norm.bias"] = 1 + rand(dim), rand(dim)
            w[f"{p}.fc1.weight"], w[f"{p}.fc1.bias"] = rand(ffn, dim), rand(ffn)
            w[f"{p}.fc2.weight"], w[f"{p}.fc2.bias"] = rand(dim, ffn), rand(dim)
            w[f"{p}.final_layer_norm.weight"], w[f"{p}.final_layer_norm.bias"] = 1 + rand(dim), rand(dim)
    return w


# ---- HAT's forward pass, from its layer code: batch-first here, eval mode, no padding ------------
def _qkv(w, prefix, query, memory, q_dim, kv_dim, qkv):
    bias = w[f"{prefix}.in_proj_bias"]
    if f"{prefix}.in_proj_weight" in w:
        packed = w[f"{prefix}.in_proj_weight"]
        weights = [packed[:qkv, :q_dim], packed[qkv:2 * qkv, :kv_dim], packed[2 * qkv:, :kv_dim]]
    else:
        weights = [w[f"{prefix}.q_proj_weight"][:, :q_dim], w[f"{prefix}.k_proj_weight"][:, :kv_dim],
                   w[f"{prefix}.v_proj_weight"][:, :kv_dim]]
    inputs = (query, memory, memory)
    return [F.linear(x, weight, bias[i * qkv:(i + 1) * qkv]) for i, (x, weight) in enumerate(zip(inputs, weights))]


def _attention(w, prefix, query, memory, heads, dim, kv_dim, qkv, causal):
    q, k, v = _qkv(w, prefix, query, memory, dim, kv_dim, qkv)
    b, t, s, hd = q.size(0), q.size(1), k.size(1), qkv // heads
    q = q.view(b, t, heads, hd).transpose(1, 2) * hd ** -0.5
    k, v = k.view(b, s, heads, hd).transpose(1, 2), v.view(b, s, heads, hd).transpose(1, 2)
    scores = q @ k.transpose(-1, -2)
    if causal:
        scores = scores + torch.triu(torch.full((t, s), float("-inf")), 1)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, qkv)
    return F.linear(out, w[f"{prefix}.out_proj.weight"][:dim, :qkv], w[f"{prefix}.out_proj.bias"][:dim])


def _norm(w, name, x, dim):
    return F.layer_norm(x, (dim,), w[f"{name}.weight"][:dim], w[f"{name}.bias"][:dim])


def _ffn(w, p, x, dim, ffn):
    h = F.relu(F.linear(x, w[f"{p}.fc1.weight"][:ffn, :dim], w[f"{p}.fc1.bias"][:ffn]))
    return _norm(w, f"{p}.final_layer_norm", x + F.linear(h, w[f"{p}.fc2.weight"][:dim, :ffn], w[f"{p}.fc2.bias"][:dim]), dim)


def _embed(w, side, tokens, dim, position_dim):
    table = SinusoidalPositionalEmbedding.get_embedding(1024 + PAD + 1, position_dim, PAD)
    return math.sqrt(dim) * w[f"{side}.embed_tokens.weight"][tokens][..., :dim] + table[make_positions(tokens, PAD)][..., :dim]


def hat_forward(w, args, config: SubTransformerConfig, src: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    e, d, qkv = config.encoder_embed_dim, config.decoder_embed_dim, args.qkv_dim
    position_dim = max(args.encoder_embed_dim, args.decoder_embed_dim)
    x, states = _embed(w, "encoder", src, e, position_dim), []
    for i, (ffn, heads) in enumerate(zip(config.encoder_ffn_dims, config.encoder_heads)):
        p = f"encoder.layers.{i}"
        x = _norm(w, f"{p}.self_attn_layer_norm", x + _attention(w, f"{p}.self_attn", x, x, heads, e, e, qkv, False), e)
        x = _ffn(w, p, x, e, ffn)
        states.append(x)
    y = _embed(w, "decoder", prev, d, position_dim)
    layers = zip(config.decoder_ffn_dims, config.decoder_self_heads, config.decoder_cross_heads, config.decoder_ende_attn)
    for j, (ffn, self_heads, cross_heads, ende) in enumerate(layers):
        p = f"decoder.layers.{j}"
        y = _norm(w, f"{p}.self_attn_layer_norm", y + _attention(w, f"{p}.self_attn", y, y, self_heads, d, d, qkv, True), d)
        memory = torch.cat(states[::-1][:ende_attn_layers(ende)], dim=1)  # last, second-last, ... (HAT's order)
        y = _norm(w, f"{p}.encoder_attn_layer_norm",
                  y + _attention(w, f"{p}.encoder_attn", y, memory, cross_heads, d, e, qkv, False), d)
        y = _ffn(w, p, y, d, ffn)
    return F.linear(y, w["decoder.embed_tokens.weight"][:, :d])


# ---- the checkpoint file --------------------------------------------------------------------------
@pytest.fixture
def fairseq_meters(monkeypatch):
    """fairseq 0.8's meter classes, as HAT's checkpoints reference them (fairseq.meters.*)."""
    module = types.ModuleType("fairseq.meters")
    for name in ("AverageMeter", "StopwatchMeter"):
        cls = type(name, (), {"__module__": "fairseq.meters"})
        setattr(module, name, cls)
    monkeypatch.setitem(sys.modules, "fairseq.meters", module)
    return module


def save_hat_checkpoint(path, args, weights, meters) -> None:
    loss = meters.AverageMeter()
    loss.val, loss.avg, loss.sum, loss.count = 3.2, 3.4, 340.0, 100
    clock = meters.StopwatchMeter()
    clock.sum, clock.n, clock.start_time = 12.5, 3, None
    torch.save({"args": args, "model": weights, "optimizer_history": [
        {"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "FairseqAdam",
         "lr_scheduler_state": {"best": 3.1}, "num_updates": 40000}],
        "extra_state": {"train_iterator": {"epoch": 12, "iterations_in_epoch": 0}, "val_loss": 3.1,
                        "train_meters": {"train_loss": loss, "wall": clock}},
        "last_optimizer_state": {"state": {0: {"step": 40000, "exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-3}]}},
        path)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src, prev = torch.randint(4, VOCAB, (2, 7), generator=g), torch.randint(4, VOCAB, (2, 5), generator=g)
    prev[:, 0] = 2
    return src, prev


@pytest.mark.parametrize("space_fixture, wider", [("tiny_space", 16), ("unshared_space", 0)])
def test_hat_checkpoint_imports_with_hat_outputs(request, space_fixture, wider, tmp_path, fairseq_meters):
    space = request.getfixturevalue(space_fixture)
    args = hat_args(space, wider_ffn=wider)  # a super FFN wider than every choice: only leading slices are read
    weights = hat_weights(args)
    save_hat_checkpoint(tmp_path / "super.pt", args, weights, fairseq_meters)
    imported = import_hat_checkpoint(tmp_path / "super.pt")
    assert imported.space.fingerprint == space.fingerprint and imported.fixed_config is None
    assert imported.num_updates == 40000 and (imported.source_lang, imported.target_lang) == ("en", "de")
    (src, prev), space = batch(), imported.space
    configs = [space.largest(), space.smallest()] + [space.sample(seed=s) for s in range(6)]
    assert {e for c in configs for e in c.decoder_ende_attn} >= {-1, 1, 2}
    for config in configs:
        imported.supernet.set_active_subnet(config)
        with torch.no_grad():
            ours, theirs = imported.supernet(src, prev), hat_forward(weights, args, config, src, prev)
        assert ours.shape == theirs.shape and (ours - theirs).abs().max() < 1e-4, config


def test_a_hat_subtransformer_checkpoint_carries_its_config(tiny_space, tmp_path, fairseq_meters):
    sub = tiny_space.sample(seed=3)
    args = hat_args(tiny_space, sub=sub)
    save_hat_checkpoint(tmp_path / "sub.pt", args, hat_weights(args), fairseq_meters)
    fixed = import_hat_checkpoint(tmp_path / "sub.pt", space=tiny_space).fixed_config
    assert fixed == sub
    args.encoder_embed_choice = [48, 32]  # HAT's SubTransformer runs keep the parser's default choices
    save_hat_checkpoint(tmp_path / "sub_default_choices.pt", args, hat_weights(args), fairseq_meters)
    with pytest.raises(HatError, match="pass it"):
        import_hat_checkpoint(tmp_path / "sub_default_choices.pt")


class Payload:
    def __reduce__(self):
        import os

        return os.system, ("touch PWNED",)


@pytest.mark.parametrize("change, message", [
    (lambda state: state.update(extra=Payload()), "cannot read checkpoint safely"),
    (lambda state: state["args"].__setattr__("encoder_normalize_before", True), "pre-norm"),
    (lambda state: state["model"].__setitem__("decoder.embed_out", torch.zeros(VOCAB, 64)), "embed_out"),
    (lambda state: state["model"].pop("encoder.layers.0.fc1.weight"), "lacks"),
    (lambda state: state["model"].__setitem__("encoder.layers.0.fc1.weight", torch.zeros(8, 8)), "shape"),
    (lambda state: state["args"].__delattr__("decoder_arbitrary_ende_attn_choice"), "decoder_arbitrary_ende_attn_choice"),
    (lambda state: state.__setitem__("args", {"arch": "transformersuper"}), "no args namespace"),
])
def test_bad_hat_checkpoints_are_refused_in_one_line(tiny_space, tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    args = hat_args(tiny_space)
    state = {"args": args, "model": hat_weights(args)}
    change(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(HatError, match=message) as err:
        import_hat_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(err.value) and "bad.pt" in str(err.value)
    assert not (tmp_path / "PWNED").exists()



def test_import_hat_writes_a_checkpoint_every_command_reads(tiny_space, data_bin, tmp_path, fairseq_meters, capsys):
    """``hat import-hat`` -> search/export/evaluate read it (same outputs), fairseq fine-tunes from it."""
    from hat.checkpoints import load_supernet
    from hat.cli import main
    from hat.export.dictionary import Dictionary
    from hat.training import train
    from tests.conftest import TRAIN_OPTIONS

    vocab = len(Dictionary.load(data_bin / "dict.en.txt"))
    args = hat_args(tiny_space)
    weights = hat_weights(args, vocab=vocab)
    save_hat_checkpoint(tmp_path / "hat.pt", args, weights, fairseq_meters)
    out = tmp_path / "imported" / "checkpoint.pt"
    assert main(["import-hat", str(tmp_path / "small.pt"), "--data", str(data_bin), "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["import-hat", str(tmp_path / "hat.pt"), "--data", str(data_bin), "--out", str(out), "--space",
                 str(SPACES / "tiny.yaml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["space_fingerprint"] == tiny_space.fingerprint and report["src_vocab"] == vocab
    loaded = load_supernet(out, tiny_space)
    config = tiny_space.sample(seed=5)
    loaded.supernet.set_active_subnet(config)
    src, prev = torch.randint(4, vocab, (2, 7)), torch.randint(4, vocab, (2, 5))
    with torch.no_grad():
        assert (loaded.supernet(src, prev) - hat_forward(weights, args, config, src, prev)).abs().max() < 1e-4
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(data_bin), "--split", "valid", "--beam", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sentences"] == 60
    last = train(space=SPACES / "tiny.yaml", data=data_bin, save_dir=tmp_path / "ft", restore_file=out,
                 reset_optimizer=True, options={**TRAIN_OPTIONS, "max-update": 2})
    assert load_supernet(last).num_updates == 2
