"""``hat demo``: the whole pipeline on the embedded synthetic corpus."""
from __future__ import annotations

import argparse
from pathlib import Path

from hat.cli.options import int_at_least
from hat.io import check_output_dir


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="the whole pipeline on the embedded synthetic corpus (~20 min on 2 cores)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (re-running it resumes)")
    demo.add_argument("--quick", action="store_true", help="a smaller run (fewer updates, samples and generations)")
    demo.add_argument("--threads", type=int_at_least(1, 1024), default=1, help="threads for latency measurement and search")
    demo.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                      help="onnxruntime weights the demo profiles, searches under and verifies (the deployed runtime)")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from hat.demo import Demo, DemoSettings

    check_output_dir(args.out)
    make = DemoSettings.quick if args.quick else DemoSettings
    demo = Demo(make(out=args.out, threads=args.threads, precision=args.precision))
    report = demo.run()
    print("\n".join(demo.summary_lines() + [f"report: {report}"]))
    return 0
