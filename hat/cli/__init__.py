"""The ``hat`` command line. Each command group lives in its own module and registers itself."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from hat.errors import HatError

# Command-group modules, imported when the parser is built; each must import
# only what its commands need at parse time (fairseq and onnxruntime are imported inside handlers).
COMMAND_MODULES = ("hat.cli.space", "hat.cli.latency", "hat.cli.train", "hat.cli.search", "hat.cli.export")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="hat", description="Hardware-aware Transformer architecture search.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        stream=sys.stderr,
    )
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except HatError as err:
        print(f"hat: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hat: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
