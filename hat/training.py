"""Training on fairseq through the ``--user-dir`` plugin (needs the ``train`` extra).

``train()`` builds a fairseq-train command line with HAT's defaults and runs fairseq's own
training loop in this process: checkpoints, resume (``checkpoint_last.pt``), logging and progress
are fairseq's.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hat.defaults import ATTENTION_DROPOUT, DROPOUT
from hat.errors import HatError

PLUGIN_DIR = Path(__file__).resolve().parent / "fairseq_plugin"
log = logging.getLogger(__name__)

# HAT-like defaults (its IWSLT recipe, sized down to CPU batches); every one can be overridden.
DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "adam-betas": "(0.9, 0.98)",
    "clip-norm": 0.0,
    "lr": 5e-4,
    "lr-scheduler": "inverse_sqrt",
    "warmup-init-lr": 1e-7,
    "weight-decay": 1e-4,
    "criterion": "label_smoothed_cross_entropy",
    "label-smoothing": 0.1,
    "max-tokens": 4096,
    "dropout": DROPOUT,
    "attention-dropout": ATTENTION_DROPOUT,
    "seed": 1,
    "log-format": "simple",
    "log-interval": 50,
    "keep-last-epochs": 2,
    "ddp-backend": "legacy_ddp",  # tolerates parameters that an update's SubTransformer leaves unused
}


def load_plugin() -> None:
    """Register the plugin with fairseq exactly once (as fairseq's ``--user-dir`` would)."""
    from argparse import Namespace

    from fairseq import utils

    utils.import_user_module(Namespace(user_dir=str(PLUGIN_DIR)))


def options_to_argv(options: Mapping[str, Any]) -> list[str]:
    """``{"max-tokens": 4096, "no-epoch-checkpoints": True}`` -> ``["--max-tokens", "4096", "--no-epoch-checkpoints"]``."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


# Keys a training config file may not set: they would make fairseq import and run code from a folder.
CODE_OPTIONS = ("user-dir",)


def load_options_file(path: str | Path) -> dict[str, Any]:
    """Options from a YAML mapping (keys as fairseq flags without dashes, e.g. ``max-update: 1000``).

    A config file is data: ``user-dir`` (code to import) is refused; pass such a thing on the
    command line where it is visible.
    """
    from hat.io import load_yaml

    data = load_yaml(path, "training config file")
    if not isinstance(data, dict):
        raise HatError("a training config file must be a mapping of option: value", path)
    options = {str(k).lstrip("-").replace("_", "-"): v for k, v in data.items()}
    for key in CODE_OPTIONS:
        if key in options:
            raise HatError(f"'{key}' is not allowed in a training config file (it imports code)", path)
    return options


@dataclass(frozen=True)
class Distillation:
    """Word-level distillation while training: ``alpha`` weighs the teacher's term, ``temperature``
    softens both distributions; ``teacher`` is a HAT checkpoint (``None``: the restore file)."""

    alpha: float = 0.5
    temperature: float = 1.0
    teacher: str | Path | None = None

    def options(self, restore_file: str | Path | None) -> dict[str, Any]:
        """fairseq options of the ``hat_distillation`` criterion."""
        teacher = self.teacher or restore_file
        if teacher is None:
            raise HatError("distillation needs a teacher: --distill-from, or --restore-file to learn from its "
                           "largest SubTransformer")
        if not Path(teacher).is_file():
            raise HatError("teacher checkpoint not found", teacher)
        if not 0 <= self.alpha <= 1 or not self.temperature > 0:
            raise HatError(f"--distill-alpha must be in [0, 1] and --distill-temperature > 0, got {self.alpha} "
                           f"and {self.temperature}")
        return {"criterion": "hat_distillation", "distill-from": str(teacher), "distill-alpha": self.alpha,
                "distill-temperature": self.temperature}


def stock_transformer_argv(config: Any, share_all_embeddings: bool = True) -> list[str]:
    """fairseq's own ``transformer`` with ``config``'s dimensions, for baselines.

    fairseq's layers are uniform: each side takes its first layer's FFN width and heads (the largest
    SubTransformer of a space is uniform).
    """
    return ["--arch", "transformer", "--task", "translation",
            "--encoder-embed-dim", str(config.encoder_embed_dim), "--decoder-embed-dim", str(config.decoder_embed_dim),
            "--encoder-ffn-embed-dim", str(config.encoder_ffn_dims[0]),
            "--decoder-ffn-embed-dim", str(config.decoder_ffn_dims[0]),
            "--encoder-layers", str(config.encoder_layers), "--decoder-layers", str(config.decoder_layers),
            "--encoder-attention-heads", str(config.encoder_heads[0]),
            "--decoder-attention-heads", str(config.decoder_self_heads[0]),
            "--share-all-embeddings" if share_all_embeddings else "--share-decoder-input-output-embed"]


def build_train_argv(
    *,
    space: str | Path,
    data: str | Path,
    save_dir: str | Path,
    subtransformer_config: str | Path | None = None,
    sampler: str = "uniform",
    options: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    from hat.data.prepare import check_data_folder
    from hat.space import SearchSpace, SubTransformerConfig

    space_obj = SearchSpace.from_yaml(space)
    meta = check_data_folder(data, ("train", "valid"), _languages(options or {}, extra_args))
    if subtransformer_config is not None:
        space_obj.validate(SubTransformerConfig.from_yaml(subtransformer_config))
    merged = dict(DEFAULTS)
    merged.update(options or {})
    argv = [str(data), "--user-dir", str(PLUGIN_DIR), "--task", "hat_translation", "--arch", "hat_transformer",
            "--search-space", str(space), "--save-dir", str(save_dir),
            "--source-lang", meta["src"], "--target-lang", meta["tgt"], "--sampler", sampler]
    if subtransformer_config is not None:
        argv += ["--subtransformer-config", str(subtransformer_config)]
    if not any(key in merged for key in ("cpu",)):
        import torch

        if not torch.cuda.is_available():
            merged["cpu"] = True
    return argv + options_to_argv(merged) + list(extra_args)


def default_warmup(max_update: int) -> int:
    """Warm-up updates when none are given: 10% of a bounded run (so a short run leaves warm-up),
    at most HAT's 4,000."""
    return 4000 if not max_update else max(1, min(4000, max_update // 10))


def _languages(options: Mapping[str, Any], extra_args: Sequence[str]) -> tuple[str, str] | None:
    """(source, target) when the options or the pass-through flags name them (both or neither)."""
    found = {key: options.get(key) for key in ("source-lang", "target-lang")}
    args = list(extra_args)
    for i, arg in enumerate(args):
        for key in found:
            if arg == f"--{key}" and i + 1 < len(args):
                found[key] = args[i + 1]
            elif arg.startswith(f"--{key}="):
                found[key] = arg.split("=", 1)[1]
    if not any(found.values()):
        return None
    if not all(found.values()):
        raise HatError("give --source-lang and --target-lang together")
    return str(found["source-lang"]), str(found["target-lang"])


def parse_train_argv(argv: Sequence[str]) -> Any:
    """fairseq-train's configuration for ``argv`` (fairseq's own parser); bad options are one line."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            args = options.parse_args_and_arch(parser, input_args=list(argv))
    except SystemExit:
        reason = next((line.split("error:", 1)[1].strip() for line in reversed(printed.getvalue().splitlines())
                       if "error:" in line), "invalid options")
        raise HatError(f"fairseq-train: {reason}") from None
    return convert_namespace_to_omegaconf(args)


def run_fairseq_train(cfg: Any) -> None:
    """fairseq-train with the configuration ``cfg`` (see :func:`parse_train_argv`), in this process."""
    from fairseq import checkpoint_utils, distributed_utils
    from fairseq_cli import train as fairseq_train

    from hat.checkpoints import install_fairseq_safe_loading

    install_fairseq_safe_loading()

    # fairseq keeps the best validation loss on a function attribute: a second training in the
    # same process would otherwise compare against the first one's best and never save its own.
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best
    dist = cfg.distributed_training
    if cfg.common.cpu and dist.distributed_world_size > 1 and not dist.distributed_no_spawn:
        _spawn_cpu_workers(cfg)
    else:
        distributed_utils.call_main(cfg, fairseq_train.main)


def _spawn_cpu_workers(cfg: Any) -> None:
    """Data-parallel training on CPU: one process per rank over gloo.

    fairseq spawns one process per *GPU* (``min(cuda_device_count, world_size)``), i.e. none on a
    CPU machine, and its torchrun path divides by the GPU count; so on CPU we start the ranks here.
    """
    import socket

    import torch.multiprocessing

    dist = cfg.distributed_training
    world = dist.distributed_world_size
    if dist.distributed_init_method is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dist.distributed_init_method = f"tcp://127.0.0.1:{port}"
    if dist.distributed_backend == "nccl":
        dist.distributed_backend = "gloo"
    dist.distributed_no_spawn = True
    start_rank = dist.distributed_rank or 0
    log.info("training on CPU with %d processes (gloo, %s)", world, dist.distributed_init_method)
    torch.multiprocessing.spawn(_cpu_worker, args=(cfg, start_rank), nprocs=world, join=True)


def _cpu_worker(index: int, cfg: Any, start_rank: int) -> None:
    import torch
    from fairseq import distributed_utils
    from fairseq_cli import train as fairseq_train

    # each rank gets its share of the cores instead of all of them
    torch.set_num_threads(max(1, torch.get_num_threads() // cfg.distributed_training.distributed_world_size))
    cfg.distributed_training.distributed_rank = start_rank + index
    distributed_utils.distributed_main(index, fairseq_train.main, cfg, {})


def train(
    *,
    space: str | Path,
    data: str | Path,
    save_dir: str | Path,
    subtransformer_config: str | Path | None = None,
    restore_file: str | Path | None = None,
    reset_optimizer: bool = False,
    sampler: str = "uniform",
    options: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    distill: Distillation | None = None,
) -> Path:
    """Train a SuperTransformer (or, with ``subtransformer_config``, one fixed SubTransformer).

    ``restore_file`` starts from a checkpoint: a SuperTransformer checkpoint with a
    ``subtransformer_config`` fine-tunes the inherited weights (optimizer and schedule reset).
    Re-running with the same ``save_dir`` resumes from its ``checkpoint_last.pt`` (and does
    nothing once that has reached ``max-update``). Returns the path of ``checkpoint_last.pt``.
    ``distill`` adds word-level distillation from a teacher (by default ``restore_file``'s
    largest SubTransformer).
    """
    from hat.io import check_output_dir
    from hat.space import SearchSpace

    opts = dict(options or {})
    space_obj = SearchSpace.from_yaml(space)
    if any(arg == "--user-dir" or arg.startswith("--user-dir=") for arg in extra_args):
        raise HatError("hat train loads its own fairseq plugin: --user-dir is not supported")
    check_output_dir(save_dir, "checkpoint folder")
    last = Path(save_dir) / "checkpoint_last.pt"
    if restore_file is not None:
        if not Path(restore_file).is_file():
            raise HatError("checkpoint to start from not found", restore_file)
        if not last.is_file():
            opts["restore-file"] = str(restore_file)
            if reset_optimizer:
                opts.update({"reset-optimizer": True, "reset-lr-scheduler": True, "reset-dataloader": True,
                             "reset-meters": True})
    if distill is not None:
        opts.update(distill.options(restore_file))
    argv = build_train_argv(space=space, data=data, save_dir=save_dir, subtransformer_config=subtransformer_config,
                            sampler=sampler, options=opts, extra_args=extra_args)
    cfg = parse_train_argv(argv)
    if "warmup-updates" not in opts and not any(a.startswith("--warmup-updates") for a in extra_args) \
            and "warmup_updates" in cfg.lr_scheduler:
        argv += ["--warmup-updates", str(default_warmup(cfg.optimization.max_update))]
        cfg = parse_train_argv(argv)
    if _check_checkpoints(cfg, space_obj, last):
        return last
    from hat.logs import log_file

    with log_file(Path(save_dir) / "train.log") as detail:
        log.info("training in %s (fairseq's log: %s)", save_dir, detail)
        logging.getLogger("hat.detail.training").info("fairseq-train %s", " ".join(argv))
        run_fairseq_train(cfg)
    return last


def _check_checkpoints(cfg: Any, space: Any, last: Path) -> bool:
    """Check every checkpoint fairseq would start from, however it was named (option, config file,
    pass-through flag); True when ``checkpoint_last.pt`` has already reached ``max-update``."""
    from hat.checkpoints import load_supernet

    named = [cfg.checkpoint.finetune_from_model]
    if cfg.checkpoint.restore_file != "checkpoint_last.pt":
        named.append(cfg.checkpoint.restore_file)
    for path in filter(None, named):
        if not Path(path).is_file():
            raise HatError("checkpoint to start from not found", path)
        load_supernet(path, space)  # weights-only read; refuses a checkpoint of another space in one line
    if not last.is_file():
        return False
    loaded = load_supernet(last, space)
    max_update = cfg.optimization.max_update
    if max_update and loaded.num_updates >= max_update:
        # fairseq would load it and still take one more update before noticing it is done
        log.info("%s: already trained for %d updates (max-update %d), nothing to do", last, loaded.num_updates,
                 max_update)
        return True
    return False
