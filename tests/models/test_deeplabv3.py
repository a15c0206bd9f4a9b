"""DeepLabV3 specifics: strides, per-step / expanding heads, unknown layout, features, weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

from llseg.models import DeepLabV3, ExpandingClassifier, PerStepHeads, create_model
from llseg.models.deeplabv3 import DenseConv2d

DEEPLABS = ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101"]


def _build(name: str, num_classes: int, seed: int = 0, **kwargs: object) -> DeepLabV3:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, **kwargs)
    assert isinstance(model, DeepLabV3)
    return model


def _calibrated(name: str, num_classes: int, x: Tensor, **kwargs: object) -> DeepLabV3:
    """Eval-mode model whose BN statistics are those of ``x``, so its activations are O(1)
    (at random init with fresh BN statistics MobileNetV3's logits are spatially constant)."""
    model = _build(name, num_classes, bn_momentum=1.0, **kwargs).train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", DEEPLABS)
@pytest.mark.parametrize("head", ["expanding", "per_step"])
def test_logits_at_odd_input_sizes(name: str, head: str) -> None:
    model = _build(name, 5, head=head).eval()
    for shape in [(1, 3, 33, 41), (2, 3, 19, 27)]:
        out = _logits(model, torch.randn(shape))
        assert out.shape == (shape[0], 5, *shape[2:])
        assert torch.isfinite(out).all()


def test_output_stride_sets_resolution_and_rates() -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for os_, hw3, rates in [(16, (4, 4), (6, 12, 18)), (8, (8, 8), (12, 24, 36))]:
            model = _build("deeplabv3_resnet50", 3, output_stride=os_).eval()
            feats = model.forward_features(x)
            assert feats["layer2"].shape[-2:] == (8, 8)
            assert feats["layer3"].shape[-2:] == feats["layer4"].shape[-2:] == feats["aspp"].shape[-2:] == hw3
            assert feats["logits_lowres"].shape == (1, 3, *hw3)
            assert tuple(model.aspp.convs[i][0].dilation[0] for i in (1, 2, 3)) == rates
            assert model.aspp.project[-1].p == 0.1
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        _build("deeplabv3_resnet50", 3, output_stride=32)
    with pytest.raises(ValueError, match="output_stride 16 only"):
        _build("deeplabv3_mobilenet_v3_large", 3, output_stride=8)


@pytest.mark.parametrize("init", ["default", "zeros"])
def test_per_step_growth_appends_a_head_and_keeps_old_logits(init: str) -> None:
    x = torch.randn(2, 3, 35, 29)
    model = _calibrated("deeplabv3_mobilenet_v3_large", 4, x, head="per_step")
    old = _logits(model, x)
    assert old.std(dim=(2, 3)).min() > 0.05
    model.add_classes(3, init=init)
    model.add_classes(2, init=init)
    heads = model.classifier
    assert isinstance(heads, PerStepHeads)
    assert [h[-1].out_channels for h in heads.heads] == [4, 3, 2]
    assert model.num_classes == model.logit_classes == 9
    new = _logits(model, x)
    assert new.shape == (2, 9, 35, 29)
    assert torch.equal(new[:, :4], old)
    assert not any(m.training for m in model.modules())
    assert {id(p) for p in heads.heads[2].parameters()} <= {id(p) for p in model.classifier_parameters()}
    assert _count(heads) == sum(p.numel() for p in model.classifier_parameters())
    if init == "zeros":
        assert torch.equal(new[:, 4:], torch.zeros_like(new[:, 4:]))
    else:
        assert new[:, 4:].std() > 0
    with pytest.raises(ValueError, match="'default' or 'zeros'"):
        model.add_classes(1, init="copy_mean")


def test_expanding_growth_keeps_old_logits_and_grows_one_conv() -> None:
    x = torch.randn(2, 3, 21, 37)
    model = _calibrated("deeplabv3_mobilenet_v3_large", 4, x)
    old = _logits(model, x)
    assert old.std(dim=(2, 3)).min() > 0.05
    model.add_classes(3)
    new = _logits(model, x)
    assert new.shape == (2, 7, 21, 37) and model.num_classes == model.logit_classes == 7
    assert torch.equal(new[:, :4], old)
    assert [tuple(p.shape) for p in model.classifier_parameters()] == [(7, 256, 1, 1), (7,)]
    model.add_classes(30)  # 37 channels: three chunks of 16
    assert torch.equal(_logits(model, x)[:, :7], new)


def test_expanding_classifier_equals_a_plain_1x1_conv() -> None:
    torch.manual_seed(0)
    classifier = ExpandingClassifier(8, 21)
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(classifier(x), classifier.conv(x), rtol=1e-5, atol=1e-6)


def test_unknown_channel_layout() -> None:
    model = _build("deeplabv3_mobilenet_v3_large", 4, head="per_step", unknown=True).eval()
    heads = model.classifier
    assert isinstance(heads, PerStepHeads)
    assert [h[-1].out_channels for h in heads.heads] == [1, 1, 3]  # unknown, background, foreground 1..3
    assert (model.num_classes, model.logit_classes) == (4, 5)
    model.add_classes(2)
    assert (model.num_classes, model.logit_classes) == (6, 7)
    with torch.no_grad():  # each head emits its constant bias, so channels identify their head
        for head, bias in zip(heads.heads, ([10.0], [20.0], [1.0, 2.0, 3.0], [4.0, 5.0])):
            head[-1].weight.zero_()
            head[-1].bias.copy_(torch.tensor(bias))
    out = _logits(model, torch.randn(1, 3, 17, 19))
    assert out[0, :, 0, 0].tolist() == [10.0, 20.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # class c is channel c + 1
    with pytest.raises(ValueError, match="needs head='per_step'"):
        _build("deeplabv3_mobilenet_v3_large", 4, unknown=True)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        _build("deeplabv3_mobilenet_v3_large", 1, head="per_step", unknown=True)


@pytest.mark.parametrize(
    ("name", "channels"),
    [("deeplabv3_resnet50", (256, 512, 1024, 2048)), ("deeplabv3_mobilenet_v3_large", (24, 40, 112, 960))],
)
def test_forward_features_with_aspp_taps(name: str, channels: tuple[int, ...]) -> None:
    model = _build(name, 6, head="per_step", aspp_taps=True).eval()
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        feats = model.forward_features(x)
    sizes = [(9, 11), (5, 6), (3, 3), (3, 3)]  # strides 4, 8, 16, 16 (ceil)
    expected = {f"layer{i + 1}": (1, c, *s) for i, (c, s) in enumerate(zip(channels, sizes))}
    expected |= {f"aspp_layer{i + 1}": (1, 256, *s) for i, s in enumerate(sizes[:3])}
    expected |= {"aspp": (1, 256, 3, 3), "logits_lowres": (1, 6, 3, 3), "logits": (1, 6, 33, 41)}
    assert {k: tuple(v.shape) for k, v in feats.items()} == expected
    assert torch.equal(feats["logits"], _logits(model, x))
    assert list(model.aspp_taps) == ["layer1", "layer2", "layer3"]


def test_taps_and_heads_train_through_forward_features() -> None:
    model = _build("deeplabv3_mobilenet_v3_large", 3, head="per_step", aspp_taps=True).train()
    feats = model.forward_features(torch.randn(2, 3, 25, 31))
    (feats["logits"].square().mean() + sum(feats[f"aspp_layer{i}"].mean() for i in (1, 2, 3))).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("momentum", [0.01, 0.1])
def test_bn_momentum_on_every_batchnorm(momentum: float) -> None:
    model = _build("deeplabv3_resnet50", 3, head="per_step", aspp_taps=True, bn_momentum=momentum)
    model.add_classes(2)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {momentum}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 53 + 4 * 6 + 2  # R50, 4 ASPPs, 2 heads


def test_backbone_weights_load_from_local_torchvision_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    resnet = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        resnet.bn1.running_mean.uniform_()
    path = tmp_path / "resnet50.pth"
    torch.save(resnet.state_dict(), path)
    model = _build("deeplabv3_resnet50", 3, output_stride=8, backbone_weights=path)
    own = model.backbone.state_dict()
    assert set(own) == {k for k in resnet.state_dict() if not k.startswith("fc.")}
    assert all(torch.equal(v, resnet.state_dict()[k]) for k, v in own.items())
    with pytest.raises(ValueError, match=r"resnet50\.pth.*missing: layer3\.6"):
        _build("deeplabv3_resnet101", 3, backbone_weights=path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        _build("deeplabv3_resnet50", 3, backbone_weights=tmp_path / "nope.pth")


def test_mobilenet_backbone_weights_load(tmp_path: Path) -> None:
    torch.manual_seed(4)
    net = torchvision.models.mobilenet_v3_large(weights=None)
    torch.save(net.state_dict(), tmp_path / "mnv3.pth")
    model = _build("deeplabv3_mobilenet_v3_large", 3, backbone_weights=tmp_path / "mnv3.pth")
    expected = {k.removeprefix("features."): v for k, v in net.state_dict().items() if k.startswith("features.")}
    own = model.backbone.state_dict()
    assert set(own) == set(expected) and all(torch.equal(v, expected[k]) for k, v in own.items())


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50"])
def test_backbone_checkpoint_round_trips_through_backbone_weights(name: str, tmp_path: Path) -> None:
    """A trained model's backbone, exported, is the pretrained backbone of a new model (other
    classes, other head): same weights and BN statistics, so the same layer4 features."""
    x = torch.randn(2, 3, 33, 47)
    trained = _calibrated(name, 4, x)
    state = trained.backbone_checkpoint()
    fresh = (torchvision.models.mobilenet_v3_large if "mobilenet" in name else torchvision.models.resnet50)(weights=None)
    assert set(state) == set(fresh.state_dict())  # a torchvision classification state_dict
    torch.save(state, tmp_path / "backbone.pth")
    reborn = _build(name, 7, seed=9, head="per_step", unknown=True, backbone_weights=tmp_path / "backbone.pth").eval()
    assert all(torch.equal(v, trained.backbone.state_dict()[k]) for k, v in reborn.backbone.state_dict().items())
    with torch.no_grad():
        assert torch.equal(reborn.backbone(x)["layer4"], trained.backbone(x)["layer4"])
    for v in state.values():  # a copy, not a view of the model
        v.zero_()
    assert all(torch.equal(v, reborn.backbone.state_dict()[k]) for k, v in trained.backbone.state_dict().items())


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50"])
def test_taps_train_in_bf16_channels_last(name: str) -> None:
    """The learner's setting (channels_last, bf16 autocast): the tap ASPPs stay NCHW and their gradients
    are finite and match fp32's (oneDNN's channels_last bf16 dilated convs with 24/40 input channels
    give NaN or crash)."""
    torch.manual_seed(0)
    model = _build(name, 3, head="per_step", aspp_taps=True).to(memory_format=torch.channels_last).eval()  # no dropout
    assert all(p.is_contiguous() for p in model.aspp_taps.parameters())
    assert not model.backbone.state_dict()[next(k for k in model.backbone.state_dict() if k.endswith("weight"))].is_contiguous()
    x = torch.randn(2, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    grads = {}
    for dtype in (torch.bfloat16, torch.float32):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            feats = model.forward_features(x)
            sum(feats[f"aspp_{layer}"].float().pow(2).mean() for layer in ("layer1", "layer2", "layer3")).backward()
        grads[dtype] = {k: p.grad.clone() for k, p in model.aspp_taps.named_parameters() if p.grad is not None}
    assert grads[torch.bfloat16].keys() == grads[torch.float32].keys() and len(grads[torch.float32]) > 30
    for k, g in grads[torch.bfloat16].items():
        assert torch.isfinite(g).all(), k
        ref = grads[torch.float32][k]
        assert float((g - ref).norm()) <= 0.1 * float(ref.norm()) + 1e-9, k  # bf16 rounding, not garbage


# Exact counts, C = 21 (VOC). Expanding: backbone + ASPP + 257·C. Per-step: + 3×3 conv & BN (590 336).
PARAMS = {
    "deeplabv3_mobilenet_v3_large": (10_435_141, 11_025_477),
    "deeplabv3_resnet50": (39_048_533, 39_638_869),
    "deeplabv3_resnet101": (58_040_661, 58_630_997),
}


@pytest.mark.parametrize("name", DEEPLABS)
def test_parameter_counts(name: str) -> None:
    expanding, per_step = (_count(_build(name, 21, head=h)) for h in ("expanding", "per_step"))
    assert (expanding, per_step) == PARAMS[name]
    assert per_step - expanding == 256 * 256 * 9 + 2 * 256
    taps = _count(_build(name, 21, head="per_step", unknown=True, aspp_taps=True))
    assert taps - per_step > 3 * 1_000_000  # three extra ASPPs (+ one more head)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("deeplabv3_resnet50", torchvision.models.segmentation.deeplabv3_resnet50),
        ("deeplabv3_mobilenet_v3_large", torchvision.models.segmentation.deeplabv3_mobilenet_v3_large),
    ],
)
def test_per_step_model_matches_torchvision_deeplabv3_size(name: str, reference: object) -> None:
    tv = reference(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)  # type: ignore[operator]
    assert _count(tv) == PARAMS[name][1]


@pytest.mark.parametrize("head", ["expanding", "per_step"])
def test_only_the_logit_convs_run_in_fp32_under_autocast(head: str) -> None:
    """The ASPP (and a per-step head's 3×3 conv) stay bf16; the 1×1 logit convs read them in fp32."""
    model = _build("deeplabv3_mobilenet_v3_large", 4, head=head).eval()
    if head == "per_step":
        model.add_classes(2)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        feats = model.forward_features(torch.randn(2, 3, 64, 64))
        if head == "per_step":
            hidden = [step[:-1](feats["aspp"]) for step in model.classifier.heads]
            assert all(h.dtype == torch.bfloat16 for h in hidden)
    assert feats["aspp"].dtype == torch.bfloat16 and feats["logits_lowres"].dtype == torch.float32
    with torch.no_grad():
        if head == "per_step":
            expected = torch.cat([step[-1](h.float()) for step, h in zip(model.classifier.heads, hidden)], dim=1)
        else:
            expected = model.classifier(feats["aspp"].float())
    assert torch.equal(feats["logits_lowres"], expected)


def test_dilated_depthwise_convs_get_right_bf16_gradients_in_channels_last() -> None:
    """The learner's setting (channels_last, bf16 autocast) at 512×512 inputs (32×32 maps in the dilated
    last stage): oneDNN's channels_last backward of a dilated depthwise conv is wrong there (relative
    error ~1.5), so those convs run in NCHW and match an fp32 computation on the same bf16 values."""
    model = _build("deeplabv3_mobilenet_v3_large", 3).to(memory_format=torch.channels_last)
    dilated = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 and max(m.dilation) > 1]
    assert len(dilated) == 3 and all(isinstance(m, DenseConv2d) and m.weight.is_contiguous() for m in dilated)
    conv = dilated[0]
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(2, conv.out_channels, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    out.backward(g.to(out.dtype))
    weight = conv.weight.detach().bfloat16().float().requires_grad_()
    inputs = x.detach().bfloat16().float().requires_grad_()
    torch.nn.functional.conv2d(inputs, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups).backward(
        g.bfloat16().float())
    for got, want in ((conv.weight.grad, weight.grad), (x.grad, inputs.grad)):
        assert (got.float() - want).abs().max() <= 0.02 * want.abs().max()


def test_preactivation_features_are_the_stages_before_their_last_relu() -> None:
    model = _build("deeplabv3_resnet50", 4, head="expanding").eval()
    for m in model.modules():  # zero-initialised residual BN would make the pre-activation ReLU-free
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        post = model.forward_features(x)
        pre = model.forward_features(x, preactivation=True)
    for i in range(1, 5):
        name = f"layer{i}"
        assert (pre[name] < 0).any(), name  # PLOP's POD inputs keep the negative part
        assert torch.allclose(torch.relu(pre[name]), post[name], atol=1e-5), name
    for name in ("aspp", "logits_lowres", "logits"):  # the network computes the same
        assert torch.allclose(pre[name], post[name], atol=1e-5), name
    assert torch.equal(pre["aspp_before_dropout"], pre["aspp"])  # eval mode: dropout is the identity
    model.train()
    feats = model.forward_features(x.expand(2, -1, -1, -1), preactivation=True)  # BatchNorm needs 2 samples
    dropped = feats["aspp"] == 0
    assert dropped.any() and torch.allclose(feats["aspp"][~dropped], feats["aspp_before_dropout"][~dropped] / 0.9)
    mobilenet = _build("deeplabv3_mobilenet_v3_large", 4, head="expanding").eval()
    assert model.preactivation_stages and not mobilenet.preactivation_stages
    with pytest.raises(ValueError, match="ResNet"):
        mobilenet.forward_features(x, preactivation=True)
