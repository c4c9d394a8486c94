"""onnxruntime predictors against deployed graphs: the error ``hat verify`` would report.

For each precision among the given predictors, the smallest, the largest, ``--sampled`` sampled
SubTransformers of their space and, with ``--corners``, the largest with a uniform decoder of 2, 4
or 6 layers whose FFNs are all the narrowest or all the widest (the corner HAT's uniform sampling
of each layer's choices almost never reaches; random weights, the predictors' vocabulary) are
exported as
``hat export --onnx [--quantize int8]`` writes them, then timed interleaved with each predictor's
reference model (1 thread, the predictors' protocol, at least ``--runs`` rounds) through the beam
loop of ``hat translate``. Every predictor of that precision is scored on the same measurements:
its prediction at the machine's speed (predicted x reference now / reference when profiled)
against the measured latency, as ``hat verify`` reports it. With ``--composed`` the graphs the
collector composes for the same configs are timed in the same rounds, so each error splits into
the predictor's (against composed graphs) and the composing's (composed against exported).

    python experiments/bench_deployed_predictor.py \\
        --predictors latency_tables/intel-xeon-processor_1t_ort/wmt14_en_de/predictor.json \\
                     latency_tables/intel-xeon-processor_1t_ort-int8/wmt14_en_de/predictor.json \\
        --corners --out runs/bench_deployed_predictor
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


from hat.export.graphs import export_onnx, quantize_int8
from hat.export.ort_backend import OnnxBackend
from hat.export.ort_worker import BeamWorkload
from hat.export.runtime import OnnxRuntimeModel
from hat.export.verify import reference_workload
from hat.latency import Protocol
from hat.latency.measure import measure_interleaved
from hat.latency.predictor import LatencyPredictor
from hat.latency.runtime_info import runtime_of
from hat.latency.workloads import build_model
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def load_predictors(paths: list[Path]) -> dict[str, list[tuple[str, LatencyPredictor]]]:
    """The predictors grouped by precision; all of one space, protocol and vocabulary."""
    groups: dict[str, list[tuple[str, LatencyPredictor]]] = {}
    for path in paths:
        predictor = LatencyPredictor.load(path)
        runtime = runtime_of(predictor.info)
        if runtime["backend"] != "onnxruntime":
            raise SystemExit(f"{path}: measured on {runtime['backend']}, not onnxruntime")
        groups.setdefault(runtime["precision"], []).append((str(path), predictor))
    specs = {json.dumps(p.info["space_spec"], sort_keys=True) for group in groups.values() for _, p in group}
    if len(specs) != 1:
        raise SystemExit("the predictors are for different search spaces")
    return groups


def predictor_protocol(predictor: LatencyPredictor, runs: int) -> Protocol:
    """The predictor's protocol with at least ``runs`` rounds (``hat verify`` affords 20)."""
    protocol = Protocol(**predictor.info["protocol"])
    runs = max(protocol.runs, runs)
    return Protocol(**{**protocol.to_dict(), "runs": runs, "max_runs": max(protocol.max_runs, runs)})


def model_configs(space: SearchSpace, sampled: int, corners: bool) -> dict[str, Any]:
    """The smallest, the largest, ``sampled`` seeded samples of the space and, with ``corners``,
    the largest with uniform decoders of 2, 4 and the most layers, all narrowest or widest FFNs."""
    configs = {"smallest": space.smallest(), "largest": space.largest()}
    configs.update({f"sampled (seed {seed})": space.sample(seed=seed) for seed in range(1, sampled + 1)})
    if corners:
        largest = space.largest()
        for layers in sorted({2, 4, largest.decoder_layers} & set(space.decoder["layers"])):
            for ffn in (min(space.decoder["ffn_dim"]), max(space.decoder["ffn_dim"])):
                config = dataclasses.replace(
                    largest, decoder_ffn_dims=(ffn,) * layers, decoder_self_heads=largest.decoder_self_heads[:layers],
                    decoder_cross_heads=largest.decoder_cross_heads[:layers],
                    decoder_ende_attn=largest.decoder_ende_attn[:layers])
                space.validate(config)
                if config.archid != largest.archid:
                    configs[f"largest, decoder {layers} x FFN {ffn}"] = config
    return configs


def export_models(space: SearchSpace, configs: dict[str, Any], protocol: Protocol, precision: str,
                  folder: Path) -> dict[str, OnnxRuntimeModel]:
    """Each config exported as ``hat export`` writes its graphs, loaded for the beam loop."""
    runtimes = {}
    for index, (name, config) in enumerate(configs.items()):
        model = build_model(space, config, protocol, "cpu")
        enc, dec = folder / f"{index}_encoder.onnx", folder / f"{index}_decoder.onnx"
        export_onnx(model, str(enc), str(dec))
        if precision == "int8":
            qenc, qdec = folder / f"{index}_encoder.int8.onnx", folder / f"{index}_decoder.int8.onnx"
            quantize_int8(str(enc), str(qenc))
            quantize_int8(str(dec), str(qdec))
            enc, dec = qenc, qdec
        runtimes[name] = OnnxRuntimeModel(str(enc), str(dec), 1, protocol.threads)
    return runtimes


def measure_precision(precision: str, predictors: list[tuple[str, LatencyPredictor]], sampled: int,
                      corners: bool, runs: int, composed: bool = False) -> list[dict[str, Any]]:
    """Export, time interleaved with every distinct reference model, score each predictor."""
    first = predictors[0][1]
    space = SearchSpace.from_dict(first.info["space_spec"])
    protocol = predictor_protocol(first, runs)
    configs = model_configs(space, sampled, corners)
    references = {}
    for path, predictor in predictors:
        key = json.dumps(predictor.info["reference"]["config"], sort_keys=True)
        references.setdefault(key, (predictor.info["reference"], predictor.info["space_spec"]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        runtimes = export_models(space, configs, protocol, precision, Path(tmp))
        workloads: dict[str, Any] = {name: BeamWorkload(runtime, protocol) for name, runtime in runtimes.items()}
        if composed:
            backend = OnnxBackend(precision)
            for name, config in configs.items():
                encoder, decoder = backend.model_graphs(space, config, protocol.vocab, protocol.seed)
                workloads[f"{name} (composed)"] = BeamWorkload(OnnxRuntimeModel(encoder, decoder, 1, protocol.threads),
                                                               protocol)
        for index, (reference, spec) in enumerate(references.values()):
            workloads[f"reference {index}"] = reference_workload(reference, protocol, spec)
        exported = time.time() - start
        stats = measure_interleaved(workloads, protocol)
        timed = time.time() - start - exported
    total = {name: sum(stats[name][part].value(protocol.statistic) for part in ("encoder", "decoder"))
             for name in workloads}
    reference_names = {key: f"reference {index}" for index, key in enumerate(references)}
    for path, predictor in predictors:
        reference = predictor.info["reference"]
        now = total[reference_names[json.dumps(reference["config"], sort_keys=True)]]
        factor = now / reference["total_ms"]
        predicted = predictor.predict(list(configs.values()))
        for (name, config), value in zip(configs.items(), predicted):
            measured = total[name]
            if composed:
                extra = {"composed_ms": total[f"{name} (composed)"],
                         "composed_over_exported": total[f"{name} (composed)"] / measured}
            else:
                extra = {}
            rows.append({**extra, "precision": precision, "predictor": path, "model": name, "archid": config.archid,
                         "predicted_ms": float(value), "machine_factor": factor,
                         "predicted_now_ms": float(value) * factor, "measured_ms": measured,
                         "error": (float(value) * factor - measured) / measured,
                         "raw_error": (float(value) - measured) / measured,
                         "profiled_on": predictor.info.get("device", {}).get("cpu"),
                         "profiled_at": predictor.info.get("device", {}).get("date"),
                         "export_s": exported, "timing_s": timed})
    return rows


def speedup_errors(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Per predictor, the largest/smallest speedup it predicts against the measured one."""
    out = {}
    for key in sorted({(r["precision"], r["predictor"]) for r in rows}):
        mine = {r["model"]: r for r in rows if (r["precision"], r["predictor"]) == key}
        predicted = mine["largest"]["predicted_ms"] / mine["smallest"]["predicted_ms"]
        measured = mine["largest"]["measured_ms"] / mine["smallest"]["measured_ms"]
        out[key] = predicted / measured - 1
    return out


def write_report(rows: list[dict[str, Any]], out: Path, command: str) -> None:
    """RESULTS.md (one table per predictor) and a predicted-against-measured PNG."""
    speedups = speedup_errors(rows)
    lines = ["# Predictors against deployed graphs", "", f"`{command}`", ""]
    for (precision, path), speed_error in speedups.items():
        mine = [r for r in rows if (r["precision"], r["predictor"]) == (precision, path)]
        errors = [abs(r["error"]) for r in mine]
        lines += [f"## {path} ({precision}; profiled on {mine[0]['profiled_on']}, {mine[0]['profiled_at']})", "",
                  f"Reference model now / when profiled: {mine[0]['machine_factor']:.3f}. "
                  f"Largest/smallest speedup predicted against measured: {100 * speed_error:+.1f}%. "
                  f"Mean |error| at the machine's speed: {100 * statistics.mean(errors):.1f}%, "
                  f"max {100 * max(errors):.1f}%.", "",
                  "| model | predicted (ms) | at the machine's speed (ms) | measured (ms) | error |"
                  + (" composed (ms) | composed / exported |" if "composed_ms" in mine[0] else ""),
                  "| --- | --- | --- | --- | --- |" + (" --- | --- |" if "composed_ms" in mine[0] else "")]
        lines += [f"| {r['model']} | {r['predicted_ms']:.1f} | {r['predicted_now_ms']:.1f} | {r['measured_ms']:.1f} "
                  f"| {100 * r['error']:+.1f}% |"
                  + (f" {r['composed_ms']:.1f} | {r['composed_over_exported']:.3f} |" if "composed_ms" in r else "")
                  for r in mine]
        if "composed_ms" in mine[0]:
            ratios = [r["composed_over_exported"] for r in mine]
            lines += ["", f"Composed / exported: mean {statistics.mean(ratios):.3f}, "
                          f"range {min(ratios):.3f}-{max(ratios):.3f}."]
        lines.append("")
    (out / "RESULTS.md").write_text("\n".join(lines))
    plot(rows, out / "predicted_vs_measured.png")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Predicted (at the machine's speed) against measured, one marker series per predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for key in sorted({(r["precision"], r["predictor"]) for r in rows}):
        mine = [r for r in rows if (r["precision"], r["predictor"]) == key]
        source = Path(key[1])
        label = f"{key[0]}: " + (f"{source.parent.parent.name}/{source.parent.name}" if source.name == "predictor.json"
                                 else source.stem)
        ax.scatter([r["measured_ms"] for r in mine], [r["predicted_now_ms"] for r in mine], label=label, s=25)
    low = min(min(r["measured_ms"], r["predicted_now_ms"]) for r in rows) * 0.9
    high = max(max(r["measured_ms"], r["predicted_now_ms"]) for r in rows) * 1.1
    ax.plot([low, high], [low, high], color="grey", lw=0.8)
    ax.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="grey", alpha=0.15)
    ax.set(xlabel="measured, deployed graphs (ms)", ylabel="predicted at the machine's speed (ms)",
           title="onnxruntime predictors against deployed graphs (±10% band)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictors", type=Path, nargs="+", required=True, help="onnxruntime predictor JSON files")
    parser.add_argument("--sampled", type=int, default=4, help="sampled SubTransformers besides smallest and largest")
    parser.add_argument("--corners", action="store_true", help="also the largest with uniform 2-, 4- and 6-layer decoders")
    parser.add_argument("--composed", action="store_true", help="also time the collector's composed graphs")
    parser.add_argument("--runs", type=int, default=20, help="timed rounds at least")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_deployed_predictor")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for precision, predictors in load_predictors(args.predictors).items():
        rows += measure_precision(precision, predictors, args.sampled, args.corners, args.runs, args.composed)
        print(f"{precision}: {len(predictors)} predictor(s) scored on {len(rows)} rows so far", flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    command = "python experiments/bench_deployed_predictor.py " + " ".join(
        ["--predictors", *map(str, args.predictors), "--sampled", str(args.sampled), "--runs", str(args.runs)]
        + (["--corners"] if args.corners else []) + (["--composed"] if args.composed else []))
    write_report(rows, args.out, command)
    print((args.out / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
