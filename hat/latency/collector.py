"""The latency collector: per-layer tables and end-to-end datasets, measured here or on a Ray node.

Measurements happen in chunks. Inside a chunk, every workload is warmed up, then timed once per
round for ``protocol.runs`` rounds in a rotating order (interleaved), so slow drift of a shared
machine spreads over all workloads instead of biasing some. A fixed reference model is timed in
every chunk; its spread across the run is the measurement noise we report, and a chunk during
which it ran clearly slower than in the chunks before (the machine was busy) is measured again.
After every chunk the results are written atomically, so a killed run resumes without
re-measuring finished work.
"""
from __future__ import annotations

import csv
import io
import logging
import random
from pathlib import Path
from typing import Any, Callable, Sequence
from typing import Protocol as Protocol_

import numpy as np

from hat.errors import HatError
from hat.io import atomic_write_text
from hat.latency.dataset import LatencyDataset, write_dataset
from hat.latency.measure import total_ms as _total
from hat.latency.records import (  # noqa: F401 - reference_noise is re-exported
    REFERENCE_FILE, dataset_row, interleave, part_ms, read_reference_rows, recorded_graphs, reference_noise,
)
from hat.latency.protocol import Protocol
from hat.latency.tables import LatencyTables, table_entries
from hat.space import SearchSpace, SubTransformerConfig

log = logging.getLogger(__name__)

Item = dict[str, Any]  # {"kind": ..., "args": [...]} or {"kind": "model", "config": {...}}
Result = dict[str, Any]  # {"encoder": stats dict or None, "decoder": stats dict or None}
Worker = Callable[[dict, dict], dict]  # (protocol, payload) -> {"device": info, "results": [Result]}
Runner = Callable[[Worker, dict, dict], dict]

TABLES_FILE, DATASET_FILE = "tables.json", "dataset.csv"


class MeasureBackend(Protocol_):
    """What runs the workloads: its ``worker`` (a module-level function, so Ray can ship it) runs on
    the measuring device; ``payload`` runs here and builds what the worker needs, as plain data."""

    name: str
    precision: str
    graphs: str  # how whole models are built for timing; files record it so resuming never mixes two ways
    worker: Worker

    def payload(self, space: SearchSpace, protocol: Protocol, items: list[Item]) -> dict: ...

    def prepare(self, space: SearchSpace, protocol: Protocol, items: list[Item]) -> None:
        """Build, before any timing, what ``payload`` will need for ``items`` (may do nothing)."""


def run_here(worker: Worker, protocol_dict: dict, payload: dict) -> dict:
    """The local runner: the worker runs in this process."""
    return worker(protocol_dict, payload)


def make_backend(backend: str | MeasureBackend) -> MeasureBackend:
    """A backend object; the names ``torch`` and ``cuda`` stand for :class:`TorchBackend`."""
    if not isinstance(backend, str):
        return backend
    if backend in ("torch", "cuda"):
        from hat.latency.workloads import TorchBackend

        return TorchBackend(backend)
    raise HatError(f"backend '{backend}' is given as an object (hat.export.ort_backend.OnnxBackend for onnxruntime)")


def ray_runner(address: str, resource: str) -> Runner:
    """Send each chunk to the node advertising ``resource`` (one at a time) and wait for it."""
    from hat.ray_cluster import connect

    ray = connect(address)
    available = ray.cluster_resources()
    if resource not in available:
        custom = sorted(k for k in available if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:"))
        raise HatError(
            f"no node of the Ray cluster at {address} advertises resource '{resource}' "
            f"(custom resources seen: {', '.join(custom) or 'none'})"
        )
    remote = ray.remote(num_cpus=0, resources={resource: 1}, max_retries=2)(run_here)

    def run(worker: Worker, protocol_dict: dict, payload: dict) -> dict:
        return ray.get(remote.remote(worker, protocol_dict, payload))

    return run


class LatencyCollector:
    """Measure latency tables and end-to-end datasets for one space on one device.

    Example:
        >>> collector = LatencyCollector(space, Protocol(threads=2), out_dir="latency_tables/mycpu")
        >>> tables = collector.collect_tables()
        >>> dataset = collector.collect_dataset(samples=200, seed=0)
    """

    def __init__(
        self,
        space: SearchSpace,
        protocol: Protocol,
        out_dir: str | Path,
        *,
        backend: str | MeasureBackend = "torch",
        runner: Runner | None = None,
        chunk_size: int = 8,
        progress: bool = True,
        steady_tolerance: float = 0.15,
        retries: int = 2,
    ) -> None:
        if chunk_size < 1:
            raise HatError(f"chunk size must be at least 1, got {chunk_size}")
        if steady_tolerance <= 0 or retries < 0:
            raise HatError(f"steady tolerance must be > 0 and retries >= 0, got {steady_tolerance}, {retries}")
        self.steady_tolerance, self.retries = steady_tolerance, retries
        self.space, self.protocol, self.backend = space, protocol, make_backend(backend)
        self.out_dir = Path(out_dir)
        self.runner = runner or run_here
        self.chunk_size = chunk_size
        self.progress = progress
        self.reference = space.smallest()
        self._reference_rows()  # a corrupt reference.csv of an earlier run fails now, not after measuring
        self._device: dict | None = None

    # ---- shared plumbing ------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        if self._device is None:  # described by the measuring device itself
            self._device = self.runner(self.backend.worker, self.protocol.to_dict(),
                                       self.backend.payload(self.space, self.protocol, []))["device"]
        return {
            "format": "hat-latency-v1",
            "space": self.space.name,
            "space_fingerprint": self.space.fingerprint,
            "space_spec": self.space.to_dict(),
            "protocol": self.protocol.to_dict(),
            "device": self._device,
            "reference": self.reference_spec(),
            "graphs": self.backend.graphs,
        }

    def reference_spec(self) -> dict[str, Any]:
        """The reference model timed in every chunk, as ``hat verify`` rebuilds it to gauge the machine's speed."""
        from dataclasses import asdict

        from hat.subtransformer import ModelDims

        dims = ModelDims.for_space(self.space, self.protocol.vocab, self.protocol.vocab)
        return {"config": self.reference.to_dict(include_space=False), "dims": asdict(dims),
                "backend": self.backend.name, "precision": self.backend.precision}

    def _check_existing(self, meta: dict[str, Any], path: Path) -> None:
        """Resuming into a file measured with another space or protocol would mix incomparable rows."""
        if meta.get("space_fingerprint") != self.space.fingerprint:
            raise HatError(f"existing file was measured for space '{meta.get('space')}', not '{self.space.name}'", path)
        if meta.get("protocol") != self.protocol.to_dict():
            raise HatError("existing file was measured with another protocol (src-len/beam/vocab/runs/threads); use a new --out", path)
        found = recorded_graphs(meta)
        if found != self.backend.graphs:
            raise HatError(f"existing file was measured on models built as '{found}', not '{self.backend.graphs}' "
                           "as now (another backend, or an earlier HAT's composing); use a new --out", path)

    def _measure(self, items: list[Item]) -> tuple[list[Result], Result]:
        reference = {"kind": "model", "config": self.reference.to_dict(include_space=False)}
        payload = self.backend.payload(self.space, self.protocol, items + [reference])
        results = self.runner(self.backend.worker, self.protocol.to_dict(), payload)["results"]
        return results[:-1], results[-1]

    def _measure_steady(self, stage: str, items: list[Item]) -> tuple[list[Result], Result]:
        """Measure a chunk; measure it again (up to ``retries`` times) if the machine was busy meanwhile.

        The reference model is timed in every chunk. When it runs more than ``steady_tolerance``
        slower than the median of the chunks accepted so far, something else held the CPU (on a
        shared machine, bursts of 1.5x are common) and every row of that chunk would be slow too.
        Every attempt is recorded in reference.csv; the last one is kept whatever it shows.
        """
        for attempt in range(self.retries + 1):
            results, reference = self._measure(items)
            baseline = self._reference_baseline()
            slower = baseline is not None and _total(reference) > baseline * (1 + self.steady_tolerance)
            last = attempt == self.retries
            self._record_reference(stage, reference, accepted=not slower or last)
            if not slower:
                return results, reference
            log.warning("reference model %.2f ms vs %.2f ms in earlier chunks (+%.0f%%): the machine was busy; %s",
                        _total(reference), baseline, 100 * (_total(reference) / baseline - 1),
                        "keeping this chunk anyway" if last else "measuring the chunk again")
        return results, reference

    def _prepare(self, items: list[Item]) -> None:
        if items and hasattr(self.backend, "prepare"):
            reference = {"kind": "model", "config": self.reference.to_dict(include_space=False)}
            self.backend.prepare(self.space, self.protocol, items + [reference])

    def _reference_rows(self) -> list[dict[str, str]]:
        return read_reference_rows(self.out_dir / REFERENCE_FILE)

    def _reference_baseline(self) -> float | None:
        """Median reference time of the accepted chunks so far (``None`` before the first)."""
        totals = [float(r["encoder_ms"]) + float(r["decoder_ms"]) for r in self._reference_rows()
                  if r.get("accepted") in (None, "", "1")]
        return float(np.median(totals)) if totals else None

    def _record_reference(self, stage: str, result: Result, accepted: bool = True) -> None:
        rows = self._reference_rows()
        rows.append({
            "stage": stage, "index": len(rows),
            "encoder_ms": f"{part_ms(result, 'encoder'):.4f}", "decoder_ms": f"{part_ms(result, 'decoder'):.4f}",
            "accepted": int(accepted),
        })
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["stage", "index", "encoder_ms", "decoder_ms", "accepted"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out_dir / REFERENCE_FILE, out.getvalue())

    def _chunks(self, items: Sequence, desc: str):
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="meas", disable=not self.progress)
        for start in range(0, len(items), self.chunk_size):
            chunk = items[start : start + self.chunk_size]
            yield chunk
            bar.update(len(chunk))
        bar.close()

    # ---- tables -----------------------------------------------------------------------------
    def collect_tables(self) -> LatencyTables:
        """Measure every distinct layer/embedding of the space (skips entries already in the file)."""
        path = self.out_dir / TABLES_FILE
        meta = self._meta()
        if path.is_file():
            tables = LatencyTables.load(path)
            tables.check_space(self.space, path)
            if tables.protocol != self.protocol.to_dict():
                raise HatError("existing tables were measured with another protocol; use a new --out", path)
        else:
            tables = LatencyTables(self.space.name, self.space.fingerprint, meta["protocol"], meta["device"])
        todo = [
            (table, key, args)
            for table, entries in table_entries(self.space).items()
            for key, args in entries
            if key not in tables.tables.get(table, {})
        ]
        log.info("latency tables: %d entries to measure (%d already done)", len(todo),
                 sum(len(v) for v in tables.tables.values()))
        self._prepare([{"kind": t, "args": list(a)} for t, _, a in todo])
        for chunk in self._chunks(todo, "tables"):
            results, reference = self._measure_steady("tables", [{"kind": t, "args": list(a)} for t, _, a in chunk])
            for (table, key, _), result in zip(chunk, results):
                entry = dict(result["encoder"] or result["decoder"])
                entry["reference_ms"] = _total(reference)
                tables.tables.setdefault(table, {})[key] = entry
            tables.save(path)
        return tables

    # ---- end-to-end dataset -------------------------------------------------------------------
    def sample_configs(self, samples: int, seed: int) -> list[SubTransformerConfig]:
        """``samples`` distinct configs drawn with HAT's sampling (deterministic in ``seed``)."""
        rng, seen, configs = random.Random(seed), set(), []
        limit = samples * 100
        while len(configs) < samples and limit:
            config = self.space.sample(rng=rng)
            limit -= 1
            if config.archid not in seen:
                seen.add(config.archid)
                configs.append(config)
        return configs

    def collect_dataset(
        self, samples: int, seed: int = 0, configs: Sequence[SubTransformerConfig] | None = None,
        file_name: str = DATASET_FILE,
    ) -> LatencyDataset:
        """Measure ``samples`` sampled SubTransformers whole (or the given ``configs``); resumable."""
        wanted = list(configs) if configs is not None else self.sample_configs(samples, seed)
        return self.collect_datasets({file_name: wanted})[file_name]

    def collect_datasets(self, parts: dict[str, Sequence[SubTransformerConfig]]) -> dict[str, LatencyDataset]:
        """Measure several end-to-end datasets (file name -> configs) in the same chunks; resumable.

        The configs of all files are interleaved in proportion, so a training set and its test set
        are measured side by side: a machine that speeds up or slows down during the run shifts
        both alike instead of making the test set look faster or slower than the training set.
        """
        existing = {name: self._existing(self.out_dir / name) for name in parts}
        metas = {name: meta for name, (meta, _) in existing.items()}
        rows = {name: rows for name, (_, rows) in existing.items()}
        done = {name: {row["archid"] for row in rows[name]} for name in parts}
        todo = interleave({name: [c for c in configs if c.archid not in done[name]] for name, configs in parts.items()})
        log.info("end-to-end datasets: %d configs to measure (%s already done)", len(todo),
                 ", ".join(f"{len(r)} in {n}" for n, r in rows.items()))
        self._prepare([{"kind": "model", "config": c.to_dict(include_space=False)} for _, c in todo])
        for chunk in self._chunks(todo, "models"):
            results, reference = self._measure_steady(
                "dataset", [{"kind": "model", "config": c.to_dict(include_space=False)} for _, c in chunk])
            for (name, config), result in zip(chunk, results):
                rows[name].append(dataset_row(config, result, self.protocol.runs, _total(reference)))
            for name in {name for name, _ in chunk}:
                write_dataset(self.out_dir / name, metas[name], rows[name])
        return {name: LatencyDataset.load(self.out_dir / name, fmt="hat-latency") for name in parts}

    def _existing(self, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Header and rows of a dataset file measured earlier (checked against this run), or a new header."""
        if not path.is_file():
            return self._meta(), []
        existing = LatencyDataset.load(path, fmt="hat-latency")
        self._check_existing(existing.meta, path)
        return existing.meta, list(existing.rows)
