"""Fitness, evaluation and BLEU on a GPU against the CPU (about 5 minutes on one GPU).

Trains the tiny space for a few hundred updates on CUDA, then scores the same SubTransformers'
inherited validation loss on the CPU and on the GPU (fp32, and fp16 for reference) and BLEU on the
GPU, and writes OUT/gpu_check_fitness.json. Needs torch with CUDA and the train extra.

    python experiments/gpu_check_fitness.py [--out runs/gpu_check_fitness] [--updates 300]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hat.cli import main as hat
from hat.evaluation import evaluate
from hat.search import InheritedLossFitness
from hat.space import SearchSpace
from hat.shipped import space_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check_fitness"))
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--configs", type=int, default=10, help="SubTransformers scored on both devices")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    assert hat(["data", "synthetic", "--out", str(out / "syn"), "--prepare"]) == 0
    start = time.time()
    assert hat(["train", "--space", "tiny", "--data", str(out / "syn" / "bin"), "--save-dir", str(out / "ckpt"),
                "--max-update", str(args.updates), "--max-tokens", "4096"]) == 0
    train_s = time.time() - start
    checkpoint, data = out / "ckpt" / "checkpoint_last.pt", out / "syn" / "bin"
    space = SearchSpace.from_yaml(space_file("tiny"))
    configs = [space.largest(), space.smallest()] + [space.sample(seed=s) for s in range(args.configs - 2)]
    losses = {}
    for device, fp16 in (("cpu", False), ("cuda", False), ("cuda", True)):
        fitness = InheritedLossFitness(checkpoint, data, valid_subset=200, device=device, fp16=fp16)
        start = time.time()
        losses[f"{device}{'_fp16' if fp16 else ''}"] = {"losses": [fitness(c) for c in configs], "seconds": time.time() - start}
    cpu, gpu = losses["cpu"]["losses"], losses["cuda"]["losses"]
    report = {"updates": args.updates, "train_seconds_cuda": train_s, "fitness": losses,
              "max_abs_diff_cpu_gpu": max(abs(a - b) for a, b in zip(cpu, gpu)),
              "max_abs_diff_cpu_gpu_fp16": max(abs(a - b) for a, b in zip(cpu, losses["cuda_fp16"]["losses"])),
              "bleu_cuda": evaluate(checkpoint, data, split="test", device="cuda")["bleu"],
              "bleu_cpu": evaluate(checkpoint, data, split="test")["bleu"]}
    (out / "gpu_check_fitness.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "fitness"}, indent=2))
    print("goal (|CPU - GPU| <= 1e-4):", "met" if report["max_abs_diff_cpu_gpu"] <= 1e-4 else "MISSED")


if __name__ == "__main__":
    main()
