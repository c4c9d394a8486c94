"""Post-LN Transformer encoder and decoder layers (HAT's layout), with injectable linear/LN types.

The standalone SubTransformer uses them with ``nn.Linear``/``nn.LayerNorm``; the SuperTransformer
subclasses them with elastic ops. The forward code is written once and shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hat.modules.attention import LinearFactory, MultiheadAttention, causal_keep_mask, padding_keep_mask

LayerNormFactory = Callable[[int], nn.Module]
LayerCache = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LayerOps:
    """What every layer of one model shares: the attention width, the dropouts and the linear and
    layer-norm types (``nn.Linear``/``nn.LayerNorm``, or the SuperTransformer's elastic ones)."""

    qkv_dim: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    linear: LinearFactory = nn.Linear
    layer_norm: LayerNormFactory = nn.LayerNorm


class EncoderLayer(nn.Module):
    """Self-attention and FFN blocks, each ``x = LN(x + dropout(block(x)))``."""

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, ops: LayerOps) -> None:
        super().__init__()
        self.dropout = ops.dropout
        self.activation_dropout = ops.activation_dropout
        self.self_attn = MultiheadAttention(embed_dim, embed_dim, ops.qkv_dim, num_heads, ops.attention_dropout, ops.linear)
        self.self_attn_layer_norm = ops.layer_norm(embed_dim)
        self.fc1 = ops.linear(embed_dim, ffn_dim)
        self.fc2 = ops.linear(ffn_dim, embed_dim)
        self.final_layer_norm = ops.layer_norm(embed_dim)

    def _residual(self, x: torch.Tensor, residual: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return norm(residual + F.dropout(x, self.dropout, self.training))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.fc1(x)), self.activation_dropout, self.training)
        return self._residual(self.fc2(h), x, self.final_layer_norm)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, S, C); ``padding_mask`` (B, S) True at padding, or None."""
        keys, values = self.self_attn.project_kv(x)
        h = self.self_attn.attend(x, keys, values, padding_keep_mask(padding_mask))
        return self.feed_forward(self._residual(h, x, self.self_attn_layer_norm))


class DecoderLayer(EncoderLayer):
    """Causal self-attention, encoder-decoder attention over the last ``ende_layers`` encoder outputs, FFN."""

    def __init__(self, embed_dim: int, encoder_embed_dim: int, ffn_dim: int, self_heads: int, cross_heads: int,
                 ende_layers: int, ops: LayerOps) -> None:
        super().__init__(embed_dim, ffn_dim, self_heads, ops)
        self.ende_layers = ende_layers
        self.encoder_attn = MultiheadAttention(
            embed_dim, encoder_embed_dim, ops.qkv_dim, cross_heads, ops.attention_dropout, ops.linear
        )
        self.encoder_attn_layer_norm = ops.layer_norm(embed_dim)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        memory_padding_mask: torch.Tensor | None,
        self_padding_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """One layer over ``x`` (B, T, C).

        Training / full-sequence: ``cache`` is None and attention is causal. Incremental: ``x`` is
        the newest step (B, 1, C); ``cache`` holds ``self_k/self_v`` (grown here) and
        ``cross_k/cross_v`` (and ``cross_padding_mask``), projected from ``memory`` on the first step
        and reused after.
        """
        keys, values = self.self_attn.project_kv(x)
        if cache is None:
            keep = causal_keep_mask(x.size(1), x.device)
            if self_padding_mask is not None:
                keep = keep & padding_keep_mask(self_padding_mask)
        else:
            if "self_k" in cache:
                keys = torch.cat([cache["self_k"], keys], dim=2)
                values = torch.cat([cache["self_v"], values], dim=2)
            cache["self_k"], cache["self_v"] = keys, values
            keep = None  # one query step sees the whole (unpadded) prefix
        h = self.self_attn.attend(x, keys, values, keep)
        x = self._residual(h, x, self.self_attn_layer_norm)

        if cache is not None and "cross_k" in cache:
            cross_k, cross_v = cache["cross_k"], cache["cross_v"]
            memory_padding_mask = cache.get("cross_padding_mask")
        else:
            assert memory is not None, "encoder memory is needed before the cross-attention cache exists"
            cross_k, cross_v = self.encoder_attn.project_kv(memory)
            if cache is not None:
                cache["cross_k"], cache["cross_v"] = cross_k, cross_v
                if memory_padding_mask is not None:
                    cache["cross_padding_mask"] = memory_padding_mask
        h = self.encoder_attn.attend(x, cross_k, cross_v, padding_keep_mask(memory_padding_mask))
        x = self._residual(h, x, self.encoder_attn_layer_norm)
        return self.feed_forward(x)
