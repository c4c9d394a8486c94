"""Transformer building blocks shared by the SuperTransformer and standalone SubTransformers."""
from hat.modules.attention import MultiheadAttention
from hat.modules.layers import DecoderLayer, EncoderLayer
from hat.modules.positions import SinusoidalPositions, make_positions, sinusoidal_table
from hat.modules.transformer import (
    Decoder,
    Encoder,
    EncoderDecoder,
    EncoderOut,
    IncrementalState,
    reorder_incremental_state,
)

__all__ = [
    "Decoder", "DecoderLayer", "Encoder", "EncoderDecoder", "EncoderLayer", "EncoderOut", "IncrementalState",
    "MultiheadAttention", "SinusoidalPositions", "make_positions", "reorder_incremental_state", "sinusoidal_table",
]
