"""The two computations a deployed model runs, as torch modules that export to ONNX.

- ``EncoderGraph``: source tokens -> padding mask and, for every decoder layer, the keys/values
  of its encoder-decoder attention (projected once per sentence).
- ``DecoderStepGraph``: one token per row, its position, the mask, the cross keys/values and the
  self-attention cache so far -> log-probabilities and the grown cache.
The cache is explicit, so beam search runs outside the graph (numpy) on any runtime.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hat.subtransformer import SubTransformer
from hat.tokens import FIRST_WORD


def cache_names(num_layers: int) -> tuple[list[str], list[str], list[str]]:
    cross = [f"{kind}_{i}" for i in range(num_layers) for kind in ("cross_k", "cross_v")]
    past = [f"{kind}_{i}" for i in range(num_layers) for kind in ("past_k", "past_v")]
    present = [f"{kind}_{i}" for i in range(num_layers) for kind in ("present_k", "present_v")]
    return cross, past, present


class EncoderGraph(nn.Module):
    def __init__(self, model: SubTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoder_out = self.model.encoder(src_tokens)
        padding_mask = src_tokens.eq(self.model.encoder.padding_idx)
        outputs: list[torch.Tensor] = [padding_mask]
        for layer in self.model.decoder.layers:
            memory = torch.cat(encoder_out.states[::-1][: layer.ende_layers], dim=1)
            outputs.extend(layer.encoder_attn.project_kv(memory))
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    def __init__(self, model: SubTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, padding_mask: torch.Tensor,
                *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """tokens/positions (B, 1) int64; padding_mask (B, S) bool; caches: cross k/v of every layer,
        then past k/v of every layer. Returns log-probs (B, V) and present k/v of every layer."""
        decoder = self.model.decoder
        layers = list(decoder.layers)
        cross, past = caches[: 2 * len(layers)], caches[2 * len(layers):]
        dim = decoder.embed_dim
        weight = decoder.embed_tokens.weight[:, :dim]
        x = math.sqrt(dim) * F.embedding(tokens, weight) + decoder.positions.embed(positions, dim)
        present: list[torch.Tensor] = []
        for i, layer in enumerate(layers):
            cache = {
                "self_k": past[2 * i], "self_v": past[2 * i + 1],
                "cross_k": cross[2 * i], "cross_v": cross[2 * i + 1],
                "cross_padding_mask": padding_mask.repeat(1, layer.ende_layers),
            }
            x = layer(x, None, None, None, cache)
            present.extend([cache["self_k"], cache["self_v"]])
        log_probs = F.log_softmax(decoder.output_layer(x)[:, -1].float(), dim=-1)
        return (log_probs, *present)


def example_inputs(model: SubTransformer, batch: int = 2, src_len: int = 7, past_len: int = 3):
    """Inputs with sizes >= 2 so the exporter keeps every dynamic dimension symbolic."""
    pad = model.dims.padding_idx
    src = torch.randint(FIRST_WORD, model.dims.src_vocab_size, (batch, src_len))
    with torch.no_grad():
        enc = EncoderGraph(model)(src)
    mask, cross = enc[0], enc[1:]
    qkv = model.dims.qkv_dim
    past = []
    for layer in model.decoder.layers:
        heads = layer.self_attn.num_heads
        # Distinct tensors: the exporter merges aliased example inputs into one graph input.
        past += [torch.randn(batch, heads, past_len, qkv // heads) for _ in range(2)]
    tokens = torch.randint(FIRST_WORD, model.dims.tgt_vocab_size, (batch, 1))
    positions = torch.full((batch, 1), pad + 1 + past_len, dtype=torch.long)
    return src, (tokens, positions, mask, *cross, *past)


def export_onnx(model: SubTransformer, encoder_path: str, decoder_path: str) -> None:
    """Export both graphs with dynamic batch (= beam rows), source length and cache length."""
    model = model.eval()
    position_modules = {id(m): m for m in (model.encoder.positions, model.decoder.positions)}.values()
    for module in position_modules:
        module.on_the_fly = True  # no (max_positions x dim) table in the graphs
    try:
        _export_graphs(model, encoder_path, decoder_path)
    finally:
        for module in position_modules:
            module.on_the_fly = False
    for path in (encoder_path, decoder_path):
        strip_metadata(path)


def _export_graphs(model: SubTransformer, encoder_path: str, decoder_path: str) -> None:
    from hat.export.exporter import quiet_export

    layers = len(model.decoder.layers)
    cross_names, past_names, present_names = cache_names(layers)
    src, step_inputs = example_inputs(model)
    with quiet_export():
        _export_both(model, encoder_path, decoder_path, src, step_inputs, cross_names, past_names, present_names)


def _export_both(model: SubTransformer, encoder_path: str, decoder_path: str, src: Any, step_inputs: Any,
                 cross_names: list[str], past_names: list[str], present_names: list[str]) -> None:
    from torch.export import Dim

    batch, src_len, past_len = Dim("batch"), Dim("src_len"), Dim("past_len")
    torch.onnx.export(
        EncoderGraph(model), (src,), encoder_path, dynamo=True, verbose=False,
        input_names=["src_tokens"], output_names=["padding_mask", *cross_names],
        dynamic_shapes=({0: batch, 1: src_len},),
    )
    # Layer i attends to the last k_i encoder outputs concatenated in time: k_i * src_len keys.
    cross = [{0: batch, 2: src_len if layer.ende_layers == 1 else layer.ende_layers * src_len}
             for layer in model.decoder.layers for _ in range(2)]
    caches = tuple(cross + [{0: batch, 2: past_len}] * len(past_names))
    shapes = ({0: batch}, {0: batch}, {0: batch, 1: src_len}, caches)  # *caches is one nested entry
    torch.onnx.export(
        DecoderStepGraph(model), step_inputs, decoder_path, dynamo=True, verbose=False,
        input_names=["tokens", "positions", "padding_mask", *cross_names, *past_names],
        output_names=["log_probs", *present_names], dynamic_shapes=shapes,
    )


def strip_metadata(path: str) -> None:
    """Drop the exporter's per-node debugging metadata (source stack traces, fx names) in place.

    It is a quarter of a small model's file and nothing a runtime reads. Weights stay in the
    external data file next to the graph.
    """
    import os

    import onnx

    from hat.export.exporter import strip_node_metadata

    model = onnx.load(path)
    strip_node_metadata(model)
    data = os.path.basename(path) + ".data"
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
              size_threshold=1024)


def quantize_int8(source: str, target: str) -> None:
    """onnxruntime dynamic int8 quantization (weights int8, activations quantized per call).

    onnxruntime's pre-processing runs first: it folds ``Transpose(embedding)`` of the tied output
    projection into a constant, so that MatMul is quantized too instead of dequantizing the whole
    table at every decoding step. That leaves the table twice in the graph (as the projection and
    as the lookup); :func:`share_tied_table` makes the lookup read the projection's int8 copy.
    """
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=str(Path(target).parent)) as tmp:
        single = str(Path(tmp) / "single.onnx")  # weights inlined: pre-processing loses external data files
        onnx.save(onnx.load(source), single)
        prepared = str(Path(tmp) / "prepared.onnx")
        quant_pre_process(single, prepared, skip_symbolic_shape=True)
        quantized = str(Path(tmp) / "quantized.onnx")
        quantize_dynamic(prepared, quantized, weight_type=QuantType.QInt8)
        model = onnx.load(quantized)
        share_tied_table(onnx.load(prepared), model)
        del model.graph.value_info[:]  # pre-processing's shape annotations; onnxruntime infers its own
        onnx.save(model, target)


def _tied_pairs(prepared) -> list[tuple[str, str]]:
    """(lookup table, projection weight) initializer names where the weight is the table transposed."""
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in prepared.graph.initializer}
    tables = {n.input[0] for n in prepared.graph.node if n.op_type == "Gather" and n.input[0] in inits
              and len(inits[n.input[0]].dims) == 2}
    weights = {n.input[1] for n in prepared.graph.node if n.op_type == "MatMul" and n.input[1] in inits
               and len(inits[n.input[1]].dims) == 2}
    pairs = []
    for table in tables:
        for weight in weights:
            if tuple(inits[weight].dims) == tuple(reversed(inits[table].dims)) and np.array_equal(
                    numpy_helper.to_array(inits[table]).T, numpy_helper.to_array(inits[weight])):
                pairs.append((table, weight))
    return pairs


def share_tied_table(prepared, quantized) -> int:
    """Point each quantized embedding lookup at the int8 output projection it is tied to.

    ``Gather(table_q, ids) -> DequantizeLinear(table_scale)`` becomes
    ``Gather(weight_q, ids, axis=1) -> Transpose -> DequantizeLinear(weight_scale)``: the rows are
    read from the ``(dim, vocab)`` projection matrix, and the separate table copy is dropped.
    Returns the number of lookups rewired.
    """
    from onnx import helper

    graph = quantized.graph
    inits = {t.name: t for t in graph.initializer}
    rewired = 0
    for table, weight in _tied_pairs(prepared):
        table_q, weight_q = f"{table}_quantized", f"{weight}_quantized"
        scale, zero_point = f"{weight}_scale", f"{weight}_zero_point"
        if not {table_q, weight_q, scale, zero_point} <= set(inits) or len(inits[scale].dims) != 0:
            continue  # not the per-tensor layout this rewrite knows: leave the graph as it is
        for node in list(graph.node):
            if node.op_type != "Gather" or node.input[0] != table_q:
                continue
            dequant = next((n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == node.output[0]), None)
            if dequant is None:
                continue
            columns = node.output[0] + "_columns"
            rows = helper.make_node("Transpose", [columns], [node.output[0]], name=node.name + "_rows",
                                    perm=[1, 2, 0])
            gather = helper.make_node("Gather", [weight_q, node.input[1]], [columns], name=node.name, axis=1)
            position = list(graph.node).index(node)
            graph.node.remove(node)
            graph.node.insert(position, rows)
            graph.node.insert(position, gather)
            dequant.input[1], dequant.input[2] = scale, zero_point
            rewired += 1
    used = {name for n in graph.node for name in n.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    return rewired
