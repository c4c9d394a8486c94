"""One decoder step of a SubTransformer on onnxruntime: the graph the collector composes (profiled)
against the graph ``hat export`` writes (deployed), with MLAS's weight prepacking on and off.

    python experiments/bench_decoder_step.py [--space search_spaces/wmt14_en_de.yaml] [--model largest] \
        [--precision int8]

Both decoders get the same synthetic step (beam 5, 30 source tokens, 10 cached target tokens; 1
thread). The four sessions are timed interleaved in ``--blocks`` blocks of ``--steps`` steps, each
keeping its median block; then onnxruntime's own profile gives the time of every node: the slowest
MatMul nodes of each graph are printed with their input shapes, and each graph's time per op type.
``--precision int8`` compares the graphs as ``--precision int8`` profiles and exports them.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hat.latency import Protocol
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"batch": 5, "src_len": 30, "past_len": 10}


def step_inputs(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """A decoder step's inputs, symbolic dimensions ('batch', 'src_len', '3*src_len', ...) filled from SIZES."""
    rng = np.random.default_rng(0)
    feeds = {}
    for arg in session.get_inputs():
        shape = []
        for dim in arg.shape:
            if isinstance(dim, int):
                shape.append(dim)
            else:
                factor, _, name = dim.rpartition("*")
                shape.append(int(factor or 1) * SIZES[name])
        if "int64" in arg.type:
            feeds[arg.name] = np.full(shape, SIZES["past_len"] + 2 if arg.name == "positions" else 5, np.int64)
        elif "bool" in arg.type:
            feeds[arg.name] = np.zeros(shape, bool)
        else:
            feeds[arg.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def session(path: Path, prepack: bool, profile: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_ms(sessions: dict[str, ort.InferenceSession], feeds: dict, blocks: int, steps: int) -> dict[str, float]:
    """Median over blocks of the mean step time (ms) of each session, the sessions taking turns."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(blocks):
        for name, sess in sessions.items():
            sess.run(None, feeds)
            start = time.perf_counter()
            for _ in range(steps):
                sess.run(None, feeds)
            times[name].append((time.perf_counter() - start) / steps * 1000)
    return {name: float(np.median(values)) for name, values in times.items()}


def node_profile(path: Path, feeds: dict, steps: int, work: Path, top: int) -> dict:
    """onnxruntime's profile of ``steps`` steps: the ``top`` MatMul nodes (any op whose name holds
    MatMul) by time per step, and the time per step of each op type."""
    sess = session(path, prepack=True, profile=work / path.stem)
    for _ in range(steps):
        sess.run(None, feeds)
    totals: collections.Counter = collections.Counter()
    by_op: collections.Counter = collections.Counter()
    shapes = {}
    for event in json.loads(Path(sess.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / steps / 1000
            if "MatMul" in event["args"]["op_name"]:
                totals[event["name"]] += event["dur"]
                shapes[event["name"]] = event["args"].get("input_type_shape")
    slowest = [{"node": name.removesuffix("_kernel_time"), "ms": us / steps / 1000, "inputs": shapes[name]}
               for name, us in totals.most_common(top)]
    return {"slowest_matmuls": slowest, "ms_per_op_type": dict(by_op.most_common())}


def first_shape(inputs: list[dict]) -> list:
    """The shape of a node's first input, whatever its element type."""
    return next(iter(inputs[0].values())) if inputs else []


def main() -> None:
    from hat.export.graphs import export_onnx, quantize_int8
    from hat.export.ort_backend import OnnxBackend
    from hat.latency.workloads import build_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/wmt14_en_de.yaml")
    parser.add_argument("--model", choices=("largest", "smallest"), default="largest")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_decoder_step")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace.from_yaml(args.space)
    config = getattr(space, args.model)()
    protocol = Protocol(threads=1, vocab=args.vocab)
    with tempfile.TemporaryDirectory(prefix="hat_step_") as tmp:
        work = Path(tmp)
        os.environ["HAT_CACHE_DIR"] = str(work / "pieces")
        backend = OnnxBackend(args.precision, cache=work / "pieces")
        _, composed = backend.model_graphs(space, config, protocol.vocab, protocol.seed)
        paths = {"composed": work / "composed.onnx", "exported": work / "exported.onnx"}
        paths["composed"].write_bytes(composed)
        export_onnx(build_model(space, config, protocol, "cpu"), str(work / "encoder.onnx"), str(paths["exported"]))
        if args.precision == "int8":
            quantize_int8(str(paths["exported"]), str(work / "exported.int8.onnx"))
            paths["exported"] = work / "exported.int8.onnx"
        sessions = {f"{kind}, prepacking {state}": session(path, state == "on")
                    for state in ("on", "off") for kind, path in paths.items()}
        feeds = step_inputs(next(iter(sessions.values())))
        step_ms = interleaved_ms(sessions, feeds, args.blocks, args.steps)
        profiles = {kind: node_profile(path, feeds, args.steps, work, top=4) for kind, path in paths.items()}
    result = {"space": space.name, "model": config.summary(), "precision": args.precision, "sizes": SIZES,
              "step_ms": step_ms, "profiles": profiles}
    (args.out / "bench_decoder_step.json").write_text(json.dumps(result, indent=2))
    print(f"{space.name}, {args.model}, {args.precision}: one decoder step (beam {SIZES['batch']}, 1 thread), median of {args.blocks} "
          f"interleaved blocks of {args.steps} steps")
    print("| graph | ms per step |\n| --- | --- |")
    for name, ms in step_ms.items():
        print(f"| {name} | {ms:.2f} |")
    for kind, profile in profiles.items():
        print(f"{kind}: slowest MatMuls (ms per step, onnxruntime profile): "
              + "; ".join(f"{r['ms']:.2f} {first_shape(r['inputs'])}" for r in profile["slowest_matmuls"]))
        print(f"{kind}: ms per step by op type: "
              + "; ".join(f"{op} {ms:.2f}" for op, ms in profile["ms_per_op_type"].items() if ms >= 0.05))


if __name__ == "__main__":
    main()
