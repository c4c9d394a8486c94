"""FLOPs of a SubTransformer as HAT reports them, computed from the config alone.

HAT's published tables count 2 x the multiply-accumulates of one teacher-forced forward pass
with a source and a target of ``length`` tokens (30 for WMT, 23 for IWSLT): every projection,
feed-forward layer and attention product of the encoder and decoder layers. Embedding lookups and
the output projection are left out (they depend on the vocabulary), and so are biases, layer norms
and softmax, which are not multiply-accumulates of a matrix product.
"""
from __future__ import annotations

from hat.space.config import SubTransformerConfig, ende_attn_layers


def attention_macs(queries: int, keys: int, embed: int, kv_embed: int, qkv_dim: int) -> int:
    """Multiply-accumulates of one attention block: q/k/v/out projections and both attention products."""
    projections = queries * embed * qkv_dim + 2 * keys * kv_embed * qkv_dim + queries * qkv_dim * embed
    products = 2 * queries * keys * qkv_dim  # q k^T, then the weights times v (summed over heads)
    return projections + products


def count_flops(config: SubTransformerConfig, qkv_dim: int, src_len: int = 30, tgt_len: int | None = None) -> int:
    """FLOPs (2 x multiply-accumulates) of one teacher-forced forward pass of ``config``.

    A decoder layer attending to the last ``n`` encoder layers sees their outputs side by side,
    ``n * src_len`` keys, as in HAT's arbitrary encoder-decoder attention.
    """
    tgt_len = src_len if tgt_len is None else tgt_len
    e, d = config.encoder_embed_dim, config.decoder_embed_dim
    macs = 0
    for ffn in config.encoder_ffn_dims:
        macs += attention_macs(src_len, src_len, e, e, qkv_dim) + 2 * src_len * e * ffn
    for ffn, ende in zip(config.decoder_ffn_dims, config.decoder_ende_attn):
        keys = ende_attn_layers(ende) * src_len
        macs += attention_macs(tgt_len, tgt_len, d, d, qkv_dim)
        macs += attention_macs(tgt_len, keys, d, e, qkv_dim)
        macs += 2 * tgt_len * d * ffn
    return 2 * macs
