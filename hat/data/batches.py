"""Batches of a binarized split: loaded once into memory for scoring (with fairseq's dataset readers),
and fairseq's own batching made to keep every sentence."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hat.errors import HatError


@dataclass
class Batch:
    src_tokens: torch.Tensor  # (B, S), left-padded
    prev_output_tokens: torch.Tensor  # (B, T), starts with </s>
    target: torch.Tensor  # (B, T)
    ids: torch.Tensor  # (B,) sentence ids in the split

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on ``device``."""
        return Batch(*(tensor.to(device) for tensor in (self.src_tokens, self.prev_output_tokens, self.target, self.ids)))


def batches_keeping_remainder(dataset, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
    """``dataset``'s batches of ``indices``, plus the last one, which fairseq drops when its size is
    not a multiple of ``required_batch_size_multiple`` (8 by default; fairseq issue #5036): without
    it validation skipped the longest sentences and training never saw them."""
    batches = type(dataset).batch_by_size(dataset, indices, max_tokens, max_sentences, required_batch_size_multiple)
    kept = sum(len(batch) for batch in batches)
    if kept < len(indices):  # batches are consecutive runs of ``indices``: the dropped one is the tail
        batches = list(batches) + [np.asarray(indices[kept:], dtype=np.int64)]
    return batches


def keep_every_batch(dataset) -> None:
    """Make a fairseq dataset batch every sentence (:func:`batches_keeping_remainder`)."""
    dataset.batch_by_size = functools.partial(batches_keeping_remainder, dataset)


def load_batches(
    data_dir: str | Path,
    split: str = "valid",
    *,
    max_tokens: int = 4096,
    subset_size: int | None = None,
    seed: int = 0,
    langs: tuple[str, str] | None = None,
) -> list[Batch]:
    """The (optionally seeded-subset of the) ``split`` as fixed batches of at most ``max_tokens``."""
    from fairseq.data import Dictionary, LanguagePairDataset, data_utils

    from hat.data.prepare import check_data_folder

    meta = check_data_folder(data_dir, (split,), langs)
    src, tgt = meta["src"], meta["tgt"]
    data_dir = Path(data_dir)
    src_dict = Dictionary.load(str(data_dir / f"dict.{src}.txt"))
    tgt_dict = Dictionary.load(str(data_dir / f"dict.{tgt}.txt"))
    prefix = data_dir / f"{split}.{src}-{tgt}."
    src_data = data_utils.load_indexed_dataset(str(prefix) + src, src_dict)
    tgt_data = data_utils.load_indexed_dataset(str(prefix) + tgt, tgt_dict)
    if src_data is None or tgt_data is None:
        raise HatError(f"split '{split}' not found (expected {prefix}{src}.bin/.idx)", data_dir)
    dataset = LanguagePairDataset(src_data, src_data.sizes, src_dict, tgt_data, tgt_data.sizes, tgt_dict,
                                  left_pad_source=True, left_pad_target=False, shuffle=False)
    indices = np.arange(len(dataset))
    if subset_size is not None and subset_size < len(dataset):
        if subset_size < 1:
            raise HatError(f"validation subset size must be at least 1, got {subset_size}")
        indices = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:subset_size])
    indices = indices[np.argsort(dataset.num_tokens_vec(indices) if hasattr(dataset, "num_tokens_vec") else
                                 [dataset.num_tokens(i) for i in indices], kind="stable")]
    longest = int(max(dataset.num_tokens(int(i)) for i in indices))
    if longest > max_tokens:
        raise HatError(f"split '{split}' has a sentence of {longest} tokens, more than --max-tokens {max_tokens}",
                       data_dir)
    groups = dataset.batch_by_size(indices, max_tokens=max_tokens)
    batches = []
    for group in groups:
        sample = dataset.collater([dataset[int(i)] for i in group])
        net = sample["net_input"]
        batches.append(Batch(net["src_tokens"], net["prev_output_tokens"], sample["target"], sample["id"]))
    return batches
