"""Joint image/label transforms on tensors (Klingner et al.'s augmentation, methods.md §1.4).

Images are float tensors 3×H×W in [0, 1] until :func:`normalize`; labels are int64 H×W with
255 = ignore. Geometric ops use bilinear interpolation for images and nearest for labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from llseg.data.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_pair(image: torch.Tensor, label: Optional[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Resize image (bilinear) and label (nearest) to ``size`` = (H, W)."""
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if label is not None:
            label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, label


def normalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of a 3×H×W (or N×3×H×W) tensor in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return (image - mean) / std


@dataclass(frozen=True)
class TrainAugment:
    """Flip, resize to ``base_size``, random down-rescale by 1/s (s ~ U(scale)), random crop, colour jitter.

    Args:
        base_size: (H, W) every sample is first resized to; ``None`` keeps the native size.
        crop_size: (H, W) of the random crop; ``None`` crops to the size before rescaling, so
            samples keep one size. Crops larger than the rescaled sample are padded (image 0,
            label 255).
        scale: range of s; the sample is shrunk by 1/s (Klingner: (1, 1.5)).
        jitter: brightness/contrast/saturation strength (hue uses half of it); 0 disables.
    """

    base_size: Optional[tuple[int, int]] = None
    crop_size: Optional[tuple[int, int]] = None
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = True
    jitter: float = 0.2

    def __call__(self, image: torch.Tensor, label: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip and torch.rand((), generator=gen) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        if self.base_size is not None:
            image, label = resize_pair(image, label, self.base_size)
        h, w = image.shape[-2:]
        s = float(self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand((), generator=gen))
        if s != 1.0:
            image, label = resize_pair(image, label, (max(1, round(h / s)), max(1, round(w / s))))
        image, label = _random_crop(image, label, self.crop_size or (h, w), gen)
        if self.jitter > 0:
            image = _color_jitter(image, self.jitter, gen)
        return image, label


def _random_crop(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ch, cw = size
    h, w = image.shape[-2:]
    if h < ch or w < cw:
        pad_h, pad_w = max(0, ch - h), max(0, cw - w)
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        h, w = image.shape[-2:]
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return image[:, top : top + ch, left : left + cw], label[top : top + ch, left : left + cw]


def _color_jitter(image: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    def factor() -> float:
        return float(1.0 + strength * (2 * torch.rand((), generator=gen) - 1))

    image = TF.adjust_brightness(image, factor())
    image = TF.adjust_contrast(image, factor())
    image = TF.adjust_saturation(image, factor())
    hue = float(strength / 2 * (2 * torch.rand((), generator=gen) - 1))
    return TF.adjust_hue(image, hue).clamp_(0, 1)
