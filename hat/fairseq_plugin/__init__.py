"""fairseq ``--user-dir`` plugin: the ``hat_transformer`` model, the ``hat_translation`` task and the
``hat_distillation`` criterion.

fairseq imports this folder as a top-level package named after it; importing the modules here
runs their ``register_*`` decorators. Inside HAT, load it with :func:`hat.training.load_plugin`
(never ``import hat.fairseq_plugin`` directly), so it is registered exactly once.
"""
from hat.checkpoints import install_fairseq_safe_loading

from . import criterions, models, tasks  # noqa: F401  (registers the model, the task and the criterion)

# Every process that runs HAT's model on fairseq (DDP workers included) imports this plugin
# before it reads a checkpoint: from here on fairseq never unpickles code.
install_fairseq_safe_loading()
