"""Measure an exported model with the collector's protocol and compare with the predicted latency."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hat.latency.protocol import Protocol, TimingStats


@dataclass
class ModelWorkload:
    """Encoder once on ``src_len`` tokens (batch 1), then ``src_len`` decoder steps over ``beam`` rows."""

    runtime: Any
    protocol: Protocol

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.protocol.seed)
        vocab = self.protocol.vocab
        self.src = rng.integers(3, vocab, size=(1, self.protocol.src_len), dtype=np.int64)
        self.targets = rng.integers(3, vocab, size=(self.protocol.beam, self.protocol.src_len), dtype=np.int64)
        self.targets[:, 0] = 2
        self.state = None

    def encoder(self) -> None:
        state = self.runtime.encode(self.src)
        self.state = self.runtime.reorder(state, np.zeros(self.protocol.beam, dtype=np.int64))

    def decoder(self) -> None:
        state = dict(self.state) if isinstance(self.state, dict) else self.state
        for t in range(self.protocol.src_len):
            self.runtime.step(self.targets[:, t : t + 1], t, state)


def measure_runtime(runtime: Any, protocol: Protocol) -> dict[str, TimingStats]:
    """Warm-up, then ``runs`` timed runs; encoder and decoder timed separately (ms).

    A torch runtime is timed with the collector's own workload (the code path the predictor was
    fitted on); an onnxruntime one with the same protocol over its two sessions.
    """
    from hat.export.runtime import TorchModel
    from hat.latency.timers import CpuTimer

    timer = CpuTimer()
    if isinstance(runtime, TorchModel):
        from hat.latency.workloads import model_workload

        work = model_workload(runtime.model, protocol, "cpu")
    else:
        work = ModelWorkload(runtime, protocol)
        work.encoder()
    for _ in range(protocol.warmup):
        work.encoder()
        work.decoder()
    encoder, decoder = [], []
    for _ in range(protocol.runs):
        encoder.append(timer.time_ms(work.encoder))
        decoder.append(timer.time_ms(work.decoder))
    return {"encoder": TimingStats.of(encoder, protocol.trim), "decoder": TimingStats.of(decoder, protocol.trim)}


def verify_model(
    model_dir: str | Path,
    predictor_path: str | Path,
    *,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    """Predicted vs measured latency of an exported model, with the predictor's own protocol by default."""
    from hat.errors import HatError
    from hat.export.model_dir import read_manifest
    from hat.export.runtime import load_runtime
    from hat.latency.predictor import LatencyPredictor
    from hat.space import SubTransformerConfig

    manifest = read_manifest(model_dir)
    predictor = LatencyPredictor.load(predictor_path)
    if predictor.info.get("space_fingerprint") not in (None, manifest["space_fingerprint"]):
        raise HatError(f"predictor is for space '{predictor.info.get('space')}', the model for '{manifest['space']}'",
                       predictor_path)
    stored = (predictor.tables.protocol if predictor.tables is not None else None) or \
        (predictor.info.get("protocol") if isinstance(predictor.info.get("protocol"), dict) else None)
    if protocol is None:  # the predictor's protocol; verification can afford more repetitions
        protocol = Protocol(**stored) if stored else Protocol()
        protocol = Protocol(**{**protocol.to_dict(), "runs": max(protocol.runs, 20)})
    model_vocab = manifest["dims"]["tgt_vocab_size"]
    notes = []
    if protocol.vocab != model_vocab:
        notes.append(f"the predictor was measured with vocabulary {protocol.vocab}, the model has {model_vocab}")
        protocol = Protocol(**{**protocol.to_dict(), "vocab": min(protocol.vocab, model_vocab)})
    config = SubTransformerConfig.from_yaml(Path(model_dir) / manifest["config"])
    predicted = float(predictor.predict([config])[0])
    runtime = load_runtime(model_dir, backend, precision, threads=protocol.threads)
    stats = measure_runtime(runtime, protocol)
    measured = stats["encoder"].mean + stats["decoder"].mean
    device = predictor.info.get("device") or {}
    return {
        "model": str(model_dir), "archid": manifest["archid"], "backend": backend, "precision": precision,
        "predictor_backend": device.get("backend"), "protocol": protocol.to_dict(),
        "measured_encoder_ms": stats["encoder"].mean, "measured_decoder_ms": stats["decoder"].mean,
        "measured_ms": measured, "measured_std_ms": float(np.hypot(stats["encoder"].std, stats["decoder"].std)),
        "predicted_ms": predicted, "relative_error": (predicted - measured) / measured, "notes": notes,
    }
