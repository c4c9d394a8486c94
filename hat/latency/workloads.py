"""What gets timed: a whole SubTransformer, or one layer at the protocol's shapes.

Each workload is a pair of zero-argument callables (encoder part, decoder part) that run the
computation once. Inputs are random token ids from a seeded generator (not a constant token).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from hat.latency.protocol import Protocol
from hat.modules import DecoderLayer, EncoderLayer
from hat.modules.layers import LayerOps
from hat.space import SearchSpace, SubTransformerConfig, ende_attn_layers
from hat.subtransformer import ModelDims, SubTransformer
from hat.tokens import EOS, FIRST_WORD



@dataclass
class Workload:
    """Zero-argument callables that each run their part once."""

    encoder: Callable[[], object]
    decoder: Callable[[], object]


def _tokens(protocol: Protocol, rows: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(protocol.seed)
    return torch.randint(FIRST_WORD, protocol.vocab, (rows, length), generator=g)


def build_model(space: SearchSpace, config: SubTransformerConfig, protocol: Protocol, device: str) -> SubTransformer:
    torch.manual_seed(protocol.seed)
    return SubTransformer(config, ModelDims.for_space(space, protocol.vocab, protocol.vocab)).to(device).eval()


def model_workload(model: SubTransformer, protocol: Protocol, device: str) -> Workload:
    """Encoder once (batch 1); then ``src_len`` incremental decoder steps over ``beam`` rows."""
    src = _tokens(protocol, 1, protocol.src_len).to(device)
    targets = _tokens(protocol, protocol.beam, protocol.src_len).to(device)
    targets[:, 0] = EOS
    beam_order = torch.zeros(protocol.beam, dtype=torch.long, device=device)
    encoder_out_box: list = [model.encoder(src).reorder(beam_order)]

    @torch.inference_mode()
    def encoder() -> object:
        encoder_out_box[0] = model.encoder(src).reorder(beam_order)
        return encoder_out_box[0]

    @torch.inference_mode()
    def decoder() -> object:
        state: dict = {}
        logits = None
        for t in range(protocol.src_len):
            logits = model.decoder(targets[:, : t + 1], encoder_out_box[0], state)
        return logits

    return Workload(encoder, decoder)


# ---- per-layer workloads (lookup tables) -------------------------------------------------------
def encoder_layer_workload(
    space: SearchSpace, embed: int, ffn: int, heads: int, protocol: Protocol, device: str
) -> Callable[[], object]:
    torch.manual_seed(protocol.seed)
    layer = EncoderLayer(embed, ffn, heads, LayerOps(space.qkv_dim)).to(device).eval()
    x = torch.randn(1, protocol.src_len, embed, device=device)
    return torch.inference_mode()(lambda: layer(x, None))


def decoder_layer_workload(
    space: SearchSpace,
    embed: int,
    encoder_embed: int,
    ffn: int,
    self_heads: int,
    cross_heads: int,
    ende: int,
    protocol: Protocol,
    device: str,
) -> Callable[[], object]:
    """One decoder layer over all ``src_len`` steps (growing self cache, cross K/V projected once)."""
    torch.manual_seed(protocol.seed)
    k = ende_attn_layers(ende)
    layer = DecoderLayer(embed, encoder_embed, ffn, self_heads, cross_heads, k, LayerOps(space.qkv_dim)).to(device).eval()
    memory = torch.randn(protocol.beam, k * protocol.src_len, encoder_embed, device=device)
    steps = torch.randn(protocol.src_len, protocol.beam, 1, embed, device=device)

    @torch.inference_mode()
    def run() -> object:
        cache: dict = {}
        out = None
        for t in range(protocol.src_len):
            out = layer(steps[t], memory if t == 0 else None, None, None, cache)
        return out

    return run


def embedding_workloads(
    space: SearchSpace, encoder_embed: int, decoder_embed: int, protocol: Protocol, device: str
) -> Workload:
    """A model with no layers: encoder embedding, and decoder embedding + output projection per step."""
    config = SubTransformerConfig(encoder_embed, decoder_embed, (1,), (1,), (1,), (1,), (1,), (-1,))
    model = build_model(space, config, protocol, device)
    model.encoder.layers = torch.nn.ModuleList()
    model.decoder.layers = torch.nn.ModuleList()
    src = _tokens(protocol, 1, protocol.src_len).to(device)
    targets = _tokens(protocol, protocol.beam, protocol.src_len).to(device)

    @torch.inference_mode()
    def encoder() -> object:
        return model.encoder.embed(src, encoder_embed)

    @torch.inference_mode()
    def decoder() -> object:
        out = None
        for t in range(protocol.src_len):
            out = model.decoder.output_layer(model.decoder.embed(targets[:, : t + 1], decoder_embed, last_only=True))
        return out

    return Workload(encoder, decoder)


# ---- the torch measuring worker ---------------------------------------------------------------------
def torch_item_workload(space: SearchSpace, protocol: Protocol, item: dict, device: str) -> Workload:
    """The workload of one collector item (a whole model, a layer or the embeddings)."""
    kind, args = item["kind"], item.get("args", [])
    if kind == "model":
        config = SubTransformerConfig.from_dict(item["config"])
        return model_workload(build_model(space, config, protocol, device), protocol, device)
    if kind == "encoder_layer":
        return Workload(encoder_layer_workload(space, *args, protocol, device), None)
    if kind == "decoder_layer":
        return Workload(None, decoder_layer_workload(space, *args, protocol, device))
    if kind == "encoder_embedding":
        return Workload(embedding_workloads(space, args[0], min(space.decoder["embed_dim"]), protocol, device).encoder, None)
    if kind == "decoder_embedding_output":
        return Workload(None, embedding_workloads(space, min(space.encoder["embed_dim"]), args[0], protocol, device).decoder)
    from hat.errors import HatError

    raise HatError(f"unknown measurement kind '{kind}'")


def measure_torch_items(protocol_dict: dict, payload: dict) -> dict:
    """Worker of the torch/cuda backends: ``{"device": info, "results": [...]}`` for ``payload["items"]``.

    Takes and returns plain data, so it runs here or on a Ray node that has torch installed.
    """
    from hat.latency.measure import measure_interleaved, results_of
    from hat.latency.protocol import device_info
    from hat.latency.timers import make_timer

    protocol, backend = Protocol(**protocol_dict), payload["backend"]
    timer = make_timer(backend)
    torch.set_num_threads(protocol.threads)
    space = SearchSpace.from_dict(payload["space"])
    workloads = {i: torch_item_workload(space, protocol, item, timer.device) for i, item in enumerate(payload["items"])}
    stats = measure_interleaved(workloads, protocol, timer.time_ms)
    return {"device": device_info(backend, protocol.threads), "results": results_of(stats, list(workloads), protocol.statistic)}


class TorchBackend:
    """PyTorch eager on the CPU (``torch``) or a GPU (``cuda``): items travel as plain data."""

    precision = "fp32"
    graphs = "eager"  # whole models run as PyTorch modules

    def __init__(self, name: str = "torch") -> None:
        self.name = name
        self.worker = measure_torch_items

    def payload(self, space: SearchSpace, protocol: Protocol, items: list[dict]) -> dict:
        return {"backend": self.name, "space": space.to_dict(), "items": items}

    def prepare(self, space: SearchSpace, protocol: Protocol, items: list[dict]) -> None:
        """Nothing to build ahead: torch models are built where they are timed."""
