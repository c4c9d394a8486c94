"""Per-layer latency lookup tables: keys, file format, and the table-sum estimate of a config."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.io import atomic_write_json
from hat.space import SearchSpace, SubTransformerConfig

FORMAT = "hat-latency-tables-v1"


def encoder_layer_key(embed: int, ffn: int, heads: int) -> str:
    return f"e{embed}_f{ffn}_h{heads}"


def decoder_layer_key(embed: int, encoder_embed: int, ffn: int, self_heads: int, cross_heads: int, ende: int) -> str:
    return f"d{embed}_e{encoder_embed}_f{ffn}_hs{self_heads}_hc{cross_heads}_a{ende}"


def table_entries(space: SearchSpace) -> dict[str, list[tuple[str, tuple]]]:
    """Every distinct per-layer measurement the space needs, as (key, arguments) per table."""
    enc, dec = space.encoder, space.decoder
    encoder_layers = [
        (encoder_layer_key(*args), args) for args in itertools.product(enc["embed_dim"], enc["ffn_dim"], enc["heads"])
    ]
    decoder_layers = [
        (decoder_layer_key(*args), args)
        for args in itertools.product(
            dec["embed_dim"], enc["embed_dim"], dec["ffn_dim"], dec["self_heads"], dec["cross_heads"], dec["ende_attn"]
        )
    ]
    encoder_embeddings = [(f"e{e}", (e,)) for e in enc["embed_dim"]]
    decoder_embeddings = [(f"d{d}", (d,)) for d in dec["embed_dim"]]
    return {
        "encoder_layer": encoder_layers,
        "decoder_layer": decoder_layers,
        "encoder_embedding": encoder_embeddings,
        "decoder_embedding_output": decoder_embeddings,
    }


def _ms(stats: dict[str, Any]) -> float:
    """An entry's milliseconds: the protocol's statistic (``value``), or the trimmed mean of older files."""
    return float(stats.get("value", stats["mean"]))


def _parse_key(key: str) -> tuple[int, ...]:
    """``d512_e640_f1024_hs4_hc8_a-1`` -> (512, 640, 1024, 4, 8, -1)."""
    return tuple(int(part.lstrip("edfhsca")) for part in key.split("_"))


@dataclass
class LatencyTables:
    """Measured milliseconds per table entry, with where and how they were measured."""

    space_name: str
    space_fingerprint: str
    protocol: dict[str, Any]
    device: dict[str, Any]
    tables: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def entry_ms(self, table: str, key: str) -> float:
        return _ms(self.tables[table][key])

    def _lookup(self) -> dict[tuple, float]:
        """Tuple-keyed means, built once: ``estimate`` runs for every candidate of a search."""
        cache = self.__dict__.get("_lookup_cache")
        if cache is None:
            cache = {}
            for table, entries in self.tables.items():
                for key, stats in entries.items():
                    cache[(table, *_parse_key(key))] = _ms(stats)
            self.__dict__["_lookup_cache"] = cache
        return cache

    def estimate(self, config: SubTransformerConfig) -> tuple[float, float]:
        """(encoder ms, decoder ms): the sum of the config's layers and embeddings from the tables."""
        e, d = config.encoder_embed_dim, config.decoder_embed_dim
        table = self._lookup()
        try:
            encoder = table[("encoder_embedding", e)]
            for f, h in zip(config.encoder_ffn_dims, config.encoder_heads):
                encoder += table[("encoder_layer", e, f, h)]
            decoder = table[("decoder_embedding_output", d)]
            for f, hs, hc, a in zip(
                config.decoder_ffn_dims, config.decoder_self_heads, config.decoder_cross_heads, config.decoder_ende_attn
            ):
                decoder += table[("decoder_layer", d, e, f, hs, hc, a)]
        except KeyError as err:
            raise HatError(f"latency tables have no entry {err.args[0]} for this config (measured for another space?)") from None
        return encoder, decoder

    def check_complete(self, space: SearchSpace, path: str | Path | None = None) -> None:
        self.check_space(space, path)
        for table, entries in table_entries(space).items():
            missing = [key for key, _ in entries if key not in self.tables.get(table, {})]
            if missing:
                raise HatError(f"latency tables are incomplete: {len(missing)} '{table}' entries missing (e.g. {missing[0]})", path)

    def check_space(self, space: SearchSpace, path: str | Path | None = None) -> None:
        if self.space_fingerprint != space.fingerprint:
            raise HatError(
                f"latency tables were measured for space '{self.space_name}' ({self.space_fingerprint}), "
                f"not '{space.name}' ({space.fingerprint})", path,
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "space": self.space_name, "space_fingerprint": self.space_fingerprint,
            "protocol": self.protocol, "device": self.device, "tables": self.tables,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTables":
        from hat.io import load_json

        path = Path(path)
        data = load_json(path, "latency tables file")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise HatError(f"not a HAT latency tables file (expected format '{FORMAT}')", path)
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> "LatencyTables":
        """Tables from their JSON form, every entry checked (a finite, non-negative mean, a parsable key)."""
        from hat.io import file_content, finite

        with file_content(path, "latency tables"):
            tables = data["tables"]
            if not isinstance(tables, dict) or not all(isinstance(e, dict) for e in tables.values()):
                raise ValueError("'tables' must map table names to entries")
            for table, entries in tables.items():
                for key, stats in entries.items():
                    _parse_key(key)
                    finite(stats["mean"], f"entry {table}/{key} mean", minimum=0)
                    finite(stats.get("value", 0.0), f"entry {table}/{key} value", minimum=0)
            for name in ("space", "space_fingerprint"):
                if not isinstance(data[name], str):
                    raise ValueError(f"'{name}' must be a string")
            if not isinstance(data["protocol"], dict) or not isinstance(data["device"], dict):
                raise ValueError("'protocol' and 'device' must be mappings")
            return cls(data["space"], data["space_fingerprint"], data["protocol"], data["device"], tables)
