"""Losses of the continual recipes. Logits are N×C×H×W, targets N×H×W channel ids, 255 = ignore."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from llseg.data.labels import IGNORE_INDEX


def pixel_rows(maps: torch.Tensor) -> torch.Tensor:
    """N×C×H×W -> (N·H·W)×C, one row per pixel in (n, h, w) order: a free view of the channels_last
    maps the learner trains with (a copy otherwise).

    Measured on the 2-core CPU, bf16 ERFNet logits at 256×512, batch 4: cross-entropy forward +
    backward over these rows takes 63 ms, over dim 1 of the channels_last maps 107 ms.
    """
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def labelled_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the full softmax, averaged over labelled pixels (0 if none is labelled).

    With a new task's labels this is Klingner's L_CE (methods.md §1.3): log-softmax over all
    channels, indexed at the new class.
    """
    if not (target != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(pixel_rows(logits).float(), target.reshape(-1), ignore_index=IGNORE_INDEX)


def entropy_weighted_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    unlabelled: torch.Tensor,
    *,
    temperature: float = 1.0,
    lambda_gs: float = 1.0,
) -> torch.Tensor:
    """Klingner et al.'s distillation with entropy ("gradient scaling") weights, methods.md §1.3.

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

