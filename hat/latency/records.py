"""What the collector records: end-to-end dataset rows, the reference model's timings per chunk,
the order in which several datasets' configs are measured,
and how the models of a file were built for timing."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hat.latency.dataset import COLUMNS
from hat.latency.features import HAT_FEATURES, hat_features
from hat.space import SubTransformerConfig

Result = dict[str, Any]  # {"encoder": stats dict or None, "decoder": stats dict or None}
REFERENCE_FILE = "reference.csv"


def interleave(parts: dict[str, Sequence[Any]]) -> list[tuple[str, Any]]:
    """(name, item) pairs of every part, merged so that each part is spread evenly over the list.

    >>> [n for n, _ in interleave({"a": [1, 2, 3, 4], "b": [5, 6]})]
    ['a', 'b', 'a', 'a', 'b', 'a']
    """
    keyed = [((index + 0.5) / len(items), order, name, item)
             for order, (name, items) in enumerate(parts.items()) for index, item in enumerate(items)]
    return [(name, item) for _, _, name, item in sorted(keyed, key=lambda k: (k[0], k[1]))]


def part_ms(result: Result, part: str) -> float:
    stats = result[part]
    return float(stats.get("value", stats["mean"]))


def dataset_row(config: SubTransformerConfig, result: Result, runs: int, reference_ms: float) -> dict[str, Any]:
    row: dict[str, Any] = {"archid": config.archid, "config": config.to_json()}
    row.update(zip(HAT_FEATURES, (f"{v:g}" for v in hat_features(config))))
    for part in ("encoder", "decoder"):
        stats = result[part]
        row[f"latency_mean_{part}"] = f"{part_ms(result, part):.4f}"  # the protocol's statistic
        row[f"latency_std_{part}"] = f"{stats['std']:.4f}"
        row[f"latency_median_{part}"] = f"{stats['median']:.4f}"
        row[f"latency_iqr_{part}"] = f"{stats['iqr']:.4f}"
    row["runs"] = runs
    row["reference_ms"] = f"{reference_ms:.4f}"
    assert set(row) == set(COLUMNS)
    return row


def read_reference_rows(path: Path) -> list[dict[str, str]]:
    """The reference timings of earlier chunks (``reference.csv``), each row checked."""
    from hat.io import file_content, finite, read_text

    if not path.is_file():
        return []
    rows = list(csv.DictReader(io.StringIO(read_text(path, "reference timings file"))))
    for line, row in enumerate(rows, start=2):
        with file_content(path, f"line {line} of the reference timings"):
            for column in ("encoder_ms", "decoder_ms"):
                finite(float(row[column]), column, positive=True)
            if row.get("accepted") not in (None, "", "0", "1"):
                raise ValueError(f"accepted must be 0 or 1, got {row['accepted']!r}")
    return rows


def reference_noise(out_dir: str | Path) -> dict[str, float] | None:
    """Spread of the reference model's total latency over every chunk measured (re-measured ones
    included, so it describes the machine): mean, std, CV, max/min, and how many were re-measured."""
    path = Path(out_dir) / REFERENCE_FILE
    if not path.is_file():
        return None
    rows = read_reference_rows(path)
    totals = np.array([float(r["encoder_ms"]) + float(r["decoder_ms"]) for r in rows])
    if len(totals) == 0:
        return None
    return {
        "chunks": int(len(totals)), "mean_ms": float(totals.mean()), "std_ms": float(totals.std()),
        "cv": float(totals.std() / totals.mean()), "max_over_min": float(totals.max() / totals.min()),
        "remeasured": sum(r.get("accepted") == "0" for r in rows),
    }


# What files written before latency files recorded ``graphs`` were timed on, by backend.
GRAPHS_BEFORE_RECORDING = {"onnxruntime": "composed-1", "torch": "eager", "cuda": "eager"}


def recorded_graphs(meta: dict[str, Any]) -> str | None:
    """How the models of a latency file were built for timing (``graphs`` in its header)."""
    if "graphs" in meta:
        return str(meta["graphs"])
    described = [meta.get(part) for part in ("reference", "device")]
    backends = [part.get("backend") for part in described if isinstance(part, dict) and part.get("backend")]
    return GRAPHS_BEFORE_RECORDING.get(backends[0]) if backends else None
