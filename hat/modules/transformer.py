"""Encoder, decoder and the encoder-decoder model shared by the SuperTransformer and SubTransformers.

Tensors are batch-first: tokens ``(B, T)``, hidden states ``(B, T, C)``, logits ``(B, T, V)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hat.modules.layers import EncoderLayer
from hat.modules.positions import SinusoidalPositions

IncrementalState = dict[str, dict[str, torch.Tensor]]


@dataclass
class EncoderOut:
    """Outputs of every active encoder layer (decoder layers attend to the last 1-3) and the padding mask."""

    states: list[torch.Tensor]  # each (B, S, C)
    padding_mask: torch.Tensor | None  # (B, S), True at padding; None when nothing is padded

    def memory(self, last: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Keys/values source for arbitrary encoder-decoder attention: the last ``last`` outputs
        concatenated along time (newest first), with the padding mask repeated alike."""
        memory = torch.cat(self.states[::-1][:last], dim=1)  # (B, last * S, C)
        mask = None if self.padding_mask is None else self.padding_mask.repeat(1, last)
        return memory, mask

    def reorder(self, new_order: torch.Tensor) -> "EncoderOut":
        """Select batch rows (beam search)."""
        mask = None if self.padding_mask is None else self.padding_mask.index_select(0, new_order)
        return EncoderOut([s.index_select(0, new_order) for s in self.states], mask)


def padding_mask_of(tokens: torch.Tensor, padding_idx: int) -> torch.Tensor | None:
    """(B, T) True at padding; None in eager mode when there is none (skips masking work).

    While tracing/exporting the mask is always returned, so graphs handle padded batches.
    """
    mask = tokens.eq(padding_idx)
    tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    if not tracing and not bool(mask.any()):
        return None
    return mask


class Encoder(nn.Module):
    """Token embedding (first ``embed_dim`` columns of ``embed_tokens``) + positions + layers."""

    def __init__(
        self,
        embed_tokens: nn.Embedding,
        embed_dim: int,
        layers: list[EncoderLayer],
        positions: SinusoidalPositions,
        padding_idx: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.embed_dim = embed_dim
        self.layers = nn.ModuleList(layers)
        self.positions = positions
        self.padding_idx = padding_idx
        self.dropout = dropout

    def active_layers(self) -> list[nn.Module]:
        return list(self.layers)

    def embed(self, tokens: torch.Tensor, dim: int, last_only: bool = False) -> torch.Tensor:
        """Scaled token embeddings plus positions; ``last_only`` embeds just the newest token."""
        weight = self.embed_tokens.weight[:, :dim]
        newest = tokens[:, -1:] if last_only else tokens
        x = math.sqrt(dim) * F.embedding(newest, weight) + self.positions(tokens, dim, last_only)
        return F.dropout(x, self.dropout, self.training)

    def forward(self, src_tokens: torch.Tensor) -> EncoderOut:
        padding_mask = padding_mask_of(src_tokens, self.padding_idx)
        x = self.embed(src_tokens, self.embed_dim)  # (B, S, C)
        states = []
        for layer in self.active_layers():
            x = layer(x, padding_mask)
            states.append(x)
        return EncoderOut(states, padding_mask)


class Decoder(Encoder):
    """Embedding + positions + layers + output projection tied to the embedding columns in use."""

    def extract_features(
        self,
        prev_output_tokens: torch.Tensor,
        encoder_out: EncoderOut,
        incremental_state: IncrementalState | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, T, C); with ``incremental_state`` only the newest step (B, 1, C)."""
        incremental = incremental_state is not None
        # Positions count the whole prefix; incrementally only the newest token is embedded.
        x = self.embed(prev_output_tokens, self.embed_dim, last_only=incremental)
        self_padding_mask = None if incremental else padding_mask_of(prev_output_tokens, self.padding_idx)
        memories: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for index, layer in enumerate(self.active_layers()):
            cache = None if incremental_state is None else incremental_state.setdefault(f"hat_decoder.{index}", {})
            memory, memory_mask = None, None
            if cache is None or "cross_k" not in cache:
                if layer.ende_layers not in memories:
                    memories[layer.ende_layers] = encoder_out.memory(layer.ende_layers)
                memory, memory_mask = memories[layer.ende_layers]
            x = layer(x, memory, memory_mask, self_padding_mask, cache)
        return x

    def output_layer(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.embed_tokens.weight[:, : self.embed_dim])  # (B, T, V)

    def forward(  # type: ignore[override]
        self,
        prev_output_tokens: torch.Tensor,
        encoder_out: EncoderOut,
        incremental_state: IncrementalState | None = None,
    ) -> torch.Tensor:
        return self.output_layer(self.extract_features(prev_output_tokens, encoder_out, incremental_state))


def reorder_incremental_state(incremental_state: IncrementalState, new_order: torch.Tensor) -> None:
    """Select batch rows of every cached tensor in place (beam search)."""
    for key, cache in incremental_state.items():
        if key.startswith("hat_decoder."):
            for name, tensor in cache.items():
                cache[name] = tensor.index_select(0, new_order)


class EncoderDecoder(nn.Module):
    """``model(src_tokens, prev_output_tokens) -> logits (B, T, V)``; also usable step by step."""

    encoder: Encoder
    decoder: Decoder

    def forward(self, src_tokens: torch.Tensor, prev_output_tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(prev_output_tokens, self.encoder(src_tokens))

    @torch.no_grad()
    def greedy_decode(self, src_tokens: torch.Tensor, bos: int, eos: int, max_len: int) -> torch.Tensor:
        """Greedy incremental decoding (B, <=max_len); a simple reference for tests and demos."""
        encoder_out = self.encoder(src_tokens)
        state: IncrementalState = {}
        tokens = torch.full((src_tokens.size(0), 1), bos, dtype=torch.long, device=src_tokens.device)
        finished = torch.zeros(src_tokens.size(0), dtype=torch.bool, device=src_tokens.device)
        for _ in range(max_len):
            logits = self.decoder(tokens, encoder_out, state)[:, -1]
            step = logits.argmax(-1).masked_fill(finished, self.decoder.padding_idx)
            tokens = torch.cat([tokens, step[:, None]], dim=1)
            finished |= step.eq(eos)
            if bool(finished.all()):
                break
        return tokens[:, 1:]
