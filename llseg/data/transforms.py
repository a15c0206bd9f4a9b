"""Joint image/label transforms on tensors (Klingner et al.'s augmentation, docs/methods.md §1.4).

Images are float tensors 3×H×W in [0, 1] until :func:`normalize` (:class:`TrainAugment` also
takes uint8 and converts after its flip); labels are integer H×W, 255 = ignore (uint8 keeps
flips, nearest resizes and crops 8x cheaper than int64). Geometric ops use bilinear interpolation
for images and nearest for labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from llseg.data.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@overload
def resize_pair(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def resize_pair(image: torch.Tensor, label: None, size: tuple[int, int]) -> tuple[torch.Tensor, None]: ...


def resize_pair(
    image: torch.Tensor, label: torch.Tensor | None, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize image (bilinear) and label (nearest) to ``size`` = (H, W)."""
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    return image, None if label is None else resize_label(label, size)


def resize_label(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of an H×W integer label map to ``size``; uint8 stays uint8, other dtypes become int64."""
    if tuple(label.shape) == tuple(size):
        return label
    if label.dtype == torch.uint8:  # the only integer dtype torch's nearest resize takes
        return F.interpolate(label[None, None], size=size, mode="nearest")[0, 0]
    return F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()


UPSAMPLE_MODES = ("bilinear", "nearest")


def upsample_scores(scores: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear") -> torch.Tensor:
    """N×K×h×w class scores -> N×K×H×W at the label size ``size`` = (H, W) for evaluation:
    ``bilinear`` (llseg's default) or ``nearest`` (Klingner et al.'s evaluation, docs/methods.md §1.5)."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    if mode == "nearest":
        return F.interpolate(scores, size=size, mode="nearest")
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def to_unit_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float images pass unchanged."""
    return image.float().div_(255) if image.dtype == torch.uint8 else image


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

    base_size: tuple[int, int] | None = None
    crop_size: tuple[int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = True
    jitter: float = 0.2

    def __call__(self, image: torch.Tensor, label: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """image 3×H×W float in [0, 1] or uint8, label H×W integer -> float image, label of its dtype."""
        if self.flip and torch.rand((), generator=gen) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        image = to_unit_float(image)  # after the flip: flipping uint8 moves a quarter of the bytes
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


def _random_crop(
    image: torch.Tensor, label: torch.Tensor, size: tuple[int, int], gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
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
    return adjust_hue(image, hue).clamp_(0, 1)


def adjust_hue(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_hue`` (rotate the HSV hue by ``factor`` turns, keep S and V) for a
    float 3×H×W image in [0, 1], equal to it within 2e-6 and ~2x faster.

    torchvision converts to HSV and back through a stack and a gather; here the hue is computed in
    sextants h6 ∈ [0, 6) and each output channel read off the hexcone directly:
    value − chroma · clamp(min(k, 4 − k), 0, 1) with k = (n + h6) mod 6 and n = 5, 3, 1 for R, G, B.
    """
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor {factor} is not in [-0.5, 0.5]")
    r, g, b = image.unbind(-3)
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    # (hue in sextants) · chroma for max = r, g, b (torchvision's order for ties), then / chroma
    h6 = torch.where(value == r, g - b,
                     torch.where(value == g, torch.add(b - r, chroma, alpha=2), torch.add(r - g, chroma, alpha=4)))
    h6 = h6.div_(torch.where(chroma > 0, chroma, 1.0)).add_(6 * factor).remainder_(6)
    k = h6 + torch.tensor([5.0, 3.0, 1.0], dtype=image.dtype, device=image.device).view(3, 1, 1)
    k = torch.where(k >= 6, k - 6, k)
    return torch.addcmul(value, chroma, torch.minimum(k, 4 - k).clamp_(0, 1), value=-1)
