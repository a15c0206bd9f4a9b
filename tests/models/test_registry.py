"""Registry, factory and local-checkpoint loading (llseg.models.registry)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from llseg.models import ERFNet, create_model, grow_classifier, list_models, register_model, registry


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate registrations made by a test from the global registry."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))


def test_erfnet_is_registered_and_listing_is_sorted() -> None:
    names = list_models()
    assert "erfnet" in names
    assert names == sorted(names)


def test_name_lookup_is_case_insensitive() -> None:
    assert isinstance(create_model("ERFNet", num_classes=3), ERFNet)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'segformer'.*erfnet"):
        create_model("segformer", num_classes=3)


def test_duplicate_registration_is_refused(scratch_registry: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("erfnet")(lambda *, num_classes: ERFNet(num_classes))


def test_builder_receives_kwargs_and_contract_is_checked(scratch_registry: None) -> None:
    seen: dict[str, object] = {}

    @register_model("Linear")
    def linear(*, num_classes: int, width: int) -> nn.Module:
        seen.update(num_classes=num_classes, width=width)
        return nn.Linear(width, num_classes)

    assert "linear" in list_models()
    with pytest.raises(TypeError, match="lacks the SegmentationModel API"):
        create_model("linear", num_classes=4, width=7)
    assert seen == {"num_classes": 4, "width": 7}


def test_bad_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        create_model("erfnet", num_classes=0)


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module_prefix"])
def test_weights_round_trip(tmp_path: Path, wrap: str) -> None:
    src = create_model("erfnet", num_classes=5)
    state = src.state_dict()
    obj = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 199},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    dst = create_model("erfnet", num_classes=5, weights=_save(obj, tmp_path / "w.pth"))
    _assert_same_state(src, dst)


def test_missing_weights_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_model("erfnet", num_classes=5, weights=path)


def test_unreadable_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable torch checkpoint"):
        create_model("erfnet", num_classes=5, weights=path)


def test_shape_mismatch_names_file_and_keys(tmp_path: Path) -> None:
    path = _save(create_model("erfnet", num_classes=5).state_dict(), tmp_path / "five.pth")
    with pytest.raises(ValueError) as err:
        create_model("erfnet", num_classes=19, weights=path)
    msg = str(err.value)
    assert "five.pth" in msg
    assert "classifier.weight (file (16, 5, 2, 2) vs model (16, 19, 2, 2))" in msg
    assert "classifier.bias (file (5,) vs model (19,))" in msg
    assert "encoder." not in msg


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = create_model("erfnet", num_classes=5).state_dict()
    state["extra.weight"] = state.pop("classifier.bias")
    with pytest.raises(ValueError, match=r"missing: classifier\.bias; unexpected: extra\.weight"):
        create_model("erfnet", num_classes=5, weights=_save(state, tmp_path / "w.pth"))


@pytest.mark.parametrize("source", ["encoder_only", "whole_model"])
def test_encoder_weights_initialise_only_the_encoder(tmp_path: Path, source: str) -> None:
    torch.manual_seed(0)
    src = create_model("erfnet", num_classes=5)
    obj = src.encoder.state_dict() if source == "encoder_only" else src.state_dict()
    torch.manual_seed(1)
    dst = create_model("erfnet", num_classes=19, encoder_weights=_save(obj, tmp_path / "enc.pth"))
    _assert_same_state(src.encoder, dst.encoder)
    assert not torch.equal(src.decoder[0][0].weight, dst.decoder[0][0].weight)


def test_grow_classifier_conv2d_uses_dim0() -> None:
    conv = nn.Conv2d(8, 3, 1)
    grown = grow_classifier(conv, 2, init="copy_mean")
    assert grown.weight.shape == (5, 8, 1, 1) and grown.bias.shape == (5,)
    assert torch.equal(grown.weight[:3], conv.weight)
    assert torch.allclose(grown.weight[3:], conv.weight.mean(0, keepdim=True).expand(2, -1, -1, -1))
    assert torch.allclose(grown.bias[3:], conv.bias.mean().expand(2))


def test_grow_classifier_rejects_bad_arguments() -> None:
    conv = nn.Conv2d(8, 3, 1)
    with pytest.raises(ValueError, match="num_new must be >= 1"):
        grow_classifier(conv, 0)
    with pytest.raises(ValueError, match="init must be"):
        grow_classifier(conv, 1, init="ones")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups == 1"):
        grow_classifier(nn.Conv2d(8, 4, 1, groups=2), 2)
