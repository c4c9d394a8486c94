"""HAT: hardware-aware neural architecture search for Transformers.

Names are imported on first use, so ``import hat`` stays light: the onnxruntime deployment path
(``hat translate --backend onnxruntime``) never imports torch, and nothing in the core imports fairseq.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

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


def lazy_exports(module: str, exports: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``exports`` from its module on first use."""

    def lookup(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module '{module}' has no attribute '{name}'")

    return lookup


__getattr__ = lazy_exports("hat", _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
