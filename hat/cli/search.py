"""``hat search``."""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import fields
from pathlib import Path

from hat.cli.options import float_at_least, int_at_least, positive_float
from hat.errors import HatError
from hat.io import check_output_dir
from hat.search.evolution import EvolutionSettings

log = logging.getLogger("hat.search")


def register(commands: argparse._SubParsersAction) -> None:
    s = commands.add_parser("search", help="evolutionary search under latency constraints")
    s.add_argument("--space", type=Path, required=True, help="search space YAML")
    s.add_argument("--checkpoint", type=Path, required=True, help="SuperTransformer checkpoint")
    s.add_argument("--data", type=Path, required=True, help="data-bin folder (validation split)")
    s.add_argument("--predictor", type=Path, required=True, help="latency predictor JSON")
    s.add_argument("--latency-constraint", type=positive_float(), nargs="+", required=True, metavar="MS", help="latency budget(s) in ms, one search per budget")
    s.add_argument("--max-params", type=count, metavar="COUNT",
                   help="keep SubTransformers at or under this many parameters (e.g. 20M), embeddings included")
    s.add_argument("--max-flops", type=count, metavar="COUNT",
                   help="keep SubTransformers at or under this many FLOPs as HAT counts them (e.g. 2G)")
    s.add_argument("--max-memory-mb", type=positive_float(), metavar="MB",
                   help="keep the peak memory of the deployed beam search (weights, caches, logits) at or under this")
    s.add_argument("--max-size-mb", type=positive_float(), metavar="MB",
                   help="keep the exported weights at or under this many MB at the predictor's precision")
    for setting in fields(EvolutionSettings):
        bounds = setting.metadata
        number = float_at_least if isinstance(setting.default, float) else int_at_least
        s.add_argument("--" + setting.name.replace("_", "-"), type=number(bounds["low"], bounds["high"]),
                       default=setting.default, help=bounds["help"])
    s.add_argument("--valid-subset", type=int_at_least(1), help="sentences of the validation set to score (default: all)")
    s.add_argument("--split", default="valid", help="data split whose loss is the fitness")
    s.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the search (same seed, same result)")
    s.add_argument("--workers", type=int_at_least(0, 256), default=0, help="worker processes (0: evaluate in this process); Ray actors with --ray-address")
    s.add_argument("--ray-address", help="evaluate on this Ray cluster (HOST:PORT); without it workers are local processes")
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where the fitness (validation loss) runs")
    s.add_argument("--fp16", action="store_true", help="half-precision fitness (with --device cuda)")
    s.add_argument("--random-search", action="store_true",
                   help="also run random search with the same evaluation budget per constraint, for comparison")
    s.add_argument("--measure-winners", type=Path, metavar="PROFILE_DIR",
                   help="the `hat profile` folder the predictor was fitted from: after the search, measure each "
                        "constraint's best candidates with its protocol and runtime (adding them to its dataset.csv), "
                        "and while one is off its prediction, refit and search again (a search favours the models "
                        "its predictor under-estimates)")
    s.add_argument("--winners", type=int_at_least(1), default=3, help="candidates measured per constraint")
    s.add_argument("--winner-rounds", type=int_at_least(1), default=2, help="refits and searches at most")
    s.add_argument("--winner-tolerance", type=float_at_least(0, 1), default=0.03,
                   help="stop once each constraint's chosen model is this close to its prediction (a fraction)")
    s.add_argument("--ray-resource", help="with --measure-winners: measure on the Ray node with this resource")
    s.add_argument("--finalists", type=int_at_least(1), metavar="K",
                   help="also write K finalists per constraint to --out/finalists: the lowest inherited loss in each "
                        "of K equal bands of the latency the search explored, to fine-tune and compare by "
                        "validation loss (inherited loss can rank models otherwise than fine-tuning does)")
    s.add_argument("--resume", action="store_true", help="continue the search saved in --out")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--out", type=Path, required=True, help="output folder (state.json, best_*.yaml, summary.json, plots)")
    s.set_defaults(handler=cmd_search)


def count(text: str) -> float:
    """argparse type of ``--max-params``: 20000000, 20M, 1.5e7."""
    from hat.search.objectives import parse_count

    try:
        return parse_count(text)
    except HatError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_search(args: argparse.Namespace) -> int:
    from hat.checkpoints import load_supernet
    from hat.latency import LatencyPredictor
    from hat.search import EvolutionarySearch, InheritedLossFitness
    from hat.search.evaluators import make_evaluator
    from hat.pipeline import random_search_baseline, search_limits
    from hat.search.store import SearchStore
    from hat.space import SearchSpace
    from hat.subtransformer import ModelDims

    check_output_dir(args.out)
    space = SearchSpace.from_yaml(args.space)
    checkpoint = load_supernet(args.checkpoint, space)  # fails early, in one line, on a checkpoint of another space
    predictor = LatencyPredictor.load(args.predictor)
    try:
        predictor.check_space(space)
        predictor.check_vocabulary(checkpoint.supernet.tgt_vocab_size)
    except HatError as err:
        raise HatError(str(err), args.predictor) from None
    dims = ModelDims.for_space(space, checkpoint.supernet.src_vocab_size, checkpoint.supernet.tgt_vocab_size)
    limits = search_limits(space, dims, predictor.runtime.get("precision") or "fp32", args.max_params,
                           args.max_size_mb, args.max_flops, args.max_memory_mb, predictor.info.get("protocol"))
    fitness = InheritedLossFitness(args.checkpoint, args.data, split=args.split, valid_subset=args.valid_subset,
                                   seed=args.seed, device=args.device, fp16=args.fp16)
    fitness.load()
    store = SearchStore(args.out / "scored.jsonl", fitness=fitness.describe(), space=space)
    evaluator = make_evaluator(fitness, args.workers, args.ray_address)
    evolution = {name: getattr(args, name) for name in ("population", "parents", "mutations", "crossovers",
                                                        "mutation_prob", "iterations")}

    def run_search(latency_model: LatencyPredictor, round_: int):
        state = args.out / "state.json" if round_ == 0 else args.out / f"round{round_}" / "state.json"
        state.parent.mkdir(exist_ok=True)
        return EvolutionarySearch(space, fitness, latency_model, args.latency_constraint, seed=args.seed, **evolution,
                                  evaluator=evaluator, state_path=state, limits=limits, store=store).run(resume=args.resume)

    start = time.time()
    try:
        if args.measure_winners is None:
            result, extra = run_search(predictor, 0), {}
        else:
            predictor, result, rounds = _search_with_measured_winners(args, space, predictor, run_search)
            extra = {"winner_rounds": rounds, "predictor": str(args.predictor if len(rounds) == 1 else
                                                                    args.out / f"predictor_round{len(rounds) - 1}.json")}
        extra["wall_time_s"] = time.time() - start
        if args.random_search:
            extra["random_search"] = random_search_baseline(space, fitness, predictor, result, seed=args.seed,
                                                            evaluator=evaluator, limits=limits, store=store)
    finally:
        if evaluator is not None:
            evaluator.close()
    _write_and_print(args, result, extra, predictor, space, limits)
    return 0


def _write_and_print(args: argparse.Namespace, result, extra: dict, predictor, space, limits) -> None:
    """The search's outputs in --out (with --finalists, each constraint's finalists too), then its summary."""
    from hat.search.finalists import write_finalists
    from hat.search.outputs import write_search_outputs

    if args.finalists:
        extra["finalists"] = write_finalists(result.history, [r.constraint_ms for r in result.results],
                                             args.finalists, args.out)
    summary = write_search_outputs(result, args.out, extra, runtime=predictor.runtime, space=space)
    if args.json:
        print(json.dumps({**summary, "summary_file": str(args.out / "summary.json")}, indent=2))
    else:
        _print_summary(summary, [limit.name for limit in limits], args.out)


def _search_with_measured_winners(args: argparse.Namespace, space, predictor, run_search):
    """``hat search --measure-winners``: measure, refit (one predictor file a round in --out), search again."""
    from hat.latency import LatencyPredictor
    from hat.pipeline import collector_for_profile, fit_predictor, search_with_measured_winners

    profile = args.measure_winners
    collector = collector_for_profile(profile, space, args.ray_address, args.ray_resource)

    def refit(round_: int) -> LatencyPredictor:
        path = args.out / f"predictor_round{round_}.json"
        if not (args.resume and path.is_file()):
            tables = profile if (profile / "tables.json").is_file() else None
            refitted, _ = fit_predictor(profile / "dataset.csv", tables, kind=predictor.kind, seed=args.seed,
                                        labels=predictor.info.get("labels") or "auto")
            refitted.save(path)
        return LatencyPredictor.load(path)

    return search_with_measured_winners(run_search, refit, predictor, collector, rounds=args.winner_rounds,
                                        top=args.winners, tolerance=args.winner_tolerance)


def _print_summary(summary: dict, limited: list[str], out: Path) -> None:
    names = limited + [name for name in ("flops",) if name not in limited]
    for item in summary["results"]:
        values = "".join(f", {name} {item[name]:.4g}" for name in names)
        print(f"<= {item['constraint_ms']:g} ms ({summary['latency_unit']}): loss {item['loss']:.4f} at "
              f"{item['predicted_latency_ms']:.2f} ms predicted{values} -> {out / item['config_file']}")
    for item in summary.get("winner_rounds", []):
        print(f"round {item['round']}: {item['measured']} winners measured, worst {100 * item['worst_error']:+.1f}% "
              f"off their prediction")
    if "winner_rounds" in summary:
        print(f"predictor of the last round: {summary['predictor']}")
    if "finalists" in summary:
        count = sum(len(files) for files in summary["finalists"].values())
        print(f"{count} finalists to fine-tune and compare: {out / 'finalists' / 'finalists.json'}")
    print(f"{summary['evaluations']} fitness evaluations in {summary['wall_time_s']:.1f} s; summary: {out / 'summary.json'}")
