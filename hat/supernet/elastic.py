"""Elastic ops: each owns the largest weight and computes with its leading slice.

The input width is read from the input itself; the output width is the one active setting
(``active_out``), written only by the owning layer's ``set_active``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ElasticLinear(nn.Linear):
    """``y = x W[:out, :in]^T + b[:out]`` where ``in`` is ``x``'s width and ``out`` is ``active_out``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.active_out = out_features

    def active_weight(self, in_dim: int) -> torch.Tensor:
        """The leading ``(active_out, in_dim)`` block of the weight (a view, no copy)."""
        return self.weight[: self.active_out, :in_dim]

    def active_bias(self) -> torch.Tensor:
        return self.bias[: self.active_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.active_weight(x.size(-1)), self.active_bias())


class ElasticLayerNorm(nn.LayerNorm):
    """Layer norm over the input's width, with the leading slice of the affine parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.size(-1)
        return F.layer_norm(x, (dim,), self.weight[:dim], self.bias[:dim], self.eps)
