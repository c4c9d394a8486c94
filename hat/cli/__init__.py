"""The ``hat`` command line. Each command group lives in its own module and registers itself."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from hat.errors import HatError

# Command-group modules, imported when the parser is built; each must import
# only what its commands need at parse time (fairseq and onnxruntime are imported inside handlers).
COMMAND_MODULES = ("hat.cli.space", "hat.cli.latency", "hat.cli.train", "hat.cli.search", "hat.cli.export",
                   "hat.cli.demo", "hat.cli.checkpoints")

# Top-level modules of the optional extras -> the extra that installs them.
EXTRAS = {"fairseq": "train", "fairseq_cli": "train", "sacrebleu": "train", "sentencepiece": "train",
          "omegaconf": "train", "hydra": "train", "ray": "ray", "onnx": "onnx", "onnxruntime": "onnx",
          "onnxscript": "onnx", "matplotlib": "plots"}


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one worth showing (not None, not a switch's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.required:
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """Option errors as one line, ``hat: error: <problem>`` with exit code 2, like every other bad input."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("hat").strip()
        self.exit(2, f"hat: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """One line for an optional dependency that is not installed, or None for any other missing module."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra = EXTRAS[top]
    return f"this needs the '{extra}' extra, and {top} is not installed: pip install 'hat-nas[{extra}]'"


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = OneLineParser(prog="hat", description="Hardware-aware Transformer architecture search.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="everything on the console: fairseq's log, library warnings, debug messages")
    parser.add_argument("--version", action="version", version=f"hat {_version()}", help="print the version")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="run hat COMMAND --help for its options")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    from hat.logs import setup_console

    setup_console(args.verbose)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except HatError as err:
        print(f"hat: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        message = missing_extra(err)
        if message is None:
            raise
        print(f"hat: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:
            raise
        print(f"hat: error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hat: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from hat import __version__

    return __version__


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
