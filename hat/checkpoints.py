"""Read HAT's fairseq checkpoints without fairseq and without unpickling code.

``torch.load(..., weights_only=True)`` reads the checkpoint; the space travels inside it (in the
model config and the state dict's extra state), so weights are never paired with another space.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hat.defaults import ACTIVATION_DROPOUT, ATTENTION_DROPOUT, DROPOUT
from hat.errors import HatError
from hat.io import file_sha256
from hat.space import SearchSpace, SubTransformerConfig
from hat.supernet import SuperTransformer
from hat.tokens import PAD

PREFIXES = (("encoder.inner.", "encoder."), ("decoder.inner.", "decoder."))


@dataclass
class LoadedCheckpoint:
    supernet: SuperTransformer
    space: SearchSpace
    fixed_config: SubTransformerConfig | None  # set when the checkpoint trained one SubTransformer
    num_updates: int
    sha256: str
    path: Path
    langs: tuple[str, str] | None = None  # (source, target) it was trained on, when recorded


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def load_weights_only(source: Any, map_location: Any = "cpu") -> Any:
    """``torch.load`` that never runs code from the file, on every torch version HAT allows.

    ``weights_only=True`` is passed explicitly: torch >= 2.6 defaults to it but lets
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turn it off only when the caller did not ask, and
    older versions default to full unpickling. ``source`` is a path or an open binary file.
    """
    name = source if isinstance(source, (str, Path)) else getattr(source, "name", None)  # a Path's .name drops its folder
    if _torch_version() < (2, 6):
        raise HatError(f"torch {torch.__version__} cannot read checkpoints safely (CVE-2025-32434): "
                       "install torch >= 2.6", name)
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a readable checkpoint"
        raise HatError(f"cannot read checkpoint safely ({_load_failure(err)[:300]})", name) from None


_TORCH_ADVICE = ("Weights only load failed", "(1)", "(2)", "Please file an issue", "Check the documentation")


def _load_failure(err: Exception) -> str:
    """What in the file made ``torch.load`` fail, without torch's advice on how to unpickle it anyway."""
    text = str(err).strip()
    if isinstance(err, (KeyError, EOFError)) or not text:  # torch's bare "magic number" KeyError and the like
        return f"not a PyTorch checkpoint file: {type(err).__name__} {text}".strip()
    if not text.startswith(_TORCH_ADVICE[0]):
        return text.splitlines()[0]
    _, marker, after = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (after if marker else text).splitlines()]
    reason = next((line for line in lines if line and not line.startswith(_TORCH_ADVICE)),
                  "it holds objects other than tensors and plain data")
    return f"a weights-only load refused it: {reason.split('. ')[0].rstrip('.')}"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise HatError("checkpoint not found", path)
    state = load_weights_only(path)
    if not isinstance(state, dict):
        raise HatError("not a fairseq checkpoint (no state dictionary)", path)
    return state


class _WeightsOnlyTorch:
    """The ``torch`` module as fairseq's checkpoint code sees it once HAT is loaded: ``load`` is
    :func:`load_weights_only`, everything else is torch itself."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    @staticmethod
    def load(source: Any, map_location: Any = None, **_ignored: Any) -> Any:
        return load_weights_only(source, map_location)


def install_fairseq_safe_loading() -> None:
    """Route every checkpoint fairseq reads (``--restore-file``, ``--finetune-from-model``,
    generation, averaging) through :func:`load_weights_only`; idempotent, per process."""
    from fairseq import checkpoint_utils

    if not isinstance(checkpoint_utils.torch, _WeightsOnlyTorch):
        checkpoint_utils.torch = _WeightsOnlyTorch(torch)


def _fixed_config(extra: dict, task_cfg: dict, space: SearchSpace, path: Path) -> SubTransformerConfig | None:
    """The one SubTransformer a checkpoint trained (stored inside it), or None for a SuperTransformer.

    Checkpoints written before the config was stored name a YAML file instead; if that file is
    gone the checkpoint is refused rather than read as a SuperTransformer.
    """
    try:
        if extra.get("subtransformer"):
            config = SubTransformerConfig.from_dict(extra["subtransformer"])
        elif task_cfg.get("subtransformer_config"):
            config = SubTransformerConfig.from_yaml(task_cfg["subtransformer_config"])
        else:
            return None
        space.validate(config)
    except HatError as err:
        raise HatError(f"the SubTransformer this checkpoint trained cannot be recovered ({err}); "
                       "pass its config with --config", path) from None
    return config


def load_supernet(path: str | Path, space: SearchSpace | None = None) -> LoadedCheckpoint:
    """Build the SuperTransformer of a HAT fairseq checkpoint (eval mode).

    ``space``: refuse the checkpoint unless it was trained on this space.
    """
    path = Path(path)
    state = read_checkpoint(path)
    cfg = state.get("cfg") or {}
    model_cfg, task_cfg = cfg.get("model") or {}, cfg.get("task") or {}
    weights = state.get("model")
    extra = weights.get("_extra_state") if isinstance(weights, dict) else None
    if not isinstance(extra, dict) or "space" not in extra or model_cfg.get("_name") != "hat_transformer":
        raise HatError("not a HAT checkpoint (no hat_transformer model with a stored search space)", path)
    try:
        stored = SearchSpace.from_dict(extra["space"])
    except HatError as err:
        raise HatError(f"checkpoint holds an invalid search space: {err}", path) from None
    if space is not None and space.fingerprint != stored.fingerprint:
        raise HatError(f"checkpoint was trained on space '{stored.name}', not on '{space.name}'", path)
    embed = weights.get("encoder.inner.embed_tokens.weight")
    out_embed = weights.get("decoder.inner.embed_tokens.weight")
    if embed is None or out_embed is None:
        raise HatError("checkpoint has no embedding tables", path)
    supernet = SuperTransformer(
        stored,
        src_vocab_size=embed.shape[0],
        tgt_vocab_size=out_embed.shape[0],
        padding_idx=PAD,
        dropout=float(model_cfg.get("dropout", DROPOUT)),
        attention_dropout=float(model_cfg.get("attention_dropout", ATTENTION_DROPOUT)),
        activation_dropout=float(model_cfg.get("activation_dropout", ACTIVATION_DROPOUT)),
        max_positions=max(int(model_cfg.get("max_source_positions", 1024)), int(model_cfg.get("max_target_positions", 1024))),
    )
    renamed = {}
    for key, value in weights.items():
        if key == "_extra_state":
            continue
        for old, new in PREFIXES:
            if key.startswith(old):
                renamed[new + key[len(old):]] = value
    try:
        supernet.load_state_dict(renamed, strict=True)
    except RuntimeError as err:
        raise HatError(f"checkpoint weights do not fit space '{stored.name}': {str(err).splitlines()[1].strip()}", path) from None
    fixed = _fixed_config(extra, task_cfg, stored, path)
    num_updates = int(((state.get("optimizer_history") or [{}])[-1]).get("num_updates", 0))
    langs = (task_cfg.get("source_lang"), task_cfg.get("target_lang"))
    langs = langs if all(isinstance(x, str) for x in langs) else None
    return LoadedCheckpoint(supernet.eval(), stored, fixed, num_updates, file_sha256(path), path, langs)


def epoch_checkpoints(save_dir: str | Path, last: int) -> list[Path]:
    """The ``last`` newest epoch (``checkpointN.pt``) or update (``checkpoint_N_M.pt``) checkpoints of
    ``save_dir``, oldest first (what fairseq's own averaging script picks)."""
    import re

    numbered = []
    for path in Path(save_dir).glob("checkpoint*.pt"):
        match = re.fullmatch(r"checkpoint(\d+)\.pt|checkpoint_(\d+)_(\d+)\.pt", path.name)
        if match:
            numbered.append(((int(match.group(1) or match.group(2)), int(match.group(3) or 0)), path))
    if len(numbered) < last:
        raise HatError(f"needs {last} epoch or update checkpoints, found {len(numbered)} "
                       "(train without --no-epoch-checkpoints)", save_dir)
    return [path for _, path in sorted(numbered)[-last:]]


def average_checkpoints(paths: list[str | Path], out: str | Path) -> Path:
    """One checkpoint whose weights are the mean of ``paths``' (HAT averages its last 10 on IWSLT).

    Every input must come from the same space with the same shapes; the output keeps the newest
    input's configuration and training state, with the averaged weights.
    """
    import io

    from hat.io import atomic_write_bytes

    if len(paths) < 2:
        raise HatError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    states = []
    for path in paths:
        load_supernet(path)  # a HAT checkpoint with a valid space, or one line saying why not
        states.append(read_checkpoint(path))
    first = states[0]["model"]
    for path, state in zip(paths[1:], states[1:]):
        model = state["model"]
        if model["_extra_state"].get("space_fingerprint") != first["_extra_state"].get("space_fingerprint"):
            raise HatError("checkpoint was trained on another space than the first one", path)
        if set(model) != set(first) or any(model[k].shape != first[k].shape for k in first if k != "_extra_state"):
            raise HatError("checkpoint has other weights than the first one", path)
    averaged = dict(states[-1]["model"])
    for key in first:
        if key != "_extra_state" and first[key].is_floating_point():
            averaged[key] = (sum(s["model"][key].double() for s in states) / len(states)).to(first[key].dtype)
    buffer = io.BytesIO()
    torch.save({**states[-1], "model": averaged, "last_optimizer_state": None}, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)
