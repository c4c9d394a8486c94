"""HAT: hardware-aware neural architecture search for Transformers.

The core (spaces, SuperTransformer, latency, search, export) imports without fairseq.
"""
from hat.errors import HatError
from hat.space import SearchSpace, SubTransformerConfig
from hat.subtransformer import ModelDims, SubTransformer, count_parameters, extract_subtransformer
from hat.supernet import SuperTransformer

__version__ = "0.1.0"

__all__ = [
    "HatError", "ModelDims", "SearchSpace", "SubTransformer", "SubTransformerConfig", "SuperTransformer",
    "count_parameters", "extract_subtransformer",
]
