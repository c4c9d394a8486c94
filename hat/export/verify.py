"""Measure an exported model with the collector's protocol and compare with the predicted latency."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hat.latency.measure import TimingStats, measure_interleaved  # noqa: F401 - measure_interleaved re-exported
from hat.latency.protocol import Protocol


def runtime_workload(runtime: Any, protocol: Protocol) -> Any:
    """The workload that times ``runtime``: the collector's own for a torch model (the code path
    the torch predictor was fitted on); for onnxruntime, the beam loop ``hat translate`` runs."""
    from hat.export.runtime import TorchModel

    if isinstance(runtime, TorchModel):
        from hat.latency.workloads import model_workload

        return model_workload(runtime.model, protocol, "cpu")
    from hat.export.ort_worker import BeamWorkload

    return BeamWorkload(runtime, protocol)


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


def reference_workload(reference: dict[str, Any], protocol: Protocol, space_spec: dict | None = None) -> Any:
    """The collector's reference model (random weights, seeded as when it was profiled), ready to
    time on the runtime it was profiled on (torch eager, or composed onnxruntime graphs)."""
    import torch

    from hat.space import SubTransformerConfig

    torch.set_num_threads(protocol.threads)  # as profiled, whichever backend runs the model being verified
    config = SubTransformerConfig.from_dict(reference["config"])
    vocab = reference["dims"]["tgt_vocab_size"]
    protocol = Protocol(**{**protocol.to_dict(), "vocab": vocab})
    if reference.get("backend", "torch") == "onnxruntime":
        from hat.export.ort_backend import OnnxBackend
        from hat.export.ort_worker import BeamWorkload
        from hat.export.runtime import OnnxRuntimeModel
        from hat.space import SearchSpace

        if space_spec is None:
            raise KeyError("space_spec")
        backend = OnnxBackend(reference.get("precision", "fp32"))
        encoder, decoder = backend.model_graphs(SearchSpace.from_dict(space_spec), config, vocab, protocol.seed)
        return BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, protocol.threads), protocol)
    from hat.latency.workloads import model_workload
    from hat.subtransformer import ModelDims, SubTransformer

    torch.manual_seed(protocol.seed)
    model = SubTransformer(config, ModelDims(**reference["dims"])).eval()
    return model_workload(model, protocol, "cpu")


def verify_model(
    model_dir: str | Path,
    predictor_path: str | Path,
    *,
    backend: str | None = None,
    precision: str | None = None,
    protocol: Protocol | None = None,
    allow_mismatch: bool = False,
    passes: int = 1,
) -> dict[str, Any]:
    """Predicted vs measured latency of an exported model, on the predictor's runtime and protocol
    by default. Measuring on another runtime than the predictor's is refused unless ``allow_mismatch``.

    ``passes`` > 1 measures again that many times (each with the reference model beside it) and
    reports the median pass by error: on a shared machine a larger model's latency swings more
    than the small reference model's from one few-second window to the next, so one pass can be
    off by more than the predictor is. Every pass is kept in ``passes``."""
    from hat.errors import HatError
    from hat.export.model_dir import read_manifest
    from hat.export.runtime import load_runtime
    from hat.latency.predictor import LatencyPredictor
    from hat.latency.runtime_info import execution_provider, runtime_of
    from hat.space import SubTransformerConfig

    manifest = read_manifest(model_dir)
    predictor = LatencyPredictor.load(predictor_path)
    if predictor.info.get("space_fingerprint") not in (None, manifest["space_fingerprint"]):
        raise HatError(f"predictor is for space '{predictor.info.get('space')}', the model for '{manifest['space']}'",
                       predictor_path)
    runtime_info = runtime_of(predictor.info)
    backend, precision = backend or runtime_info["backend"], precision or runtime_info["precision"]
    if backend == "cuda":
        raise HatError("the predictor was measured with torch on a GPU; verify runs exported models on the CPU", predictor_path)
    if (backend, precision) != (runtime_info["backend"], runtime_info["precision"]) and not allow_mismatch:
        raise HatError(f"the predictor was measured on {runtime_info['backend']} {runtime_info['precision']}, not "
                       f"{backend} {precision} (measure on its runtime, or add --allow-mismatch)", predictor_path)
    protocol = protocol or _verify_protocol(predictor)
    notes: list[str] = []
    model_vocab = manifest["dims"]["tgt_vocab_size"]
    if protocol.vocab != model_vocab:
        notes.append(f"the predictor was measured with vocabulary {protocol.vocab}, the model has {model_vocab}")
        protocol = Protocol(**{**protocol.to_dict(), "vocab": min(protocol.vocab, model_vocab)})
    config = SubTransformerConfig.from_yaml(Path(model_dir) / manifest["config"])
    predicted = float(predictor.predict([config])[0])
    provider = execution_provider(runtime_info)
    runtime = load_runtime(model_dir, backend, precision, threads=protocol.threads, manifest=manifest, provider=provider)
    reference, reference_work = _reference(predictor, protocol, (backend, precision) == (runtime_info["backend"],
                                                                                   runtime_info["precision"]), notes,
                                           predictor_path)
    header = {"model": str(model_dir), "archid": manifest["archid"], "backend": backend, "precision": precision,
              "predictor_runtime": runtime_info, "protocol": protocol.to_dict(), "statistic": protocol.statistic,
              "predicted_ms": predicted}
    measured = [_one_pass(runtime, protocol, reference, reference_work, predicted) for _ in range(passes)]
    return median_pass([{**header, **one, "notes": notes + one["notes"]} for one in measured])


def median_pass(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Several verify reports of one model -> the median one by error (at the machine's speed when
    known), with every pass's figures under ``passes`` when there is more than one."""
    key = "normalised_error" if all("normalised_error" in one for one in reports) else "relative_error"
    middle = dict(sorted(reports, key=lambda one: one[key])[(len(reports) - 1) // 2])
    if len(reports) > 1:
        middle["passes"] = [{k: v for k, v in one.items() if k not in ("notes", "passes")} for one in reports]
    return middle


def _one_pass(runtime: Any, protocol: Protocol, reference: dict | None, reference_work: Any,
              predicted: float) -> dict[str, Any]:
    """One measurement of the model (and the reference beside it): its times and errors."""
    stats = measure_runtime(runtime, protocol, reference_work)
    encoder_ms, decoder_ms = (stats[part].value(protocol.statistic) for part in ("encoder", "decoder"))
    measured = encoder_ms + decoder_ms
    result = {"measured_encoder_ms": encoder_ms, "measured_decoder_ms": decoder_ms, "measured_ms": measured,
              "measured_std_ms": float(np.hypot(stats["encoder"].std, stats["decoder"].std)),
              "predicted_ms": predicted, "relative_error": (predicted - measured) / measured, "notes": []}
    if reference is not None:
        _machine_speed(result, stats, reference, protocol.statistic)
    return result


def _verify_protocol(predictor: Any) -> Protocol:
    """The predictor's protocol; verification affords at least 20 rounds."""
    stored = (predictor.tables.protocol if predictor.tables is not None else None) or \
        (predictor.info.get("protocol") if isinstance(predictor.info.get("protocol"), dict) else None)
    protocol = Protocol(**stored) if stored else Protocol()
    runs = max(protocol.runs, 20)
    return Protocol(**{**protocol.to_dict(), "runs": runs, "max_runs": max(protocol.max_runs, runs) if protocol.max_runs else 0})


def _reference(predictor: Any, protocol: Protocol, same_runtime: bool, notes: list[str], path: Any) -> tuple:
    """The predictor's reference model and its workload, when the machine's speed can be checked."""
    from hat.errors import HatError

    reference = predictor.info.get("reference")
    if reference is None or not same_runtime:
        return None, None
    try:
        return reference, reference_workload(reference, protocol, predictor.info.get("space_spec"))
    except ImportError:  # a device with onnxruntime only: no torch to build the reference on
        notes.append("torch is not installed, so the machine's speed was not checked against the reference model")
    except (KeyError, TypeError, ValueError, HatError) as err:
        raise HatError(f"the predictor's reference model entry is corrupt ({type(err).__name__}: {err})", path) from None
    return None, None


def _machine_speed(report: dict[str, Any], stats: dict[str, TimingStats], reference: dict, statistic: str) -> None:
    """Add the reference model's time now vs when profiled, and the error at today's speed."""
    now = stats["reference_encoder"].value(statistic) + stats["reference_decoder"].value(statistic)
    factor = now / reference["total_ms"]
    predicted, measured = report["predicted_ms"], report["measured_ms"]
    report.update(reference_profiled_ms=reference["total_ms"], reference_now_ms=now, machine_factor=factor,
                  normalised_error=(predicted * factor - measured) / measured)
    if abs(factor - 1) > 0.05:
        report["notes"].append(
            f"the reference model runs {100 * (factor - 1):+.1f}% against its time when the predictor's data was "
            f"measured ({now:.2f} vs {reference['total_ms']:.2f} ms): the machine is "
            f"{'busier' if factor > 1 else 'quieter'} now; at today's speed the prediction is off by "
            f"{100 * report['normalised_error']:+.1f}%")
