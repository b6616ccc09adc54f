"""Optimizer registry, weight-decay groups, LARS adaptation, lr scaling and schedules."""

import math

import pytest
import torch
from torch import nn

from pipeline.optim import (
    EXPONENTIAL_FINAL,
    OPTIMIZERS,
    build_optimizer,
    build_scheduler,
    lr_multiplier,
    param_groups,
    scaled_lr,
)

NAMES = ["adamw", "lars", "rmsprop", "sgd"]

# A peak lr per optimizer that suits the toy problem below (LARS biases are not adapted, so a
# large LARS lr diverges through them).
TOY_LR = {"sgd": 0.05, "lars": 0.3, "rmsprop": 0.05, "adamw": 0.01}


def _toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))


def test_every_registered_optimizer_is_covered():
    assert OPTIMIZERS.names() == NAMES


def test_param_groups_split_weights_from_biases_and_norms():
    model = _toy_model()
    model[3].bias.requires_grad_(False)  # frozen parameters are left out entirely
    decay, no_decay = param_groups(model, 0.1)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_weight_decay_skips_biases_and_norms(name):
    # With zero gradients only weight decay moves a parameter: weights shrink, the rest stay put.
    model = _toy_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, name, lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim > 1:
            assert p.norm() < before[n].norm(), n
        else:
            torch.testing.assert_close(p, before[n], msg=n)


def test_lars_adapts_weights_but_not_biases():
    # Reference: one plain LARS step (no momentum, no decay) by hand.
    model = nn.Linear(4, 3)
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    opt = build_optimizer(model, "lars", lr=2.0, momentum=0.0)
    g_w, g_b = torch.full_like(weight, 0.5), torch.full_like(bias, 0.25)
    model.weight.grad, model.bias.grad = g_w.clone(), g_b.clone()
    opt.step()
    trust = 0.001 * weight.norm() / g_w.norm()
    torch.testing.assert_close(model.weight.detach(), weight - 2.0 * trust * g_w)
    torch.testing.assert_close(model.bias.detach(), bias - 2.0 * g_b)


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_reduces_a_loss(name):
    model = _toy_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen)
    y = x @ torch.randn(6, 1, generator=gen)
    opt = build_optimizer(model, name, lr=TOY_LR[name], weight_decay=1e-4, nesterov=name in ("sgd", "lars"))

    def loss() -> torch.Tensor:
        return nn.functional.mse_loss(model(x), y)

    first = loss().item()
    for _ in range(60):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.3 * first


def test_unknown_optimizer_names_the_registered_ones():
    with pytest.raises(KeyError, match="lars"):
        build_optimizer(_toy_model(), "adagrad", lr=0.1)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "nesterov": True, "momentum": 0.0}, "nesterov"),
    ],
)
def test_bad_optimizer_arguments_are_rejected(kwargs, key):
    with pytest.raises(ValueError, match=key):
        build_optimizer(_toy_model(), "sgd", **kwargs)


def test_nesterov_is_rejected_where_it_means_nothing():
    with pytest.raises(ValueError, match="nesterov"):
        build_optimizer(_toy_model(), "adamw", lr=0.1, nesterov=True)


def test_scaled_lr_is_linear_in_batch_size():
    assert scaled_lr(0.5, 1024) == pytest.approx(2.0)
    assert scaled_lr(0.4, 6144) == pytest.approx(9.6)
    assert scaled_lr(0.1, 64, reference=128) == pytest.approx(0.05)


def test_warmup_is_linear_then_reaches_peak():
    values = [lr_multiplier(s, total_steps=100, warmup_steps=10) for s in range(11)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert values[0] > 0
    assert steps == pytest.approx([1 / 11] * 10)
    assert values[10] == pytest.approx(1.0)


def test_cosine_endpoints_and_midpoint():
    assert lr_multiplier(10, 110, 10, "cosine") == pytest.approx(1.0)
    assert lr_multiplier(60, 110, 10, "cosine") == pytest.approx(0.5)
    assert lr_multiplier(110, 110, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier(500, 110, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_multiplier(35, 110, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_exponential_decays_monotonically_to_the_floor():
    values = [lr_multiplier(s, 50, 5, "exponential") for s in range(5, 51)]
    assert values[0] == pytest.approx(1.0)
    assert all(b < a for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(EXPONENTIAL_FINAL)
    ratios = [b / a for a, b in zip(values, values[1:])]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))  # a constant factor per step


def test_constant_holds_after_warmup():
    assert [lr_multiplier(s, 20, 2, "constant") for s in (2, 10, 20)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("total", "warmup", "schedule"), [(10, 0, "linear"), (0, 0, "cosine"), (10, 11, "cosine"), (10, -1, "cosine")]
)
def test_bad_schedules_are_rejected(total, warmup, schedule):
    with pytest.raises(ValueError):
        lr_multiplier(0, total, warmup, schedule)


def test_scheduler_sets_peak_times_multiplier_each_step():
    model = _toy_model()
    opt = build_optimizer(model, "sgd", lr=0.8, weight_decay=1e-4)
    sched = build_scheduler(opt, total_steps=30, warmup_steps=5, schedule="cosine")
    for step in range(30):
        expected = 0.8 * lr_multiplier(step, 30, 5, "cosine")
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([expected] * len(opt.param_groups))
        opt.step()
        sched.step()


def test_scheduler_resumes_from_its_state_dict():
    opt = build_optimizer(_toy_model(), "sgd", lr=1.0)
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4, schedule="exponential")
    for _ in range(7):
        opt.step()
        sched.step()
    opt2 = build_optimizer(_toy_model(), "sgd", lr=1.0)
    sched2 = build_scheduler(opt2, total_steps=20, warmup_steps=4, schedule="exponential")
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(lr_multiplier(8, 20, 4, "exponential"))
