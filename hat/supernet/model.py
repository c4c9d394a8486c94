"""The weight-shared SuperTransformer: one encoder-decoder that contains every SubTransformer."""
from __future__ import annotations

import torch
from torch import nn

from hat.defaults import ACTIVATION_DROPOUT, ATTENTION_DROPOUT, DROPOUT
from hat.errors import HatError
from hat.modules.attention import MultiheadAttention
from hat.modules.layers import DecoderLayer, EncoderLayer, LayerOps
from hat.modules.positions import SinusoidalPositions
from hat.modules.transformer import Decoder, Encoder, EncoderDecoder
from hat.space import SearchSpace, SubTransformerConfig, ende_attn_layers
from hat.supernet.elastic import ElasticLayerNorm, ElasticLinear
from hat.tokens import PAD


def scaled_dropout(dropout: float, active_dim: int, super_dim: int) -> float:
    """HAT scales dropout with the active width: 0.3 at 640 becomes 0.24 at 512."""
    return dropout * active_dim / super_dim


class ElasticEncoderLayer(EncoderLayer):
    def set_active(self, embed_dim: int, ffn_dim: int, heads: int, dropout: float) -> None:
        self.self_attn.num_heads = heads
        self.self_attn.out_proj.active_out = embed_dim
        self.fc1.active_out = ffn_dim
        self.fc2.active_out = embed_dim
        self.dropout = dropout  # activation and attention dropout are not scaled (as in HAT)


class ElasticDecoderLayer(DecoderLayer):
    def set_active(  # type: ignore[override]
        self, embed_dim: int, ffn_dim: int, self_heads: int, cross_heads: int, ende_layers: int, dropout: float
    ) -> None:
        ElasticEncoderLayer.set_active(self, embed_dim, ffn_dim, self_heads, dropout)  # type: ignore[arg-type]
        self.encoder_attn.num_heads = cross_heads
        self.encoder_attn.out_proj.active_out = embed_dim
        self.ende_layers = ende_layers


class ElasticEncoder(Encoder):
    """Encoder whose first ``num_active_layers`` layers run."""

    num_active_layers: int

    def active_layers(self) -> list[nn.Module]:
        return list(self.layers[: self.num_active_layers])


class ElasticDecoder(Decoder):
    num_active_layers: int

    def active_layers(self) -> list[nn.Module]:
        return list(self.layers[: self.num_active_layers])


def embedding_tables(
    shared: bool, src_vocab: int, tgt_vocab: int, encoder_dim: int, decoder_dim: int, padding_idx: int
) -> tuple[nn.Embedding, nn.Embedding]:
    """Encoder and decoder token tables: one table of the wider width when shared, else one each."""
    if shared:
        table = nn.Embedding(src_vocab, max(encoder_dim, decoder_dim), padding_idx)
        return table, table
    return nn.Embedding(src_vocab, encoder_dim, padding_idx), nn.Embedding(tgt_vocab, decoder_dim, padding_idx)


def init_transformer_weights(model: nn.Module, padding_idx: int) -> None:
    """fairseq's transformer initialisation, at the super width.

    - FFN linears: ``nn.Linear``'s default (weights and biases uniform within 1/sqrt(fan_in)).
    - Attention: query/key/value weights Xavier-uniform with gain 1/sqrt(2), their biases
      ``nn.Linear``'s default; output projection Xavier-uniform (gain 1) with zero bias.
    - Embeddings N(0, d^-0.5) with a zero padding row; LayerNorms (1, 0).

    HAT's code gives every linear Xavier gain 1 and a zero bias; on Multi30k's stock architecture
    fairseq's initialisation trained to fairseq's own BLEU where HAT's fell 5 points short, and with
    gain 1 on query/key/value a 4+4-layer post-LN model stalled on the unigram plateau for hundreds
    of updates (BENCHMARKS.md, Multi30k).
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=module.embedding_dim**-0.5)
            with torch.no_grad():
                module.weight[padding_idx].zero_()
    for module in model.modules():
        if isinstance(module, MultiheadAttention):
            for projection in (module.q_proj, module.k_proj, module.v_proj):
                nn.init.xavier_uniform_(projection.weight, gain=2**-0.5)
            nn.init.xavier_uniform_(module.out_proj.weight)
            nn.init.zeros_(module.out_proj.bias)


class SuperTransformer(EncoderDecoder):
    """Weight-shared encoder-decoder over a :class:`SearchSpace`.

    Example:
        >>> space = SearchSpace.from_yaml("search_spaces/tiny.yaml")
        >>> model = SuperTransformer(space, src_vocab_size=100, tgt_vocab_size=100)
        >>> model.set_active_subnet(space.smallest())
        >>> logits = model(torch.tensor([[5, 6, 2]]), torch.tensor([[2, 7]]))  # (1, 2, 100)
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        padding_idx: int = PAD,
        dropout: float = DROPOUT,
        attention_dropout: float = ATTENTION_DROPOUT,
        activation_dropout: float = ACTIVATION_DROPOUT,
        max_positions: int = 1024,
    ) -> None:
        super().__init__()
        if space.share_all_embeddings and src_vocab_size != tgt_vocab_size:
            raise HatError(
                f"space '{space.name}' shares embeddings, so source and target vocabularies must be one "
                f"(joined dictionary); got {src_vocab_size} and {tgt_vocab_size}"
            )
        self.space = space
        self.padding_idx = padding_idx
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.max_positions = max_positions
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        enc_dim, dec_dim = space.super_encoder_embed_dim, space.super_decoder_embed_dim
        positions = SinusoidalPositions(space.super_embed_dim, padding_idx, max_positions)
        encoder_table, decoder_table = embedding_tables(
            space.share_all_embeddings, src_vocab_size, tgt_vocab_size, enc_dim, dec_dim, padding_idx)
        ops = LayerOps(space.qkv_dim, dropout, attention_dropout, activation_dropout, ElasticLinear, ElasticLayerNorm)
        encoder_layers = [
            ElasticEncoderLayer(enc_dim, max(space.encoder["ffn_dim"]), max(space.encoder["heads"]), ops)
            for _ in range(space.max_encoder_layers)
        ]
        decoder_layers = [
            ElasticDecoderLayer(dec_dim, enc_dim, max(space.decoder["ffn_dim"]), max(space.decoder["self_heads"]),
                                max(space.decoder["cross_heads"]), 1, ops)
            for _ in range(space.max_decoder_layers)
        ]
        self.encoder = ElasticEncoder(encoder_table, enc_dim, encoder_layers, positions, padding_idx, dropout)
        self.decoder = ElasticDecoder(decoder_table, dec_dim, decoder_layers, positions, padding_idx, dropout)
        init_transformer_weights(self, padding_idx)
        self.active_config: SubTransformerConfig | None = None
        self.set_active_subnet(space.largest())

    def set_active_subnet(self, config: SubTransformerConfig) -> None:
        """Activate one SubTransformer: every elastic width, head count and depth, in one call."""
        self.space.validate(config)
        space = self.space
        enc_dropout = scaled_dropout(self.dropout, config.encoder_embed_dim, space.super_encoder_embed_dim)
        dec_dropout = scaled_dropout(self.dropout, config.decoder_embed_dim, space.super_decoder_embed_dim)
        self.encoder.embed_dim, self.encoder.dropout = config.encoder_embed_dim, enc_dropout
        self.encoder.num_active_layers = config.encoder_layers
        for layer, ffn, heads in zip(self.encoder.layers, config.encoder_ffn_dims, config.encoder_heads):
            layer.set_active(config.encoder_embed_dim, ffn, heads, enc_dropout)
        self.decoder.embed_dim, self.decoder.dropout = config.decoder_embed_dim, dec_dropout
        self.decoder.num_active_layers = config.decoder_layers
        per_layer = zip(
            self.decoder.layers, config.decoder_ffn_dims, config.decoder_self_heads,
            config.decoder_cross_heads, config.decoder_ende_attn,
        )
        for layer, ffn, self_heads, cross_heads, ende in per_layer:
            layer.set_active(config.decoder_embed_dim, ffn, self_heads, cross_heads, ende_attn_layers(ende), dec_dropout)
        self.active_config = config

    def inactive_parameters(self) -> list[nn.Parameter]:
        """Parameters the active SubTransformer does not use at all (layers beyond its depths)."""
        idle = [*self.encoder.layers[self.encoder.num_active_layers:], *self.decoder.layers[self.decoder.num_active_layers:]]
        return [p for layer in idle for p in layer.parameters()]
