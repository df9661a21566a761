"""The [optim] stabilisers: EMA of G's weights, learning-rate schedules, R1; identical for every
variant, against hand computations, and resumed bit for bit."""
from __future__ import annotations

import math
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import gbench
import gbench.run.trial
from gbench.run.batched import Players, stack
from gbench.run.checkpoint import checkpoint_path
from gbench.run.loop import ema_update, lr_factor, r1_penalty
from gbench.run.trial import Runtime, run_trial, trials_of
from gbench_plugins import sgan, tgan
from test_harness import tiny_suite
from test_resume import Stop, nets_of, stop_after_saving_at  # noqa: F401 (fixture)

STABILISED = {"ema_decay": 0.9, "ema_start": 3, "lr_schedule": "cosine", "r1_gamma": 0.5}


def players_of(nets: gbench.Nets) -> Players:
    """One trial's nets as a stacked group of one."""
    return Players(stack([nets.generator]), stack([nets.critic]), "loop")


def test_ema_update_is_the_hand_computation():
    torch.manual_seed(0)
    model, ema = stack([nn.Linear(3, 2), nn.Linear(3, 2)]), stack([nn.Linear(3, 2), nn.Linear(3, 2)])
    ema_update(ema, model, 0.0, copy=True)
    e0 = [p.detach().clone() for p in ema.params.values()]
    history = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.params.values():
                p.add_(torch.randn_like(p))
        history.append([p.detach().clone() for p in model.params.values()])
        ema_update(ema, model, 0.75)
    # e_3 = 0.75^3 e_0 + 0.25 (0.75^2 m_1 + 0.75 m_2 + m_3), for each of the two stacked nets
    for i, e in enumerate(ema.params.values()):
        want = 0.75**3 * e0[i] + 0.25 * (0.75**2 * history[0][i] + 0.75 * history[1][i] + history[2][i])
        torch.testing.assert_close(e.detach(), want, rtol=1e-6, atol=1e-6)


def test_lr_schedules():
    assert [lr_factor("constant", t, 4) for t in (1, 4)] == [1.0, 1.0]
    assert [lr_factor("linear", t, 4) for t in (1, 2, 3, 4)] == [1.0, 0.75, 0.5, 0.25]
    cos = [lr_factor("cosine", t, 4) for t in (1, 2, 3, 4)]
    torch.testing.assert_close(torch.tensor(cos), torch.tensor([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                                (1 + math.cos(3 * math.pi / 4)) / 2]))


def test_loop_applies_the_schedule_to_both_players_and_tracks_the_ema(monkeypatch):
    """Inside a real trial: the lrs seen at each G step, and the EMA copy against a hand-run average."""
    seen: list[tuple[float, float]] = []
    params: list[list[torch.Tensor]] = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        if self.param_groups[0]["lr"] and getattr(self, "_role", None) == "g":
            params.append([p.detach().clone() for p in self.param_groups[0]["params"]])
        return out

    adam = torch.optim.Adam

    def make(params_, lr, betas, **kwargs):
        opt = adam(params_, lr=lr, betas=betas, **kwargs)
        opt._role = "g" if not hasattr(make, "first") else "d"
        make.first = True
        return opt

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    monkeypatch.setattr(gbench.run.trial.torch.optim, "Adam", make)
    train = gbench.run.trial.train
    captured = {}

    def train_spy(variant, group, *args, **kwargs):
        opt_g, opt_d = group.opt_g, group.opt_d
        orig = opt_g.step

        def g_step(*a, **k):
            seen.append((opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))
            return orig(*a, **k)

        opt_g.step = g_step
        captured["ema"] = group.ema
        return train(variant, group, *args, **kwargs)

    monkeypatch.setattr(gbench.run.trial, "train", train_spy)
    suite = tiny_suite(optim={"g_lr": 2e-3, "d_lr": 1e-3, "lr_schedule": "linear", "ema_decay": 0.8,
                              "ema_start": 2}, budget={"g_steps": 6}, eval={"at": [1.0], "metrics": ["modes"]})
    result = run_trial(trials_of(suite)[0]).result
    assert result.status == "ok", result.error
    f = [1 - t / 6 for t in range(6)]
    torch.testing.assert_close(torch.tensor(seen), torch.tensor([(2e-3 * x, 1e-3 * x) for x in f]))
    # EMA: copies G after steps 1-2, then e <- 0.8 e + 0.2 G after steps 3..6
    assert len(params) == 6
    ema = [p.clone() for p in params[1]]
    for p_t in params[2:]:
        ema = [0.8 * e + 0.2 * p for e, p in zip(ema, p_t)]
    for e, want in zip(captured["ema"].params.values(), ema):
        torch.testing.assert_close(e, want, rtol=1e-5, atol=1e-6)
    assert result.generator == "ema"
    assert "modes" in result.metrics and "raw.modes" in result.metrics


def test_r1_is_the_hand_computation_and_its_gradient_matches_finite_differences():
    """D(x) = a.x^2 + b.x (elementwise): grad_x D = 2 a x + b, so R1 = gamma/2 mean |2 a x + b|^2."""

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor([0.3, -0.7], dtype=torch.float64))
            self.b = nn.Parameter(torch.tensor([1.1, 0.4], dtype=torch.float64))

        def forward(self, x):
            return (self.a * x**2 + self.b * x).sum(-1)

    players = players_of(gbench.Nets(nn.Linear(2, 2), Quadratic()))
    critic = types.SimpleNamespace(**players.d.trial(0))  # views of the stacked a and b
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gamma = 0.8

    def r1(x_r, x_f):
        return r1_penalty(sgan.SGAN(), players, x_r[None], x_f[None], [None], gamma, [0])[0]

    pen = r1(x, x.flip(0))
    with torch.no_grad():
        want = 0.5 * gamma * ((2 * critic.a * x + critic.b) ** 2).sum(1).mean()
    torch.testing.assert_close(pen, want)
    (grad_a,) = torch.autograd.grad(pen, players.d.params["a"])
    grad_a = grad_a[0]
    h = 1e-6
    fd = []
    a = players.d.params["a"].data[0]
    for i in range(2):
        a[i] += h
        up = r1(x, x).detach()
        a[i] -= 2 * h
        down = r1(x, x).detach()
        a[i] += h
        fd.append((up - down) / (2 * h))
    torch.testing.assert_close(grad_a, torch.stack(fd), rtol=1e-6, atol=1e-8)


def test_r1_of_a_pairwise_critic_differentiates_t_of_real_and_fake():
    torch.manual_seed(0)
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=8, d_hidden=8, depth=2)
    variant = tgan.TGAN()
    nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
    x_r, x_f = torch.randn(6, 2), torch.randn(6, 2)
    pen = r1_penalty(variant, players_of(nets), x_r[None], x_f[None], [None], 2.0, [0])[0]
    x = x_r.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nets.critic(x, x_f).sum(), x)
    torch.testing.assert_close(pen, g.pow(2).sum(1).mean())


def test_r1_changes_training_and_zero_gamma_is_off():
    base = tiny_suite(budget={"g_steps": 5}, eval={"at": [1.0], "metrics": ["modes"]})
    on = tiny_suite(optim={"r1_gamma": 10.0}, budget={"g_steps": 5}, eval={"at": [1.0], "metrics": ["modes"]})
    a, b = run_trial(trials_of(base)[0]).result, run_trial(trials_of(on)[0]).result
    assert a.status == b.status == "ok"
    assert a.loss_curve[-1].d_loss != b.loss_curve[-1].d_loss
    assert a.generator == "raw" and not any(k.startswith("raw.") for k in a.metrics)


@pytest.mark.parametrize("variant", ["sgan", "deligan"])
def test_resume_with_ema_schedule_and_r1_is_bitwise(tmp_path: Path, monkeypatch, nets_of, variant):  # noqa: F811
    trial = trials_of(tiny_suite(variants=[variant], optim=STABILISED, budget={"g_steps": 24},
                                 eval={"at": [0.25, 1.0], "metrics": ["modes"]}))[0]
    emas = []
    train = gbench.run.trial.train

    def spy(variant, group, *args, **kwargs):
        emas.append(group.ema)
        return train(variant, group, *args, **kwargs)

    monkeypatch.setattr(gbench.run.trial, "train", spy)
    straight = run_trial(trial).result
    assert straight.status == "ok", straight.error
    path, runtime = checkpoint_path(tmp_path, trial.id), Runtime(checkpoint_every=5)
    with monkeypatch.context() as m:
        stop_after_saving_at(m, 15)
        with pytest.raises(Stop):
            run_trial(trial, runtime, checkpoint_path=path)
    resumed = run_trial(trial, runtime, checkpoint_path=path, resume=True).result
    assert resumed.status == "ok", resumed.error
    assert resumed.resumed_at == [15]
    for a, b in ((nets_of[0].g, nets_of[-1].g), (nets_of[0].d, nets_of[-1].d), (emas[0], emas[-1])):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    for key in ("metrics", "evaluations", "loss_curve", "generator"):
        assert getattr(straight, key) == getattr(resumed, key), key
