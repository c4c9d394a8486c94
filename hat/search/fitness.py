"""Fitness functions. Any callable ``config -> float`` (lower is better) works with the search."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hat.space import SubTransformerConfig


class InheritedLossFitness:
    """Validation loss (fairseq's label-smoothed CE, base 2) with weights inherited from the SuperTransformer.

    The checkpoint and a fixed, seeded validation subset are loaded once, on first use, in the
    process that evaluates (so a Ray actor loads its own copy). Threads are fixed so serial and
    parallel evaluation give bit-identical losses.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        data: str | Path,
        *,
        split: str = "valid",
        valid_subset: int | None = None,
        seed: int = 0,
        max_tokens: int = 4096,
        label_smoothing: float = 0.1,
        threads: int = 1,
        device: str = "cpu",
        fp16: bool = False,
    ) -> None:
        self.checkpoint, self.data = Path(checkpoint), Path(data)
        self.split, self.valid_subset, self.seed = split, valid_subset, seed
        self.max_tokens, self.label_smoothing, self.threads = max_tokens, label_smoothing, threads
        self.device, self.fp16 = device, fp16
        self._loaded: Any = None

    def describe(self) -> dict[str, Any]:
        """What the losses depend on (a search store refuses losses of another fitness)."""
        from hat.io import file_sha256

        described = {"kind": "inherited_validation_loss", "checkpoint_sha256": file_sha256(self.checkpoint),
                     "data": str(self.data.resolve()), "split": self.split, "valid_subset": self.valid_subset,
                     "seed": self.seed, "max_tokens": self.max_tokens, "label_smoothing": self.label_smoothing}
        if self.device != "cpu" or self.fp16:  # losses on another device differ in the last digits
            described.update(device=self.device, fp16=self.fp16)
        return described

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_loaded"] = None  # workers load their own copy
        return state

    def load(self) -> None:
        if self._loaded is None:
            from hat.checkpoints import load_supernet
            from hat.data.batches import load_batches
            from hat.devices import resolve_device

            device = resolve_device(self.device, self.fp16)
            checkpoint = load_supernet(self.checkpoint)
            checkpoint.supernet.to(device)
            if self.fp16:
                checkpoint.supernet.half()
            batches = load_batches(self.data, self.split, max_tokens=self.max_tokens,
                                   subset_size=self.valid_subset, seed=self.seed, langs=checkpoint.langs)
            self._loaded = (checkpoint, [batch.to(device) for batch in batches])

    def __call__(self, config: SubTransformerConfig) -> float:
        import torch

        from hat.evaluation import validation_loss

        self.load()
        checkpoint, batches = self._loaded
        torch.set_num_threads(self.threads)
        checkpoint.supernet.set_active_subnet(config)
        return validation_loss(checkpoint.supernet, batches, self.label_smoothing)
