"""Learning-rate policies and optimisers (docs/methods.md §3.1)."""
from __future__ import annotations

import pytest
import torch

from llseg.methods.optim import lr_factor, make_optimizer, make_schedule


def test_poly_is_per_iteration_with_a_floor():
    f = lr_factor("poly", 100, base_lr=0.01)
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5**0.9)
    assert f(100) == pytest.approx(1e-6 / 0.01)  # floor 1e-6 absolute


def test_warm_poly_warms_up_over_ten_percent():
    f = lr_factor("warm_poly", 100, base_lr=1.0)
    assert f(0) == pytest.approx(1e-3)
    assert f(5) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert f(10) == 1.0
    assert f(55) == pytest.approx(0.5**0.9)


def test_step_decays_every_step_size():
    f = lr_factor("step", 100, step_size=30)
    assert [f(0), f(29), f(30), f(61)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_schedule_applies_per_group_and_bad_names_raise():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer("sgd", [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.001}], lr=0.1, weight_decay=0)
    sched = make_schedule(opt, "poly", 10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-6, 1e-6])
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match="lr_policy must be one of poly, warm_poly, step"):
        lr_factor("cosine", 10)
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd"):
        make_optimizer("rmsprop", [{"params": [a]}], lr=0.1, weight_decay=0)
