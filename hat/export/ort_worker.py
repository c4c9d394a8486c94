"""The onnxruntime measuring worker: times graphs it is sent, with numpy and onnxruntime only.

It runs here or on a Ray node (a Raspberry Pi needs ``numpy``, ``onnxruntime``, ``ray`` and this
package installed without dependencies); it never imports torch. Graphs arrive as serialized ONNX
(:mod:`hat.export.ort_backend` builds them where torch is). Whole models run the numpy beam loop
that ``hat translate`` runs, for exactly ``src_len`` steps; per-layer items run their pieces as the
composed model would.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hat.export.beam import beam_decode, start_beam
from hat.export.runtime import OnnxRuntimeModel, make_session
from hat.latency.measure import measure_interleaved, results_of
from hat.latency.protocol import Protocol, device_info
from hat.tokens import EOS, FIRST_WORD



class BeamWorkload:
    """Encoder: encode ``src_len`` tokens and copy the state to ``beam`` rows; decoder: the beam loop."""

    def __init__(self, runtime: Any, protocol: Protocol) -> None:
        self.runtime, self.protocol = runtime, protocol
        rng = np.random.default_rng(protocol.seed)
        self.src = rng.integers(FIRST_WORD, protocol.vocab, size=protocol.src_len).tolist()
        self.state: dict = {}
        self.encoder()

    def encoder(self) -> None:
        self.state = start_beam(self.runtime, self.src, self.protocol.beam)

    def decoder(self) -> None:
        p = self.protocol
        beam_decode(self.runtime, dict(self.state), p.src_len, beam=p.beam, eos=EOS, min_len=p.src_len - 1)


class PieceWorkload:
    """One lookup-table entry: its pieces run as a composed model runs them."""

    def __init__(self, item: dict, sessions: list, protocol: Protocol, qkv: int) -> None:
        self.encoder = self.decoder = None
        self.sessions, self.protocol, self.qkv = sessions, protocol, qkv
        self.rng = np.random.default_rng(protocol.seed)
        kind, args = item["kind"], item["args"]
        s, b = protocol.src_len, protocol.beam
        if kind == "encoder_embedding":
            self.feeds = {"src_tokens": self._tokens(1, s)}
            self.encoder = self._single
        elif kind == "encoder_layer":
            self.feeds = {"x": self._normal(1, s, args[0]), "padding_mask": np.zeros((1, s), dtype=bool)}
            self.encoder = self._single
        elif kind == "decoder_layer":
            d, e, _, self_heads, _, k = args
            self.states = {f"state_{m}": self._normal(1, s, e) for m in range(k)}
            self.steps = [self._normal(b, 1, d) for _ in range(s)]
            self.mask = np.zeros((b, k * s), dtype=bool)
            self.past_shape = (b, self_heads, 0, qkv // self_heads)
            self.decoder = self._decoder_layer
        elif kind == "decoder_embedding_output":
            self.tokens = self._tokens(b, s)
            self.decoder = self._embedding_output
        else:
            raise ValueError(f"unknown measurement kind '{kind}'")

    def _tokens(self, rows: int, length: int) -> np.ndarray:
        return self.rng.integers(FIRST_WORD, self.protocol.vocab, size=(rows, length), dtype=np.int64)

    def _normal(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape).astype(np.float32)

    def _single(self) -> None:
        self.sessions[0].run(None, self.feeds)

    def _decoder_layer(self) -> None:
        cross_k, cross_v = self.sessions[0].run(None, self.states)
        rows = np.zeros(self.protocol.beam, dtype=np.int64)
        cross_k, cross_v = cross_k[rows], cross_v[rows]
        past_k = past_v = np.zeros(self.past_shape, dtype=np.float32)
        for x in self.steps:
            _, past_k, past_v = self.sessions[1].run(None, {"x": x, "cross_mask": self.mask, "cross_k": cross_k,
                                                            "cross_v": cross_v, "past_k": past_k, "past_v": past_v})

    def _embedding_output(self) -> None:
        for t in range(self.protocol.src_len):
            positions = np.full((self.protocol.beam, 1), 2 + t, dtype=np.int64)
            (x,) = self.sessions[0].run(None, {"tokens": self.tokens[:, t: t + 1], "positions": positions})
            self.sessions[1].run(None, {"x": x})


def item_workload(item: dict, graphs: dict[str, bytes], protocol: Protocol, payload: dict) -> Any:
    provider = payload.get("provider", "CPUExecutionProvider")
    if item["kind"] == "model":
        encoder, decoder = (graphs[name] for name in item["graphs"])
        return BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, protocol.threads, provider), protocol)
    sessions = [make_session(graphs[name], protocol.threads, provider) for name in item["graphs"]]
    return PieceWorkload(item, sessions, protocol, payload["qkv_dim"])


def measure_onnx_items(protocol_dict: dict, payload: dict) -> dict:
    """``{"device": info, "results": [...]}`` for ``payload["items"]``, timed interleaved."""
    protocol = Protocol(**protocol_dict)
    workloads = {i: item_workload(item, payload["graphs"], protocol, payload) for i, item in enumerate(payload["items"])}
    stats = measure_interleaved(workloads, protocol)
    info = device_info("onnxruntime", protocol.threads, payload.get("precision", "fp32"),
                       payload.get("provider", "CPUExecutionProvider"))
    return {"device": info, "results": results_of(stats, list(workloads), protocol.statistic)}
