"""Search spaces and SubTransformer configs."""
from hat.space.config import SubTransformerConfig, ende_attn_layers
from hat.space.search_space import SAMPLERS, Gene, Genome, SearchSpace, update_configs

__all__ = ["SAMPLERS", "Gene", "Genome", "SearchSpace", "SubTransformerConfig", "ende_attn_layers", "update_configs"]
