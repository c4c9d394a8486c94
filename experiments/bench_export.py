"""Deployment benchmarks (issue 6): batch 1, beam 5, 30 source tokens, 30 decoder steps, this CPU.

- onnxruntime fp32 vs PyTorch eager latency, and int8 vs fp32 onnxruntime latency and file size, for
  SubTransformers of the WMT14 space (random weights; latency and size do not depend on the values);
- the BLEU change of int8 on the synthetic test set, for the models a finished `hat demo` exported.

    python experiments/bench_export.py --run runs/demo --threads 1
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from hat.export.graphs import export_onnx
from hat.export.runtime import OnnxRuntimeModel
from hat.export.ort_worker import BeamWorkload
from hat.latency import Protocol
from hat.latency.measure import measure_interleaved
from hat.latency.workloads import build_model, model_workload
from hat.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def time_workloads(workloads: dict, protocol: Protocol) -> dict[str, float]:
    """The protocol's statistic of each workload (encoder + decoder), timed interleaved."""
    stats = measure_interleaved(workloads, protocol)
    return {name: parts["encoder"].value(protocol.statistic) + parts["decoder"].value(protocol.statistic)
            for name, parts in stats.items()}


def latency_rows(space: SearchSpace, protocol: Protocol) -> list[dict]:
    from hat.export.graphs import quantize_int8

    torch.set_num_threads(protocol.threads)
    rows = []
    for name, config in (("smallest", space.smallest()), ("sampled", space.sample(seed=3)), ("largest", space.largest())):
        model = build_model(space, config, protocol, "cpu")
        with tempfile.TemporaryDirectory() as tmp:
            enc, dec = f"{tmp}/enc.onnx", f"{tmp}/dec.onnx"
            export_onnx(model, enc, dec)
            qenc, qdec = f"{tmp}/enc.int8.onnx", f"{tmp}/dec.int8.onnx"
            quantize_int8(enc, qenc)
            quantize_int8(dec, qdec)
            fp32_bytes = sum(p.stat().st_size for p in Path(tmp).glob("*") if "int8" not in p.name)
            int8_bytes = sum(p.stat().st_size for p in Path(tmp).glob("*int8*"))
            ms = time_workloads({
                "eager": model_workload(model, protocol, "cpu"),
                "ort32": BeamWorkload(OnnxRuntimeModel(enc, dec, 1, protocol.threads), protocol),
                "ort8": BeamWorkload(OnnxRuntimeModel(qenc, qdec, 1, protocol.threads), protocol)}, protocol)
            eager, ort32, ort8 = ms["eager"], ms["ort32"], ms["ort8"]
        rows.append({"model": name, "archid": config.archid, "torch_eager_ms": eager, "ort_fp32_ms": ort32,
                     "ort_int8_ms": ort8, "fp32_mb": fp32_bytes / 2**20, "int8_mb": int8_bytes / 2**20})
    return rows


def bleu_rows(run: Path) -> list[dict]:
    stages = json.loads((run / "stages.json").read_text())
    return [{"model": m["name"], "bleu_fp32": m["bleu_fp32"], "bleu_int8": m["bleu_int8"],
             "ort_fp32_ms": m["measured_ort_fp32_ms"], "ort_int8_ms": m["measured_ort_int8_ms"],
             "torch_ms": m["measured_torch_ms"]} for m in stages["evaluate"]["models"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/wmt14_en_de.yaml")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--run", type=Path, default=ROOT / "runs/demo", help="a finished hat demo (BLEU rows)")
    args = parser.parse_args()

    protocol = Protocol(src_len=30, beam=5, vocab=args.vocab, warmup=2, runs=args.runs, threads=args.threads)
    torch.set_num_threads(args.threads)
    rows = latency_rows(SearchSpace.from_yaml(args.space), protocol)
    print(json.dumps(rows, indent=2))
    print(f"\n{args.space.name}, vocabulary {args.vocab}, {args.threads} thread(s):")
    print("| SubTransformer | torch eager (ms) | ORT fp32 (ms) | ORT int8 (ms) | fp32 vs eager | int8 vs fp32 | "
          "fp32 MB | int8 MB | size ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['torch_eager_ms']:.1f} | {r['ort_fp32_ms']:.1f} | {r['ort_int8_ms']:.1f} | "
              f"{r['torch_eager_ms'] / r['ort_fp32_ms']:.2f}x | {r['ort_fp32_ms'] / r['ort_int8_ms']:.2f}x | "
              f"{r['fp32_mb']:.1f} | {r['int8_mb']:.1f} | {r['fp32_mb'] / r['int8_mb']:.2f}x |")
    if (args.run / "stages.json").is_file():
        print(f"\nTrained tiny models from {args.run} (synthetic test set, beam 5):")
        print("| model | BLEU fp32 | BLEU int8 | change | torch (ms) | ORT fp32 (ms) | ORT int8 (ms) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in bleu_rows(args.run):
            print(f"| {r['model']} | {r['bleu_fp32']:.2f} | {r['bleu_int8']:.2f} | {r['bleu_int8'] - r['bleu_fp32']:+.2f} | "
                  f"{r['torch_ms']:.2f} | {r['ort_fp32_ms']:.2f} | {r['ort_int8_ms']:.2f} |")


if __name__ == "__main__":
    main()
