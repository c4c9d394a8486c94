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


def runtime_workload(runtime: Any, protocol: Protocol) -> Any:
    """The workload that times ``runtime``: the collector's own for a torch model (the code path
    the predictor was fitted on), the same protocol over the two sessions for onnxruntime."""
    from hat.export.runtime import TorchModel

    if isinstance(runtime, TorchModel):
        from hat.latency.workloads import model_workload

        return model_workload(runtime.model, protocol, "cpu")
    work = ModelWorkload(runtime, protocol)
    work.encoder()
    return work


def measure_interleaved(workloads: dict[str, Any], protocol: Protocol) -> dict[str, dict[str, TimingStats]]:
    """Time several workloads (objects with ``encoder()`` and ``decoder()``) in the same rounds.

    Each gets ``protocol.warmup`` untimed runs, then every round times each workload once, in an
    order rotated by one each round, so a slow spell of a shared machine falls on all of them
    alike and their ratios stay fair. Returns ``{name: {"encoder": stats, "decoder": stats}}`` (ms).
    """
    from hat.latency.timers import CpuTimer

    if not workloads:
        return {}
    timer = CpuTimer()
    names = list(workloads)
    for name in names:
        for _ in range(protocol.warmup):
            workloads[name].encoder()
            workloads[name].decoder()
    samples: dict[str, dict[str, list[float]]] = {name: {"encoder": [], "decoder": []} for name in names}
    for round_index in range(protocol.runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name]["encoder"].append(timer.time_ms(workloads[name].encoder))
            samples[name]["decoder"].append(timer.time_ms(workloads[name].decoder))
    return {name: {part: TimingStats.of(values, protocol.trim) for part, values in parts.items()}
            for name, parts in samples.items()}


def measure_runtime(runtime: Any, protocol: Protocol, reference: Any = None) -> dict[str, TimingStats]:
    """Warm-up, then ``runs`` timed runs; encoder and decoder timed separately (ms).

    With a ``reference`` workload (encoder and decoder callables), the two are timed interleaved
    (see ``measure_interleaved``), and its stats come back as ``reference_encoder`` /
    ``reference_decoder``.
    """
    workloads = {"": runtime_workload(runtime, protocol)}
    if reference is not None:
        workloads["reference_"] = reference
    stats = measure_interleaved(workloads, protocol)
    return {f"{prefix}{part}": value for prefix, parts in stats.items() for part, value in parts.items()}


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
    runtime = load_runtime(model_dir, backend, precision, threads=protocol.threads, manifest=manifest)
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
