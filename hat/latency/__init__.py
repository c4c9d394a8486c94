"""Latency: device collector, per-layer lookup tables, end-to-end datasets, predictors.

Names are imported on first use, so a measuring worker that needs only :mod:`hat.latency.measure`
and :mod:`hat.latency.protocol` (an onnxruntime device) imports nothing else. Never imports fairseq.
"""
from __future__ import annotations

from hat import lazy_exports

_EXPORTS = {
    "LatencyCollector": "hat.latency.collector", "ray_runner": "hat.latency.collector",
    "reference_noise": "hat.latency.records", "LatencyDataset": "hat.latency.dataset",
    "LatencyPredictor": "hat.latency.predictor", "fit_auto": "hat.latency.predictor", "metrics": "hat.latency.predictor",
    "Protocol": "hat.latency.protocol", "TimingStats": "hat.latency.measure", "LatencyTables": "hat.latency.tables",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
