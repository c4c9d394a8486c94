"""SubTransformerConfig: one architecture of a search space, as a small immutable value.

The config is what the sampler, the latency predictor, the search and the exporter exchange.
Per-layer lists hold only the *active* layers, so two configs that build the same network are
equal and share one ``archid``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from hat.errors import HatError

PER_LAYER_ENCODER = ("encoder_ffn_dims", "encoder_heads")
PER_LAYER_DECODER = ("decoder_ffn_dims", "decoder_self_heads", "decoder_cross_heads", "decoder_ende_attn")

# HAT's published SubTransformer YAML keys -> our field names.
HAT_KEYS = {
    "encoder-embed-dim-subtransformer": "encoder_embed_dim",
    "decoder-embed-dim-subtransformer": "decoder_embed_dim",
    "encoder-layer-num-subtransformer": "encoder_layers",
    "decoder-layer-num-subtransformer": "decoder_layers",
    "encoder-ffn-embed-dim-all-subtransformer": "encoder_ffn_dims",
    "encoder-self-attention-heads-all-subtransformer": "encoder_heads",
    "decoder-ffn-embed-dim-all-subtransformer": "decoder_ffn_dims",
    "decoder-self-attention-heads-all-subtransformer": "decoder_self_heads",
    "decoder-ende-attention-heads-all-subtransformer": "decoder_cross_heads",
    "decoder-arbitrary-ende-attn-all-subtransformer": "decoder_ende_attn",
}


def ende_attn_layers(value: int) -> int:
    """Number of last encoder layers a decoder layer attends to, from HAT's code (-1, 1, 2)."""
    return 1 if value == -1 else value + 1


@dataclass(frozen=True)
class SubTransformerConfig:
    """One SubTransformer: embedding dims and per-layer choices of the active layers.

    Example:
        >>> cfg = SubTransformerConfig(
        ...     encoder_embed_dim=512, decoder_embed_dim=512,
        ...     encoder_ffn_dims=(2048,) * 6, encoder_heads=(8,) * 6,
        ...     decoder_ffn_dims=(1024, 2048), decoder_self_heads=(4, 8),
        ...     decoder_cross_heads=(8, 8), decoder_ende_attn=(-1, 1))
        >>> cfg.decoder_layers
        2

    ``decoder_ende_attn`` uses HAT's encoding: -1, 1, 2 attend to the last 1, 2, 3 encoder layers.
    ``space`` only records which space the config came from; it is not part of the identity.
    """

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_ffn_dims: tuple[int, ...]
    encoder_heads: tuple[int, ...]
    decoder_ffn_dims: tuple[int, ...]
    decoder_self_heads: tuple[int, ...]
    decoder_cross_heads: tuple[int, ...]
    decoder_ende_attn: tuple[int, ...]
    space: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("encoder_embed_dim", "decoder_embed_dim"):
            object.__setattr__(self, name, _as_int(name, getattr(self, name)))
        for name in PER_LAYER_ENCODER + PER_LAYER_DECODER:
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise HatError(f"{name} must be a list of integers, got {value!r}")
            object.__setattr__(self, name, tuple(_as_int(f"{name}[{i}]", v) for i, v in enumerate(value)))
        _check_lengths(self.encoder_layers, PER_LAYER_ENCODER, self, "encoder")
        _check_lengths(self.decoder_layers, PER_LAYER_DECODER, self, "decoder")
        if self.encoder_layers == 0 or self.decoder_layers == 0:
            raise HatError("a SubTransformer needs at least one encoder and one decoder layer")

    @property
    def encoder_layers(self) -> int:
        return len(self.encoder_ffn_dims)

    @property
    def decoder_layers(self) -> int:
        return len(self.decoder_ffn_dims)

    @property
    def archid(self) -> str:
        """Deterministic id: a hash of the architecture (not of ``space``)."""
        payload = json.dumps(self.to_dict(include_space=False), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self, include_space: bool = True) -> dict[str, Any]:
        """Plain dict with lists (YAML/JSON friendly); layer counts included for readability."""
        out: dict[str, Any] = {}
        if include_space and self.space is not None:
            out["space"] = self.space
        out["encoder_embed_dim"] = self.encoder_embed_dim
        out["decoder_embed_dim"] = self.decoder_embed_dim
        out["encoder_layers"] = self.encoder_layers
        out["decoder_layers"] = self.decoder_layers
        for name in PER_LAYER_ENCODER + PER_LAYER_DECODER:
            out[name] = list(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SubTransformerConfig":
        """Build from our dict format or from HAT's published YAML keys."""
        if not isinstance(data, Mapping):
            raise HatError(f"a config must be a mapping of keys to values, got {type(data).__name__}")
        if any(key in HAT_KEYS for key in data):
            return cls._from_hat_dict(data)
        known = {f.name for f in fields(cls)} | {"encoder_layers", "decoder_layers"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HatError(f"unknown config key(s): {', '.join(map(str, unknown))} (known: {', '.join(sorted(known))})")
        missing = sorted({f.name for f in fields(cls) if f.name != "space"} - set(data))
        if missing:
            raise HatError(f"config is missing key(s): {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k not in ("encoder_layers", "decoder_layers")}
        config = cls(**kwargs)
        for side in ("encoder", "decoder"):
            stated = data.get(f"{side}_layers")
            if stated is not None and stated != getattr(config, f"{side}_layers"):
                raise HatError(
                    f"{side}_layers = {stated} but the per-layer lists have {getattr(config, f'{side}_layers')} entries"
                )
        return config

    @classmethod
    def _from_hat_dict(cls, data: Mapping[str, Any]) -> "SubTransformerConfig":
        unknown = sorted(k for k in data if k not in HAT_KEYS)
        if unknown:
            raise HatError(f"unknown HAT config key(s): {', '.join(map(str, unknown))}")
        missing = sorted(k for k in HAT_KEYS if k not in data)
        if missing:
            raise HatError(f"HAT config is missing key(s): {', '.join(missing)}")
        values = {HAT_KEYS[k]: v for k, v in data.items()}
        layers = {side: _as_int(f"{side}_layers", values.pop(f"{side}_layers")) for side in ("encoder", "decoder")}
        # HAT lists cover all super layers (or more than the active ones): keep the active prefix.
        for side, names in (("encoder", PER_LAYER_ENCODER), ("decoder", PER_LAYER_DECODER)):
            for name in names:
                seq = values[name]
                if not isinstance(seq, list) or len(seq) < layers[side]:
                    raise HatError(f"{name}: needs a list of at least {layers[side]} values, got {seq!r}")
                values[name] = seq[: layers[side]]
        return cls(**values)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text (flow-style lists); written atomically to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            from hat.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SubTransformerConfig":
        """Read a config file (ours or HAT's format); errors name the file."""
        data = _load_yaml_file(path, what="config")
        try:
            return cls.from_dict(data)
        except HatError as err:
            raise HatError(str(err), path) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> "SubTransformerConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise HatError(f"config is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def summary(self) -> str:
        """Short human-readable description, e.g. for tables and logs."""
        return (
            f"enc {self.encoder_embed_dim}x{self.encoder_layers} ffn{list(self.encoder_ffn_dims)} "
            f"h{list(self.encoder_heads)} | dec {self.decoder_embed_dim}x{self.decoder_layers} "
            f"ffn{list(self.decoder_ffn_dims)} h{list(self.decoder_self_heads)}/{list(self.decoder_cross_heads)} "
            f"ende{list(self.decoder_ende_attn)}"
        )


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HatError(f"{name} must be an integer, got {value!r}")
    return value


def _check_lengths(n: int, names: tuple[str, ...], config: SubTransformerConfig, side: str) -> None:
    for name in names:
        if len(getattr(config, name)) != n:
            lengths = ", ".join(f"{m}={len(getattr(config, m))}" for m in names)
            raise HatError(f"{side} per-layer lists must have the same length ({lengths})")


def _load_yaml_file(path: str | Path, what: str) -> Any:
    from hat.io import load_yaml

    return load_yaml(path, f"{what} file")
