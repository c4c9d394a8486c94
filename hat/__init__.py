"""HAT: hardware-aware neural architecture search for Transformers.

Names are imported on first use, so ``import hat`` stays light: the onnxruntime deployment path
(``hat translate --backend onnxruntime``) never imports torch, and nothing in the core imports fairseq.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HatError": "hat.errors",
    "SearchSpace": "hat.space",
    "SubTransformerConfig": "hat.space",
    "SuperTransformer": "hat.supernet",
    "SubTransformer": "hat.subtransformer",
    "ModelDims": "hat.subtransformer",
    "extract_subtransformer": "hat.subtransformer",
    "count_parameters": "hat.subtransformer",
    "LatencyPredictor": "hat.latency",
    "LatencyCollector": "hat.latency",
    "Protocol": "hat.latency",
    "EvolutionarySearch": "hat.search",
    "InheritedLossFitness": "hat.search",
    "Translator": "hat.export.runtime",
    "export_model": "hat.export.model_dir",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hat' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
