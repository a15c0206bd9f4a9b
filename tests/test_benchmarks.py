"""The FLOP count that benchmarks/speed.py compares to the machine's matmul limit."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

_SPEC = importlib.util.spec_from_file_location("speed", Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(speed)


def _flops(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: speed.conv_backward_flops}) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("groups", [1, 4, 32])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_conv_backward_costs_twice_its_forward(groups: int, transposed: bool) -> None:
    kind = torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d
    conv = kind(32, 64, 3, stride=2, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 32, 16, 16, requires_grad=True)
    forward = _flops(lambda: conv(x))
    # hand count: every output (input, for a transposed conv) position does 32/groups * 9 MACs per output channel
    positions = 2 * 64 * (16 * 16 if transposed else 8 * 8)
    assert forward == 2 * positions * 32 // groups * 9
    assert _flops(lambda: conv(x).sum().backward()) == 3 * forward
    # without an input gradient only the weight gradient is computed
    x.requires_grad_(False)
    assert _flops(lambda: conv(x).sum().backward()) == 2 * forward


@pytest.mark.parametrize("name", ["erfnet", "deeplabv3_mobilenet_v3_large"])
def test_training_flops_are_three_forwards(name: str) -> None:
    """Counted on the meta device. MobileNetV3's depthwise convolutions (groups = channels) used to
    count their weight gradient groups times."""
    size = (64, 64)
    kwargs = {} if name == "erfnet" else speed.DEEPLAB_KWARGS
    train = speed.train_flops_per_image(size, name, speed.VOC_CLASSES, **kwargs)
    with torch.device("meta"):
        model = speed.create_model(name, num_classes=speed.VOC_CLASSES, **kwargs).train()
        x = torch.randn(2, 3, *size)
    forward = _flops(lambda: model(x)) / 2
    # forward + input and weight gradients of every layer, less the first conv's input gradient
    assert 2.9 * forward < train < 3 * forward
