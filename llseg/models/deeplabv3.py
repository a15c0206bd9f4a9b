"""DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017)
for continual segmentation, assembled from torchvision's backbones and ASPP (no downloads).

As in SSUL / MiB / PLOP (docs/methods.md §2, §5, §6): ResNet-50/101 or MobileNetV3-Large backbone,
ASPP with rates 6/12/18 at output stride 16 (12/24/36 at 8), ASPP dropout 0.1 (SSUL's value;
torchvision uses 0.5), BN momentum 0.01 everywhere, and one of two classifiers:

* ``head="expanding"`` (MiB/PLOP): one 1×1 conv on the ASPP output that grows with
  :meth:`DeepLabV3.add_classes`.
* ``head="per_step"`` (SSUL/IDEC/LAG): a list of heads conv3×3(256→256)+BN+ReLU+conv1×1(256→c),
  one appended per step; the logits are the heads' outputs concatenated in order.

Channel layout. ``num_classes`` counts the real classes, background included (class 0). Without
``unknown``, logit channel c is class c. With ``unknown=True`` (per-step heads only) the heads
start as [unknown(1), background(1), base foreground(num_classes − 1)]: channel 0 is the SSUL
*unknown* class and class c is channel c + 1, so the logits have ``logit_classes`` =
``num_classes + 1`` channels.

Logits are computed in fp32 also under autocast (only the 1×1 logit convs;
``registry.fp32_logits``) at the ASPP resolution (H/16 or H/8) and bilinearly upsampled
(``align_corners=False``) to the input size, for any H, W; each channel is upsampled on its own so
that growing the classifier leaves the old logits bit-identical.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck
from torchvision.models.segmentation.deeplabv3 import ASPP

from .registry import GrowInit, fp32_logits, grow_classifier, load_weights, register_model

HeadKind = Literal["expanding", "per_step"]

ASPP_CHANNELS = 256
ASPP_DROPOUT = 0.1
ATROUS_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
TAPPED_LAYERS = ("layer1", "layer2", "layer3")
# MobileNetV3-Large ``features`` indices ending the stages at strides 4, 8, 16 and the (dilated) last one.
MOBILENET_STAGE_ENDS = {"3": "layer1", "6": "layer2", "12": "layer3", "16": "layer4"}


class _StaysNCHW(nn.Module):
    """Mixin: parameters and inputs stay in NCHW (contiguous) memory, whatever
    ``Module.to(memory_format=...)`` asks; for layers oneDNN computes wrongly in channels_last."""

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> _StaysNCHW:
        super()._apply(fn, recurse)
        for param in self.parameters():  # clone: a depthwise weight (N×1×k×k) can be contiguous yet have
            param.data = param.data.clone(memory_format=torch.contiguous_format)  # channels_last strides
        return self

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous())


class DenseASPP(_StaysNCHW, ASPP):
    """An ASPP that always runs in NCHW memory. Used for the feature taps: with torch 2.14.1 on CPU,
    oneDNN's bf16 dilated 3×3 convolutions in channels_last with 24 or 40 input channels
    (MobileNetV3's layer1 and layer2) return NaN weight gradients or crash, so IDEC/LAG diverged at
    their first incremental step; in NCHW they are correct (tests/models/test_deeplabv3.py).
    """


class DenseConv2d(_StaysNCHW, nn.Conv2d):
    """A Conv2d that always runs in NCHW memory. Used for MobileNetV3's dilated depthwise convs: with
    torch 2.14.1 on CPU, oneDNN's bf16 channels_last backward of a dilated depthwise conv is wrong
    from 32×32 maps on (relative error ~1.5; 16×16 and 24×24 are right), i.e. at 512×512 inputs,
    and its weight gradients sometimes NaN (tests/models/test_deeplabv3.py)."""


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's (h, w) setting, typed as the pair it is."""
    return value[0], value[1]


def _dense_dilated_depthwise(module: nn.Module) -> None:
    """Replace every dilated depthwise Conv2d below ``module`` by a :class:`DenseConv2d` (same weights)."""
    for name, child in module.named_children():
        if type(child) is nn.Conv2d and child.groups == child.in_channels > 1 and max(child.dilation) > 1:
            padding = child.padding if isinstance(child.padding, str) else _pair(child.padding)
            dense = DenseConv2d(child.in_channels, child.out_channels, _pair(child.kernel_size), stride=_pair(child.stride),
                                padding=padding, dilation=_pair(child.dilation), groups=child.groups,
                                bias=child.bias is not None)
            dense.load_state_dict(child.state_dict())
            setattr(module, name, dense)
        else:
            _dense_dilated_depthwise(child)


def make_aspp(in_channels: int, *, output_stride: int, dense: bool = False) -> ASPP:
    """torchvision ASPP N×Cin×h×w -> N×256×h×w with the rates of ``output_stride`` and dropout 0.1
    (``dense``: a :class:`DenseASPP`)."""
    aspp = (DenseASPP if dense else ASPP)(in_channels, ATROUS_RATES[output_stride], ASPP_CHANNELS)
    cast(nn.Dropout, cast(nn.Sequential, aspp.project)[-1]).p = ASPP_DROPOUT
    return aspp


class ExpandingClassifier(nn.Module):
    """One growable 1×1 conv (MiB): N×256×h×w -> N×C×h×w.

    CPU convolution kernels sum in an order that depends on the number of output channels
    (logits move by ~1e-6 when C changes), so the conv runs in chunks of ``CHUNK`` output
    channels, the last one zero-padded: every chunk has the same shape, so a channel's logit
    never depends on C and growing leaves old logits bit-identical.
    """

    CHUNK = 16

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    @property
    def out_channels(self) -> int:
        """Number of logit channels C."""
        return self.conv.out_channels

    def forward(self, x: Tensor) -> Tensor:
        return fp32_logits(self._chunked, x)

    def _chunked(self, x: Tensor) -> Tensor:
        weight, bias = self.conv.weight, self.conv.bias
        if bias is None:
            raise RuntimeError("the expanding classifier is built with a bias")
        pad = -self.out_channels % self.CHUNK
        weight, bias = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, pad)), F.pad(bias, (0, pad))
        chunks = [
            F.conv2d(x, weight[i : i + self.CHUNK], bias[i : i + self.CHUNK])
            for i in range(0, weight.shape[0], self.CHUNK)
        ]
        return torch.cat(chunks, dim=1)[:, : self.out_channels]

    def grow(self, num_new: int, *, init: GrowInit) -> None:
        """Append ``num_new`` channels; see :func:`~llseg.models.registry.grow_classifier`."""
        self.conv = grow_classifier(self.conv, num_new, init=init)


def make_step_head(in_channels: int, num_classes: int, *, bn_momentum: float) -> nn.Sequential:
    """SSUL head N×Cin×h×w -> N×c×h×w: conv3×3(Cin→256, no bias)+BN+ReLU+conv1×1(256→c)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, ASPP_CHANNELS, 3, padding=1, bias=False),
        nn.BatchNorm2d(ASPP_CHANNELS, momentum=bn_momentum),
        nn.ReLU(),
        nn.Conv2d(ASPP_CHANNELS, num_classes, 1),
    )


class PerStepHeads(nn.Module):
    """SSUL's list of per-step heads (``heads[i]`` is step i's): N×256×h×w -> N×Σc×h×w."""

    def __init__(self, in_channels: int, sizes: Sequence[int], *, bn_momentum: float) -> None:
        super().__init__()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"every head needs >= 1 class, got sizes {list(sizes)}")
        self.in_channels = in_channels
        self.bn_momentum = bn_momentum
        self.heads = nn.ModuleList(make_step_head(in_channels, c, bn_momentum=bn_momentum) for c in sizes)

    def _heads(self) -> list[nn.Sequential]:
        return [cast(nn.Sequential, head) for head in self.heads]

    @property
    def out_channels(self) -> int:
        """Total number of logit channels (all heads)."""
        return sum(cast(nn.Conv2d, head[-1]).out_channels for head in self._heads())

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([fp32_logits(head[-1], head[:-1](x)) for head in self._heads()], dim=1)

    def grow(self, num_new: int, *, init: GrowInit) -> None:
        """Append a fresh head of ``num_new`` classes (``init="zeros"`` zeroes its 1×1 conv).

        Raises:
            ValueError: ``num_new < 1``, or ``init="copy_mean"`` (undefined across heads).
        """
        if num_new < 1:
            raise ValueError(f"num_new must be >= 1, got {num_new}")
        if init not in ("default", "zeros"):
            raise ValueError(f"per-step heads support init 'default' or 'zeros', got {init!r}")
        ref = cast(nn.Conv2d, self._heads()[0][0]).weight
        head = make_step_head(self.in_channels, num_new, bn_momentum=self.bn_momentum)
        head.to(device=ref.device, dtype=ref.dtype).train(self.training)
        if init == "zeros":
            logit = cast(nn.Conv2d, head[-1])
            nn.init.zeros_(logit.weight)
            if logit.bias is not None:
                nn.init.zeros_(logit.bias)
        self.heads.append(head)


def resnet_preactivation_stages(backbone: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """``"layer1".."layer4"`` of a torchvision ResNet body for x N×3×H×W, each taken before the
    final ReLU of its stage's last bottleneck (conv-bn branch + shortcut); the next stage reads the
    ReLU of it, so the network computes what ``backbone(x)`` computes."""
    if not all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):
        raise ValueError("preactivation features need a ResNet backbone")
    for name in ("conv1", "bn1", "relu", "maxpool"):
        x = getattr(backbone, name)(x)
    out: dict[str, Tensor] = {}
    for i in range(1, 5):
        blocks = list(cast(nn.Sequential, getattr(backbone, f"layer{i}")))
        for block in blocks[:-1]:
            x = block(x)
        last = cast(Bottleneck, blocks[-1])
        shortcut = x if last.downsample is None else last.downsample(x)
        branch = last.relu(last.bn1(last.conv1(x)))
        branch = last.relu(last.bn2(last.conv2(branch)))
        out[f"layer{i}"] = last.bn3(last.conv3(branch)) + shortcut
        x = torch.relu(out[f"layer{i}"])  # not the block's in-place ReLU: the map is kept
    return out


class DeepLabV3(nn.Module):
    """DeepLabV3 with a growable classifier; ``forward``: N×3×H×W -> logits N×C×H×W.

    Submodules for freezing policies: ``backbone`` (returns layer1..layer4), ``aspp`` (main ASPP),
    ``aspp_taps`` (ModuleDict layer1..layer3, empty without taps) and ``classifier``
    (:class:`ExpandingClassifier`, or :class:`PerStepHeads` whose ``heads`` list holds the steps).
    """

    def __init__(
        self,
        backbone: IntermediateLayerGetter,
        stage_channels: Sequence[int],
        num_classes: int,
        *,
        output_stride: int,
        head: HeadKind,
        unknown: bool,
        bn_momentum: float,
        aspp_taps: bool,
        classification_net: Callable[[], nn.Module],
        backbone_prefix: str,
    ) -> None:
        """``classification_net`` builds the torchvision classifier the backbone comes from, whose
        state_dict keys are the backbone's with ``backbone_prefix`` prepended (the
        ``backbone_weights`` format; see :meth:`backbone_checkpoint`)."""
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if head not in ("expanding", "per_step"):
            raise ValueError(f"head must be 'expanding' or 'per_step', got {head!r}")
        if unknown and head != "per_step":
            raise ValueError("unknown=True needs head='per_step': the unknown channel is a head of its own")
        if unknown and num_classes < 2:
            raise ValueError(f"unknown=True needs num_classes >= 2 (background + 1), got {num_classes}")
        self.unknown = unknown
        self.backbone = backbone
        self._classification_net = classification_net
        self._backbone_prefix = backbone_prefix
        self.aspp = make_aspp(stage_channels[3], output_stride=output_stride)
        self.aspp_taps = nn.ModuleDict(
            {name: make_aspp(c, output_stride=output_stride, dense=True) for name, c in zip(TAPPED_LAYERS, stage_channels)}
            if aspp_taps
            else {}
        )
        self.classifier: ExpandingClassifier | PerStepHeads
        if head == "expanding":
            self.classifier = ExpandingClassifier(ASPP_CHANNELS, num_classes)
        else:
            sizes = [1, 1, num_classes - 1] if unknown else [num_classes]
            self.classifier = PerStepHeads(ASPP_CHANNELS, sizes, bn_momentum=bn_momentum)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = bn_momentum

    @property
    def preactivation_stages(self) -> bool:
        """Whether ``forward_features(preactivation=True)`` works (a ResNet backbone)."""
        return all(hasattr(self.backbone, f"layer{i}") for i in range(1, 5))

    @property
    def num_classes(self) -> int:
        """Real classes, background included (the unknown channel is not counted)."""
        return self.logit_classes - int(self.unknown)

    @property
    def logit_classes(self) -> int:
        """Logit channels C: ``num_classes``, plus 1 (channel 0) with ``unknown``."""
        return self.classifier.out_channels

    def backbone_checkpoint(self) -> dict[str, Tensor]:
        """The backbone as a torchvision classification state_dict: what ``backbone_weights`` loads.

        Turns a segmentation model trained on one dataset into the pretrained backbone of another
        (the role ImageNet weights play in the papers). The classification head (``fc`` /
        ``classifier``), unused here, is that of a freshly initialised network.
        """
        state = self._classification_net().state_dict()
        own = {self._backbone_prefix + k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
        if not own.keys() <= state.keys():
            raise RuntimeError(f"backbone keys not in the classification network: {sorted(own.keys() - state.keys())[:3]}")
        return {**state, **own}

    def forward_features(self, x: Tensor, *, detach_head: bool = False, preactivation: bool = False) -> dict[str, Tensor]:
        """Intermediate maps of x N×3×H×W (s = output stride; channel counts are ResNet's).

        ``detach_head``: the classifier reads the ASPP output detached, so a loss on the logits
        trains the heads but sends no gradient into the body (IDEC/LAG with ``bce_on_body`` false).
        ``preactivation`` (ResNet only): ``"layer1".."layer4"`` are each stage's output before the
        last block's final ReLU (residual sum), as PLOP's backbone hands them to POD
        (docs/methods.md §6), and ``"aspp_before_dropout"`` is the ASPP output before its dropout
        (PLOP's head has none); the network's computation is unchanged.

        Returns:
            ``"layer1"`` N×256×H/4×W/4, ``"layer2"`` N×512×H/8, ``"layer3"`` N×1024×H/s,
            ``"layer4"`` N×2048×H/s (MobileNetV3: 24, 40, 112, 960 channels at the same strides),
            ``"aspp"`` N×256×H/s, with taps ``"aspp_layer1".."aspp_layer3"`` N×256 at their
            layer's resolution, ``"logits_lowres"`` N×C×H/s×W/s and ``"logits"`` N×C×H×W
            (identical to ``forward(x)``). Strides are ceil-divisions for odd sizes.
        """
        if preactivation:
            feats = resnet_preactivation_stages(self.backbone, x)
            branches = torch.cat([conv(torch.relu(feats["layer4"])) for conv in self.aspp.convs], dim=1)
            project = cast(nn.Sequential, self.aspp.project)
            feats["aspp_before_dropout"] = project[:-1](branches)
            feats["aspp"] = project[-1](feats["aspp_before_dropout"])
        else:
            feats = dict(self.backbone(x))
            feats["aspp"] = self.aspp(feats["layer4"])
        for name, aspp in self.aspp_taps.items():
            feats[f"aspp_{name}"] = aspp(feats[name])
        feats["logits_lowres"] = self.classifier(feats["aspp"].detach() if detach_head else feats["aspp"])
        feats["logits"] = self._upsample(feats["logits_lowres"], x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        """Logits N×C×H×W for x N×3×H×W (taps are skipped)."""
        return self._upsample(self.classifier(self.aspp(self.backbone(x)["layer4"])), x)

    @staticmethod
    def _upsample(logits: Tensor, x: Tensor) -> Tensor:
        """Bilinear N×C×h×w -> N×C×H×W, one channel at a time: CPU kernels vectorise over
        channels, so upsampling all C at once makes old logits depend on C by ~1e-7."""
        n, c, h, w = logits.shape
        size = x.shape[-2:]
        up = F.interpolate(logits.reshape(n * c, 1, h, w), size=size, mode="bilinear", align_corners=False)
        return up.reshape(n, c, *size)

    def add_classes(self, num_new: int, *, init: GrowInit = "default") -> None:
        """Append ``num_new`` class channels after the existing ones (old logits stay bit-identical).

        Expanding head: the 1×1 conv grows (``init`` as in
        :func:`~llseg.models.registry.grow_classifier`). Per-step heads: a new head is appended
        (``"default"`` or ``"zeros"``). Rebuild optimisers afterwards.
        """
        self.classifier.grow(num_new, init=init)

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the classifier (all per-step heads, or the expanding 1×1 conv)."""
        return self.classifier.parameters()

    def body_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters upstream of the classifier: backbone, main ASPP and the tap ASPPs."""
        for module in (self.backbone, self.aspp, self.aspp_taps):
            yield from module.parameters()

    @property
    def step_heads(self) -> nn.ModuleList:
        """The per-step heads (``head="per_step"`` only; else AttributeError)."""
        if not isinstance(self.classifier, PerStepHeads):
            raise AttributeError("step_heads: this DeepLabV3 has one expanding classifier, not per-step heads")
        return self.classifier.heads

    @property
    def logit_conv(self) -> nn.Conv2d:
        """The expanding classifier's 1×1 conv (``head="expanding"`` only; else AttributeError)."""
        if not isinstance(self.classifier, ExpandingClassifier):
            raise AttributeError("logit_conv: this DeepLabV3 has per-step heads, not one expanding classifier")
        return self.classifier.conv


def _resnet_backbone(
    depth: Literal[50, 101], *, output_stride: int, backbone_weights: str | os.PathLike[str] | None
) -> IntermediateLayerGetter:
    if output_stride not in ATROUS_RATES:
        raise ValueError(f"ResNet output_stride must be 8 or 16, got {output_stride}")
    dilate = [False, output_stride == 8, True]
    net = (resnet50 if depth == 50 else resnet101)(
        weights=None, replace_stride_with_dilation=dilate, zero_init_residual=True
    )
    if backbone_weights is not None:
        load_weights(net, backbone_weights)
    return IntermediateLayerGetter(net, return_layers={f"layer{i}": f"layer{i}" for i in range(1, 5)})


def _build_resnet(
    depth: Literal[50, 101],
    *,
    num_classes: int,
    output_stride: int,
    head: HeadKind,
    unknown: bool,
    bn_momentum: float,
    backbone_weights: str | os.PathLike[str] | None,
    aspp_taps: bool,
) -> DeepLabV3:
    backbone = _resnet_backbone(depth, output_stride=output_stride, backbone_weights=backbone_weights)
    return DeepLabV3(
        backbone, (256, 512, 1024, 2048), num_classes, output_stride=output_stride, head=head,
        unknown=unknown, bn_momentum=bn_momentum, aspp_taps=aspp_taps,
        classification_net=partial(resnet50 if depth == 50 else resnet101, weights=None), backbone_prefix="",
    )


# SSUL's VOC optimisation (docs/methods.md §2), which the DeepLabV3 recipes share unless they say otherwise.
DEEPLABV3_TRAIN_DEFAULTS = {"dataset": "voc", "optimizer": "sgd", "lr": 0.01, "backbone_lr": 0.001,
                            "weight_decay": 1e-4, "lr_policy": "poly"}


@register_model("deeplabv3_resnet50", train_defaults=DEEPLABV3_TRAIN_DEFAULTS)
def deeplabv3_resnet50(
    *,
    num_classes: int,
    output_stride: int = 16,
    head: HeadKind = "expanding",
    unknown: bool = False,
    bn_momentum: float = 0.01,
    backbone_weights: str | os.PathLike[str] | None = None,
    aspp_taps: bool = False,
) -> DeepLabV3:
    """DeepLabV3-ResNet-50; arguments as :func:`deeplabv3_resnet101`."""
    return _build_resnet(
        50, num_classes=num_classes, output_stride=output_stride, head=head, unknown=unknown,
        bn_momentum=bn_momentum, backbone_weights=backbone_weights, aspp_taps=aspp_taps,
    )


@register_model("deeplabv3_resnet101", train_defaults=DEEPLABV3_TRAIN_DEFAULTS)
def deeplabv3_resnet101(
    *,
    num_classes: int,
    output_stride: int = 16,
    head: HeadKind = "expanding",
    unknown: bool = False,
    bn_momentum: float = 0.01,
    backbone_weights: str | os.PathLike[str] | None = None,
    aspp_taps: bool = False,
) -> DeepLabV3:
    """DeepLabV3-ResNet-101 (SSUL/IDEC/LAG/MiB/PLOP), randomly initialised.

    Args:
        num_classes: real classes incl. background (see the module docstring for ``unknown``).
        output_stride: 16 (layer4 dilated, ASPP 6/12/18) or 8 (layer3+4 dilated, 12/24/36).
        head: ``"expanding"`` (MiB/PLOP) or ``"per_step"`` (SSUL).
        unknown: SSUL unknown channel (per-step heads only).
        bn_momentum: momentum of every BatchNorm (SSUL: 0.01).
        backbone_weights: local torchvision ``resnet101`` state_dict (ImageNet classification
            format, ``fc.*`` included), loaded strictly before ``fc`` is dropped. Without it the
            ResNet uses ``zero_init_residual=True`` (Goyal et al. 2017): at torchvision's default
            init a random ResNet-101's eval-mode layer4 reaches ~2.5e3, with it ~0.04.
        aspp_taps: extra ASPPs on layer1..layer3 for IDEC/LAG feature distillation.
    """
    return _build_resnet(
        101, num_classes=num_classes, output_stride=output_stride, head=head, unknown=unknown,
        bn_momentum=bn_momentum, backbone_weights=backbone_weights, aspp_taps=aspp_taps,
    )


@register_model("deeplabv3_mobilenet_v3_large", train_defaults=DEEPLABV3_TRAIN_DEFAULTS)
def deeplabv3_mobilenet_v3_large(
    *,
    num_classes: int,
    output_stride: int = 16,
    head: HeadKind = "expanding",
    unknown: bool = False,
    bn_momentum: float = 0.01,
    backbone_weights: str | os.PathLike[str] | None = None,
    aspp_taps: bool = False,
) -> DeepLabV3:
    """DeepLabV3 on a dilated MobileNetV3-Large (last stage dilated, output stride 16 only).

    Stages: ``features[:4]`` (24 ch, /4), ``[4:7]`` (40, /8), ``[7:13]`` (112, /16),
    ``[13:]`` (960, /16). ``backbone_weights``: local torchvision ``mobilenet_v3_large``
    state_dict (``features.*`` and ``classifier.*``). Other arguments as
    :func:`deeplabv3_resnet101`.
    """
    if output_stride != 16:
        raise ValueError(f"MobileNetV3 supports output_stride 16 only, got {output_stride}")
    net = mobilenet_v3_large(weights=None, dilated=True)
    _dense_dilated_depthwise(net.features)
    if backbone_weights is not None:
        load_weights(net, backbone_weights)
    backbone = IntermediateLayerGetter(net.features, return_layers=MOBILENET_STAGE_ENDS)
    return DeepLabV3(
        backbone, (24, 40, 112, 960), num_classes, output_stride=16, head=head, unknown=unknown,
        bn_momentum=bn_momentum, aspp_taps=aspp_taps,
        classification_net=partial(mobilenet_v3_large, weights=None), backbone_prefix="features.",
    )
