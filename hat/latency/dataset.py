"""End-to-end latency datasets: one measured SubTransformer per row, in CSV.

Our files start with one comment line ``# hat-latency {json}`` (space, protocol, device) and use
HAT's column names for the ten features and the latency mean/std (``latency_mean_*`` holds the
protocol's statistic, e.g. the 25th percentile of the timed rounds), so HAT's published CSVs
(``--format hat``: the same columns, no config, no header line) read through the same code.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hat.errors import HatError
from hat.io import atomic_write_text, parse_json, read_text
from hat.latency.features import HAT_FEATURES
from hat.space import SubTransformerConfig

HEADER_PREFIX = "# hat-latency "
LATENCY_COLUMNS = ("latency_mean_encoder", "latency_mean_decoder", "latency_std_encoder", "latency_std_decoder")
EXTRA_COLUMNS = (
    "latency_median_encoder", "latency_median_decoder", "latency_iqr_encoder", "latency_iqr_decoder", "runs",
    "reference_ms",  # the reference model's total, timed in the same chunk (the machine's speed then)
)
COLUMNS = ("archid", "config") + HAT_FEATURES + LATENCY_COLUMNS + EXTRA_COLUMNS


@dataclass
class LatencyDataset:
    """Rows of (features, encoder ms, decoder ms), with configs when the file has them."""

    features: np.ndarray  # (N, 10) HAT's averaged features
    encoder_ms: np.ndarray  # (N,) the protocol's statistic (older files: trimmed mean)
    decoder_ms: np.ndarray
    configs: list[SubTransformerConfig] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def total_ms(self) -> np.ndarray:
        return self.encoder_ms + self.decoder_ms

    def __len__(self) -> int:
        return len(self.encoder_ms)

    def reference_times(self) -> np.ndarray:
        """Each row's ``reference_ms``: the reference model's total, timed in the row's chunk (NaN if absent)."""
        return np.array([float(row.get("reference_ms") or "nan") for row in self.rows] or [np.nan] * len(self))

    def at_reference_speed(self, reference_ms: float) -> "LatencyDataset":
        """The rows as they would have measured had the machine run the reference model in
        ``reference_ms``: each row scaled by ``reference_ms`` over its own chunk's reference time."""
        times = self.reference_times()
        if not np.all(np.isfinite(times) & (times > 0)):
            raise HatError("the rows carry no reference timing (reference_ms) to scale them to one machine speed")
        factor = reference_ms / times
        return LatencyDataset(self.features, self.encoder_ms * factor, self.decoder_ms * factor, self.configs,
                              self.meta, self.rows)

    def subset(self, index: np.ndarray) -> "LatencyDataset":
        configs = None if self.configs is None else [self.configs[i] for i in index]
        rows = [self.rows[i] for i in index] if self.rows else []
        return LatencyDataset(self.features[index], self.encoder_ms[index], self.decoder_ms[index], configs, self.meta, rows)

    @classmethod
    def load(cls, path: str | Path, fmt: str = "auto") -> "LatencyDataset":
        """Read our CSV or HAT's (``fmt``: auto, hat, hat-latency); problems are one-line errors."""
        path = Path(path)
        text = read_text(path, "latency dataset")
        meta: dict[str, Any] = {}
        if text.startswith(HEADER_PREFIX):
            first, _, text = text.partition("\n")
            meta = parse_json(first[len(HEADER_PREFIX):], path, "the header line")
            if not isinstance(meta, dict):
                raise HatError("the header line must hold a JSON mapping", path)
        if fmt == "hat-latency" and not meta:
            raise HatError("not a hat-latency file (no '# hat-latency' header line); use --format hat", path)
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise HatError("latency dataset is empty", path)
        required = HAT_FEATURES + LATENCY_COLUMNS[:2]
        missing = [c for c in required if c not in reader.fieldnames]
        if missing:
            raise HatError(f"missing column(s): {', '.join(missing)}", path)
        with_configs = fmt != "hat" and "config" in reader.fieldnames
        rows, features, enc, dec, configs = [], [], [], [], []
        for line, row in enumerate(reader, start=2 + bool(meta)):
            if None in row or any(row[c] is None for c in required):
                raise HatError(f"line {line}: wrong number of fields (truncated file?)", path)
            values = []
            for column in required:
                try:
                    value = float(row[column])
                except ValueError:
                    raise HatError(f"line {line}: {column} = {row[column]!r} is not a number", path) from None
                if not math.isfinite(value) or value < 0:
                    raise HatError(f"line {line}: {column} = {row[column]} (must be a finite, non-negative number)", path)
                values.append(value)
            if values[10] + values[11] <= 0:
                raise HatError(f"line {line}: a latency of 0 ms is not a measurement", path)
            features.append(values[:10])
            enc.append(values[10])
            dec.append(values[11])
            if with_configs:
                try:
                    configs.append(SubTransformerConfig.from_json(row["config"]))
                except HatError as err:
                    raise HatError(f"line {line}: {err}", path) from None
            rows.append(row)
        if not rows:
            raise HatError("latency dataset has a header but no rows", path)
        return cls(
            np.array(features), np.array(enc), np.array(dec), configs if with_configs else None, meta, rows
        )


def dataset_text(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    out.write(HEADER_PREFIX + json.dumps(meta, sort_keys=True) + "\n")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_dataset(path: str | Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """Write the whole file atomically (called after every measured chunk)."""
    atomic_write_text(path, dataset_text(meta, rows))
