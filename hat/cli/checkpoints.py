"""``hat import-hat`` (a checkpoint of HAT's fairseq fork as one of this project's) and ``hat average``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hat.cli.options import int_at_least
from hat.io import check_output_file


def register(commands: argparse._SubParsersAction) -> None:
    imp = commands.add_parser("import-hat", help="convert a HAT SuperTransformer/SubTransformer checkpoint")
    imp.add_argument("checkpoint", type=Path, help="checkpoint saved by HAT's fairseq fork (.pt)")
    imp.add_argument("--data", type=Path, required=True, help="data-bin with the dictionaries the checkpoint was trained with")
    imp.add_argument("--space", type=Path, help="search space YAML to use (default: the one in the checkpoint's args)")
    imp.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    imp.add_argument("--json", action="store_true", help="machine-readable output")
    imp.set_defaults(handler=cmd_import_hat)

    avg = commands.add_parser("average", help="average the weights of several checkpoints (as HAT does on IWSLT)")
    which = avg.add_mutually_exclusive_group(required=True)
    which.add_argument("--inputs", type=Path, nargs="+", help="checkpoints to average")
    which.add_argument("--save-dir", type=Path, help="average the newest epoch/update checkpoints of this folder")
    avg.add_argument("--last", type=int_at_least(2), default=10, help="with --save-dir: how many checkpoints")
    avg.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    avg.set_defaults(handler=cmd_average)


def cmd_import_hat(args: argparse.Namespace) -> int:
    from hat.hat_import import import_hat_checkpoint, write_checkpoint
    from hat.space import SearchSpace

    check_output_file(args.out, "checkpoint")
    space = SearchSpace.from_yaml(args.space) if args.space else None
    imported = import_hat_checkpoint(args.checkpoint, space)
    out = write_checkpoint(imported, args.out, args.data)
    fixed = imported.fixed_config
    result = {"out": str(out), "space": imported.space.name, "space_fingerprint": imported.space.fingerprint,
              "src_vocab": imported.supernet.src_vocab_size, "tgt_vocab": imported.supernet.tgt_vocab_size,
              "subtransformer": fixed.to_dict() if fixed else None, "num_updates": imported.num_updates}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        kind = f"SubTransformer {fixed.summary()}" if fixed else "SuperTransformer"
        print(f"{args.checkpoint}: {kind} of space {imported.space.fingerprint} -> {out}")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from hat.checkpoints import average_checkpoints, epoch_checkpoints

    check_output_file(args.out, "checkpoint")
    paths = args.inputs or epoch_checkpoints(args.save_dir, args.last)
    print(f"averaged {len(paths)} checkpoints ({paths[0].name} .. {paths[-1].name}) -> "
          f"{average_checkpoints(paths, args.out)}")
    return 0
