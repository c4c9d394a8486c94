"""Finalists: a search's candidates spread over a constraint's latency range, to fine-tune and compare.

Inherited validation loss can rank SubTransformers differently from how they rank once fine-tuned:
a SuperTransformer trained by the sandwich rule trains its smallest SubTransformer on every update,
so near the smallest the inherited loss is lowest although larger models fine-tune better
(BENCHMARKS.md, "Does inherited loss rank SubTransformers as fine-tuning does?"). Instead of the
single lowest inherited loss, the finalists are the lowest of each of ``count`` equal bands of the
predicted latency the search explored under a constraint; the search's own pick is always among
them. Fine-tuning each and keeping the lowest fine-tuned validation loss chooses among them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from hat.errors import HatError
from hat.io import atomic_write_json, atomic_write_text
from hat.space import SubTransformerConfig


@dataclass(frozen=True)
class Finalist:
    """One finalist: its predicted latency and inherited validation loss as the search scored them."""

    archid: str
    latency_ms: float
    loss: float
    config: SubTransformerConfig


def scored_under(history: Iterable[dict[str, Any]], constraint_ms: float) -> list[Finalist]:
    """Every distinct SubTransformer a search scored under ``constraint_ms`` (rows of its history)."""
    seen: dict[str, Finalist] = {}
    for row in history:
        if abs(float(row["constraint_ms"]) - constraint_ms) > 1e-6 or row["archid"] in seen:
            continue
        config = row["config"]
        config = SubTransformerConfig.from_dict(json.loads(config) if isinstance(config, str) else config)
        seen[row["archid"]] = Finalist(row["archid"], float(row["latency_ms"]), float(row["loss"]), config)
    return list(seen.values())


def spread_finalists(candidates: list[Finalist], count: int, per_band: int = 1) -> list[Finalist]:
    """The ``per_band`` lowest-loss candidates of each of ``count`` equal bands of predicted
    latency, fastest first.

    Bands span the candidates' own latency range; a band with fewer candidates gives fewer, so
    there may be fewer than ``count * per_band``. Ties of loss go to the smaller archid, so the
    choice is deterministic."""
    if min(count, per_band) < 1:
        raise HatError(f"finalists: need at least 1 band and 1 per band, got {count} and {per_band}")
    if not candidates:
        return []
    low = min(c.latency_ms for c in candidates)
    width = (max(c.latency_ms for c in candidates) - low) / count or 1.0
    bands: dict[int, list[Finalist]] = {}
    for candidate in sorted(candidates, key=lambda c: (c.loss, c.archid)):
        band = bands.setdefault(min(int((candidate.latency_ms - low) / width), count - 1), [])
        if len(band) < per_band:
            band.append(candidate)
    return sorted((c for band in bands.values() for c in band), key=lambda c: c.latency_ms)


def write_finalists(history: list[dict[str, Any]], constraints: list[float], count: int,
                    out_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Each constraint's finalists as YAML configs in ``out_dir/finalists/<constraint>ms/`` and an
    index ``finalists.json``: constraint -> its finalists, fastest first, each with its archid,
    predicted latency, inherited loss and config file (relative to ``out_dir``); returns the index."""
    root = Path(out_dir) / "finalists"
    index: dict[str, list[dict[str, Any]]] = {}
    for constraint in constraints:
        folder = root / f"{constraint:g}ms"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for finalist in spread_finalists(scored_under(history, constraint), count):
            path = folder / f"{finalist.archid}.yaml"
            header = (f"# finalist under {constraint:g} ms: predicted {finalist.latency_ms:.2f} ms, "
                      f"inherited validation loss {finalist.loss:.4f}\n")
            atomic_write_text(path, header + finalist.config.to_yaml())
            files.append({"archid": finalist.archid, "latency_ms": finalist.latency_ms, "loss": finalist.loss,
                          "config_file": str(path.relative_to(out_dir))})
        index[f"{constraint:g}"] = files
    atomic_write_json(root / "finalists.json", index)
    return index
