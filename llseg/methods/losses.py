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

    With a new task's labels this is Klingner's L_CE (docs/methods.md §1.3): log-softmax over all
    channels, indexed at the new class.
    """
    if not (target != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(pixel_rows(logits).float(), target.reshape(-1), ignore_index=IGNORE_INDEX)


def bce_with_ignore(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSUL's per-class sigmoid BCE: Σ_c BCE(σ(z_ic), [y_i = c]) averaged over labelled pixels.

    Args:
        logits: N×C×H×W.
        target: N×H×W channel ids in 0..C-1 or 255 (ignored). Returns 0 if no pixel is labelled.
    """
    valid = target != IGNORE_INDEX
    if not valid.any():
        return logits.sum() * 0.0
    one_hot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).permute(0, 3, 1, 2).to(torch.float32)
    loss = F.binary_cross_entropy_with_logits(logits.float(), one_hot, reduction="none").sum(1)
    return loss[valid].mean()


def probabilities(logits: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Per-channel probabilities: sigmoid for ``bce``, softmax over channels for ``ce``."""
    return torch.sigmoid(logits.float()) if loss_type == "bce" else torch.softmax(logits.float(), dim=1)
