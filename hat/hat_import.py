"""Read the checkpoints HAT's fairseq fork saved (its SuperTransformers and SubTransformers).

A HAT checkpoint is a pickle holding ``args`` (an ``argparse.Namespace`` with the search space and,
for a trained SubTransformer, its ``*_subtransformer`` fields), the weights under HAT's names, and
training state that may include fairseq 0.8's meter objects. It is read with
``torch.load(weights_only=True)`` and an allow-list: ``argparse.Namespace`` and inert stand-ins for
the meter classes (their state is kept as plain attributes; nothing of theirs runs). Anything else
in the file is refused in one line.

HAT's weights map onto this project's SuperTransformer one to one: its packed ``in_proj_weight``
(query, key, value rows) is split, every other tensor keeps its name. Tensors wider than the space's
largest choices are cut to their leading slice, the only part any SubTransformer reads in HAT.
"""
from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hat.errors import HatError
from hat.space import SearchSpace, SubTransformerConfig
from hat.space.config import HAT_KEYS
from hat.supernet import SuperTransformer
from hat.tokens import PAD

IGNORED_SUFFIXES = ("embed_positions._float_tensor", ".version")


class InertMeter:
    """Stands in for fairseq 0.8's meters in a HAT checkpoint: attributes only, no behaviour."""


METER_NAMES = ("AverageMeter", "TimeMeter", "StopwatchMeter")


@dataclass
class ImportedHat:
    supernet: SuperTransformer
    space: SearchSpace
    fixed_config: SubTransformerConfig | None  # the SubTransformer a HAT SubTransformer checkpoint trained
    num_updates: int
    source_lang: str | None = None
    target_lang: str | None = None


def _allow_list() -> list:
    return [argparse.Namespace] + [(InertMeter, f"fairseq.meters.{name}") for name in METER_NAMES]


def read_hat_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dictionary, unpickled with the allow-list only."""
    from hat.checkpoints import load_weights_only

    path = Path(path)
    if not path.is_file():
        raise HatError("checkpoint not found", path)
    with torch.serialization.safe_globals(_allow_list()):
        state = load_weights_only(path)
    if not isinstance(state, dict) or not isinstance(state.get("args"), argparse.Namespace):
        raise HatError("not a checkpoint of HAT's fairseq fork (no args namespace)", path)
    if not isinstance(state.get("model"), dict):
        raise HatError("not a checkpoint of HAT's fairseq fork (no model weights)", path)
    return state


def _choices(args: argparse.Namespace, name: str, path: Path) -> list[int]:
    value = getattr(args, name, None)
    if not isinstance(value, (list, tuple)) or not value:
        raise HatError(f"its args have no '{name}' (is it a HAT SuperTransformer checkpoint?)", path)
    return [int(v) for v in value]


def space_from_args(args: argparse.Namespace, path: Path, name: str = "hat_import") -> SearchSpace:
    """The search space HAT's args describe."""
    for flag, refusal in (("encoder_normalize_before", "pre-norm layers"), ("decoder_normalize_before", "pre-norm layers"),
                          ("encoder_learned_pos", "learned positions"), ("decoder_learned_pos", "learned positions"),
                          ("vocab_original_scaling", "--vocab-original-scaling")):
        if getattr(args, flag, False):
            raise HatError(f"{refusal} ({flag}) are not supported: HAT's defaults are post-norm, sinusoidal, "
                           "scaled by the active width", path)
    if getattr(args, "activation_fn", "relu") != "relu":
        raise HatError(f"activation {args.activation_fn!r} is not supported (HAT uses relu)", path)
    encoder = {"embed_dim": "encoder_embed_choice", "layers": "encoder_layer_num_choice",
               "ffn_dim": "encoder_ffn_embed_dim_choice", "heads": "encoder_self_attention_heads_choice"}
    decoder = {"embed_dim": "decoder_embed_choice", "layers": "decoder_layer_num_choice",
               "ffn_dim": "decoder_ffn_embed_dim_choice", "self_heads": "decoder_self_attention_heads_choice",
               "cross_heads": "decoder_ende_attention_heads_choice", "ende_attn": "decoder_arbitrary_ende_attn_choice"}
    qkv = getattr(args, "qkv_dim", None) or getattr(args, "encoder_embed_dim", None)
    try:
        return SearchSpace.from_dict({
            "name": name, "description": f"imported from HAT checkpoint {path.name}", "qkv_dim": int(qkv),
            "share_all_embeddings": bool(getattr(args, "share_all_embeddings", False)),
            "encoder": {k: _choices(args, v, path) for k, v in encoder.items()},
            "decoder": {k: _choices(args, v, path) for k, v in decoder.items()},
        })
    except (HatError, TypeError, ValueError) as err:
        raise HatError(f"its args describe no valid search space ({err})", path) from None


def subtransformer_from_args(args: argparse.Namespace) -> SubTransformerConfig | None:
    """The SubTransformer a HAT SubTransformer checkpoint trained (None when its args name none)."""
    values = {key: getattr(args, key.replace("-", "_"), None) for key in HAT_KEYS}
    if any(value is None for value in values.values()):
        return None
    return SubTransformerConfig.from_dict(values)


def _split_qkv(prefix: str, weights: dict[str, torch.Tensor], qkv_dim: int) -> dict[str, torch.Tensor]:
    """HAT's packed (or separate) query/key/value tensors of one attention block, under our names."""
    out: dict[str, torch.Tensor] = {}
    packed = weights.get(f"{prefix}.in_proj_weight")
    for index, part in enumerate("qkv"):
        rows = slice(index * qkv_dim, (index + 1) * qkv_dim)
        out[f"{prefix}.{part}_proj.weight"] = packed[rows] if packed is not None else weights[f"{prefix}.{part}_proj_weight"]
        out[f"{prefix}.{part}_proj.bias"] = weights[f"{prefix}.in_proj_bias"][rows]
    return out


def convert_weights(weights: dict[str, torch.Tensor], space: SearchSpace, path: Path) -> dict[str, torch.Tensor]:
    """HAT's state dict under this project's SuperTransformer names."""
    if "decoder.embed_out" in weights:
        raise HatError("separate output embeddings (decoder.embed_out) are not supported: HAT ties them", path)
    if any(key.startswith(("encoder.layer_norm.", "decoder.layer_norm.")) for key in weights):
        raise HatError("final layer norms (pre-norm models) are not supported", path)
    converted: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if key.endswith(IGNORED_SUFFIXES) or not isinstance(value, torch.Tensor):
            continue
        head, _, leaf = key.rpartition(".")
        if leaf in ("in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if f"{head}.q_proj.bias" not in converted:
                try:
                    converted.update(_split_qkv(head, weights, space.qkv_dim))
                except KeyError as err:
                    raise HatError(f"attention {head} lacks {err.args[0]}", path) from None
            continue
        converted[key] = value
    return converted


def _fit(converted: dict[str, torch.Tensor], model: SuperTransformer, path: Path) -> dict[str, torch.Tensor]:
    """Leading slices of tensors wider than the space needs; a tensor narrower than it is refused."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise HatError(f"checkpoint lacks {len(missing)} weight(s) the space needs, e.g. {missing[0]}", path)
    fitted = {}
    for key, want in expected.items():
        have = converted[key]
        if have.dim() != want.dim() or any(h < w for h, w in zip(have.shape, want.shape)):
            raise HatError(f"{key} has shape {tuple(have.shape)}, the space needs {tuple(want.shape)}", path)
        fitted[key] = have[tuple(slice(0, w) for w in want.shape)].to(want.dtype).clone()
    return fitted


def import_hat_checkpoint(path: str | Path, space: SearchSpace | None = None) -> ImportedHat:
    """A HAT checkpoint as this project's SuperTransformer (eval mode), its space and, for a trained
    SubTransformer, its config. ``space``: use these choices instead of the args' (they must fit)."""
    path = Path(path)
    state = read_hat_checkpoint(path)
    args: argparse.Namespace = state["args"]
    space = space or space_from_args(args, path)
    weights = convert_weights(state["model"], space, path)
    embed, out_embed = weights.get("encoder.embed_tokens.weight"), weights.get("decoder.embed_tokens.weight")
    if embed is None or out_embed is None:
        raise HatError("checkpoint has no embedding tables", path)
    supernet = SuperTransformer(space, src_vocab_size=embed.shape[0], tgt_vocab_size=out_embed.shape[0], padding_idx=PAD,
                                max_positions=max(int(getattr(args, "max_source_positions", 1024)),
                                                  int(getattr(args, "max_target_positions", 1024))))
    supernet.load_state_dict(_fit(weights, supernet, path), strict=True)
    try:
        fixed = subtransformer_from_args(args)
        if fixed is not None:
            space.validate(fixed)
    except HatError as err:
        raise HatError(f"its SubTransformer does not fit the space ({err}); HAT's SubTransformer checkpoints "
                       "do not record the search space they were cut from: pass it (--space)", path) from None
    history = state.get("optimizer_history") or [{}]
    num_updates = int(history[-1].get("num_updates", 0)) if isinstance(history[-1], dict) else 0
    return ImportedHat(supernet.eval(), space, fixed, num_updates,
                       getattr(args, "source_lang", None), getattr(args, "target_lang", None))


def _check_vocabulary(imported: ImportedHat, data: Path) -> None:
    """The data-bin's dictionaries must be the ones the checkpoint's embeddings were trained with."""
    from hat.data.prepare import check_data_folder
    from hat.export.dictionary import Dictionary

    meta = check_data_folder(data, ())
    for side, size in (("src", imported.supernet.src_vocab_size), ("tgt", imported.supernet.tgt_vocab_size)):
        words = len(Dictionary.load(data / f"dict.{meta[side]}.txt"))
        if words != size:
            raise HatError(f"dict.{meta[side]}.txt has {words} entries, the checkpoint's embeddings {size}: "
                           "use the data-bin (dictionaries) the checkpoint was trained with", data)


def write_checkpoint(imported: ImportedHat, out: str | Path, data: str | Path) -> Path:
    """Save ``imported`` as this project's fairseq checkpoint (``hat search``, ``export``, ``evaluate``,
    ``train --restore-file`` read it), configured for the data-bin ``data``; needs fairseq.

    The space and the SubTransformer config are written beside it (``OUT_space.yaml``,
    ``OUT_subtransformer.yaml``) for the commands that take them as files.
    """
    import yaml
    from omegaconf import OmegaConf

    from hat.io import atomic_write_bytes, atomic_write_text
    from hat.training import build_train_argv, parse_train_argv

    out = Path(out)
    _check_vocabulary(imported, Path(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    space_file = out.with_name(f"{out.stem}_space.yaml")
    atomic_write_text(space_file, yaml.safe_dump(imported.space.to_dict(), sort_keys=False, default_flow_style=None))
    config_file = None
    if imported.fixed_config is not None:
        config_file = out.with_name(f"{out.stem}_subtransformer.yaml")
        imported.fixed_config.to_yaml(config_file)
    cfg = parse_train_argv(build_train_argv(space=space_file, data=data, save_dir=out.parent,
                                            subtransformer_config=config_file))
    weights: dict[str, Any] = {f"{key.split('.', 1)[0]}.inner.{key.split('.', 1)[1]}": value
                               for key, value in imported.supernet.state_dict().items()}
    weights["_extra_state"] = {"space": imported.space.to_dict(), "space_fingerprint": imported.space.fingerprint,
                               "subtransformer": imported.fixed_config.to_dict() if imported.fixed_config else None}
    state = {
        "args": None, "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "model": weights,
        "criterion": None, "task_state": {}, "last_optimizer_state": None,
        "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "Adam",
                               "lr_scheduler_state": {"best": None}, "num_updates": imported.num_updates}],
        "extra_state": {"train_iterator": {"version": 2, "epoch": 1, "iterations_in_epoch": 0, "shuffle": True},
                        "val_loss": None, "previous_training_time": 0.0},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return out
