"""The elastic, weight-shared SuperTransformer."""
from hat.supernet.elastic import ElasticLayerNorm, ElasticLinear
from hat.supernet.model import SuperTransformer, init_transformer_weights, scaled_dropout

__all__ = ["ElasticLayerNorm", "ElasticLinear", "SuperTransformer", "init_transformer_weights", "scaled_dropout"]
