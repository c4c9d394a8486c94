"""The SuperTransformer as a fairseq model (``--arch hat_transformer``)."""

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    register_model,
)

from hat.defaults import ACTIVATION_DROPOUT, ATTENTION_DROPOUT, DROPOUT
from hat.errors import HatError
from hat.modules import reorder_incremental_state
from hat.space import SearchSpace, SubTransformerConfig
from hat.supernet import SuperTransformer


@dataclass
class HatTransformerConfig(FairseqDataclass):
    search_space: str = field(default="", metadata={"help": "search space YAML file"})
    dropout: float = field(default=DROPOUT, metadata={"help": "dropout at the super width (scaled per SubTransformer)"})
    attention_dropout: float = field(default=ATTENTION_DROPOUT, metadata={"help": "attention dropout"})
    activation_dropout: float = field(default=ACTIVATION_DROPOUT, metadata={"help": "dropout after the FFN activation"})
    max_source_positions: int = field(default=1024, metadata={"help": "max source length"})
    max_target_positions: int = field(default=1024, metadata={"help": "max target length"})


def space_from_cfg(cfg: Any) -> SearchSpace:
    """The space named by ``--search-space`` (a checkpoint's own space is checked on load)."""
    if not cfg.search_space:
        raise HatError("the hat_transformer model needs --search-space SPACE.yaml")
    return SearchSpace.from_yaml(cfg.search_space)


class HatEncoder(FairseqEncoder):
    def __init__(self, dictionary, supernet: SuperTransformer, max_positions: int) -> None:
        super().__init__(dictionary)
        self.inner = supernet.encoder
        self._max_positions = max_positions

    def forward(self, src_tokens: torch.Tensor, src_lengths: Optional[torch.Tensor] = None, **kwargs):
        return self.inner(src_tokens)

    def reorder_encoder_out(self, encoder_out, new_order: torch.Tensor):
        return encoder_out.reorder(new_order)

    def max_positions(self) -> int:
        return self._max_positions


class HatDecoder(FairseqIncrementalDecoder):
    def __init__(self, dictionary, supernet: SuperTransformer, max_positions: int) -> None:
        super().__init__(dictionary)
        self.inner = supernet.decoder
        self._max_positions = max_positions

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        return self.inner(prev_output_tokens, encoder_out, incremental_state), None

    def extract_features(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        return self.inner.extract_features(prev_output_tokens, encoder_out, incremental_state), None

    def output_layer(self, features, **kwargs):
        return self.inner.output_layer(features)

    def reorder_incremental_state(self, incremental_state, new_order):
        reorder_incremental_state(incremental_state, new_order)

    def max_positions(self) -> int:
        return self._max_positions


@register_model("hat_transformer", dataclass=HatTransformerConfig)
class HatTransformerModel(FairseqEncoderDecoderModel):
    """fairseq view of a :class:`SuperTransformer` (state dict keys ``encoder.inner.*``/``decoder.inner.*``)."""

    def __init__(self, supernet: SuperTransformer, src_dict, tgt_dict, cfg) -> None:
        encoder = HatEncoder(src_dict, supernet, cfg.max_source_positions)
        decoder = HatDecoder(tgt_dict, supernet, cfg.max_target_positions)
        super().__init__(encoder, decoder)
        self.__dict__["supernet"] = supernet  # shares the modules above; not registered twice
        self.fixed_config: SubTransformerConfig | None = None  # set by the task when it trains one SubTransformer

    @classmethod
    def build_model(cls, cfg, task):
        space = space_from_cfg(cfg)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        if space.share_all_embeddings and src_dict.symbols != tgt_dict.symbols:
            raise HatError(
                f"space '{space.name}' shares embeddings: preprocess the data with --joined-dictionary"
            )
        if src_dict.pad() != tgt_dict.pad():
            raise HatError("source and target dictionaries use different padding indices")
        supernet = SuperTransformer(
            space,
            src_vocab_size=len(src_dict),
            tgt_vocab_size=len(tgt_dict),
            padding_idx=src_dict.pad(),
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            max_positions=max(cfg.max_source_positions, cfg.max_target_positions),
        )
        return cls(supernet, src_dict, tgt_dict, cfg)

    @property
    def space(self) -> SearchSpace:
        return self.supernet.space

    def set_active_subnet(self, config: SubTransformerConfig) -> None:
        self.supernet.set_active_subnet(config)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **kwargs):
        encoder_out = self.encoder(src_tokens, src_lengths)
        return self.decoder(prev_output_tokens, encoder_out)

    def max_positions(self):
        return (self.encoder.max_positions(), self.decoder.max_positions())

    # The space travels inside the state dict, so loading weights of another space fails clearly.
    def get_extra_state(self) -> dict:
        fixed = self.fixed_config.to_dict() if self.fixed_config is not None else None
        return {"space": self.space.to_dict(), "space_fingerprint": self.space.fingerprint, "subtransformer": fixed}

    def set_extra_state(self, state: dict) -> None:
        if state.get("space_fingerprint") != self.space.fingerprint:
            raise HatError(
                f"checkpoint weights belong to space '{state.get('space', {}).get('name')}', "
                f"not to '{self.space.name}'"
            )
