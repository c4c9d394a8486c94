"""``--task hat_translation``: translation where every update trains one sampled SubTransformer."""

import math
from dataclasses import dataclass, field

import torch
from fairseq import metrics
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from hat.data.batches import keep_every_batch
from hat.errors import HatError
from hat.space import SAMPLERS, SubTransformerConfig, update_configs

LOSS_KEYS = ("loss", "nll_loss")



@dataclass
class HatTranslationConfig(TranslationConfig):
    sampler: str = field(
        default="uniform",
        metadata={"help": "uniform: one SubTransformer per update (HAT); sandwich: largest + smallest + one random"},
    )
    subtransformer_config: str = field(
        default="", metadata={"help": "train (or generate with) this fixed SubTransformer config YAML"}
    )
    seed: int = II("common.seed")


@register_task("hat_translation", dataclass=HatTranslationConfig)
class HatTranslationTask(TranslationTask):
    cfg: HatTranslationConfig

    def __init__(self, cfg: HatTranslationConfig, src_dict, tgt_dict) -> None:
        super().__init__(cfg, src_dict, tgt_dict)
        if cfg.sampler not in SAMPLERS:
            raise HatError(f"--sampler must be one of {', '.join(SAMPLERS)}, got '{cfg.sampler}'")
        self.fixed_config: SubTransformerConfig | None = None
        if cfg.subtransformer_config:
            self.fixed_config = SubTransformerConfig.from_yaml(cfg.subtransformer_config)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        keep_every_batch(self.datasets[split])

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if self.fixed_config is not None:
            model.space.validate(self.fixed_config)
            model.set_active_subnet(self.fixed_config)
            model.fixed_config = self.fixed_config  # saved inside the checkpoint, not as a path
        return model

    def configs_for_update(self, model, update_num: int) -> list[SubTransformerConfig]:
        if self.fixed_config is not None:
            return [self.fixed_config]
        return update_configs(model.space, self.cfg.sampler, self.cfg.seed, update_num)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        outputs = []
        idle: dict[int, torch.nn.Parameter] | None = None
        for config in self.configs_for_update(model, update_num):
            model.set_active_subnet(config)
            unused = {id(p): p for p in model.supernet.inactive_parameters()}
            idle = unused if idle is None else {k: p for k, p in idle.items() if k in unused}
            outputs.append(super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad))
        self._idle_parameters = list((idle or {}).values())
        if len(outputs) == 1:
            return outputs[0]
        # Sandwich: gradients of all passes accumulate. Losses, sample sizes and token counts add up,
        # so the logged loss and nll_loss are the per-token means over the passes.
        loss = sum(o[0] for o in outputs)
        sample_size = sum(o[1] for o in outputs)
        logging_output = dict(outputs[0][2])
        for key in LOSS_KEYS + ("sample_size", "ntokens"):
            if key in logging_output:
                logging_output[key] = sum(o[2][key] for o in outputs)
        return loss, sample_size, logging_output

    def optimizer_step(self, optimizer, model, update_num):
        """Leave the layers this update's SubTransformer did not use untouched.

        Data-parallel reduction (fairseq's legacy DDP) gives unused parameters zero gradients,
        with which Adam would still move them (momentum, weight decay); dropping those gradients
        makes N processes train exactly like one process with ``--update-freq N``.
        """
        for param in getattr(self, "_idle_parameters", ()):
            param.grad = None
        super().optimizer_step(optimizer, model, update_num)

    def valid_step(self, sample, model, criterion):
        """Loss of the largest and the smallest SubTransformer (HAT's representative configs);
        with a fixed config, its loss alone. ``loss`` is the largest's (fairseq's best metric)."""
        model.eval()
        if self.fixed_config is not None:
            model.set_active_subnet(self.fixed_config)
            with torch.no_grad():
                return criterion(model, sample)
        space = model.space
        with torch.no_grad():
            model.set_active_subnet(space.smallest())
            small_loss, _, small_log = criterion(model, sample)
            model.set_active_subnet(space.largest())
            loss, sample_size, logging_output = criterion(model, sample)
        logging_output = dict(logging_output)
        for key in LOSS_KEYS:
            logging_output[f"{key}_smallest"] = small_log[key]
            logging_output[f"{key}_largest"] = logging_output[key]
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if not logging_outputs or "loss_smallest" not in logging_outputs[0]:
            return
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for which in ("largest", "smallest"):
            loss = sum(float(log[f"loss_{which}"]) for log in logging_outputs)
            nll = sum(float(log[f"nll_loss_{which}"]) for log in logging_outputs)
            metrics.log_scalar(f"loss_{which}", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
            metrics.log_scalar(f"nll_loss_{which}", nll / max(ntokens, 1) / math.log(2), ntokens, round=3)
