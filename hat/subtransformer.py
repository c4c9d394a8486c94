"""Standalone SubTransformers: plain modules with the active slices copied in, and parameter counts."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from hat.modules.layers import DecoderLayer, EncoderLayer, LayerOps
from hat.modules.positions import SinusoidalPositions
from hat.modules.transformer import Decoder, Encoder, EncoderDecoder
from hat.space import SearchSpace, SubTransformerConfig, ende_attn_layers
from hat.supernet.model import SuperTransformer, embedding_tables, init_transformer_weights, scaled_dropout


@dataclass(frozen=True)
class ModelDims:
    """What a standalone model needs besides its config (recorded in exported manifests)."""

    src_vocab_size: int
    tgt_vocab_size: int
    qkv_dim: int
    share_all_embeddings: bool
    position_base_dim: int  # width of the sinusoidal table that positions are sliced from
    padding_idx: int = 1
    max_positions: int = 1024

    @classmethod
    def for_space(cls, space: SearchSpace, src_vocab_size: int, tgt_vocab_size: int, **kwargs) -> "ModelDims":
        """Dims of SubTransformers of ``space`` (positions sliced from the super width, as in training)."""
        return cls(src_vocab_size, tgt_vocab_size, space.qkv_dim, space.share_all_embeddings, space.super_embed_dim,
                   **kwargs)

    @classmethod
    def of(cls, supernet: SuperTransformer) -> "ModelDims":
        return cls.for_space(supernet.space, supernet.src_vocab_size, supernet.tgt_vocab_size,
                             padding_idx=supernet.padding_idx, max_positions=supernet.max_positions)

    def to_dict(self) -> dict:
        return asdict(self)


class SubTransformer(EncoderDecoder):
    """A fixed architecture built from plain ``nn.Linear``/``nn.LayerNorm``/``nn.Embedding``.

    With shared embeddings there is one table of width ``max(encoder, decoder embed)``; each side
    reads its leading columns, exactly as in the SuperTransformer.
    """

    def __init__(
        self,
        config: SubTransformerConfig,
        dims: ModelDims,
        *,
        encoder_dropout: float = 0.0,
        decoder_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.config, self.dims = config, dims
        pad = dims.padding_idx
        enc_dim, dec_dim = config.encoder_embed_dim, config.decoder_embed_dim
        encoder_table, decoder_table = embedding_tables(
            dims.share_all_embeddings, dims.src_vocab_size, dims.tgt_vocab_size, enc_dim, dec_dim, pad)
        positions = SinusoidalPositions(dims.position_base_dim, pad, dims.max_positions)
        encoder_ops = LayerOps(dims.qkv_dim, encoder_dropout, attention_dropout, activation_dropout)
        decoder_ops = LayerOps(dims.qkv_dim, decoder_dropout, attention_dropout, activation_dropout)
        encoder_layers = [EncoderLayer(enc_dim, ffn, heads, encoder_ops)
                          for ffn, heads in zip(config.encoder_ffn_dims, config.encoder_heads)]
        decoder_layers = [
            DecoderLayer(dec_dim, enc_dim, ffn, self_heads, cross_heads, ende_attn_layers(ende), decoder_ops)
            for ffn, self_heads, cross_heads, ende in zip(
                config.decoder_ffn_dims, config.decoder_self_heads, config.decoder_cross_heads, config.decoder_ende_attn
            )
        ]
        self.encoder = Encoder(encoder_table, enc_dim, encoder_layers, positions, pad, encoder_dropout)
        self.decoder = Decoder(decoder_table, dec_dim, decoder_layers, positions, pad, decoder_dropout)
        init_transformer_weights(self, pad)


@torch.no_grad()
def extract_subtransformer(supernet: SuperTransformer, config: SubTransformerConfig) -> SubTransformer:
    """Copy ``config``'s slices out of ``supernet`` into a standalone :class:`SubTransformer`.

    Every weight of a SubTransformer is the leading block of the super weight with the same name,
    so the copy is ``super[:rows, :cols]`` by shape. The result owns fresh tensors (no super weights).
    """
    supernet.space.validate(config)
    space = supernet.space
    model = SubTransformer(
        config,
        ModelDims.of(supernet),
        encoder_dropout=scaled_dropout(supernet.dropout, config.encoder_embed_dim, space.super_encoder_embed_dim),
        decoder_dropout=scaled_dropout(supernet.dropout, config.decoder_embed_dim, space.super_decoder_embed_dim),
        attention_dropout=supernet.attention_dropout,
        activation_dropout=supernet.activation_dropout,
    )
    super_params = dict(supernet.named_parameters())
    for name, param in model.named_parameters():
        source = super_params[name]
        param.copy_(source[tuple(slice(0, n) for n in param.shape)])
    model.train(supernet.training)
    return model


def count_parameters(config: SubTransformerConfig, dims: ModelDims, include_embeddings: bool = True) -> int:
    """Parameters of ``config``'s standalone model, computed from the shapes alone (no model built).

    Embeddings count once when shared (one table of width max(encoder, decoder) embed); the output
    projection is tied to the decoder embedding and adds nothing. Positions are not parameters.
    """
    q = dims.qkv_dim
    e, d = config.encoder_embed_dim, config.decoder_embed_dim

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    def attention(embed: int, kv: int) -> int:
        return linear(embed, q) + 2 * linear(kv, q) + linear(q, embed)

    total = 0
    for ffn in config.encoder_ffn_dims:
        total += attention(e, e) + linear(e, ffn) + linear(ffn, e) + 2 * 2 * e
    for ffn in config.decoder_ffn_dims:
        total += attention(d, d) + attention(d, e) + linear(d, ffn) + linear(ffn, d) + 3 * 2 * d
    if include_embeddings:
        if dims.share_all_embeddings:
            total += dims.src_vocab_size * max(e, d)
        else:
            total += dims.src_vocab_size * e + dims.tgt_vocab_size * d
    return total
