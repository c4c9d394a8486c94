"""Sinusoidal positions as fairseq computes them, built once at the super width and sliced."""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num_positions: int, dim: int, padding_idx: int) -> torch.Tensor:
    """``(num_positions, dim)`` table: first half sines, second half cosines; the padding row is 0."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(num_positions, dtype=torch.float).unsqueeze(1) * freq.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[padding_idx] = 0
    return table


def make_positions(tokens: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """Position ids ``padding_idx+1, padding_idx+2, ...`` for real tokens, ``padding_idx`` for padding.

    Counting only real tokens makes left-padded sources get the same positions as unpadded ones.
    """
    mask = tokens.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


class SinusoidalPositions(nn.Module):
    """Position embeddings of width ``base_dim`` (the super width); ``forward`` takes the first ``dim``.

    HAT slices one table built at the SuperTransformer width, so SubTransformers of every width see
    the leading columns of the same table; a standalone model keeps ``base_dim`` to match it.
    PyTorch looks rows up in a table (fastest in eager mode); with ``on_the_fly`` set (the ONNX
    export sets it) the same values are computed from a ``base_dim // 2`` frequency vector, so an
    exported graph does not carry a table of every position.
    """

    def __init__(self, base_dim: int, padding_idx: int, max_positions: int = 1024) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.padding_idx = padding_idx
        self.max_positions = max_positions
        self.on_the_fly = False
        half = base_dim // 2
        freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer("freq", freq, persistent=False)
        num = max_positions + padding_idx + 1
        self.register_buffer("table", sinusoidal_table(num, base_dim, padding_idx), persistent=False)

    def embed(self, positions: torch.Tensor, dim: int) -> torch.Tensor:
        """``(..., dim)`` embeddings of position ids (``padding_idx`` gives zeros)."""
        half = self.freq.numel()
        angles = positions.unsqueeze(-1).float() * self.freq
        parts = [torch.sin(angles[..., : min(dim, half)])]
        if dim > half:
            parts.append(torch.cos(angles[..., : min(dim - half, half)]))
        if dim > 2 * half:  # odd base width: the last column is zero
            parts.append(torch.zeros_like(angles[..., :1]))
        values = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return values.masked_fill(positions.eq(self.padding_idx).unsqueeze(-1), 0.0)

    def forward(self, tokens: torch.Tensor, dim: int, last_only: bool = False) -> torch.Tensor:
        """``(B, T, dim)``, or ``(B, 1, dim)`` for the newest token only (incremental decoding)."""
        positions = make_positions(tokens, self.padding_idx)  # (B, T)
        if last_only:
            positions = positions[:, -1:]
        return self.embed(positions, dim) if self.on_the_fly else self.table[:, :dim][positions]
