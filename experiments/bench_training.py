"""Training throughput: SuperTransformer training vs fairseq's stock transformer (issue 3).

Same data, same machine, one after another in this process's children, `--max-update N` each;
target tokens/s is fairseq's own `wps`, averaged over the logging intervals after the first.

Runs:
  stock      fairseq `transformer`, the largest SubTransformer's dimensions (ende attention to the last layer)
  hat-fixed  our plugin training that same architecture as a fixed SubTransformer (cost of elastic slicing)
  hat-largest  our plugin, the space's largest SubTransformer (attends to the last 3 encoder layers)
  hat-super  SuperTransformer training, one uniformly sampled SubTransformer per update (HAT)

    python experiments/bench_training.py --data runs/demo/data/bin --updates 300
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hat.space import SearchSpace
from hat.training import build_train_argv, stock_transformer_argv

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"optimizer": "adam", "adam-betas": "(0.9, 0.98)", "lr": 1e-3, "lr-scheduler": "inverse_sqrt",
          "warmup-updates": 100, "criterion": "label_smoothed_cross_entropy", "label-smoothing": 0.1,
          "dropout": 0.1, "log-format": "json", "log-interval": 25, "no-save": True, "disable-validation": True,
          "seed": 1, "cpu": True, "num-workers": 0}


def run(argv: list[str]) -> float:
    code = ("import sys; from hat.training import parse_train_argv, run_fairseq_train; "
            "run_fairseq_train(parse_train_argv(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    rates = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if "train_inner" in line and "{" in line:  # fairseq's JSON progress lines, whatever the log prefix
            rates.append(float(json.loads(line[line.index("{", line.index("train_inner")):])["wps"]))
    if len(rates) < 2:
        raise SystemExit("not enough logging intervals: raise --updates")
    return sum(rates[1:]) / len(rates[1:])


def flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/tiny.yaml")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=4096)
    args = parser.parse_args()

    space = SearchSpace.from_yaml(args.space)
    largest = space.largest()
    stock_like = dataclasses.replace(largest, decoder_ende_attn=(-1,) * largest.decoder_layers)
    common = {**COMMON, "max-update": args.updates, "max-tokens": args.max_tokens}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        stock = [str(args.data), "--save-dir", f"{tmp}/stock",
                 *stock_transformer_argv(largest, space.share_all_embeddings), *flags(common)]
        results["stock"] = run(stock)
        for name, config in (("hat-fixed", stock_like), ("hat-largest", largest), ("hat-super", None)):
            config_file = None
            if config is not None:
                config_file = Path(tmp) / f"{name}.yaml"
                config.to_yaml(config_file)
            argv = build_train_argv(space=args.space, data=args.data, save_dir=f"{tmp}/{name}",
                                    subtransformer_config=config_file, options=common)
            results[name] = run(argv)
    print(json.dumps(results, indent=2))
    print("\n| run | target tokens/s | vs stock |\n| --- | --- | --- |")
    for name, wps in results.items():
        print(f"| {name} | {wps:,.0f} | {100 * (wps / results['stock'] - 1):+.1f}% |")


if __name__ == "__main__":
    main()
