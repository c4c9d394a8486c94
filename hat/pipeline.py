"""Pipeline steps shared by the ``hat`` command line, ``hat demo`` and ``experiments/``.

Each step is a library function with every check the step needs, so the three callers cannot
disagree: how the separate latency test set is drawn, what a predictor is fitted from, what the
feasible latency range of a space is.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from hat.errors import HatError
from hat.space import SearchSpace, SubTransformerConfig

MIN_ROWS_TO_FIT = 10


def separate_test_configs(collector: Any, samples: int, test_samples: int, seed: int) -> list[SubTransformerConfig]:
    """``test_samples`` configs none of which is among the ``samples`` training configs of ``seed``.

    They are the first unseen configs of the ``seed + 1`` stream, so the set does not depend on how
    many were drawn to find them.
    """
    train_ids = {c.archid for c in collector.sample_configs(samples, seed)}
    pool = samples + 2 * test_samples
    while True:
        drawn = collector.sample_configs(pool, seed + 1)
        test = [c for c in drawn if c.archid not in train_ids][:test_samples]
        if len(test) == test_samples or len(drawn) < pool:  # enough, or the space has no more
            return test
        pool *= 2


def profile(collector: Any, samples: int, test_samples: int = 0, seed: int = 0, tables: bool = True) -> list:
    """Lookup tables, ``samples`` end-to-end SubTransformers (dataset.csv) and a separate test set
    (test.csv); each part resumes where an interrupted run stopped. Returns the test configs."""
    if tables:
        collector.collect_tables()
    if samples:
        collector.collect_dataset(samples, seed=seed)
    test = separate_test_configs(collector, samples, test_samples, seed) if test_samples else []
    if test:
        collector.collect_dataset(len(test), configs=test, file_name="test.csv")
    return test


def _runtime(device: dict) -> tuple[str, str, str]:
    """(backend, precision, provider) of a latency file's device record."""
    from hat.latency.predictor import runtime_of

    runtime = runtime_of({"device": device})
    return runtime["backend"], runtime["precision"], runtime["provider"]


def load_tables(path: str | Path | None) -> Any:
    """Lookup tables from ``tables.json`` or the folder holding it (``None`` passes through)."""
    from hat.latency.tables import LatencyTables

    if path is None:
        return None
    path = Path(path)
    return LatencyTables.load(path / "tables.json" if path.is_dir() else path)


def check_fit_inputs(data: Any, tables: Any, data_path: str | Path, tables_path: str | Path | None) -> None:
    """Tables and dataset must describe the same space, protocol and runtime, with enough rows."""
    if tables is not None and data.meta.get("space_fingerprint") not in (None, tables.space_fingerprint):
        raise HatError(f"tables were measured for space '{tables.space_name}', the dataset for "
                       f"'{data.meta.get('space')}'", tables_path)
    if tables is not None and data.meta.get("protocol") not in (None, tables.protocol):
        raise HatError("tables and dataset were measured with different protocols (src-len/beam/vocab)", tables_path)
    if tables is not None and data.meta.get("device") and _runtime(tables.device) != _runtime(data.meta["device"]):
        raise HatError(f"tables were measured on {' '.join(_runtime(tables.device))}, the dataset on "
                       f"{' '.join(_runtime(data.meta['device']))}", tables_path)
    if len(data) < MIN_ROWS_TO_FIT:
        raise HatError(f"needs at least {MIN_ROWS_TO_FIT} rows to fit, got {len(data)}", data_path)


def fit_predictor(data_path: str | Path, tables_path: str | Path | None = None, *, kind: str = "auto",
                  seed: int = 0, data_format: str = "auto") -> tuple[Any, dict]:
    """A latency predictor from a dataset (and tables), after :func:`check_fit_inputs`.

    ``kind="auto"`` picks by 5-fold cross-validation and returns its scores; another kind is fitted
    directly (scores empty).
    """
    from hat.latency.dataset import LatencyDataset
    from hat.latency.predictor import LatencyPredictor, fit_auto

    data = LatencyDataset.load(data_path, data_format)
    tables = load_tables(tables_path)
    check_fit_inputs(data, tables, data_path, tables_path)
    if kind == "auto":
        return fit_auto(data, tables, seed=seed)
    usable = tables if data.configs is not None else None
    return LatencyPredictor(kind, tables=usable).fit(data, seed=seed), {}


def feasible_range(space: SearchSpace, predictor: Any, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Predicted latency range of ``space``: its smallest and largest configs plus a seeded sample."""
    rng = random.Random(f"range:{seed}")
    configs = [space.smallest(), space.largest()] + [space.sample(rng=rng) for _ in range(samples)]
    predicted = predictor.predict(configs)
    return float(np.min(predicted)), float(np.max(predicted))
