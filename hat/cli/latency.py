"""``hat profile`` and ``hat predictor fit|eval|predict``."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hat.cli.options import int_at_least, positive_float
from hat.errors import HatError
from hat.io import check_output_dir, check_output_file, safe_file_name
from hat.latency.measure import STATISTICS
from hat.latency.protocol import LIMITS, Protocol

log = logging.getLogger("hat.profile")


def register(commands: argparse._SubParsersAction) -> None:
    _register_profile(commands)
    _register_predictor(commands)


def _register_profile(commands: argparse._SubParsersAction) -> None:
    profile = commands.add_parser("profile", help="measure latency tables and an end-to-end dataset on this device")
    profile.add_argument("--space", type=Path, required=True, help="search space YAML")
    profile.add_argument("--device", help="device name (default: from the CPU/GPU model and threads)")
    profile.add_argument("--backend", choices=["onnxruntime", "torch", "cuda"], default="onnxruntime",
                         help="runtime to measure: onnxruntime runs the graphs hat export writes, as hat translate "
                              "does; torch/cuda time PyTorch eager")
    profile.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                         help="onnxruntime weights: fp32, or int8 as hat export --quantize int8 writes them")
    profile.add_argument("--provider", default="CPUExecutionProvider",
                         help="onnxruntime execution provider (e.g. CUDAExecutionProvider)")
    profile.add_argument("--threads", type=int_at_least(1, LIMITS["threads"]), default=Protocol.threads, help="intra-op threads (fixed during measurement)")
    profile.add_argument("--samples", type=int_at_least(0), default=200, help="end-to-end SubTransformers to measure")
    profile.add_argument("--test-samples", type=int_at_least(0), default=0, help="further SubTransformers measured into test.csv")
    profile.add_argument("--src-len", type=int_at_least(1, LIMITS["src_len"]), default=Protocol.src_len, help="source length of the timed translation (tokens)")
    profile.add_argument("--beam", type=int_at_least(1, LIMITS["beam"]), default=Protocol.beam, help="beam size of the timed translation")
    profile.add_argument("--vocab", type=int_at_least(8, LIMITS["vocab"]),
                         help="vocabulary size of the timed models (default: --data's target dictionary, else 32768)")
    profile.add_argument("--data", type=Path, help="data-bin folder whose target vocabulary the timed models use")
    profile.add_argument("--warmup", type=int_at_least(0, LIMITS["warmup"]), default=Protocol.warmup, help="untimed runs before timing")
    profile.add_argument("--runs", type=int_at_least(1, LIMITS["runs"]), default=Protocol.runs, help="timed rounds per model")
    profile.add_argument("--max-runs", type=int_at_least(0, LIMITS["runs"]), default=Protocol.max_runs,
                         help="rounds at most while the statistic still moves (0: three times --runs)")
    profile.add_argument("--statistic", choices=STATISTICS, default=Protocol.statistic,
                         help="what a workload's latency is, of its timed rounds (see BENCHMARKS.md)")
    profile.add_argument("--seed", type=int_at_least(0, LIMITS["seed"]), default=Protocol.seed, help="seed of the sampled SubTransformers and of the random weights")
    profile.add_argument("--chunk-size", type=int_at_least(1), default=8, help="workloads measured interleaved per chunk")
    profile.add_argument("--steady-tolerance", type=positive_float(), default=0.15,
                         help="measure a chunk again when the reference model ran this much slower than before (fraction)")
    profile.add_argument("--retries", type=int_at_least(0, 100), default=2, help="re-measurements of one chunk at most")
    profile.add_argument("--no-tables", action="store_true", help="skip the per-layer tables")
    profile.add_argument("--ray-address", help="Ray cluster to send measurements to (e.g. 10.0.0.5:6379)")
    profile.add_argument("--ray-resource", help="custom resource the target node advertises (e.g. rpi4)")
    profile.add_argument("--json", action="store_true", help="print where the results went and the machine's noise as JSON")
    profile.add_argument("--out", type=Path, help="output folder (default: latency_tables/DEVICE/)")
    profile.set_defaults(handler=cmd_profile)


def _register_predictor(commands: argparse._SubParsersAction) -> None:
    predictor = commands.add_parser("predictor", help="fit, evaluate and query latency predictors")
    sub = predictor.add_subparsers(dest="predictor_command", required=True, metavar="ACTION", help="one of the actions below")
    fit = sub.add_parser("fit", help="fit a predictor on a latency dataset")
    fit.add_argument("--data", type=Path, required=True, help="dataset CSV (ours, or HAT's with --format hat)")
    fit.add_argument("--tables", type=Path, help="tables.json or the folder holding it")
    fit.add_argument("--format", choices=["auto", "hat", "hat-latency"], default="auto", help="CSV flavour: ours (auto), HAT's published CSV (hat), or ours read as HAT features only")
    fit.add_argument("--model", choices=["auto", "table", "linear", "mlp"], default="auto",
                     help="auto: 5-fold cross-validation; the simplest kind within 15%% of the best MAPE")
    fit.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds and of the MLP")
    fit.add_argument("--labels", choices=["auto", "measured", "reference_speed"], default="auto",
                     help="fit on latencies as measured, or each scaled to one machine speed by the reference model "
                          "timed in its chunk (auto: reference_speed for onnxruntime data)")
    fit.add_argument("--out", type=Path, required=True, help="predictor JSON to write")
    fit.add_argument("--json", action="store_true", help="print the cross-validation scores as JSON")
    fit.set_defaults(handler=cmd_fit)

    ev = sub.add_parser("eval", help="accuracy of a predictor on a dataset")
    ev.add_argument("--predictor", type=Path, required=True, help="latency predictor JSON")
    ev.add_argument("--data", type=Path, required=True, help="dataset CSV to evaluate on")
    ev.add_argument("--format", choices=["auto", "hat", "hat-latency"], default="auto", help="CSV flavour (see hat predictor fit)")
    ev.add_argument("--plot", type=Path, help="write a predicted-vs-measured PNG")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.set_defaults(handler=cmd_eval)

    pr = sub.add_parser("predict", help="predicted latency of one config")
    pr.add_argument("--predictor", type=Path, required=True, help="latency predictor JSON")
    pr.add_argument("--config", type=Path, required=True, nargs="+", help="SubTransformer config YAML file(s)")
    pr.add_argument("--json", action="store_true", help="print the predictions as JSON")
    pr.set_defaults(handler=cmd_predict)


def cmd_profile(args: argparse.Namespace) -> int:
    from hat.latency.collector import LatencyCollector, ray_runner, reference_noise
    from hat.pipeline import measure_backend, profile, target_vocabulary
    from hat.latency.protocol import Protocol, default_device_name
    from hat.space import SearchSpace

    space = SearchSpace.from_yaml(args.space)
    if bool(args.ray_address) != bool(args.ray_resource):
        raise HatError("--ray-address and --ray-resource go together")
    backend = measure_backend(args.backend, args.precision, args.provider, local=not args.ray_address)
    protocol = Protocol(src_len=args.src_len, beam=args.beam, vocab=target_vocabulary(args.data, args.vocab), warmup=args.warmup,
                        runs=args.runs, threads=args.threads, seed=args.seed, statistic=args.statistic,
                        max_runs=args.max_runs)
    runner = ray_runner(args.ray_address, args.ray_resource) if args.ray_address else None
    if runner is None and args.backend == "cuda":
        from hat.latency.timers import CudaTimer

        CudaTimer()  # fails with a clear message when there is no GPU
    device = args.device or (args.ray_resource if runner else default_device_name(args.backend, args.threads, args.precision))
    out = check_output_dir(args.out or Path("latency_tables") / safe_file_name(device) / safe_file_name(space.name))
    collector = LatencyCollector(space, protocol, out, backend=backend, runner=runner, chunk_size=args.chunk_size,
                                 steady_tolerance=args.steady_tolerance, retries=args.retries)
    profile(collector, args.samples, args.test_samples, seed=args.seed, tables=not args.no_tables)
    noise = reference_noise(out)
    if noise:
        log.info("reference model (%s) over %d chunks: %.3f ms ± %.3f (CV %.2f%%, max/min %.3f); %d chunk(s) "
                 "measured again because the machine was busy", space.smallest().archid, noise["chunks"],
                 noise["mean_ms"], noise["std_ms"], 100 * noise["cv"], noise["max_over_min"], noise["remeasured"])
    print(json.dumps({"out": str(out), "reference_noise": noise}, indent=2) if args.json else out)
    return 0


def _print_metrics(name: str, m: dict) -> None:
    print(f"{name}: n={m['n']} RMSE {m['rmse_ms']:.3f} ms | MAPE {m['mape_pct']:.2f}% | "
          f"within ±5% {100 * m['within_5pct']:.1f}% | within ±10% {100 * m['within_10pct']:.1f}% | "
          f"Kendall tau {m['kendall_tau']:.3f}")


def cmd_fit(args: argparse.Namespace) -> int:
    from hat.pipeline import fit_predictor

    check_output_file(args.out, "predictor file")
    predictor, scores = fit_predictor(args.data, args.tables, kind=args.model, seed=args.seed, data_format=args.format,
                                      labels=args.labels)
    predictor.save(args.out)
    if args.json:
        print(json.dumps({"model": predictor.kind, "cross_validation": scores, "train": predictor.info["train"], "out": str(args.out)}, indent=2))
    else:
        for kind, m in scores.items():
            _print_metrics(f"5-fold CV {kind}", m)
        print(f"chose '{predictor.kind}', refitted on all {predictor.info['train']['n']} rows -> {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hat.pipeline import evaluate_predictor

    if args.plot:
        check_output_file(args.plot, "plot file")
    predictor, m = evaluate_predictor(args.predictor, args.data, args.format, args.plot)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        _print_metrics(f"{predictor.kind} on {args.data}", m)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from hat.latency.predictor import LatencyPredictor
    from hat.space import SubTransformerConfig

    predictor = LatencyPredictor.load(args.predictor)
    configs = [SubTransformerConfig.from_yaml(path) for path in args.config]
    predicted = []
    for path, config in zip(args.config, configs):
        try:
            predicted.append(float(predictor.predict([config])[0]))
        except HatError as err:
            raise HatError(f"{err} (predictor {args.predictor})", path) from None
    results = [{"config": str(p), "archid": c.archid, "latency_ms": float(ms)} for p, c, ms in zip(args.config, configs, predicted)]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            print(f"{r['config']}: {r['latency_ms']:.2f} ms")
    return 0
