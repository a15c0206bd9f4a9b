import pytest
import torch

from llseg import runtime


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_uses_bf16_only_when_native(monkeypatch, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == expected


def test_auto_precision_on_cuda_is_fp16():
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "fp16"


def test_explicit_precisions_and_errors():
    assert runtime.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        runtime.resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.resolve_precision("half", torch.device("cpu"))


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.pick_device(None) == torch.device("cpu")
    assert runtime.pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.pick_device("auto") == torch.device("cuda")


def test_autocast_is_a_no_op_for_fp32():
    with runtime.autocast("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
