"""SearchSpace: the choices a SuperTransformer covers, read from a YAML file.

A space file looks like::

    name: wmt14_en_de
    qkv_dim: 512
    share_all_embeddings: true
    encoder: {embed_dim: [640, 512], layers: [6], ffn_dim: [3072, 2048, 1024], heads: [8, 4]}
    decoder: {embed_dim: [640, 512], layers: [1, 2, 3, 4, 5, 6], ffn_dim: [3072, 2048, 1024],
              self_heads: [8, 4], cross_heads: [8, 4], ende_attn: [-1, 1, 2]}

An optional ``flops_length`` (default 30) is the source and target length at which FLOPs are
counted; HAT reports WMT models at 30 tokens and IWSLT models at 23.

The SuperTransformer's dimensions are the largest choices. A genome is a fixed-length tuple of
gene values (per-layer genes for every super layer, inactive ones kept) that the evolutionary
search mutates and crosses over; ``decode`` turns it into a config.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hat.errors import HatError
from hat.space.config import SubTransformerConfig, _load_yaml_file, ende_attn_layers

ENCODER_KEYS = ("embed_dim", "layers", "ffn_dim", "heads")
DECODER_KEYS = ("embed_dim", "layers", "ffn_dim", "self_heads", "cross_heads", "ende_attn")
TOP_KEYS = ("name", "description", "qkv_dim", "share_all_embeddings", "encoder", "decoder", "flops_length")
OPTIONAL_KEYS = ("description", "flops_length")
DEFAULT_FLOPS_LENGTH = 30  # HAT counts WMT models at 30 source and target tokens (IWSLT: 23)

# Per-layer config field -> (side, choice key).
PER_LAYER_FIELDS = {
    "encoder_ffn_dims": ("encoder", "ffn_dim"),
    "encoder_heads": ("encoder", "heads"),
    "decoder_ffn_dims": ("decoder", "ffn_dim"),
    "decoder_self_heads": ("decoder", "self_heads"),
    "decoder_cross_heads": ("decoder", "cross_heads"),
    "decoder_ende_attn": ("decoder", "ende_attn"),
}

Genome = tuple[int, ...]
MAX_LAYERS = 64  # per side; bounds the space's size and every table built from it
MAX_DIM = 1 << 16  # embedding, FFN and head choices


def _largest(side: str, choice: str, doc: str) -> property:
    """A read-only property: the largest value of one choice of one side (an ``int``)."""
    return property(lambda space: max(getattr(space, side)[choice]), doc=doc)


@dataclass(frozen=True)
class Gene:
    """One position of the genome: a config field (and layer index for per-layer fields)."""

    field: str
    layer: int | None
    choices: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    """The choices of one HAT search space (see the module docstring for the YAML format)."""

    name: str
    qkv_dim: int
    share_all_embeddings: bool
    encoder: Mapping[str, tuple[int, ...]]
    decoder: Mapping[str, tuple[int, ...]]
    description: str = ""
    flops_length: int = DEFAULT_FLOPS_LENGTH  # source and target tokens at which FLOPs are counted

    def __post_init__(self) -> None:
        for side, keys in (("encoder", ENCODER_KEYS), ("decoder", DECODER_KEYS)):
            given = dict(getattr(self, side))
            unknown = sorted(set(given) - set(keys))
            if unknown:
                raise HatError(f"unknown {side} key(s): {', '.join(unknown)} (known: {', '.join(keys)})")
            missing = [k for k in keys if k not in given]
            if missing:
                raise HatError(f"{side} is missing choice list(s): {', '.join(missing)}")
            checked = {k: _choice_list(f"{side}.{k}", given[k]) for k in keys}
            object.__setattr__(self, side, checked)
        if not isinstance(self.name, str) or not self.name:
            raise HatError("the space needs a non-empty 'name'")
        if isinstance(self.qkv_dim, bool) or not isinstance(self.qkv_dim, int) or not 0 < self.qkv_dim <= MAX_DIM:
            raise HatError(f"qkv_dim must be a positive integer, got {self.qkv_dim!r}")
        if not isinstance(self.share_all_embeddings, bool):
            raise HatError(f"share_all_embeddings must be true or false, got {self.share_all_embeddings!r}")
        if isinstance(self.flops_length, bool) or not isinstance(self.flops_length, int) or not 0 < self.flops_length <= 4096:
            raise HatError(f"flops_length must be a positive number of tokens, got {self.flops_length!r}")
        for key in ("heads",):
            self._check_heads(f"encoder.{key}", self.encoder[key])
        for key in ("self_heads", "cross_heads"):
            self._check_heads(f"decoder.{key}", self.decoder[key])
        for value in self.decoder["ende_attn"]:
            if value == 0 or value < -1:
                raise HatError(f"decoder.ende_attn: {value} is not valid (use -1, 1, 2, ...: last 1, 2, 3 layers)")
        need = max(ende_attn_layers(v) for v in self.decoder["ende_attn"])
        if need > min(self.encoder["layers"]):
            raise HatError(
                f"decoder.ende_attn allows attending to the last {need} encoder layers but encoder.layers "
                f"allows only {min(self.encoder['layers'])}"
            )

    def _check_heads(self, name: str, heads: tuple[int, ...]) -> None:
        for h in heads:
            if self.qkv_dim % h:
                raise HatError(f"{name}: qkv_dim {self.qkv_dim} is not divisible by {h} heads")

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise HatError(f"a search space must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise HatError(f"unknown key(s): {', '.join(map(str, unknown))} (known: {', '.join(TOP_KEYS)})")
        missing = [k for k in TOP_KEYS if k not in data and k not in OPTIONAL_KEYS]
        if missing:
            raise HatError(f"missing key(s): {', '.join(missing)}")
        for side in ("encoder", "decoder"):
            if not isinstance(data[side], Mapping):
                raise HatError(f"'{side}' must be a mapping of choice lists")
        return cls(
            name=data["name"],
            qkv_dim=data["qkv_dim"],
            share_all_embeddings=data["share_all_embeddings"],
            encoder=data["encoder"],
            decoder=data["decoder"],
            description=str(data.get("description", "")),
            flops_length=data.get("flops_length", DEFAULT_FLOPS_LENGTH),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        """Load a space file (or a shipped space by name); any problem is a one-line :class:`HatError`."""
        from hat.shipped import space_file

        path = space_file(path)
        data = _load_yaml_file(path, what="search space")
        try:
            return cls.from_dict(data)
        except HatError as err:
            raise HatError(str(err), path) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "qkv_dim": self.qkv_dim,
            "share_all_embeddings": self.share_all_embeddings,
            "encoder": {k: list(v) for k, v in self.encoder.items()},
            "decoder": {k: list(v) for k, v in self.decoder.items()},
            **({"flops_length": self.flops_length} if self.flops_length != DEFAULT_FLOPS_LENGTH else {}),
        }

    @property
    def fingerprint(self) -> str:
        """Hash of the choices (not name, description or FLOPs length): identifies the space in checkpoints and tables."""
        data = self.to_dict()
        del data["name"], data["description"]
        data.pop("flops_length", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    # ---- super dimensions -------------------------------------------------------------------
    super_encoder_embed_dim = _largest(
        "encoder", "embed_dim", "The SuperTransformer's encoder width (every SubTransformer's encoder uses its leading columns).")
    super_decoder_embed_dim = _largest("decoder", "embed_dim", "The SuperTransformer's decoder width.")
    max_encoder_layers = _largest("encoder", "layers", "The SuperTransformer's encoder depth.")
    max_decoder_layers = _largest("decoder", "layers", "The SuperTransformer's decoder depth.")

    @property
    def super_embed_dim(self) -> int:
        """Width of the (shared) embedding table and of the sinusoidal position table."""
        return max(self.super_encoder_embed_dim, self.super_decoder_embed_dim)

    # ---- counting ---------------------------------------------------------------------------
    def size(self) -> int:
        """Exact number of distinct SubTransformers (per-layer choices counted for active layers only)."""
        enc_layer = len(self.encoder["ffn_dim"]) * len(self.encoder["heads"])
        dec_layer = 1
        for key in ("ffn_dim", "self_heads", "cross_heads", "ende_attn"):
            dec_layer *= len(self.decoder[key])
        encoders = sum(enc_layer**n for n in self.encoder["layers"])
        decoders = sum(dec_layer**n for n in self.decoder["layers"])
        return len(self.encoder["embed_dim"]) * len(self.decoder["embed_dim"]) * encoders * decoders

    # ---- genome -----------------------------------------------------------------------------
    @property
    def genes(self) -> tuple[Gene, ...]:
        """The genome layout: global genes, then per-layer genes for every super layer."""
        genes = [
            Gene("encoder_embed_dim", None, self.encoder["embed_dim"]),
            Gene("decoder_embed_dim", None, self.decoder["embed_dim"]),
            Gene("encoder_layers", None, self.encoder["layers"]),
            Gene("decoder_layers", None, self.decoder["layers"]),
        ]
        for fld, (side, key) in PER_LAYER_FIELDS.items():
            choices = getattr(self, side)[key]
            n = self.max_encoder_layers if side == "encoder" else self.max_decoder_layers
            genes.extend(Gene(fld, i, choices) for i in range(n))
        return tuple(genes)

    def decode(self, genome: Sequence[int]) -> SubTransformerConfig:
        """Genome -> config (inactive layers' genes are dropped)."""
        genes = self.genes
        if len(genome) != len(genes):
            raise HatError(f"genome has {len(genome)} genes, space '{self.name}' has {len(genes)}")
        values: dict[str, Any] = {fld: [] for fld in PER_LAYER_FIELDS}
        for gene, value in zip(genes, genome):
            if gene.layer is None:
                values[gene.field] = value
            else:
                values[gene.field].append(value)
        enc_n, dec_n = values.pop("encoder_layers"), values.pop("decoder_layers")
        for fld, (side, _) in PER_LAYER_FIELDS.items():
            values[fld] = values[fld][: enc_n if side == "encoder" else dec_n]
        return SubTransformerConfig(**values, space=self.name)

    def encode(self, config: SubTransformerConfig, rng: random.Random | None = None) -> Genome:
        """Config -> genome. Inactive layers' genes are drawn from ``rng`` (default: first choice)."""
        self.validate(config)
        genome = []
        for gene in self.genes:
            if gene.layer is None:
                genome.append(getattr(config, gene.field))
                continue
            layers = getattr(config, gene.field)
            if gene.layer < len(layers):
                genome.append(layers[gene.layer])
            else:
                genome.append(rng.choice(gene.choices) if rng is not None else gene.choices[0])
        return tuple(genome)

    def sample_genome(self, rng: random.Random) -> Genome:
        """Every gene drawn uniformly and independently (HAT's SubTransformer sampling)."""
        return tuple(rng.choice(gene.choices) for gene in self.genes)

    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> SubTransformerConfig:
        """A random SubTransformer, as HAT samples them: each choice uniform and independent.

        Give ``seed`` for a one-off reproducible sample or ``rng`` to draw a stream.
        """
        if rng is None:
            rng = random.Random(seed)
        return self.decode(self.sample_genome(rng))

    def _extreme(self, pick) -> SubTransformerConfig:
        return self.decode(tuple(pick(gene.choices) for gene in self.genes))

    def largest(self) -> SubTransformerConfig:
        """Every choice at its maximum (HAT's largest representative config)."""
        return self._extreme(max)

    def smallest(self) -> SubTransformerConfig:
        """Every choice at its minimum (HAT's smallest representative config)."""
        return self._extreme(min)

    # ---- validation -------------------------------------------------------------------------
    def validate(self, config: SubTransformerConfig) -> None:
        """Raise :class:`HatError` naming the field, the value and the allowed choices if outside."""
        if config.space is not None and config.space != self.name:
            raise HatError(f"config was made for space '{config.space}', not '{self.name}'")
        checks = [
            ("encoder_embed_dim", config.encoder_embed_dim, self.encoder["embed_dim"]),
            ("decoder_embed_dim", config.decoder_embed_dim, self.decoder["embed_dim"]),
            ("encoder_layers", config.encoder_layers, self.encoder["layers"]),
            ("decoder_layers", config.decoder_layers, self.decoder["layers"]),
        ]
        for fld, (side, key) in PER_LAYER_FIELDS.items():
            allowed = getattr(self, side)[key]
            checks.extend((f"{fld}[{i}]", v, allowed) for i, v in enumerate(getattr(config, fld)))
        for name, value, allowed in checks:
            if value not in allowed:
                raise HatError(
                    f"{name} = {value} is not in space '{self.name}' (allowed: {', '.join(map(str, allowed))})"
                )

    def describe(self) -> str:
        """Multi-line human-readable summary (used by ``hat space show``)."""
        lines = [f"space {self.name}: {self.description}".rstrip(": ")]
        lines.append(
            f"  super: embed {self.super_encoder_embed_dim}/{self.super_decoder_embed_dim} (enc/dec), "
            f"ffn {max(self.encoder['ffn_dim'])}/{max(self.decoder['ffn_dim'])}, "
            f"layers {self.max_encoder_layers}/{self.max_decoder_layers}, qkv {self.qkv_dim}, "
            f"shared embeddings: {'yes' if self.share_all_embeddings else 'no'}"
        )
        for side in ("encoder", "decoder"):
            for key, values in getattr(self, side).items():
                lines.append(f"  {side}.{key}: {list(values)}")
        lines.append(f"  size: {self.size():,} SubTransformers")
        return "\n".join(lines)


def _choice_list(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise HatError(f"{name} must be a non-empty list of integers, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise HatError(f"{name} must contain integers, got {v!r}")
        if v <= 0 and not name.endswith("ende_attn"):
            raise HatError(f"{name} must contain positive integers, got {v}")
        limit = MAX_LAYERS if name.endswith(("layers", "ende_attn")) else MAX_DIM
        if v > limit:
            raise HatError(f"{name}: {v} is larger than HAT supports ({limit})")
    if len(set(value)) != len(value):
        raise HatError(f"{name} has duplicate choices: {list(value)}")
    return tuple(value)


SAMPLERS = ("uniform", "sandwich")


def update_configs(space: SearchSpace, sampler: str, seed: int, update_num: int) -> list[SubTransformerConfig]:
    """The SubTransformer(s) trained by one update, a pure function of (seed, update_num): every worker
    and every micro-batch of the update agree without communicating.

    ``uniform`` samples one (HAT); ``sandwich`` trains the largest, the smallest and that sample.
    """
    if sampler not in SAMPLERS:
        raise HatError(f"unknown sampler '{sampler}' (one of {', '.join(SAMPLERS)})")
    sampled = space.sample(rng=random.Random(f"hat:{seed}:{update_num}"))
    if sampler == "uniform":
        return [sampled]
    return [space.largest(), space.smallest(), sampled]
