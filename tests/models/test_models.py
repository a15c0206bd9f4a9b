"""Contract tests for every registered model, plus ERFNet-specific architecture checks."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llseg.models import ERFNet, SegmentationModel, create_model, list_models
from llseg.models.erfnet import DownsamplerBlock, NonBottleneck1D

MODELS = list_models()


def _build(name: str, num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", MODELS)
def test_contract(name: str) -> None:
    model = _build(name, 4)
    assert isinstance(model, SegmentationModel)
    assert model.num_classes == 4


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 64, 128), (1, 3, 17, 31)])
def test_logits_at_input_size(name: str, shape: tuple[int, int, int, int]) -> None:
    model = _build(name, 7).eval()
    out = _logits(model, torch.randn(shape))
    assert out.shape == (shape[0], 7, *shape[2:])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_backward_gives_finite_grads_on_all_params(name: str) -> None:
    model = _build(name, 5).train()
    x, y = torch.randn(2, 3, 33, 47), torch.randint(0, 5, (2, 33, 47))
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.classifier_parameters())


def _old_slice(new: Tensor, old: Tensor) -> Tensor:
    """The part of a grown parameter that holds the old channels (the one dim that grew)."""
    dims = [d for d in range(new.dim()) if new.shape[d] != old.shape[d]]
    assert len(dims) == 1
    return new.narrow(dims[0], 0, old.shape[dims[0]])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("init", ["default", "zeros", "copy_mean"])
def test_add_classes_keeps_old_logits_bit_identical(name: str, init: str) -> None:
    model = _build(name, 5).eval()
    x = torch.randn(2, 3, 37, 53)
    old_logits = _logits(model, x)
    old_params = [p.detach().clone() for p in model.classifier_parameters()]

    model.add_classes(6, init=init)
    new_logits = _logits(model, x)
    assert model.num_classes == 11
    assert new_logits.shape == (2, 11, 37, 53)
    assert torch.equal(new_logits[:, :5], old_logits)
    new_params = list(model.classifier_parameters())
    assert len(new_params) == len(old_params)
    for new, old in zip(new_params, old_params):
        assert torch.equal(_old_slice(new.detach(), old), old)
    assert not any(m.training for m in model.modules())
    if init == "zeros":
        assert torch.equal(new_logits[:, 5:], torch.zeros_like(new_logits[:, 5:]))
    elif init == "copy_mean":
        expected = old_logits.mean(dim=1, keepdim=True).expand(-1, 6, -1, -1)
        torch.testing.assert_close(new_logits[:, 5:], expected, rtol=1e-5, atol=1e-5)
    else:
        assert new_logits[:, 5:].std() > 0


@pytest.mark.parametrize("name", MODELS)
def test_repeated_growth_matches_fresh_model_layout(name: str) -> None:
    """5 -> 11 -> 19 (the Cityscapes tasks): the grown state_dict loads into a fresh 19-class model."""
    model = _build(name, 5)
    old = list(model.classifier_parameters())
    model.add_classes(6)
    model.add_classes(8)
    assert model.num_classes == 19
    assert not any(p is q for p in model.classifier_parameters() for q in old)  # optimiser must be rebuilt
    assert {id(p) for p in model.classifier_parameters()} <= {id(p) for p in model.parameters()}
    fresh = _build(name, 19, seed=1)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 24, 40)
    assert torch.equal(_logits(fresh.eval(), x), _logits(model.eval(), x))


@pytest.mark.parametrize("name", MODELS)
def test_add_classes_rejects_non_positive(name: str) -> None:
    with pytest.raises(ValueError, match="num_new must be >= 1"):
        _build(name, 5).add_classes(0)


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name: str, tmp_path: Path) -> None:
    src = _build(name, 6, seed=0)
    x = torch.randn(2, 3, 32, 48)
    src.train()
    src(x)  # move BN running statistics away from their initial values
    src.eval()
    buffer = io.BytesIO()
    torch.save(src.state_dict(), buffer)
    buffer.seek(0)
    dst = _build(name, 6, seed=1)
    dst.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
    assert torch.equal(_logits(dst.eval(), x), _logits(src, x))

    path = tmp_path / f"{name}.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    via_factory = create_model(name, num_classes=6, weights=path).eval()
    assert torch.equal(_logits(via_factory, x), _logits(src, x))


# --- ERFNet specifics (Romera et al. 2018, Table I) ---------------------------------------------

ERFNET_PARAMS_WITHOUT_CLASSIFIER = 2_062_956  # classifier: ConvTranspose2d(16, C, 2) = 65·C


@pytest.mark.parametrize("num_classes", [5, 11, 19])
def test_erfnet_parameter_count(num_classes: int) -> None:
    count = sum(p.numel() for p in ERFNet(num_classes).parameters())
    assert count == ERFNET_PARAMS_WITHOUT_CLASSIFIER + 65 * num_classes
    if num_classes == 19:
        assert count == 2_064_191
        assert 1.9e6 <= count <= 2.2e6  # paper: ~2.1 M


def test_erfnet_layer_layout() -> None:
    model = ERFNet(19)
    assert len(model.encoder) == 16 and len(model.decoder) == 6  # Table I layers 1-16, 17-22
    dilations = [m.conv_v2.dilation for m in model.encoder if isinstance(m, NonBottleneck1D)]
    assert dilations == [(1, 1)] * 5 + [(d, 1) for d in (2, 4, 8, 16)] * 2
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_erfnet_forward_features() -> None:
    model = ERFNet(19).eval()
    x = torch.randn(1, 3, 37, 53)  # padded to 40 × 56
    with torch.no_grad():
        feats = model.forward_features(x)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "encoder": (1, 128, 5, 7),
        "decoder": (1, 16, 20, 28),
        "logits": (1, 19, 37, 53),
    }
    assert torch.equal(feats["logits"], _logits(model, x))


def test_erfnet_pads_bottom_right_with_zeros_and_crops() -> None:
    model = ERFNet(3).eval()
    x = torch.randn(1, 3, 17, 31)
    padded = F.pad(x, (0, 1, 0, 7))  # 24 × 32
    assert torch.equal(_logits(model, x), _logits(model, padded)[..., :17, :31])


def test_downsampler_concatenates_conv_and_pool() -> None:
    block = DownsamplerBlock(3, 16).eval()
    x = torch.randn(2, 3, 10, 14)
    assert block(x).shape == (2, 16, 5, 7)
    # With freshly initialised BN (eval, eps 1e-3), the last Cin channels are the scaled max-pool.
    expected = F.relu(F.max_pool2d(x, 2)) / (1 + 1e-3) ** 0.5
    torch.testing.assert_close(block(x)[:, 13:], expected)
    with pytest.raises(ValueError, match="out_channels > in_channels"):
        DownsamplerBlock(64, 64)


def test_non_bottleneck_is_residual() -> None:
    block = NonBottleneck1D(8, dropout=0.3, dilation=16).eval()
    x = torch.randn(2, 8, 6, 10)
    assert block(x).shape == x.shape
    for conv in (block.conv_v1, block.conv_h1, block.conv_v2, block.conv_h2):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    assert torch.equal(block(x), F.relu(x))  # zero branch: output is ReLU(input)


@pytest.mark.parametrize("name", MODELS)
def test_logits_are_fp32_under_bf16_autocast(name: str) -> None:
    """Every model's classifier runs in fp32 (registry.fp32_logits): bf16 would round logits near 10
    to steps of 0.06, and with bf16 logits ERFNet lost old-class mIoU under distillation."""
    model = _build(name, 3).eval()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert model(torch.randn(2, 3, 32, 48)).dtype == torch.float32


def test_erfnet_logits_are_fp32_under_autocast() -> None:
    """The classifier runs in fp32 on the bf16 decoder output (bf16 logits cost distillation old-class mIoU)."""
    torch.manual_seed(0)
    model = ERFNet(5).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        feats = model.forward_features(x)
    assert feats["decoder"].dtype == torch.bfloat16 and feats["logits"].dtype == torch.float32
    with torch.no_grad():
        expected = model.classifier(feats["decoder"].float())
    assert torch.equal(feats["logits"], expected)
