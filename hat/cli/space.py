"""``hat space show|sample|check``."""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from hat.cli.options import int_at_least
from hat.errors import HatError
from hat.io import check_output_dir, safe_file_name
from hat.space import SearchSpace, SubTransformerConfig


def register(commands: argparse._SubParsersAction) -> None:
    space = commands.add_parser("space", help="inspect search spaces and configs")
    sub = space.add_subparsers(dest="space_command", required=True, metavar="ACTION", help="one of the actions below")

    show = sub.add_parser("show", help="dimensions, choices and size of a space")
    show.add_argument("space", type=Path, help="search space YAML")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_show)

    sample = sub.add_parser("sample", help="sample SubTransformer configs (HAT's uniform sampling)")
    sample.add_argument("space", type=Path, help="search space YAML")
    sample.add_argument("--n", type=int_at_least(1, 100000), default=1, help="how many configs")
    sample.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    sample.add_argument("--out", type=Path, help="write one YAML file per config into this folder")
    sample.set_defaults(handler=cmd_sample)

    check = sub.add_parser("check", help="check a config against a space; print parameter (and FLOP) counts")
    check.add_argument("space", type=Path, help="search space YAML")
    check.add_argument("config", type=Path, help="SubTransformer config YAML (ours or HAT's format)")
    check.add_argument("--src-vocab", type=int_at_least(1), help="source vocabulary size (for counts with embeddings)")
    check.add_argument("--tgt-vocab", type=int_at_least(1), help="target vocabulary size (default: --src-vocab)")
    check.add_argument("--flops", action="store_true",
                       help="also count FLOPs as HAT reports them (at the space's flops_length tokens)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=cmd_check)


def cmd_show(args: argparse.Namespace) -> int:
    space = SearchSpace.from_yaml(args.space)
    if args.json:
        data = space.to_dict()
        data.update(size=space.size(), fingerprint=space.fingerprint, genome_length=len(space.genes))
        print(json.dumps(data, indent=2))
    else:
        print(space.describe())
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    space = SearchSpace.from_yaml(args.space)
    if args.out:
        check_output_dir(args.out)
    rng = random.Random(args.seed)
    configs = [space.sample(rng=rng) for _ in range(args.n)]
    if args.out:
        for config in configs:
            path = args.out / safe_file_name(f"{space.name}_{config.archid}.yaml")
            config.to_yaml(path)
            print(path)
    else:
        print("---\n".join(config.to_yaml() for config in configs), end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from hat.subtransformer import ModelDims, count_parameters

    space = SearchSpace.from_yaml(args.space)
    config = SubTransformerConfig.from_yaml(args.config)
    try:
        space.validate(config)
    except HatError as err:
        raise HatError(str(err), args.config) from None
    src_vocab = args.src_vocab
    tgt_vocab = args.tgt_vocab if args.tgt_vocab is not None else src_vocab
    if src_vocab is not None and (src_vocab < 1 or tgt_vocab < 1):
        raise HatError("vocabulary sizes must be positive")
    if space.share_all_embeddings and src_vocab is not None and src_vocab != tgt_vocab:
        raise HatError(f"space '{space.name}' shares embeddings: --src-vocab and --tgt-vocab must be equal")
    dims = ModelDims.for_space(space, src_vocab or 0, tgt_vocab or 0)
    result = {
        "valid": True,
        "space": space.name,
        "archid": config.archid,
        "parameters_without_embeddings": count_parameters(config, dims, include_embeddings=False),
        "parameters": count_parameters(config, dims) if src_vocab is not None else None,
    }
    if args.flops:
        from hat.space.flops import count_flops

        result.update(flops=count_flops(config, space.qkv_dim, space.flops_length), flops_length=space.flops_length)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.config}: valid in space '{space.name}' (archid {config.archid})")
        print(f"  {config.summary()}")
        print(f"  parameters without embeddings: {result['parameters_without_embeddings']:,}")
        if result["parameters"] is not None:
            print(f"  parameters with embeddings:    {result['parameters']:,}")
        if args.flops:
            print(f"  FLOPs: {result['flops'] / 1e9:.2f} G ({result['flops']:,}; source and target of "
                  f"{space.flops_length} tokens, embeddings and output projection excluded, as HAT reports them)")
    return 0
