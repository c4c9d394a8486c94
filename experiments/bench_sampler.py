"""SuperTransformer sampling at equal wall time: HAT's uniform sampler against the sandwich rule.

Trains the Multi30k SuperTransformer (search_spaces/multi30k_cpu.yaml) on a prepared data-bin once
with each ``--sampler`` for the same wall-clock budget (fairseq's ``--stop-time-hours``; same lr,
warm-up and batch size), one after the other, then scores the inherited weights of the largest and
the smallest SubTransformer and of any ``--config`` on the validation set (label-smoothed loss in
bits per token, as fairseq logs it). Uniform samples one SubTransformer per update (HAT); sandwich
trains the largest, the smallest and one sampled SubTransformer in every update (BigNAS, OFA), so
it makes fewer updates in the same time.

    python experiments/bench_sampler.py --data runs/multi30k_v8/data-bin --seconds 932.3 --warmup 136 \\
        --samplers uniform --config runs/multi30k_v8/search/best_24.4ms.yaml \\
        --checkpoint runs/multi30k_v8/supernet/checkpoint_best.pt --out runs/bench_sampler_v8

``--samplers`` trains only some of them (none: it only scores); ``--checkpoint`` scores
SuperTransformers trained elsewhere (a run of experiments/multi30k.py) beside them, with their
update counts.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "multi30k_cpu.yaml"


def updates_done(checkpoint: Path) -> int:
    from hat.checkpoints import read_checkpoint

    return int(read_checkpoint(checkpoint)["optimizer_history"][-1]["num_updates"])


def train_for(data: Path, out: Path, sampler: str, seconds: float, args: argparse.Namespace) -> dict:
    from hat.training import train

    options = {"max-update": 100000, "stop-time-hours": seconds / 3600, "max-tokens": args.max_tokens, "lr": 1e-3,
               "warmup-updates": args.warmup, "dropout": 0.2, "log-interval": 50, "no-epoch-checkpoints": True,
               "num-workers": 0, "disable-validation": True, "seed": args.seed}
    start = time.time()
    last = train(space=SPACE, data=data, save_dir=out / sampler, sampler=sampler, options=options)
    wall = time.time() - start
    updates = updates_done(last)
    return {"checkpoint": str(last), "wall_s": wall, "updates": updates, "s_per_update": seconds / max(updates, 1)}


def inherited_losses(checkpoint: str, data: Path, configs: dict[str, object]) -> dict[str, float]:
    from hat.evaluation import evaluate

    return {name: evaluate(checkpoint, data, config, split="valid", bleu=False)["loss"] for name, config in configs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a prepared Multi30k data-bin")
    parser.add_argument("--seconds", type=float, default=600, help="wall-clock training budget of each sampler")
    parser.add_argument("--config", type=Path, action="append", default=[], help="more SubTransformers to score")
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samplers", nargs="*", choices=("uniform", "sandwich"), default=["uniform", "sandwich"])
    parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                        help="a SuperTransformer checkpoint trained elsewhere, scored beside the runs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_sampler")
    args = parser.parse_args()
    if not args.samplers and not args.checkpoint:
        parser.error("nothing to score: give --samplers to train or --checkpoint to score")
    logging.basicConfig(level=logging.WARNING)
    from hat.data.prepare import check_data_folder
    from hat.checkpoints import load_supernet
    from hat.errors import HatError
    from hat.io import atomic_write_text
    from hat.space import SearchSpace, SubTransformerConfig

    space = SearchSpace.from_yaml(SPACE)
    configs = {"largest": space.largest(), "smallest": space.smallest()}
    try:  # bad input: one line naming the file, before any training
        check_data_folder(args.data)
        for path in args.checkpoint:  # missing, foreign or of another space: one line, before any training
            load_supernet(path, space)
        for path in args.config:
            configs[path.stem] = SubTransformerConfig.from_yaml(path)
            space.validate(configs[path.stem])
    except HatError as error:
        print(f"bench_sampler: error: {error}", file=sys.stderr)
        sys.exit(2)
    results = {}
    for sampler in args.samplers:
        results[sampler] = train_for(args.data, args.out, sampler, args.seconds, args)
    for path in args.checkpoint:
        results[str(path)] = {"checkpoint": str(path), "updates": updates_done(path)}
    for name, run in results.items():
        run["valid_loss"] = inherited_losses(run["checkpoint"], args.data, configs)
        print(f"{name}: {run['updates']} updates; valid loss "
              + ", ".join(f"{k} {v:.3f}" for k, v in run["valid_loss"].items()), flush=True)
    assert all(math.isfinite(v) for r in results.values() for v in r["valid_loss"].values())
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
