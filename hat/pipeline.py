"""Pipeline steps shared by the ``hat`` command line, ``hat demo`` and ``experiments/``.

Each step is a library function with every check the step needs, so the three callers cannot
disagree: how the separate latency test set is drawn, what a predictor is fitted from, what the
feasible latency range of a space is.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hat.errors import HatError
from hat.search.objectives import feasible_range  # noqa: F401 - a pipeline step, defined by the search
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
    (test.csv); each part resumes where an interrupted run stopped. Returns the test configs.

    The training and test SubTransformers are measured in the same chunks, interleaved, so drift
    of the machine's speed during the run cannot bias the predictor's score on the test set.
    """
    if tables:
        collector.collect_tables()
    test = separate_test_configs(collector, samples, test_samples, seed) if test_samples else []
    parts = {"dataset.csv": collector.sample_configs(samples, seed) if samples else [], "test.csv": test}
    parts = {name: configs for name, configs in parts.items() if configs}
    if parts:
        collector.collect_datasets(parts)
    return test


def _runtime(device: dict) -> tuple[str, str, str]:
    """(backend, precision, provider) of a latency file's device record."""
    from hat.latency.runtime_info import runtime_of

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
                  seed: int = 0, data_format: str = "auto", labels: str = "auto") -> tuple[Any, dict]:
    """A latency predictor from a dataset (and tables), after :func:`check_fit_inputs`.

    ``kind="auto"`` picks by 5-fold cross-validation and returns its scores; another kind is fitted
    directly (scores empty). ``labels``: ``measured``, ``reference_speed`` (every row scaled to the
    machine speed of the reference model's median time, from the time measured in its own chunk)
    or ``auto``: reference speed for onnxruntime data (on four WMT profiles it kept or raised
    Kendall τ and the share within ±10%; BENCHMARKS.md), measured otherwise (on PyTorch eager it
    made errors larger).
    """
    from hat.latency.dataset import LatencyDataset
    from hat.latency.predictor import REFERENCE_SPEED, LatencyPredictor, fit_auto

    data = LatencyDataset.load(data_path, data_format)
    tables = load_tables(tables_path)
    check_fit_inputs(data, tables, data_path, tables_path)
    at_reference = _labels_at_reference_speed(data, labels, data_path)
    if at_reference:
        data = data.at_reference_speed(float(np.median(data.reference_times())))
    if kind == "auto":
        predictor, scores = fit_auto(data, tables, seed=seed)
    else:
        usable = tables if data.configs is not None else None
        predictor, scores = LatencyPredictor(kind, tables=usable).fit(data, seed=seed), {}
    predictor.info["labels"] = REFERENCE_SPEED if at_reference else "measured"
    return predictor, scores


def _labels_at_reference_speed(data: Any, labels: str, data_path: str | Path) -> bool:
    if labels not in ("auto", "measured", "reference_speed"):
        raise HatError(f"labels must be auto, measured or reference_speed, got {labels!r}")
    has_reference = bool(data.rows) and bool(np.all(np.isfinite(data.reference_times())))
    if labels == "reference_speed" and not has_reference:
        raise HatError("the rows carry no reference timing (reference_ms): fit with measured labels", data_path)
    backend = ((data.meta or {}).get("device") or {}).get("backend")
    return labels == "reference_speed" or (labels == "auto" and has_reference and backend == "onnxruntime")


def target_vocabulary(data: str | Path | None, vocab: int | None, default: int = 32768) -> int:
    """The vocabulary latency is measured with: ``vocab``, else the target dictionary of the data-bin
    ``data``, else ``default``; both given must agree."""
    if data is None:
        return vocab or default
    from hat.data.prepare import check_data_folder
    from hat.export.dictionary import Dictionary

    data = Path(data)
    meta = check_data_folder(data, ())
    size = len(Dictionary.load(data / f"dict.{meta['tgt']}.txt"))
    if vocab is not None and vocab != size:
        raise HatError(f"--vocab {vocab} differs from the target dictionary's {size} words", data)
    return size


def measure_backend(backend: str, precision: str = "fp32", provider: str = "CPUExecutionProvider",
                    local: bool = True) -> Any:
    """What the collector measures with: ``torch``/``cuda`` by name, or an onnxruntime backend. Measured
    ``local``ly, an execution provider this onnxruntime lacks fails now rather than after hours."""
    if backend != "onnxruntime":
        if precision != "fp32" or provider != "CPUExecutionProvider":
            raise HatError("--precision and --provider are for --backend onnxruntime")
        return backend
    from hat.export.ort_backend import OnnxBackend

    if local:
        import onnxruntime

        if provider not in onnxruntime.get_available_providers():
            raise HatError(f"--provider {provider}: this onnxruntime has {', '.join(onnxruntime.get_available_providers())}")
    return OnnxBackend(precision, provider)


def evaluate_predictor(predictor_path: str | Path, data_path: str | Path, data_format: str = "auto",
                       plot: str | Path | None = None) -> tuple[Any, dict]:
    """A predictor's accuracy metrics on a dataset of the same space (and a predicted-vs-measured PNG)."""
    from hat.latency.dataset import LatencyDataset
    from hat.latency.predictor import LatencyPredictor, metrics

    predictor = LatencyPredictor.load(predictor_path)
    data = LatencyDataset.load(data_path, data_format)
    fingerprint = data.meta.get("space_fingerprint")
    if fingerprint and predictor.info.get("space_fingerprint") not in (None, fingerprint):
        raise HatError(f"dataset is for space '{data.meta.get('space')}', predictor for "
                       f"'{predictor.info.get('space')}'", data_path)
    predicted, measured = predictor.predict_dataset(data), predictor.labels(data)
    if plot:
        from hat.plots import predicted_vs_measured

        predicted_vs_measured(predicted, measured, plot, f"{predictor.kind} predictor on {Path(data_path).name}")
    return predictor, metrics(predicted, measured)


def search_limits(space: SearchSpace, dims: Any, precision: str = "fp32", max_params: float | None = None,
                  max_size_mb: float | None = None, max_flops: float | None = None,
                  max_memory_mb: float | None = None, protocol: dict | None = None) -> list:
    """The bounds of a search besides latency, each a :class:`hat.search.objectives.Limit`; ``dims``
    (:class:`hat.subtransformer.ModelDims`) gives the vocabulary that parameters and size count,
    ``protocol`` (the predictor's: src_len, beam) the beam search that peak memory is counted for."""
    from hat.search.objectives import Limit, flops, memory_mb, parameters, weights_mb

    limits = []
    if max_params is not None:
        limits.append(Limit(parameters(dims), max_params))
    if max_size_mb is not None:
        limits.append(Limit(weights_mb(dims, precision), max_size_mb))
    if max_flops is not None:
        limits.append(Limit(flops(space), max_flops))
    if max_memory_mb is not None:
        shape = {k: int(v) for k, v in (protocol or {}).items() if k in ("src_len", "beam")}
        shape["tgt_len"] = shape.get("src_len", 30)
        limits.append(Limit(memory_mb(dims, precision, **shape), max_memory_mb))
    return limits


def random_search_baseline(space: SearchSpace, fitness: Any, predictor: Any, result: Any, *, seed: int = 0,
                           evaluator: Any = None, limits: list | None = None, store: Any = None) -> list[dict]:
    """Random search with the evaluation budget the evolution spent on each constraint of ``result``
    (sharing its store, so no architecture is scored twice), for comparison."""
    from hat.search import random_search

    rows = []
    for item in result.results:
        best = random_search(space, fitness, predictor, item.constraint_ms, item.evaluations, seed=seed,
                             evaluator=evaluator, limits=limits or [], store=store)
        rows.append({"constraint_ms": item.constraint_ms, "budget": item.evaluations, "loss": best.loss,
                     "archid": best.archid, "predicted_latency_ms": best.latency_ms})
    return rows


def best_candidates(result: Any, top: int) -> list[SubTransformerConfig]:
    """The ``top`` lowest-loss candidates within each constraint of a search ``result`` (distinct archids)."""
    chosen: dict[str, SubTransformerConfig] = {}
    scored = sorted((c for c in result.candidates.values() if c.loss is not None), key=lambda c: (c.loss, c.archid))
    for item in result.results:
        within = [c for c in scored if c.latency_ms <= item.constraint_ms and all(
            c.objectives.get(limit.objective.name, 0) <= limit.bound for limit in result.limits)]
        for candidate in [item.best, *(c for c in within if c.archid != item.best.archid)][:top]:
            chosen.setdefault(candidate.archid, candidate.config)
    return list(chosen.values())


def prediction_errors(collector: Any, predictor: Any, configs: list[SubTransformerConfig],
                      file_name: str = "dataset.csv") -> dict[str, float]:
    """Measure ``configs`` whole on the collector's target (added to ``file_name``; ones measured before
    are read back) and return archid -> (predicted - measured) / measured at the predictor's machine speed."""
    data = collector.collect_datasets({file_name: configs})[file_name]
    wanted = {c.archid for c in configs}
    index = np.array([i for i, row in enumerate(data.rows) if row["archid"] in wanted])
    measured = data.subset(index)
    predicted, labels = predictor.predict_dataset(measured), predictor.labels(measured)
    return {row["archid"]: float(p / m - 1) for row, p, m in zip(measured.rows, predicted, labels)}


def search_with_measured_winners(run_search: Callable[[Any, int], Any], refit: Callable[[int], Any], predictor: Any,
                                 collector: Any, *, rounds: int = 2, top: int = 3,
                                 tolerance: float = 0.03) -> tuple[Any, Any, list[dict]]:
    """Search, then measure each constraint's ``top`` best candidates on the target (adding them to the
    dataset); while a constraint's chosen model is off its prediction by more than ``tolerance``,
    ``refit`` and search again (at most ``rounds`` times). Returns the last predictor, the last search
    result and one record a round.

    A search picks, among models of nearly equal loss, the ones whose latency the predictor
    under-estimates most, so the chosen models' errors lean one way even when the predictor is
    unbiased over the space (the winner's curse). Measuring the winners corrects the predictor
    exactly where the search looks. ``run_search(predictor, round)`` and ``refit(round)`` should
    resume from files, so a killed run repeats no finished round.
    """
    history: list[dict] = []
    round_ = 0
    while True:
        result = run_search(predictor, round_)
        errors = prediction_errors(collector, predictor, best_candidates(result, top))
        chosen = [errors[item.best.archid] for item in result.results]
        history.append({"round": round_, "measured": len(errors), "worst_error": max(errors.values(), key=abs),
                        "best": [item.best.archid for item in result.results], "best_errors": chosen})
        if round_ == rounds or max(abs(error) for error in chosen) <= tolerance:
            return predictor, result, history
        round_ += 1
        predictor = refit(round_)


def collector_for_profile(folder: str | Path, space: SearchSpace, ray_address: str | None = None,
                          ray_resource: str | None = None) -> Any:
    """A collector that measures more SubTransformers into ``folder`` (a ``hat profile`` output) with
    its protocol and runtime: on this machine, which must be the one it was measured on, or on the
    Ray node with ``ray_resource``."""
    from hat.latency import LatencyCollector, LatencyDataset, Protocol
    from hat.latency.collector import ray_runner
    from hat.latency.runtime_info import execution_provider, runtime_of
    from hat.latency.protocol import cpu_model

    path = Path(folder) / "dataset.csv"
    meta = LatencyDataset.load(path, "hat-latency").meta
    if meta.get("space_fingerprint") != space.fingerprint:
        raise HatError(f"was measured for space '{meta.get('space')}', not '{space.name}'", path)
    if ray_resource is not None and ray_address is None:
        raise HatError("--ray-resource needs --ray-address (the cluster the device has joined)")
    device = meta.get("device") or {}
    if ray_resource is None and (device.get("cpu"), device.get("machine")) != (cpu_model(), platform.machine()):
        raise HatError(f"was measured on {device.get('cpu')} ({device.get('machine')}), this machine is "
                       f"{cpu_model()} ({platform.machine()}): measure there with --ray-address and --ray-resource", path)
    runtime = runtime_of(meta)
    backend = (measure_backend(runtime["backend"], runtime["precision"], execution_provider(runtime),
                               local=ray_resource is None)
               if runtime["backend"] == "onnxruntime" else measure_backend(runtime["backend"]))
    runner = ray_runner(ray_address, ray_resource) if ray_resource else None
    return LatencyCollector(space, Protocol(**meta["protocol"]), folder, backend=backend, runner=runner, progress=False)
