"""Search spaces and SubTransformer configs."""
from hat.space.config import SubTransformerConfig, ende_attn_layers
from hat.space.search_space import Gene, Genome, SearchSpace

__all__ = ["Gene", "Genome", "SearchSpace", "SubTransformerConfig", "ende_attn_layers"]
