"""Exporting onnxruntime pieces with torch's op table built once per process, against rebuilt per export.

Exports ``--pieces`` of the pieces ``hat profile`` exports for a space's lookup tables (spread
evenly over them) in one process on one thread, each piece twice in a row: once as torch ships
the exporter (table rebuilt) and once with HAT's reuse (:mod:`hat.export.exporter`), the order
alternating from piece to piece so both modes see the same machine. Reports per-piece seconds of
each mode, their ratio, and whether every pair of files is byte-identical.

    python experiments/bench_piece_export.py --space wmt14_en_de --pieces 12
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hat.export.ort_backend import table_pieces
from hat.space import SearchSpace


def export_seconds(space: SearchSpace, key: tuple, vocab: int, reuse: bool, path: Path) -> float:
    from hat.export.pieces import _piece_model, export_piece

    start = time.perf_counter()
    export_piece(*_piece_model(space, key, vocab, 0), path, reuse_registry=reuse)
    return time.perf_counter() - start


def at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got '{text}'")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="wmt14_en_de")
    parser.add_argument("--pieces", type=at_least_one, default=12, help="pieces to export (at least 1)")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from hat.errors import HatError

    try:
        space = SearchSpace.from_yaml(args.space)
    except HatError as error:
        print(f"bench_piece_export: error: {error}", file=sys.stderr)
        sys.exit(2)
    keys = table_pieces(space)
    chosen = [keys[int(i)] for i in np.linspace(0, len(keys) - 1, args.pieces)]
    export_seconds(space, chosen[0], args.vocab, True, Path(tempfile.mkdtemp()) / "first.onnx")  # imports, first table
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for i, key in enumerate(chosen):
            order = (False, True) if i % 2 == 0 else (True, False)
            seconds = {reuse: export_seconds(space, key, args.vocab, reuse, Path(work) / f"{i}_{reuse}.onnx")
                       for reuse in order}
            same = (Path(work) / f"{i}_False.onnx").read_bytes() == (Path(work) / f"{i}_True.onnx").read_bytes()
            rows.append({"piece": "_".join(map(str, key)), "rebuilt_s": seconds[False], "reused_s": seconds[True],
                         "identical": same})
            print(f"{rows[-1]['piece']:32s} rebuilt {seconds[False]:5.2f} s  reused {seconds[True]:5.2f} s  "
                  f"{'identical' if same else 'DIFFERENT'}", flush=True)
    rebuilt, reused = (np.array([r[k] for r in rows]) for k in ("rebuilt_s", "reused_s"))
    summary = {"space": space.name, "pieces": len(rows), "rebuilt_mean_s": float(rebuilt.mean()),
               "reused_mean_s": float(reused.mean()), "ratio_median": float(np.median(reused / rebuilt)),
               "ratio_range": [float((reused / rebuilt).min()), float((reused / rebuilt).max())],
               "all_identical": all(r["identical"] for r in rows), "rows": rows}
    print(f"mean per piece: rebuilt {summary['rebuilt_mean_s']:.2f} s, reused {summary['reused_mean_s']:.2f} s; "
          f"reused/rebuilt median {summary['ratio_median']:.2f} (range {summary['ratio_range'][0]:.2f}-"
          f"{summary['ratio_range'][1]:.2f}); byte-identical: {summary['all_identical']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
