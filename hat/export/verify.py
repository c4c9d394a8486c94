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


def measure_runtime(runtime: Any, protocol: Protocol, reference: Any = None) -> dict[str, TimingStats]:
    """Warm-up, then ``runs`` timed runs; encoder and decoder timed separately (ms).

    A torch runtime is timed with the collector's own workload (the code path the predictor was
    fitted on); an onnxruntime one with the same protocol over its two sessions. With a
    ``reference`` workload (encoder and decoder callables), the two are timed in alternating
    order within every round, as the collector does, and its stats come back as
    ``reference_encoder`` / ``reference_decoder``.
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
    workloads = [("", work)] + ([("reference_", reference)] if reference is not None else [])
    for _, w in workloads:
        for _ in range(protocol.warmup):
            w.encoder()
            w.decoder()
    samples: dict[str, list[float]] = {f"{prefix}{part}": [] for prefix, _ in workloads for part in ("encoder", "decoder")}
    for round_index in range(protocol.runs):
        shift = round_index % len(workloads)
        for prefix, w in workloads[shift:] + workloads[:shift]:
            samples[f"{prefix}encoder"].append(timer.time_ms(w.encoder))
            samples[f"{prefix}decoder"].append(timer.time_ms(w.decoder))
    return {name: TimingStats.of(values, protocol.trim) for name, values in samples.items()}


def reference_workload(reference: dict[str, Any], protocol: Protocol) -> Any:
    """The collector's reference model (random weights, seeded as when it was profiled), ready to time."""
    import torch

    from hat.latency.workloads import model_workload
    from hat.space import SubTransformerConfig
    from hat.subtransformer import ModelDims, SubTransformer

    torch.set_num_threads(protocol.threads)  # as profiled, whichever backend runs the model being verified
    torch.manual_seed(protocol.seed)
    model = SubTransformer(SubTransformerConfig.from_dict(reference["config"]), ModelDims(**reference["dims"])).eval()
    return model_workload(model, Protocol(**{**protocol.to_dict(), "vocab": reference["dims"]["tgt_vocab_size"]}), "cpu")


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
    device = predictor.info.get("device") or {}
    reference = predictor.info.get("reference") if device.get("backend", "torch") == "torch" else None
    reference_work = None
    if reference is not None:
        try:
            reference_work = reference_workload(reference, protocol)
        except ImportError:  # a device with onnxruntime only: no torch to run the reference on
            reference, reference_work = None, None
            notes.append("torch is not installed, so the machine's speed was not checked against the reference model")
        except (KeyError, TypeError, ValueError, HatError) as err:
            raise HatError(f"the predictor's reference model entry is corrupt ({type(err).__name__}: {err})",
                           predictor_path) from None
    stats = measure_runtime(runtime, protocol, reference_work)
    measured = stats["encoder"].mean + stats["decoder"].mean
    report = {
        "model": str(model_dir), "archid": manifest["archid"], "backend": backend, "precision": precision,
        "predictor_backend": device.get("backend"), "protocol": protocol.to_dict(),
        "measured_encoder_ms": stats["encoder"].mean, "measured_decoder_ms": stats["decoder"].mean,
        "measured_ms": measured, "measured_std_ms": float(np.hypot(stats["encoder"].std, stats["decoder"].std)),
        "predicted_ms": predicted, "relative_error": (predicted - measured) / measured, "notes": notes,
    }
    if reference is not None:
        now = stats["reference_encoder"].mean + stats["reference_decoder"].mean
        factor = now / reference["total_ms"]
        report.update(reference_profiled_ms=reference["total_ms"], reference_now_ms=now, machine_factor=factor,
                      normalised_error=(predicted * factor - measured) / measured)
        if abs(factor - 1) > 0.05:
            notes.append(f"the reference model runs {100 * (factor - 1):+.1f}% against its time when the predictor's "
                         f"data was measured ({now:.2f} vs {reference['total_ms']:.2f} ms): the machine is "
                         f"{'busier' if factor > 1 else 'quieter'} now; at today's speed the prediction is off by "
                         f"{100 * report['normalised_error']:+.1f}%")
    return report
