"""Klingner et al., ITSC 2020 (docs/methods.md §1): class-incremental learning by distillation.

A student (fresh every stage by default) learns the new classes' labels with cross-entropy and, on
the pixels the new labels leave unlabelled, the frozen previous model's old-class distribution
through entropy-weighted distillation. A stage that brings no new class has no distillation target
and trains on its labels alone (e.g. the one-image round 0 of Ianvs' fwt_splitting).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llseg.data.labels import IGNORE_INDEX
from llseg.methods.losses import pixel_rows
from llseg.methods.recipe import Recipe, RecipeOptions
from llseg.methods.registry import register_recipe


def entropy_weighted_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    unlabelled: torch.Tensor,
    *,
    temperature: float = 1.0,
    lambda_gs: float = 1.0,
) -> torch.Tensor:
    """Klingner et al.'s distillation with entropy ("gradient scaling") weights, docs/methods.md §1.3.

    L_KD = T² · mean_{i∈U} w_i · (−Σ_{c<C_old} ȳ_ic · log p^T_ic), with ȳ = softmax(teacher/T) over
    the C_old old classes, log p^T = log_softmax(student/T) over ALL student channels (so matching
    the old targets also pushes new-class probability down), and w_i = 1 + λ_GS · H₂(ȳ_i).

    Args:
        student_logits: N×(C_old+C_new)×H×W; the first C_old channels are the old classes.
        teacher_logits: N×C_old×H×W from the frozen previous model.
        unlabelled: N×H×W bool mask U (pixels labelled 255 in the current task).
    """
    n_old = teacher_logits.shape[1]
    if not unlabelled.any():
        return student_logits.sum() * 0.0
    target = F.softmax(pixel_rows(teacher_logits).float() / temperature, dim=1)
    log_p = F.log_softmax(pixel_rows(student_logits).float() / temperature, dim=1)[:, :n_old]
    ce = -(target * log_p).sum(1)
    entropy = -(target * torch.log2(target.clamp_min(1e-12))).sum(1)
    weight = 1.0 + lambda_gs * entropy
    return temperature**2 * (weight * ce)[unlabelled.reshape(-1)].mean()


@dataclass(frozen=True)
class KlingnerOptions(RecipeOptions):
    """Defaults: the paper's (docs/methods.md §1.3, §1.4).

    Attributes:
        temperature: distillation temperature T. lambda_gs: entropy weight λ_GS.
        init_from_teacher: start the student from the teacher instead of a fresh model (the paper
            re-initialises the student every stage).
    """

    temperature: float = 1.0
    lambda_gs: float = 1.0
    init_from_teacher: bool = False


@register_recipe("klingner", aliases=("cil",))
class Klingner(Recipe):
    """Supervised cross-entropy on the new labels + entropy-weighted distillation from the teacher."""

    Options = KlingnerOptions
    keeps_teacher = True
    options: KlingnerOptions

    @property
    def fresh_student(self) -> bool:
        return not self.options.init_from_teacher

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        logits = student(image)
        loss = self.supervised(logits, target)
        if teacher is None:
            return loss
        with torch.no_grad():
            teacher_logits = teacher(image)
        return loss + entropy_weighted_distillation(
            logits, teacher_logits, target == IGNORE_INDEX,
            temperature=self.options.temperature, lambda_gs=self.options.lambda_gs,
        )
