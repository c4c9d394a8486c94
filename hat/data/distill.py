"""Sequence-level distillation data: a copy of a data-bin whose targets are a teacher's translations.

Training a small model on a large model's beam outputs (Kim & Rush, 2016) gives it simpler,
more consistent targets. The teacher translates the split with fairseq's generator; its token
ids are written as the split's new target side with the same dictionaries, so no text round
trip (detokenization, subwords) can change them. Every other file is copied as it is.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hat.errors import HatError

MARKER = "distilled.json"


def distil_data(checkpoint: str | Path, data: str | Path, out: str | Path, config: Any | None = None, *,
                split: str = "train", beam: int = 5, lenpen: float = 1.0, max_tokens: int = 4096) -> Path:
    """Write ``out``: ``data`` with ``split``'s targets replaced by the teacher's beam outputs.

    The teacher is ``checkpoint`` with ``config`` (default: its own SubTransformer, else its largest).
    A finished ``out`` (it holds ``distilled.json``) is returned as it is; the folder appears at
    once when complete, never half-written.
    """
    from hat.checkpoints import load_supernet
    from hat.data.prepare import check_data_folder
    from hat.evaluation import Generation, default_config, generate
    from hat.io import check_output_dir, file_sha256

    data, out = Path(data), Path(out)
    check_output_dir(out)
    if (out / MARKER).is_file():
        return out
    if out.exists() and any(out.iterdir()):
        raise HatError("output folder exists and is not a finished distilled data-bin", out)
    meta = check_data_folder(data, (split,))
    loaded = load_supernet(checkpoint)
    config = config or default_config(loaded)
    loaded.space.validate(config)
    task, hypotheses, _ = generate(checkpoint, data, config, Generation(split, beam, lenpen, max_tokens, progress=True,
                                                                               skip_too_long=True))
    dataset = task.dataset(split)
    targets = [hypotheses.get(i, dataset.tgt[i]) for i in range(len(dataset))]  # too long to translate: kept
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "bin"
        shutil.copytree(data, staging)
        prefix = staging / f"{split}.{meta['src']}-{meta['tgt']}.{meta['tgt']}"
        _write_mmap(prefix, targets, len(task.target_dictionary))
        (staging / MARKER).write_text(json.dumps({
            "teacher": str(checkpoint), "teacher_sha256": file_sha256(checkpoint), "config": config.to_dict(),
            "source_data": str(data.resolve()), "split": split, "beam": beam, "lenpen": lenpen,
            "translated": len(hypotheses), "kept": len(dataset) - len(hypotheses),
        }, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        staging.rename(out)
    return out


def _write_mmap(prefix: Path, items: list, vocab_size: int) -> None:
    from fairseq.data import indexed_dataset

    for suffix in (".bin", ".idx"):
        prefix.with_name(prefix.name + suffix).unlink(missing_ok=True)
    builder = indexed_dataset.make_builder(str(prefix) + ".bin", impl="mmap", vocab_size=vocab_size)
    for tokens in items:
        builder.add_item(tokens.long())
    builder.finalize(str(prefix) + ".idx")
