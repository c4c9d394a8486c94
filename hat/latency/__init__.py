"""Latency: device collector, per-layer lookup tables, end-to-end datasets, predictors.

This path needs only torch (and numpy/scipy); it never imports fairseq.
"""
from hat.latency.collector import LatencyCollector, measure_items, ray_runner, reference_noise
from hat.latency.dataset import LatencyDataset
from hat.latency.predictor import LatencyPredictor, fit_auto, metrics
from hat.latency.protocol import Protocol, TimingStats
from hat.latency.tables import LatencyTables

__all__ = [
    "LatencyCollector", "LatencyDataset", "LatencyPredictor", "LatencyTables", "Protocol", "TimingStats",
    "fit_auto", "measure_items", "metrics", "ray_runner", "reference_noise",
]
