"""Where models run for fitness, evaluation and BLEU: ``cpu`` (the default), ``cuda`` or ``cuda:N``."""
from __future__ import annotations

import re

from hat.errors import HatError


def resolve_device(name: str, fp16: bool = False) -> "torch.device":  # noqa: F821 - torch imported lazily
    """A torch device for ``name``, or one line saying why it cannot be used here."""
    import torch

    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise HatError(f"--device {name}: use cpu, cuda or cuda:N")
    if fp16 and name == "cpu":
        raise HatError("--fp16 needs --device cuda")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HatError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA device")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise HatError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(name)
