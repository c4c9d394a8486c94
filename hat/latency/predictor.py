"""Latency predictors: table sum, a learned ridge model on structural features, and HAT's MLP.

Saved as JSON (MLP weights as base64 float32 arrays); loading never unpickles.
"""
from __future__ import annotations

import base64
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hat.errors import HatError
from hat.io import atomic_write_json
from hat.latency.dataset import LatencyDataset
from hat.latency.protocol import Protocol
from hat.latency.records import recorded_graphs
from hat.latency.runtime_info import runtime_of
from hat.latency.features import hat_feature_matrix, structural_features
from hat.latency.fitting import HAT_MLP, MlpRecipe, fit_mlp, fit_ridge, mlp_forward  # noqa: F401  (HAT_MLP: public)
from hat.latency.tables import LatencyTables
from hat.space import SearchSpace, SubTransformerConfig

FORMAT = "hat-latency-predictor-v1"
KINDS = ("table", "linear", "mlp")


def metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """RMSE (ms), MAPE (%), share within +-5% / +-10%, Kendall tau."""
    from scipy.stats import kendalltau

    rel = (predicted - measured) / measured
    return {
        "n": int(len(measured)),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "mape_pct": float(100 * np.mean(np.abs(rel))),
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "kendall_tau": float(kendalltau(predicted, measured).statistic) if len(measured) > 1 else float("nan"),
    }


def _b64(array: np.ndarray, dtype: str = "<f8") -> dict[str, Any]:
    """Exact, compact array encoding (MLP weights are float32 already, so "<f4" loses nothing)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _unb64(blob: dict[str, Any]) -> np.ndarray:
    dtype = blob.get("dtype", "<f8")
    if dtype not in ("<f4", "<f8"):
        raise ValueError(f"unsupported dtype {dtype}")
    return np.frombuffer(base64.b64decode(blob["data"]), dtype=dtype).reshape(blob["shape"]).astype(float)


class LatencyPredictor:
    """Predicts the total (encoder + decoder) latency in ms of SubTransformers on one device.

    Example:
        >>> predictor = LatencyPredictor("linear", tables=tables).fit(dataset)
        >>> predictor.predict([config1, config2])   # array of ms
        >>> predictor.save("latency_tables/mycpu/predictor.json")
    """

    def __init__(self, kind: str = "linear", *, tables: LatencyTables | None = None, mlp: MlpRecipe = MlpRecipe()):
        if kind not in KINDS:
            raise HatError(f"unknown predictor model '{kind}' (choose from {', '.join(KINDS)}, or auto)")
        if kind == "table" and tables is None:
            raise HatError("the 'table' predictor needs latency tables (--tables DIR)")
        self.kind = kind
        self.tables = tables
        self.mlp = mlp
        self.params: dict[str, Any] = {}
        self.info: dict[str, Any] = {}

    # ---- features ----------------------------------------------------------------------------
    @property
    def uses_tables(self) -> bool:
        return self.tables is not None and self.kind in ("table", "linear")

    def _table_sums(self, configs: Sequence[SubTransformerConfig] | None) -> np.ndarray:
        if configs is None:
            raise HatError("this predictor uses per-layer tables, so its data needs configs (HAT-format CSVs have none)")
        return np.array([self.tables.estimate(c) for c in configs], dtype=float).reshape(-1, 2)

    def _design(self, hat10: np.ndarray, table_sums: np.ndarray | None) -> np.ndarray:
        columns = [structural_features(hat10)]
        if table_sums is not None:
            columns.append(table_sums)
        return np.concatenate(columns, axis=1)

    # ---- fitting -----------------------------------------------------------------------------
    def fit(self, dataset: LatencyDataset, seed: int = 0) -> "LatencyPredictor":
        y = dataset.total_ms
        sums = self._table_sums(dataset.configs) if self.uses_tables else None
        if self.kind == "table":
            self.params = {}
        elif self.kind == "linear":
            self.params = fit_ridge(self._design(dataset.features, sums), y, seed)
        else:
            self.params = fit_mlp(dataset.features, y, self.mlp, seed)
        _check_finite_params(self.params, "fitting gave non-finite parameters (rows of 0 ms or duplicated rows?)")
        self.info = {"train": metrics(self._predict_arrays(dataset.features, sums), y),
                     "feature_range": [dataset.features.min(axis=0).tolist(), dataset.features.max(axis=0).tolist()]}
        if dataset.meta:
            self.info.update(space=dataset.meta.get("space"), space_fingerprint=dataset.meta.get("space_fingerprint"),
                             device=dataset.meta.get("device"), protocol=dataset.meta.get("protocol"),
                             graphs=recorded_graphs(dataset.meta))
            if dataset.meta.get("space_spec"):
                self.info["space_spec"] = dataset.meta["space_spec"]
        if self.tables is not None:
            self.info.update(space=self.tables.space_name, space_fingerprint=self.tables.space_fingerprint)
            self.info.setdefault("device", self.tables.device)
            self.info.setdefault("protocol", self.tables.protocol)
        reference = _reference_timing(dataset)
        if reference is not None:
            self.info["reference"] = reference
        self.info["runtime"] = runtime_of(self.info)
        return self

    @property
    def runtime(self) -> dict[str, Any]:
        """The runtime its milliseconds are in: backend, precision, provider, threads, vocab, src_len, beam."""
        return runtime_of(self.info)

    # ---- prediction --------------------------------------------------------------------------
    def _predict_arrays(self, hat10: np.ndarray, sums: np.ndarray | None) -> np.ndarray:
        if self.kind == "table":
            return sums.sum(axis=1)
        if self.kind == "linear":
            p = self.params
            x = (self._design(hat10, sums) - p["mean"]) / p["scale"]
            return x @ p["coef"] + p["intercept"]
        return mlp_forward(self.params, hat10)

    def predict(self, configs: Sequence[SubTransformerConfig]) -> np.ndarray:
        """Predicted total latency (ms) of each config, as one vectorised computation.

        Configs outside the predictor's space (or, for a predictor that knows no space, outside
        the range of what it was fitted on) are refused, and so is any non-positive prediction.
        """
        configs = list(configs)
        if not configs:
            return np.zeros(0)
        features = hat_feature_matrix(configs)
        self._check_inputs(configs, features)
        sums = self._table_sums(configs) if self.uses_tables else None
        predicted = self._predict_arrays(features, sums)
        bad = np.flatnonzero(~np.isfinite(predicted) | (predicted <= 0))
        if len(bad):
            raise HatError(f"the latency predictor gives {predicted[bad[0]]:.4g} ms for {configs[bad[0]].archid}: "
                           "it is not a usable predictor for this config")
        return predicted

    def _check_inputs(self, configs: Sequence[SubTransformerConfig], features: np.ndarray) -> None:
        space = self.space
        if space is not None:
            for config in configs:
                space.validate(config)
            return
        bounds = self.info.get("feature_range")
        if bounds is None:
            return
        low, high = np.asarray(bounds[0]), np.asarray(bounds[1])
        margin = np.maximum(0.5 * (high - low), 1e-9 * np.abs(high))
        outside = (features < low - margin) | (features > high + margin)
        if outside.any():
            row, column = map(int, np.argwhere(outside)[0])
            raise HatError(f"config {configs[row].archid} is outside what the predictor was fitted on (feature "
                           f"{column} = {features[row, column]:g}, fitted on {low[column]:g}..{high[column]:g})")

    @property
    def space(self) -> SearchSpace | None:
        """The search space the predictor was fitted for, when its data recorded it."""
        spec = self.info.get("space_spec")
        if spec is None:
            return None
        if self.__dict__.get("_space") is None:
            self.__dict__["_space"] = SearchSpace.from_dict(spec)
        return self.__dict__["_space"]

    def predict_dataset(self, dataset: LatencyDataset) -> np.ndarray:
        sums = self._table_sums(dataset.configs) if self.uses_tables else None
        return self._predict_arrays(dataset.features, sums)

    def labels(self, dataset: LatencyDataset) -> np.ndarray:
        """``dataset``'s latencies as this predictor predicts them: as measured, or (a predictor fitted
        at reference speed) scaled to the machine speed of its reference model's median time."""
        if self.info.get("labels") != REFERENCE_SPEED:
            return dataset.total_ms
        return dataset.at_reference_speed(self.info["reference"]["total_ms"]).total_ms

    def evaluate(self, dataset: LatencyDataset) -> dict[str, float]:
        return metrics(self.predict_dataset(dataset), self.labels(dataset))

    def check_space(self, space: SearchSpace) -> None:
        fingerprint = self.info.get("space_fingerprint")
        if fingerprint is not None and fingerprint != space.fingerprint:
            raise HatError(f"the latency predictor was fitted for space '{self.info.get('space')}', not '{space.name}'")

    def check_vocabulary(self, vocab: int) -> None:
        """The output projection is part of the latency: a predictor measured with another
        vocabulary size than the model's predicts another model."""
        measured = (self.info.get("protocol") or {}).get("vocab")
        if measured is not None and measured != vocab:
            raise HatError(f"the latency predictor was measured with a vocabulary of {measured}, the checkpoint has "
                           f"{vocab}: profile with --data (or --vocab {vocab})")

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        params = {k: (_b64(v) if isinstance(v, np.ndarray) else v) for k, v in self.params.items()}
        if "layers" in params:
            params["layers"] = [{"weight": _b64(w, "<f4"), "bias": _b64(b, "<f4")} for w, b in self.params["layers"]]
        atomic_write_json(path, {
            "format": FORMAT, "kind": self.kind, "mlp": {**asdict(self.mlp), "hidden": list(self.mlp.hidden)}, "info": self.info,
            "params": params, "tables": self.tables.to_dict() if self.uses_tables else None,
        })

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        """Read a predictor and prove it usable: finite parameters of the right shapes, a valid
        space, and positive predictions at the corners of what it covers."""
        from hat.io import file_content, load_json
        from hat.shipped import predictor_file

        path = predictor_file(path)
        data = load_json(path, "latency predictor file")
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("kind") not in KINDS:
            raise HatError(f"not a HAT latency predictor (expected format '{FORMAT}')", path)
        with file_content(path, "latency predictor file"):
            tables = LatencyTables.from_dict(data["tables"], path) if data.get("tables") else None
            recipe = data.get("mlp") or {"hidden": data.get("mlp_hidden", HAT_MLP.hidden)}  # older files
            hidden = tuple(recipe["hidden"])
            if not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= 4096 for h in hidden):
                raise ValueError("the MLP's hidden layers must be positive widths")
            predictor = cls(data["kind"], tables=tables, mlp=MlpRecipe(**{**recipe, "hidden": hidden}))
            params = dict(data["params"])
            if "layers" in params:
                params["layers"] = [(_unb64(layer["weight"]), _unb64(layer["bias"])) for layer in params["layers"]]
            for key, value in list(params.items()):
                if isinstance(value, dict) and "data" in value:
                    params[key] = _unb64(value)
            _check_finite_params(params, "non-finite parameter")
            info = data.get("info", {})
            if not isinstance(info, dict):
                raise ValueError("'info' must be a mapping")
            if info.get("protocol") is not None:
                Protocol(**info["protocol"])
            predictor.params, predictor.info = params, info
            predictor._self_check()
        return predictor

    def _self_check(self) -> None:
        """Predict the extremes of the predictor's space (or of its fitted feature range)."""
        space = self.space
        if space is not None:
            self.predict([space.smallest(), space.largest()])
            return
        bounds = self.info.get("feature_range")
        if bounds is not None and not self.uses_tables:
            corners = np.asarray(bounds, dtype=float).reshape(2, 10)
            predicted = self._predict_arrays(corners, None)
            if not np.all(np.isfinite(predicted)) or (predicted <= 0).any():
                raise ValueError(f"predicts {predicted.min():.4g} ms at the edge of its fitted range")


def _check_finite_params(params: dict[str, Any], message: str) -> None:
    values = [np.asarray(v, dtype=float) for k, v in params.items() if k != "layers"]
    values += [np.asarray(a, dtype=float) for layer in params.get("layers", ()) for a in layer]
    if not all(np.all(np.isfinite(v)) for v in values):
        raise HatError(message)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/test split."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _reference_timing(dataset: LatencyDataset) -> dict[str, Any] | None:
    """The collector's reference model and its median time over the chunks that measured ``dataset``.

    ``hat verify`` times the same model next to the one it checks; the ratio of the two reference
    times says how much faster or slower the machine is now than when the training data was taken.
    """
    spec = dataset.meta.get("reference") if dataset.meta else None
    times = [float(r.get("reference_ms") or "nan") for r in dataset.rows]
    times = [t for t in times if math.isfinite(t) and t > 0]
    if not isinstance(spec, dict) or not times:
        return None
    return {**spec, "total_ms": float(np.median(times)), "rows": len(times)}


REFERENCE_SPEED = "reference_speed"  # info["labels"] of a predictor fitted on rows scaled to one machine speed

# Kinds from the fewest fitted parameters to the most; a more complex kind must earn its place.
COMPLEXITY_ORDER = ("table", "linear", "mlp")


def fit_auto(
    dataset: LatencyDataset,
    tables: LatencyTables | None,
    seed: int = 0,
    mlp: MlpRecipe = MlpRecipe(),
    folds: int = 5,
    tolerance: float = 0.15,
) -> tuple[LatencyPredictor, dict]:
    """Pick a predictor kind by ``folds``-fold cross-validation, then refit it on all of ``dataset``.

    Every row is predicted once by a model that did not see it, so the choice rests on all rows
    rather than on one small hold-out (with 60 measurements a 20% split scores 12 rows, and the
    MLP won such draws by luck). The simplest kind whose cross-validated MAPE is within
    ``tolerance`` (relative) of the best one is chosen: on small datasets a slightly lower MAPE of
    the MLP is noise, and its extrapolation is the least trustworthy.
    """
    use_tables = tables if dataset.configs is not None else None
    kinds = ["linear", "mlp"] + (["table"] if use_tables is not None else [])
    folds = max(2, min(folds, len(dataset)))
    assignment = np.random.default_rng(seed).permutation(len(dataset)) % folds
    scores = {}
    for kind in kinds:
        predicted = np.zeros(len(dataset))
        for k in range(folds):
            train, test = np.flatnonzero(assignment != k), np.flatnonzero(assignment == k)
            model = LatencyPredictor(kind, tables=use_tables, mlp=mlp).fit(dataset.subset(train), seed=seed)
            predicted[test] = model.predict_dataset(dataset.subset(test))
        scores[kind] = metrics(predicted, dataset.total_ms)
    best_mape = min(score["mape_pct"] for score in scores.values())
    chosen = next(k for k in COMPLEXITY_ORDER if k in scores and scores[k]["mape_pct"] <= best_mape * (1 + tolerance))
    final = LatencyPredictor(chosen, tables=use_tables, mlp=mlp).fit(dataset, seed=seed)
    final.info["selection"] = {"cross_validation": scores, "folds": folds, "tolerance": tolerance, "chosen": chosen}
    return final, scores
