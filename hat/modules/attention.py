"""Multi-head attention with a fixed Q/K/V width, where the head count only sets the head size."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LinearFactory = Callable[[int, int], nn.Module]


class MultiheadAttention(nn.Module):
    """Attention whose Q/K/V projections are ``qkv_dim`` wide whatever the head count (as in HAT).

    ``project_kv`` and ``attend`` are separate so the layers can cache keys/values for incremental
    decoding: self-attention appends one step at a time, encoder-decoder attention projects once.
    """

    def __init__(
        self,
        embed_dim: int,
        kv_dim: int,
        qkv_dim: int,
        num_heads: int,
        dropout: float,
        linear: LinearFactory = nn.Linear,
    ) -> None:
        super().__init__()
        self.qkv_dim = qkv_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = linear(embed_dim, qkv_dim)
        self.k_proj = linear(kv_dim, qkv_dim)
        self.v_proj = linear(kv_dim, qkv_dim)
        self.out_proj = linear(qkv_dim, embed_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)  # (B, H, T, qkv/H)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, H, S, qkv/H)`` for ``memory`` ``(B, S, kv_dim)``."""
        return self._split_heads(self.k_proj(memory)), self._split_heads(self.v_proj(memory))

    def attend(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention output ``(B, T, embed)``; ``keep`` (bool, broadcast to (B, H, T, S)) marks usable keys."""
        q = self._split_heads(self.q_proj(query))
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=keep, dropout_p=dropout)
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, self.qkv_dim))


def padding_keep_mask(padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) True-at-padding -> (B, 1, 1, S) True-where-usable, or None when nothing is padded."""
    if padding_mask is None:
        return None
    return ~padding_mask[:, None, None, :]


def causal_keep_mask(length: int, device: torch.device) -> torch.Tensor:
    """(T, T) lower-triangular: position t sees positions <= t."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()
