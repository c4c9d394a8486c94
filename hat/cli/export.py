"""``hat export``, ``hat translate`` and ``hat verify``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hat.cli.options import finite_float, float_at_least, int_at_least, positive_float
from hat.errors import HatError
from hat.io import check_output_dir, read_text


def register(commands: argparse._SubParsersAction) -> None:
    ex = commands.add_parser("export", help="write a standalone SubTransformer (optionally ONNX, int8)")
    ex.add_argument("--checkpoint", type=Path, required=True, help="SuperTransformer (or fine-tuned SubTransformer) checkpoint")
    ex.add_argument("--config", type=Path, help="SubTransformer config (default: the checkpoint's own, or the largest)")
    ex.add_argument("--data", type=Path, required=True, help="data-bin folder (dictionaries, sentencepiece models)")
    ex.add_argument("--out", type=Path, required=True, help="model folder to write")
    ex.add_argument("--onnx", action="store_true", help="also export encoder and decoder-step ONNX graphs")
    ex.add_argument("--quantize", choices=["int8"], help="onnxruntime dynamic int8 quantization of both graphs")
    ex.add_argument("--json", action="store_true", help="print the manifest of the exported model as JSON")
    ex.set_defaults(handler=cmd_export)

    tr = commands.add_parser("translate", help="translate stdin (or --input) with an exported model")
    tr.add_argument("--model", type=Path, required=True, help="exported model folder (hat export)")
    tr.add_argument("--backend", choices=["onnxruntime", "torch"], default="onnxruntime", help="runtime that runs the model")
    tr.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="weights to run (int8 needs an export with --quantize int8)")
    tr.add_argument("--beam", type=int_at_least(1, 64), default=5, help="beam size (1: greedy)")
    tr.add_argument("--lenpen", type=finite_float, default=1.0, help="length penalty of the beam search")
    tr.add_argument("--threads", type=int_at_least(1, 1024), help="intra-op threads (default: the runtime's own choice)")
    tr.add_argument("--input", type=Path, help="text file to translate, one sentence a line (default: stdin)")
    tr.set_defaults(handler=cmd_translate)

    ve = commands.add_parser("verify", help="measured vs predicted latency of an exported model")
    ve.add_argument("--model", type=Path, required=True, help="exported model folder (hat export)")
    ve.add_argument("--predictor", type=Path, required=True, help="latency predictor JSON (hat predictor fit)")
    ve.add_argument("--constraint", type=positive_float(), help="fail (exit 1) if measured latency exceeds it beyond --tolerance")
    ve.add_argument("--tolerance", type=float_at_least(0), default=0.05, help="allowed excess over --constraint (fraction)")
    ve.add_argument("--backend", choices=["onnxruntime", "torch"], help="runtime to measure (default: the predictor's)")
    ve.add_argument("--precision", choices=["fp32", "int8"], help="weights to measure (default: the predictor's)")
    ve.add_argument("--allow-mismatch", action="store_true",
                    help="measure on another runtime or precision than the predictor was fitted for")
    ve.add_argument("--runs", type=int_at_least(1, 100000), help="timed runs (default: the predictor's protocol)")
    ve.add_argument("--passes", type=int_at_least(1, 1000), default=1,
                    help="measure this many times, each with the reference model beside it, and report the median "
                         "pass (a shared machine's speed swings between few-second windows)")
    ve.add_argument("--json", action="store_true", help="print the report as JSON")
    ve.set_defaults(handler=cmd_verify)


def cmd_export(args: argparse.Namespace) -> int:
    from hat.export.model_dir import export_model

    check_output_dir(args.out)
    out = export_model(args.checkpoint, args.config, args.data, args.out, onnx=args.onnx, quantize=args.quantize)
    if args.json:
        from hat.export.model_dir import read_manifest

        print(json.dumps({"out": str(out), **read_manifest(out)}, indent=2))
    else:
        print(out)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from hat.export.runtime import Translator

    translator = Translator(args.model, args.backend, args.precision, args.threads)
    if args.input is not None:
        lines = read_text(args.input, "input file").splitlines()
    else:
        try:
            lines = sys.stdin.buffer.read().decode("utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise HatError(f"input is not UTF-8 text (byte {err.start})", "<stdin>") from None
    for line in lines:
        print(translator.translate(line, beam=args.beam, lenpen=args.lenpen) if line.strip() else "", flush=True)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from hat.export.verify import verify_model
    from hat.latency.protocol import Protocol

    protocol = None
    if args.runs is not None:
        from hat.latency.predictor import LatencyPredictor

        stored = LatencyPredictor.load(args.predictor).info.get("protocol") or {}
        protocol = Protocol(**{**stored, "runs": args.runs, "max_runs": max(args.runs, stored["max_runs"]) if stored.get("max_runs") else 0})
    report = verify_model(args.model, args.predictor, backend=args.backend, precision=args.precision, protocol=protocol,
                          allow_mismatch=args.allow_mismatch, passes=args.passes)
    over = args.constraint is not None and report["measured_ms"] > args.constraint * (1 + args.tolerance)
    report.update(constraint_ms=args.constraint, tolerance=args.tolerance, within_constraint=not over)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['model']} ({report['archid']}, {report['backend']} {report['precision']}, statistic "
              f"{report['statistic']})")
        print(f"  measured : encoder {report['measured_encoder_ms']:.2f} ms + decoder {report['measured_decoder_ms']:.2f} ms"
              f" = {report['measured_ms']:.2f} ms (± {report['measured_std_ms']:.2f})")
        print(f"  predicted: {report['predicted_ms']:.2f} ms (relative error {100 * report['relative_error']:+.1f}%)")
        if "machine_factor" in report:
            print(f"  machine  : reference model {report['reference_now_ms']:.2f} ms now vs {report['reference_profiled_ms']:.2f} ms "
                  f"when profiled (x{report['machine_factor']:.3f}); error at today's speed "
                  f"{100 * report['normalised_error']:+.1f}%")
        if "passes" in report:
            key = "normalised_error" if "machine_factor" in report else "relative_error"
            errors = sorted(100 * one[key] for one in report["passes"])
            print(f"  passes   : {len(errors)}, errors {errors[0]:+.1f}% to {errors[-1]:+.1f}%; the median pass is shown")
        for note in report["notes"]:
            print(f"  note: {note}")
        if args.constraint is not None:
            verdict = "EXCEEDS" if over else "meets"
            print(f"  {verdict} the {args.constraint:g} ms constraint (tolerance {100 * args.tolerance:.0f}%)")
    return 1 if over else 0
