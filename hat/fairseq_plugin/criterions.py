"""``--criterion hat_distillation``: label-smoothed cross-entropy plus word-level distillation.

A teacher (a HAT checkpoint: a SuperTransformer's largest SubTransformer with its inherited
weights, or a fine-tuned SubTransformer) scores the same batch in eval mode, without gradients.
The student's loss is ``(1 - alpha) * label-smoothed CE + alpha * T^2 * KL(teacher_T || student_T)``
over the target tokens, where ``_T`` are distributions at temperature ``T`` (Hinton et al.).
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)

from hat.errors import HatError


@dataclass
class HatDistillationConfig(LabelSmoothedCrossEntropyCriterionConfig):
    distill_from: str = field(default="", metadata={"help": "teacher checkpoint (HAT SuperTransformer or SubTransformer)"})
    distill_alpha: float = field(default=0.5, metadata={"help": "weight of the distillation term (0: none, 1: only it)"})
    distill_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of teacher and student"})


def load_teacher(path: str, vocab_size: int) -> torch.nn.Module:
    """The teacher in eval mode with frozen weights: a fixed SubTransformer checkpoint's own config,
    else the SuperTransformer's largest SubTransformer."""
    from hat.checkpoints import load_supernet

    checkpoint = load_supernet(path)
    teacher = checkpoint.supernet
    if teacher.tgt_vocab_size != vocab_size:
        raise HatError(f"the teacher's vocabulary has {teacher.tgt_vocab_size} words, the student's {vocab_size}", path)
    teacher.set_active_subnet(checkpoint.fixed_config or checkpoint.space.largest())
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      padding_idx: int, temperature: float) -> torch.Tensor:
    """Summed over non-padding target tokens: T^2 * KL(softmax(teacher / T) || softmax(student / T))."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = (teacher.exp() * (teacher - student)).sum(-1)
    return per_token.masked_fill(target.eq(padding_idx), 0.0).sum() * temperature**2


@register_criterion("hat_distillation", dataclass=HatDistillationConfig)
class HatDistillationCriterion(LabelSmoothedCrossEntropyCriterion):
    def __init__(self, task, sentence_avg, label_smoothing, distill_from, distill_alpha, distill_temperature,
                 ignore_prefix_size=0, report_accuracy=False):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        if not distill_from:
            raise HatError("--criterion hat_distillation needs a teacher checkpoint (--distill-from)")
        if not 0.0 <= distill_alpha <= 1.0 or not distill_temperature > 0:
            raise HatError(f"--distill-alpha must be in [0, 1] and --distill-temperature > 0, got "
                           f"{distill_alpha} and {distill_temperature}")
        self.alpha, self.temperature = distill_alpha, distill_temperature
        # Held outside the module tree: fairseq neither trains it nor saves it in checkpoints.
        self._teacher = [load_teacher(distill_from, len(task.target_dictionary))]

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        smoothed, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
        loss = smoothed
        distill = torch.zeros((), device=smoothed.device)
        if self.alpha > 0:
            teacher = self._teacher[0]
            if next(teacher.parameters()).device != net_output[0].device:
                teacher.to(net_output[0].device)
            with torch.no_grad():
                teacher_logits = teacher(sample["net_input"]["src_tokens"], sample["net_input"]["prev_output_tokens"])
            distill = distillation_loss(net_output[0], teacher_logits, model.get_targets(sample, net_output),
                                        self.padding_idx, self.temperature)
            loss = (1 - self.alpha) * smoothed + self.alpha * distill
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data, "nll_loss": nll_loss.data, "distill_loss": distill.data,
            "ntokens": sample["ntokens"], "nsentences": sample["target"].size(0), "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        distill = sum(log.get("distill_loss", 0) for log in logging_outputs)
        if sample_size:
            metrics.log_scalar("distill_loss", distill / sample_size / math.log(2), sample_size, round=3)
