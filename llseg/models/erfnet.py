"""ERFNet (Romera et al., "ERFNet: Efficient Residual Factorized ConvNet for Real-time Semantic
Segmentation", IEEE T-ITS 2018), written from the paper's architecture description (Sec. III,
Table I), with a growable final classifier for class-incremental learning.

Output contract: ``ERFNet(x)`` with x N×3×H×W returns logits N×C×H×W for any H, W, in fp32 also
under autocast (the classifier runs in fp32: 0.6 % of the FLOPs; bf16 logits cost the distillation
recipes old-class mIoU, benchmarks/PRECISION.md). The input is
zero-padded at the bottom/right to Hp×Wp, the next multiples of 8 (the encoder's output stride),
and the logits are cropped back to H×W; multiples of 8 see no padding at all. Zero is the dataset
mean after mean/std normalisation, and unlike reflect padding it also works for inputs smaller
than the pad.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import GrowInit, fp32_logits, grow_classifier, load_weights, register_model

BN_EPS = 1e-3
OUTPUT_STRIDE = 8


class DownsamplerBlock(nn.Module):
    """Downsampler block (ERFNet Sec. III-B, ENet's initial block): N×Cin×H×W -> N×Cout×H/2×W/2.

    Concatenates a 3×3 stride-2 conv (Cout − Cin channels) with a 2×2 max-pool of the input
    (Cin channels), then BN + ReLU. H and W must be even.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"DownsamplerBlock needs out_channels > in_channels, got {in_channels}->{out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class NonBottleneck1D(nn.Module):
    """Non-bottleneck-1D residual block (ERFNet Sec. III-A, Fig. 2c): N×C×H×W -> N×C×H×W.

    3×1 conv, ReLU, 1×3 conv, BN, ReLU, then the same pair dilated by ``dilation`` (3×1 on the
    height axis, 1×3 on the width axis) with BN, spatial dropout ``dropout``; add the input; ReLU.
    """

    def __init__(self, channels: int, *, dropout: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        self.conv_v1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv_h1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv_v2 = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0), dilation=(dilation, 1))
        self.conv_h2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation), dilation=(1, dilation))
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv_h1(F.relu(self.conv_v1(x)))))
        y = self.bn2(self.conv_h2(F.relu(self.conv_v2(y))))
        return F.relu(self.dropout(y) + x)


class UpsamplerBlock(nn.Sequential):
    """Upsampler block (ERFNet Sec. III-B, Table I): N×Cin×H×W -> N×Cout×2H×2W.

    3×3 transposed conv (stride 2, padding 1, output_padding 1), BN, ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(),
        )


class ERFNetEncoder(nn.Sequential):
    """ERFNet encoder, Table I layers 1-16: N×3×H×W -> N×128×H/8×W/8 (H, W multiples of 8)."""

    def __init__(self) -> None:
        super().__init__(
            DownsamplerBlock(3, 16),
            DownsamplerBlock(16, 64),
            *(NonBottleneck1D(64, dropout=0.03) for _ in range(5)),
            DownsamplerBlock(64, 128),
            *(NonBottleneck1D(128, dropout=0.3, dilation=d) for _ in range(2) for d in (2, 4, 8, 16)),
        )


class ERFNetDecoder(nn.Sequential):
    """ERFNet decoder without the final classifier, Table I layers 17-22: N×128×h×w -> N×16×4h×4w."""

    def __init__(self) -> None:
        super().__init__(
            UpsamplerBlock(128, 64),
            NonBottleneck1D(64),
            NonBottleneck1D(64),
            UpsamplerBlock(64, 16),
            NonBottleneck1D(16),
            NonBottleneck1D(16),
        )


class ERFNet(nn.Module):
    """ERFNet (Table I): encoder, decoder and a 2×2 stride-2 transposed-conv classifier (layer 23).

    ``forward``: N×3×H×W -> logits N×C×H×W for any H, W (see the module docstring for padding).
    The classifier can grow with :meth:`add_classes`; old class channels keep index and weights.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.encoder = ERFNetEncoder()
        self.decoder = ERFNetDecoder()
        self.classifier = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    @property
    def num_classes(self) -> int:
        """Number of output channels C."""
        return self.classifier.out_channels

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Intermediate maps of x N×3×H×W, computed on the padded Hp×Wp input.

        Returns:
            ``"encoder"`` N×128×Hp/8×Wp/8, ``"decoder"`` N×16×Hp/2×Wp/2 and ``"logits"``
            N×C×H×W (cropped to the input size, identical to ``forward(x)``).
        """
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % OUTPUT_STRIDE, 0, -h % OUTPUT_STRIDE))
        enc = self.encoder(x)
        dec = self.decoder(enc)
        logits = fp32_logits(self.classifier, dec)
        return {"encoder": enc, "decoder": dec, "logits": logits[..., :h, :w]}

    def forward(self, x: Tensor) -> Tensor:
        """Logits N×C×H×W for x N×3×H×W."""
        return self.forward_features(x)["logits"]

    def add_classes(self, num_new: int, *, init: GrowInit = "default") -> None:
        """Append ``num_new`` class channels to the classifier (old logits stay bit-identical).

        ``init``: ``"default"`` (as a fresh layer), ``"zeros"`` or ``"copy_mean"``; see
        :func:`~llseg.models.registry.grow_classifier`. Rebuild optimisers afterwards: the
        classifier's parameters are new tensors.
        """
        self.classifier = grow_classifier(self.classifier, num_new, init=init)

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the final (growable) layer, e.g. for a separate learning rate."""
        return self.classifier.parameters()


@register_model("erfnet")
def erfnet(*, num_classes: int, encoder_weights: str | os.PathLike[str] | None = None) -> ERFNet:
    """ERFNet with randomly initialised weights (PyTorch defaults).

    Args:
        num_classes: output channels C.
        encoder_weights: optional local checkpoint for the encoder only, as the paper initialises
            it from an ImageNet-pretrained encoder. Keys are those of ``ERFNet.encoder`` (a
            whole-model file also works: only its ``encoder.`` keys are used). Checkpoints of
            other ERFNet code bases need their keys renamed first.
    """
    model = ERFNet(num_classes)
    if encoder_weights is not None:
        load_weights(model.encoder, encoder_weights, prefix="encoder.")
    return model
