"""The deployed graphs cut into pieces: one ONNX graph per distinct layer shape, exported once.

Exporting a whole SubTransformer takes the exporter 20-30 s, so profiling hundreds of them that
way is impractical. Every deployed graph is a chain of a few kinds of piece, though:

- encoder side: ``encoder_embedding`` (tokens -> states, padding mask), one ``encoder_layer`` per
  layer, and one ``cross_kv`` per decoder layer (the last k encoder states -> its keys/values);
- decoder side: ``decoder_embedding`` (token, position -> state), one ``decoder_layer`` step per
  layer (with its self-attention cache and the cross keys/values), and ``output`` (log-softmax).

A piece depends only on its shape, so a space needs a few dozen pieces, each exported once;
:mod:`hat.export.compose` chains them into the two graphs a deployed model has (same inputs and
outputs as :func:`hat.export.graphs.export_onnx`, so the same runtime and beam loop run them), and
the per-layer lookup tables time the pieces themselves.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hat.subtransformer import SubTransformer
from hat.tokens import FIRST_WORD

log = logging.getLogger(__name__)


class EncoderEmbeddingPiece(nn.Module):
    def __init__(self, model: SubTransformer) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, src_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.embed(src_tokens, self.encoder.embed_dim), src_tokens.eq(self.encoder.padding_idx)


class EncoderLayerPiece(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        return self.layer(x, padding_mask)


class CrossKvPiece(nn.Module):
    """The last ``k`` encoder states (newest first), concatenated in time -> cross keys/values."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.attention = layer.encoder_attn

    def forward(self, *states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.project_kv(torch.cat(states, dim=1))


class DecoderEmbeddingPiece(nn.Module):
    def __init__(self, model: SubTransformer) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        dim = self.decoder.embed_dim
        weight = self.decoder.embed_tokens.weight[:, :dim]
        return math.sqrt(dim) * F.embedding(tokens, weight) + self.decoder.positions.embed(positions, dim)


class DecoderLayerPiece(nn.Module):
    """One incremental step of one decoder layer; ``cross_mask`` is the padding mask repeated k times."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, cross_mask: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor,
                past_k: torch.Tensor, past_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cache = {"self_k": past_k, "self_v": past_v, "cross_k": cross_k, "cross_v": cross_v,
                 "cross_padding_mask": cross_mask}
        x = self.layer(x, None, None, None, cache)
        return x, cache["self_k"], cache["self_v"]


class OutputPiece(nn.Module):
    def __init__(self, model: SubTransformer) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.decoder.output_layer(x)[:, -1].float(), dim=-1)


# ---- which pieces a model needs ---------------------------------------------------------------------
def piece_keys(config: Any) -> dict[str, Any]:
    """The pieces of a SubTransformer config, in graph order (keys as in the latency tables)."""
    from hat.space import ende_attn_layers

    e, d = config.encoder_embed_dim, config.decoder_embed_dim
    decoder = list(zip(config.decoder_ffn_dims, config.decoder_self_heads, config.decoder_cross_heads,
                       config.decoder_ende_attn))
    return {
        "encoder_embedding": ("encoder_embedding", e),
        "encoder_layers": [("encoder_layer", e, f, h) for f, h in zip(config.encoder_ffn_dims, config.encoder_heads)],
        "cross_kv": [("cross_kv", e, hc, ende_attn_layers(a)) for _, _, hc, a in decoder],
        "decoder_embedding": ("decoder_embedding", d),
        "decoder_layers": [("decoder_layer", d, f, hs, hc) for f, hs, hc, _ in decoder],
        "output": ("output", d),
    }


def piece_name(key: tuple) -> str:
    return "_".join(str(part) for part in key)


def _piece_model(space: Any, key: tuple, vocab: int, seed: int) -> tuple[nn.Module, tuple, dict, list, list]:
    """The torch module of one piece (random weights), its example inputs, dynamic shapes and names."""
    from torch.export import Dim

    from hat.space import SubTransformerConfig
    from hat.subtransformer import ModelDims

    kind, args = key[0], key[1:]
    e = args[0] if kind in ("encoder_embedding", "encoder_layer", "cross_kv") else min(space.encoder["embed_dim"])
    d = args[0] if kind in ("decoder_embedding", "decoder_layer", "output") else min(space.decoder["embed_dim"])
    ffn = args[1] if kind in ("encoder_layer", "decoder_layer") else 1
    heads = args[2] if kind in ("encoder_layer", "decoder_layer") else 1
    cross = args[1] if kind == "cross_kv" else (args[3] if kind == "decoder_layer" else 1)
    config = SubTransformerConfig(e, d, (ffn,), (heads,), (ffn,), (heads,), (cross,), (-1,))
    torch.manual_seed(seed)
    model = SubTransformer(config, ModelDims.for_space(space, vocab, vocab)).eval()
    for module in {id(m): m for m in (model.encoder.positions, model.decoder.positions)}.values():
        module.on_the_fly = True
    return _piece_io(model, kind, args, Dim)


def _piece_io(model: SubTransformer, kind: str, args: tuple, Dim: Any) -> tuple:
    batch, src_len, past_len, cross_len = Dim("batch"), Dim("src_len"), Dim("past_len"), Dim("cross_len")
    qkv = model.dims.qkv_dim
    pad = model.dims.padding_idx
    if kind == "encoder_embedding":
        src = torch.randint(FIRST_WORD, model.dims.src_vocab_size, (2, 7))
        return (EncoderEmbeddingPiece(model), (src,), ({0: batch, 1: src_len},), ["src_tokens"],
                ["x", "padding_mask"])
    if kind == "encoder_layer":
        x, mask = torch.randn(2, 7, args[0]), torch.zeros(2, 7, dtype=torch.bool)
        return (EncoderLayerPiece(model.encoder.layers[0]), (x, mask), ({0: batch, 1: src_len}, {0: batch, 1: src_len}),
                ["x", "padding_mask"], ["y"])
    if kind == "cross_kv":
        k = args[2]
        states = tuple(torch.randn(2, 7, args[0]) for _ in range(k))
        shapes = (tuple({0: batch, 1: src_len} for _ in range(k)),)  # *states is one nested entry
        return (CrossKvPiece(model.decoder.layers[0]), states, shapes,
                [f"state_{i}" for i in range(k)], ["cross_k", "cross_v"])
    if kind == "decoder_embedding":
        tokens = torch.randint(FIRST_WORD, model.dims.tgt_vocab_size, (2, 1))
        return (DecoderEmbeddingPiece(model), (tokens, torch.full((2, 1), pad + 4)), ({0: batch}, {0: batch}),
                ["tokens", "positions"], ["x"])
    if kind == "decoder_layer":
        self_heads, cross_heads = args[2], args[3]
        x = torch.randn(2, 1, args[0])
        cross = [torch.randn(2, cross_heads, 7, qkv // cross_heads) for _ in range(2)]
        past = [torch.randn(2, self_heads, 3, qkv // self_heads) for _ in range(2)]
        inputs = (x, torch.zeros(2, 7, dtype=torch.bool), *cross, *past)
        shapes = ({0: batch}, {0: batch, 1: cross_len}, {0: batch, 2: cross_len}, {0: batch, 2: cross_len},
                  {0: batch, 2: past_len}, {0: batch, 2: past_len})
        return (DecoderLayerPiece(model.decoder.layers[0]), inputs, shapes,
                ["x", "cross_mask", "cross_k", "cross_v", "past_k", "past_v"], ["y", "present_k", "present_v"])
    if kind == "output":
        return OutputPiece(model), (torch.randn(2, 1, args[0]),), ({0: batch},), ["x"], ["log_probs"]
    raise ValueError(f"unknown piece kind '{kind}'")


def export_piece(module: nn.Module, inputs: tuple, shapes: tuple, input_names: list, output_names: list,
                 path: str | Path, reuse_registry: bool = True) -> None:
    """One piece to ONNX, weights inline (pieces are small enough, and ship as one blob)."""
    import onnx

    from hat.export.exporter import quiet_export, strip_node_metadata

    with quiet_export(reuse_registry):
        program = torch.onnx.export(module, inputs, None, dynamo=True, verbose=False, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=shapes)
    model = program.model_proto
    strip_node_metadata(model)
    onnx.save(model, str(path))


LAYER_KINDS = ("encoder_layer", "cross_kv", "decoder_layer")


class PieceCache:
    """Exported pieces at one vocabulary, on disk (``ROOT/<group>/<precision>/<name>.onnx``).

    Layers depend only on their shape and the Q/K/V width, so every space with that width shares
    them (``layers_qkv<d>_seed<s>``); embeddings and the output projection depend on the space's
    embedding table and the vocabulary (``<space>_<vocab>_<hash>``). Each piece is exported the
    first time it is asked for, int8 ones quantized from the fp32 ones; a killed run keeps the
    pieces it has written.
    """

    def __init__(self, root: str | Path, space: Any, vocab: int, seed: int = 0) -> None:
        self.space, self.vocab, self.seed = space, vocab, seed
        tag = hashlib.sha256(json.dumps([space.fingerprint, vocab, seed]).encode()).hexdigest()[:12]
        self.root = Path(root) / f"{space.name}_{vocab}_{tag}"
        self.layer_root = Path(root) / f"layers_qkv{space.qkv_dim}_seed{seed}"

    def path(self, key: tuple, precision: str = "fp32") -> Path:
        """The piece's file, exported (and quantized) on first use."""
        from hat.io import safe_file_name

        name = safe_file_name(piece_name(key))
        target = (self.layer_root if key[0] in LAYER_KINDS else self.root) / precision / f"{name}.onnx"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        if precision == "fp32":
            export_piece(*_piece_model(self.space, key, self.vocab, self.seed), partial)
        elif precision == "int8":
            from hat.export.graphs import quantize_int8

            quantize_int8(str(self.path(key, "fp32")), str(partial))
        else:
            raise ValueError(f"unknown precision '{precision}'")
        partial.replace(target)
        return target

    def prepare(self, keys: list[tuple], precision: str = "fp32", workers: int | None = None) -> None:
        """Export the missing pieces among ``keys`` in parallel processes (the exporter is single-threaded)."""
        from hat.io import safe_file_name

        def missing(kind: str) -> list[tuple]:
            return [k for k in dict.fromkeys(keys) if not ((self.layer_root if k[0] in LAYER_KINDS else self.root)
                                                          / kind / f"{safe_file_name(piece_name(k))}.onnx").is_file()]

        todo = missing("fp32") if precision == "fp32" else list(dict.fromkeys(missing("fp32") + missing(precision)))
        workers = min(workers or os.cpu_count() or 1, 8, len(todo))
        if workers < 2:
            for key in todo:
                self.path(key, precision)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        log.info("exporting %d onnxruntime pieces in %d processes", len(todo), workers)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(_export_one, [(self.root.parent, self.space.to_dict(), self.vocab, self.seed, key, precision)
                                        for key in todo]))

    def load(self, key: tuple, precision: str = "fp32") -> Any:
        import onnx

        return onnx.load(str(self.path(key, precision)))


def _export_one(job: tuple) -> str:
    """One piece in a worker process (spawned: torch is imported afresh, on one thread)."""
    from hat.space import SearchSpace

    root, space, vocab, seed, key, precision = job
    torch.set_num_threads(1)
    return str(PieceCache(root, SearchSpace.from_dict(space), vocab, seed).path(tuple(key), precision))


def model_pieces(model: SubTransformer) -> dict[str, Any]:
    """The pieces of a trained SubTransformer with its own weights (for tests of the composition)."""
    from torch.export import Dim

    from hat.space import SubTransformerConfig

    config: SubTransformerConfig = model.config
    keys = piece_keys(config)
    out: dict[str, Any] = {}
    for module in {id(m): m for m in (model.encoder.positions, model.decoder.positions)}.values():
        module.on_the_fly = True
    out["encoder_embedding"] = _piece_io(model, "encoder_embedding", keys["encoder_embedding"][1:], Dim)
    out["encoder_layers"] = []
    for i, key in enumerate(keys["encoder_layers"]):
        io = list(_piece_io(model, "encoder_layer", key[1:], Dim))
        io[0] = EncoderLayerPiece(model.encoder.layers[i])
        out["encoder_layers"].append(tuple(io))
    out["cross_kv"], out["decoder_layers"] = [], []
    for i, (kv_key, layer_key) in enumerate(zip(keys["cross_kv"], keys["decoder_layers"])):
        io = list(_piece_io(model, "cross_kv", kv_key[1:], Dim))
        io[0] = CrossKvPiece(model.decoder.layers[i])
        out["cross_kv"].append(tuple(io))
        io = list(_piece_io(model, "decoder_layer", layer_key[1:], Dim))
        io[0] = DecoderLayerPiece(model.decoder.layers[i])
        out["decoder_layers"].append(tuple(io))
    out["decoder_embedding"] = _piece_io(model, "decoder_embedding", keys["decoder_embedding"][1:], Dim)
    out["output"] = _piece_io(model, "output", keys["output"][1:], Dim)
    return out
