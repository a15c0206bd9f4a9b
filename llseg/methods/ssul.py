"""SSUL's components (Cha et al., NeurIPS 2021; methods.md §2), as pure functions on tensors and models.

Channel layout with ``unknown``: logit channel 0 is the *unknown* class, channel ``k + 1`` is the
learner's class ``k`` (class 0 of the learner is the background). Without ``unknown`` channel
``k`` is class ``k``. Targets are N×H×W channel ids with 255 = ignore.
"""
from __future__ import annotations

from collections.abc import Sequence
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llseg.data.labels import IGNORE_INDEX

UNKNOWN = 0  # logit channel of the unknown class
BG_HEAD_LR_FACTOR = 1e-4  # SSUL trains the background head at lr · 1e-4 in frozen steps
# The flags of SSUL's published VOC command (README; memory-free SSUL, SSUL-M adds mem_size 100).
SSUL_VOC_FLAGS = {"loss_type": "bce", "unknown": True, "pseudo": True, "pseudo_thresh": 0.7, "freeze": True,
                  "bn_freeze": True, "w_transfer": True}


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


def merge_unknown(probs: torch.Tensor) -> torch.Tensor:
    """SSUL inference: add the unknown probability to the background and drop the unknown channel.

    probs N×(1+K)×H×W (channel 0 unknown, 1 background) -> N×K×H×W (channel 0 background).
    """
    merged = probs[:, 1:].clone()
    merged[:, 0] += probs[:, UNKNOWN]
    return merged


def pseudo_label(
    target: torch.Tensor, teacher_logits: torch.Tensor, *, loss_type: str, threshold: float, unknown: bool
) -> torch.Tensor:
    """SSUL pseudo-labels: background (and unknown) pixels take the old model's foreground class
    where it is confident (methods.md §2):

    ỹ_i = ĉ_i if y_i ∈ {unknown, background} and ĉ_i is an old foreground channel and
    max_c p_ic ≥ τ, else y_i, with p = sigmoid/softmax(teacher logits) and ĉ = argmax_c p_ic.

    Args:
        target: N×H×W channel ids of the current student (old channels keep their index).
        teacher_logits: N×C_old×H×W of the frozen previous model.
    """
    bg = 1 if unknown else 0
    background = (target == bg) | (target == UNKNOWN) if unknown else target == bg
    confidence, best = probabilities(teacher_logits, loss_type).max(dim=1)
    old_foreground = best > bg  # excludes the unknown (0) and background channels
    take = background & old_foreground & (confidence >= threshold)
    return torch.where(take, best, target)


def unknown_lut(base: np.ndarray, background_channel: int) -> np.ndarray:
    """Shift a ``uint8[256]`` train-id -> channel table for the unknown channel: class channels
    move up by one and the background (``background_channel`` before the shift) becomes unknown.

    This is SSUL's unknown labelling without saliency maps ("all background is unknown"); with
    saliency maps the dataset turns non-salient background back into the background channel.
    """
    lut = base.astype(np.int64)
    shifted = np.where(lut == IGNORE_INDEX, IGNORE_INDEX, lut + 1)
    shifted[lut == background_channel] = UNKNOWN
    return shifted.astype(np.uint8)


def select_memory(
    present: np.ndarray, classes: Sequence[int], size: int, *, seed: int
) -> list[int]:
    """SSUL-M's class-balanced exemplar choice (``utils/memory.py``), deterministic for ``seed``.

    Rounds visit ``classes`` in a random order; each class takes one not-yet-chosen image that
    contains it (chosen at random) until ``size`` images are chosen or no class has candidates.

    Args:
        present: ``bool (n_images, num_classes)`` class presence of the candidates.
        classes: class ids to balance (background excluded).
    Returns:
        Indices into ``present``, in the order chosen.
    """
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    taken = np.zeros(present.shape[0], dtype=bool)
    order = rng.permutation(np.asarray(classes, dtype=np.int64))
    while len(chosen) < size:
        progress = False
        for c in order:
            candidates = np.flatnonzero(present[:, c] & ~taken)
            if candidates.size == 0:
                continue
            pick = int(rng.choice(candidates))
            taken[pick] = True
            chosen.append(pick)
            progress = True
            if len(chosen) == size:
                break
        if not progress:
            break
    return chosen


def transfer_unknown_head(heads: nn.ModuleList) -> None:
    """``w_transfer``: initialise the last (new) head from the unknown head ``heads[0]``: conv3×3
    and BN are copied, and every output row of the new 1×1 conv is the unknown row."""
    unknown, new = heads[0], heads[-1]
    with torch.no_grad():
        for src, dst in zip(list(unknown)[:-1], list(new)[:-1]):
            dst.load_state_dict(src.state_dict())
        new[-1].weight.copy_(unknown[-1].weight.expand_as(new[-1].weight))
        new[-1].bias.copy_(unknown[-1].bias.expand_as(new[-1].bias))


def freeze_batchnorm(model: nn.Module) -> None:
    """``bn_freeze``: every BatchNorm in eval mode (running statistics kept) with frozen affine
    parameters. Call after ``model.train()``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def frozen_step_groups(heads: nn.ModuleList, *, lr: float, unknown: bool) -> list[dict]:
    """``freeze`` (steps ≥ 1): only the new head trains at ``lr``; with ``unknown`` also the unknown
    head (``lr``) and the background head (``lr · 1e-4``). Other parameters get
    ``requires_grad=False`` by the caller."""
    groups = [{"params": list(heads[-1].parameters()), "lr": lr}]
    if unknown:
        groups.append({"params": list(heads[0].parameters()), "lr": lr})
        groups.append({"params": list(heads[1].parameters()), "lr": lr * BG_HEAD_LR_FACTOR})
    return groups


def trainable(groups: list[dict]) -> list[dict]:
    """Keep only parameters that require gradients (e.g. after ``bn_freeze``); drop empty groups."""
    kept = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    return [g for g in kept if g["params"]]

