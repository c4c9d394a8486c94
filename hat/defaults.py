"""Regularisation defaults of a SuperTransformer, shared by the model, the fairseq plugin and ``hat train``.

HAT's values for WMT; dropout is given at the super width and scaled with each SubTransformer's width.
"""

DROPOUT = 0.3
ATTENTION_DROPOUT = 0.1
ACTIVATION_DROPOUT = 0.0
