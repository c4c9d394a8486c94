"""The onnxruntime profiling backend, driver side: builds the graphs the measuring worker times.

Pieces are exported once per shape into a cache (``$HAT_CACHE_DIR``, else ``~/.cache/hat``);
whole models are composed from them (:mod:`hat.export.compose`). What travels to the worker
(:func:`hat.export.ort_worker.measure_onnx_items`) is serialized ONNX and plain data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hat.export.compose import COMPOSE_VERSION
from hat.export.ort_worker import measure_onnx_items
from hat.space import SearchSpace, SubTransformerConfig, ende_attn_layers

PRECISIONS = ("fp32", "int8")


def cache_dir() -> Path:
    """Where exported pieces are kept between runs."""
    root = os.environ.get("HAT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hat"
    return Path(root) / "onnx_pieces"


class OnnxBackend:
    """onnxruntime at ``precision`` (fp32, or int8 dynamic quantization as ``hat export`` writes it)."""

    name = "onnxruntime"
    graphs = f"composed-{COMPOSE_VERSION}"  # how whole models are built (see hat.export.compose)

    def __init__(self, precision: str = "fp32", provider: str = "CPUExecutionProvider",
                 cache: str | Path | None = None) -> None:
        if precision not in PRECISIONS:
            from hat.errors import HatError

            raise HatError(f"unknown precision '{precision}' (fp32 or int8)")
        self.precision, self.provider = precision, provider
        self.cache_root = Path(cache) if cache else cache_dir()
        self.worker = measure_onnx_items
        self._caches: dict[Any, Any] = {}
        self._protos: dict[Any, Any] = {}
        self._composed: set[tuple] = set()
        self._repeated: dict[tuple, tuple[bytes, bytes]] = {}

    def _pieces(self, space: SearchSpace, vocab: int, seed: int) -> Any:
        from hat.export.pieces import PieceCache

        key = (space.fingerprint, vocab, seed)
        if key not in self._caches:
            self._caches[key] = PieceCache(self.cache_root, space, vocab, seed)
        return self._caches[key]

    def _proto(self, cache: Any, key: tuple) -> Any:
        if (cache.root, key) not in self._protos:
            self._protos[(cache.root, key)] = cache.load(key, self.precision)
        return self._protos[(cache.root, key)]

    def model_graphs(self, space: SearchSpace, config: SubTransformerConfig, vocab: int, seed: int = 0) -> tuple[bytes, bytes]:
        """Serialized (encoder, decoder step) graphs of ``config`` with random weights."""
        from hat.export.compose import compose_model
        from hat.export.pieces import piece_keys

        key = (space.fingerprint, config.archid, vocab, seed)
        if key in self._repeated:
            return self._repeated[key]
        cache = self._pieces(space, vocab, seed)
        graphs = compose_model(piece_keys(config), lambda piece: self._proto(cache, piece))
        if key in self._composed:  # asked for again (the collector's reference model, every chunk): keep it
            self._repeated[key] = graphs
        self._composed.add(key)
        return graphs

    def prepare(self, space: SearchSpace, protocol: Any, items: list[dict]) -> None:
        """Export every piece ``items`` will need, in parallel, before any timing starts."""
        from hat.export.pieces import piece_keys

        keys: list[tuple] = []
        for item in items:
            if item["kind"] == "model":
                parts = piece_keys(SubTransformerConfig.from_dict(item["config"]))
                keys += [parts["encoder_embedding"], parts["decoder_embedding"], parts["output"]]
                keys += parts["encoder_layers"] + parts["cross_kv"] + parts["decoder_layers"]
            else:
                keys += _table_pieces(item["kind"], list(item.get("args", [])))
        self._pieces(space, protocol.vocab, protocol.seed).prepare(keys, self.precision)

    def payload(self, space: SearchSpace, protocol: Any, items: list[dict]) -> dict:
        from hat.export.pieces import piece_name

        cache = self._pieces(space, protocol.vocab, protocol.seed)
        graphs: dict[str, bytes] = {}
        sent: list[dict] = []
        for item in items:
            kind, args = item["kind"], list(item.get("args", []))
            if kind == "model":
                config = SubTransformerConfig.from_dict(item["config"])
                names = [f"{config.archid}.encoder", f"{config.archid}.decoder"]
                if names[0] not in graphs:
                    graphs[names[0]], graphs[names[1]] = self.model_graphs(space, config, protocol.vocab, protocol.seed)
                sent.append({"kind": kind, "graphs": names})
                continue
            keys = _table_pieces(kind, args)
            if kind == "decoder_layer":
                args[-1] = ende_attn_layers(args[-1])
            for key in keys:
                graphs.setdefault(piece_name(key), cache.path(key, self.precision).read_bytes())
            sent.append({"kind": kind, "args": args, "graphs": [piece_name(key) for key in keys]})
        return {"precision": self.precision, "provider": self.provider, "qkv_dim": space.qkv_dim,
                "graphs": graphs, "items": sent}


def table_pieces(space: SearchSpace) -> list[tuple]:
    """Every piece the lookup tables of ``space`` time, each once (what ``hat profile`` exports first)."""
    from hat.latency.tables import table_entries

    keys = [key for kind, entries in table_entries(space).items() for _, args in entries
            for key in _table_pieces(kind, list(args))]
    return list(dict.fromkeys(keys))


def _table_pieces(kind: str, args: list) -> list[tuple]:
    """The pieces one lookup-table entry times."""
    if kind == "encoder_embedding":
        return [("encoder_embedding", args[0])]
    if kind == "encoder_layer":
        return [("encoder_layer", *args)]
    if kind == "decoder_layer":
        d, e, f, self_heads, cross_heads, ende = args
        return [("cross_kv", e, cross_heads, ende_attn_layers(ende)), ("decoder_layer", d, f, self_heads, cross_heads)]
    if kind == "decoder_embedding_output":
        return [("decoder_embedding", args[0]), ("output", args[0])]
    from hat.errors import HatError

    raise HatError(f"unknown measurement kind '{kind}'")
