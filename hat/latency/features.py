"""Architecture features for latency prediction.

HAT's ten averaged features describe a SubTransformer in its published CSVs. Layer sums are
``layers * average``, so the structural features below (which approximate FLOP and memory terms
per layer) can be computed from the ten averages alone: the same model fits our own datasets and
HAT's published ones.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hat.space import SubTransformerConfig, ende_attn_layers

HAT_FEATURES = (
    "encoder_embed_dim",
    "encoder_layer_num",
    "encoder_ffn_embed_dim_avg",
    "encoder_self_attention_heads_avg",
    "decoder_embed_dim",
    "decoder_layer_num",
    "decoder_ffn_embed_dim_avg",
    "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg",
    "decoder_arbitrary_ende_attn_avg",
)
# HAT's normalisation of the ten features for its MLP.
HAT_FEATURE_SCALE = np.array([640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2], dtype=float)


def hat_features(config: SubTransformerConfig) -> list[float]:
    """The ten averaged features (arbitrary attention counted as 1, 2, 3 attended layers)."""
    le, ld = config.encoder_layers, config.decoder_layers
    return [  # plain Python: the search computes these for thousands of configs
        config.encoder_embed_dim,
        le,
        sum(config.encoder_ffn_dims) / le,
        sum(config.encoder_heads) / le,
        config.decoder_embed_dim,
        ld,
        sum(config.decoder_ffn_dims) / ld,
        sum(config.decoder_self_heads) / ld,
        sum(config.decoder_cross_heads) / ld,
        sum(ende_attn_layers(v) for v in config.decoder_ende_attn) / ld,
    ]


def hat_feature_matrix(configs: Sequence[SubTransformerConfig]) -> np.ndarray:
    return np.array([hat_features(c) for c in configs], dtype=float).reshape(-1, len(HAT_FEATURES))


STRUCTURAL_FEATURES = (
    "enc_layers", "enc_layers*e", "enc_layers*e^2", "enc_sum_ffn", "enc_sum_ffn*e", "enc_sum_heads",
    "dec_layers", "dec_layers*d", "dec_layers*d^2", "dec_sum_ffn", "dec_sum_ffn*d", "dec_sum_self_heads",
    "dec_sum_cross_heads", "dec_sum_ende", "dec_sum_ende*e", "dec_sum_ende*d", "e", "d",
)


def structural_features(hat: np.ndarray) -> np.ndarray:
    """(N, 10) averaged features -> (N, 18) per-layer sums of cost terms (see ``STRUCTURAL_FEATURES``)."""
    e, le, fe, he, d, ld, fd, hd, cd, ad = (hat[:, i] for i in range(10))
    k = 1e-3  # keep magnitudes comparable (widths in thousands)
    e, d, fe, fd = e * k, d * k, fe * k, fd * k
    columns = [
        le, le * e, le * e * e, le * fe, le * fe * e, le * he,
        ld, ld * d, ld * d * d, ld * fd, ld * fd * d, ld * hd,
        ld * cd, ld * ad, ld * ad * e, ld * ad * d, e, d,
    ]
    return np.stack(columns, axis=1)
