"""Validation loss with inherited weights (pure PyTorch) and BLEU (fairseq generation + sacrebleu)."""
from __future__ import annotations

import math
import re
import tempfile
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from hat.data.batches import Batch
from hat.errors import HatError
from hat.modules import EncoderDecoder
from hat.tokens import PAD


def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float, pad: int) -> tuple[float, int]:
    """Summed label-smoothed cross-entropy over non-pad targets (nats) and the token count,
    exactly as fairseq's ``label_smoothed_cross_entropy`` criterion computes it."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.sum(-1)
    eps_i = epsilon / (lprobs.size(-1) - 1)
    mask = target.ne(pad)
    loss = ((1.0 - epsilon - eps_i) * nll + eps_i * smooth)[mask].sum()
    return float(loss), int(mask.sum())


@torch.inference_mode()
def validation_loss(model: EncoderDecoder, batches: Sequence[Batch], label_smoothing: float = 0.1, pad: int = PAD) -> float:
    """fairseq's reported ``loss`` (base 2, per target token) of ``model`` on ``batches``."""
    total, tokens = 0.0, 0
    for batch in batches:
        logits = model(batch.src_tokens, batch.prev_output_tokens)
        loss, n = label_smoothed_loss(logits, batch.target, label_smoothing, pad)
        total, tokens = total + loss, tokens + n
    if tokens == 0:
        raise HatError("the validation data has no target tokens")
    return total / tokens / math.log(2)


def sentencepiece_decoder(data_dir: str | Path, langs: tuple[str, str] | None = None):
    """pieces (list of str) -> detokenized text, with the target sentencepiece model of ``data_dir``."""
    from hat.data.prepare import load_data_meta

    meta = load_data_meta(data_dir, langs)
    model = (meta.get("sentencepiece") or {}).get(meta["tgt"])
    if not model:
        return lambda pieces: " ".join(pieces)
    from hat.export.runtime import load_sentencepiece

    processor = load_sentencepiece(Path(data_dir) / model)
    return lambda pieces: processor.decode_pieces(pieces)


@dataclass(frozen=True)
class Generation:
    """How fairseq's SequenceGenerator translates a split."""

    split: str = "test"
    beam: int = 5
    lenpen: float = 1.0
    max_tokens: int = 4096
    max_sentences: int | None = None
    device: str = "cpu"
    fp16: bool = False
    progress: bool = False  # a progress bar over the split's batches (for long splits)
    skip_too_long: bool = False  # leave out sentences longer than the model takes, instead of refusing the split


def generate_bleu(checkpoint: str | Path, data: str | Path, config: Any | None, generation: Generation = Generation(),
                  scoring: BleuScoring | None = None) -> dict[str, Any]:
    """Translate a split with fairseq's SequenceGenerator on the plugin model; BLEU as ``scoring`` says
    (default: sacreBLEU on detokenized text, subwords removed as the data folder describes)."""
    task, hypotheses, references = generate(checkpoint, data, config, generation)
    scoring = scoring or BleuScoring()
    to_text = scoring.text_decoder(data, (task.cfg.source_lang, task.cfg.target_lang), task.target_dictionary)
    order = sorted(hypotheses)
    hyps, refs = [to_text(hypotheses[i]) for i in order], [to_text(references[i]) for i in order]
    score, signature = scoring.score(hyps, refs)
    return {"bleu": score, "bleu_signature": signature, "sentences": len(order), "hypotheses": hyps,
            "references": refs}


def generate(checkpoint: str | Path, data: str | Path, config: Any | None,
             generation: Generation = Generation()) -> tuple[Any, dict[int, Any], dict[int, Any]]:
    """(fairseq task, best hypothesis per sentence id, reference per sentence id) as token-id tensors
    without padding; a hypothesis ends with EOS, as binarized targets do."""
    from fairseq import checkpoint_utils
    from fairseq.utils import move_to_cuda

    from hat.checkpoints import read_checkpoint
    from hat.devices import resolve_device
    from hat.space import SearchSpace
    from hat.training import load_plugin

    load_plugin()
    extra = read_checkpoint(checkpoint)["model"]["_extra_state"]
    with tempfile.TemporaryDirectory() as tmp:
        space_file = Path(tmp) / "space.yaml"
        import yaml

        space_file.write_text(yaml.safe_dump(SearchSpace.from_dict(extra["space"]).to_dict()))
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(checkpoint)], arg_overrides={"data": str(data), "search_space": str(space_file), "subtransformer_config": ""}
        )
    device = resolve_device(generation.device, generation.fp16)
    model = models[0].eval().to(device)
    if generation.fp16:
        model.half()
    if config is not None:
        model.set_active_subnet(config)
    task.load_dataset(generation.split)
    dataset = task.dataset(generation.split)
    _, too_long = dataset.filter_indices_by_size(dataset.ordered_indices(), model.max_positions())
    if len(too_long) and not generation.skip_too_long:  # else BLEU would silently score the rest
        source, target = model.max_positions()
        raise HatError(f"split '{generation.split}': {len(too_long)} sentence(s) longer than the model takes "
                       f"({source} source / {target} target tokens), sentence #{too_long[0]} first", data)
    itr = task.get_batch_iterator(dataset, max_tokens=generation.max_tokens, max_sentences=generation.max_sentences,
                                  max_positions=model.max_positions(),
                                  ignore_invalid_inputs=generation.skip_too_long).next_epoch_itr(shuffle=False)
    generator = task.build_generator([model], Namespace(beam=generation.beam, lenpen=generation.lenpen, max_len_a=1.2,
                                                         max_len_b=10))
    pad = task.target_dictionary.pad()
    hypotheses, references = {}, {}
    if generation.progress:
        from tqdm import tqdm

        itr = tqdm(itr, total=len(itr), desc=f"translating {generation.split}", unit="batch")
    with torch.no_grad():
        for sample in itr:
            if device.type == "cuda":
                sample = move_to_cuda(sample, device)
            outputs = task.inference_step(generator, [model], sample)
            for i, sid in enumerate(sample["id"].tolist()):
                target = sample["target"][i]
                hypotheses[sid] = outputs[i][0]["tokens"].int().cpu()
                references[sid] = target[target.ne(pad)].int().cpu()
    if len(hypotheses) != len(dataset) - len(too_long):
        raise HatError(f"split '{generation.split}': translated {len(hypotheses)} of "
                       f"{len(dataset) - len(too_long)} sentences", data)
    return task, hypotheses, references


@dataclass(frozen=True)
class BleuScoring:
    """How generated tokens become text and how BLEU is computed.

    ``remove_bpe``: ``auto`` (the data folder's sentencepiece model, if it has one), ``sentencepiece``
    or ``subword_nmt`` (fairseq's rules for "\u2581" and "@@ "), or ``none``.
    ``style``: ``sacrebleu`` (detokenized text, ``tokenize`` as sacreBLEU's tokenizer) or ``hat``,
    BLEU as HAT reports it: tokenized text with compounds split ("a-b" -> "a ##AT##-##AT## b").
    """

    remove_bpe: str = "auto"
    tokenize: str = "13a"
    style: str = "sacrebleu"

    def text_decoder(self, data: str | Path, langs: tuple[str, str], dictionary: Any):
        if self.remove_bpe == "auto":
            pieces_to_text = sentencepiece_decoder(data, langs)
            return lambda tokens: pieces_to_text(dictionary.string(tokens).split())
        symbol = None if self.remove_bpe == "none" else self.remove_bpe
        return lambda tokens: dictionary.string(tokens, bpe_symbol=symbol)

    def score(self, hypotheses: list[str], references: list[str]) -> tuple[float, str]:
        import sacrebleu

        if self.style == "hat":
            from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a  # a submodule sacrebleu does not import

            tokenizer = Tokenizer13a()
            hypotheses = [_split_compounds(tokenizer(h)) for h in hypotheses]
            references = [_split_compounds(tokenizer(r)) for r in references]
            metric = sacrebleu.metrics.BLEU(tokenize="none")
            result = metric.corpus_score(hypotheses, [references])
            return float(result.score), f"{metric.get_signature()}|hat:13a+compound-split"
        metric = sacrebleu.metrics.BLEU(tokenize=self.tokenize)
        return float(metric.corpus_score(hypotheses, [references]).score), str(metric.get_signature())


def _split_compounds(text: str) -> str:
    return re.sub(r"(\S)-(\S)", r"\1 ##AT##-##AT## \2", text)


def default_config(loaded: Any) -> Any:
    """The config to use when none is given: the one the checkpoint trained, else (a SuperTransformer)
    its largest SubTransformer, said out loud."""
    import logging

    if loaded.fixed_config is not None:
        return loaded.fixed_config
    logging.getLogger("hat").info("%s is a SuperTransformer and no --config was given: using its largest "
                                  "SubTransformer", loaded.path)
    return loaded.space.largest()


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    config: Any | None = None,
    *,
    split: str = "test",
    beam: int = 5,
    lenpen: float = 1.0,
    max_tokens: int = 4096,
    bleu: bool = True,
    label_smoothing: float = 0.1,
    scoring: BleuScoring | None = None,
    device: str = "cpu",
    fp16: bool = False,
) -> dict[str, Any]:
    """Loss and BLEU of a SubTransformer with the checkpoint's weights, on ``device``.

    ``config`` None: the checkpoint's fixed SubTransformer if it trained one, else the largest.
    """
    from hat.checkpoints import load_supernet
    from hat.data.batches import load_batches
    from hat.devices import resolve_device

    where = resolve_device(device, fp16)  # before any loading: a missing GPU is one line, at once
    loaded = load_supernet(checkpoint)
    if config is None:
        config = default_config(loaded)
    loaded.space.validate(config)
    loaded.supernet.set_active_subnet(config)
    loaded.supernet.to(where)
    if fp16:
        loaded.supernet.half()
    batches = [batch.to(where) for batch in load_batches(data, split, max_tokens=max_tokens, langs=loaded.langs)]
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "split": split, "archid": config.archid,
        "loss": validation_loss(loaded.supernet, batches, label_smoothing),
    }
    if bleu:
        generated = generate_bleu(checkpoint, data, config,
                                  Generation(split, beam, lenpen, max_tokens, device=device, fp16=fp16), scoring)
        result.update(bleu=generated["bleu"], bleu_signature=generated["bleu_signature"],
                      sentences=generated["sentences"], beam=beam, lenpen=lenpen, device=device,
                      sample_hypothesis=generated["hypotheses"][0], sample_reference=generated["references"][0])
    return result
