"""The shipped onnxruntime predictors match today's composing, and the script that scores predictors
against exported graphs picks its models and computes its errors as it says."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORT_PREDICTORS = sorted((ROOT / "latency_tables").glob("*_ort*/*/predictor.json"))


def load_script():
    spec = importlib.util.spec_from_file_location("bench_deployed_predictor",
                                                  ROOT / "experiments" / "bench_deployed_predictor.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", ORT_PREDICTORS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_shipped_onnxruntime_predictors_were_profiled_on_todays_graphs(path):
    """A change to how the collector composes graphs must come with re-profiled shipped predictors."""
    from hat.export.ort_backend import OnnxBackend
    from hat.latency.predictor import LatencyPredictor

    predictor = LatencyPredictor.load(path)
    assert predictor.info["graphs"] == OnnxBackend.graphs
    assert predictor.info["labels"] == "reference_speed" and predictor.info["reference"]["total_ms"] > 0


def test_models_include_the_decoder_depth_corners_once():
    from hat.space import SearchSpace

    script = load_script()
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / "wmt14_en_de.yaml")
    configs = script.model_configs(space, sampled=3, corners=True)
    largest = space.largest()
    corners = {name: c for name, c in configs.items() if name.startswith("largest, decoder")}
    assert len(corners) == 5  # 2, 4, 6 layers x narrowest, widest FFN, less the largest itself
    assert len({c.archid for c in configs.values()}) == len(configs) == 2 + 3 + 5
    for config in corners.values():
        assert len(set(config.decoder_ffn_dims)) == 1 and config.decoder_layers in (2, 4, 6)
        assert config.encoder_ffn_dims == largest.encoder_ffn_dims
    assert list(script.model_configs(space, sampled=3, corners=False)) == list(configs)[:5]


def test_errors_and_report_from_measured_rows(tmp_path):
    script = load_script()
    rows = [{"precision": "fp32", "predictor": "p.json", "model": name, "archid": name, "predicted_ms": predicted,
             "machine_factor": 1.1, "predicted_now_ms": predicted * 1.1, "measured_ms": measured,
             "error": (predicted * 1.1 - measured) / measured, "raw_error": 0.0, "profiled_on": "cpu",
             "profiled_at": "today", "export_s": 1.0, "timing_s": 1.0}
            for name, predicted, measured in (("smallest", 100.0, 110.0), ("largest", 300.0, 300.0))]
    assert script.speedup_errors(rows)[("fp32", "p.json")] == pytest.approx((300 / 100) / (300 / 110) - 1)
    script.write_report(rows, tmp_path, "cmd")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| smallest | 100.0 | 110.0 | 110.0 | +0.0% |" in text and "| largest | 300.0 | 330.0 | 300.0 | +10.0% |" in text
    assert (tmp_path / "predicted_vs_measured.png").stat().st_size > 1000
    for row in rows:  # with --composed: the collector's graphs beside the exported ones
        row.update(composed_ms=row["measured_ms"] * 0.9, composed_over_exported=0.9)
    script.write_report(rows, tmp_path, "cmd")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| largest | 300.0 | 330.0 | 300.0 | +10.0% | 270.0 | 0.900 |" in text
    assert "Composed / exported: mean 0.900, range 0.900-0.900." in text
