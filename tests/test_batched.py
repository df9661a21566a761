"""Batched groups (gbench.run.loop, gbench.run.batched): S seeds of a variant trained at once.

What is asserted bitwise, and why it is guaranteed: in one process a group trained trial by trial
(``mode = "loop"``) runs exactly the kernels of the separate runs (each trial's nets are views of the
stack, Adam is elementwise), and every random draw comes from the trial's own generators, so its
weights, loss curves and metrics equal the separate runs' on any machine. A vmapped group
(``mode = "vmap"``) runs batched kernels whose summation order the BLAS chooses, so it is compared
within the documented tolerance (docs/batched.md): after 30 G steps, generator weights within 1e-4
relative (max |dw| / max |w| per tensor; measured here: at most 1e-5) and loss-curve means within
1e-4 (measured: 1e-6). Critic weights are not compared elementwise: a relativistic critic has
directions its loss cannot see (RaSGAN: a common shift of C cancels in C(x_r) - mean C(x_f)), whose
gradient is rounding noise that Adam normalises into steps of size lr (measured: 1e-2 relative on
RaSGAN's head bias after 10 steps, losses unchanged). Its draws of data and latents are still
bitwise the separate runs' (the draws are integer-seeded, not float arithmetic).
"""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from gbench_plugins.sgan import SGAN

import gbench
import gbench.plugins
import gbench.run.trial as trial_module
from gbench.analysis.report import mode_rates, render, wilson
from gbench.cli import cli
from gbench.errors import GbenchError
from gbench.run.executors import groups, plan
from gbench.run.loop import Group
from gbench.run.record import Batched, TrialResult
from gbench.run.results import load_results
from gbench.run.runner import run_suite
from gbench.run.trial import Runtime, run_group, run_trial, trials_of
from gbench.suite import parse_suite

WEIGHT_RTOL, LOSS_ATOL = 1e-4, 1e-4

VARIANTS = {
    "sgan": "sgan",
    "alpha(0.3,1)": {"name": "alpha-gan", "label": "alpha(0.3,1)", "alpha_d": 0.3, "non_saturating": False},
    "alpha(1,1)": {"name": "alpha-gan", "label": "alpha(1,1)", "alpha_d": 1.0, "non_saturating": False},
    "rasgan": {"name": "rsgan", "label": "rasgan", "average": True},
    "delta(sgan)": {"name": "delta-gan", "label": "delta(sgan)", "delta": 0.2},
    "tgan": "tgan",
    "deligan": {"name": "deligan", "label": "deligan", "components": 5, "sigma0": 0.02},
    "t-wgan": {"name": "tgan", "label": "t-wgan", "loss": "wgan"},
    "penalised": "penalised",
}


def suite(variants=("sgan",), seeds=(0, 1, 2), **overrides):
    raw = {
        "name": "tiny-batched",
        "seeds": list(seeds),
        "variants": [VARIANTS.get(v, v) for v in variants],
        "dataset": {"name": "ring8", "train_size": 1024},
        "model": {"g_hidden": 16, "d_hidden": 16, "depth": 2},
        "optim": {"g_lr": 1e-3, "d_lr": 1e-3},
        "budget": {"g_steps": 30, "batch_size": 32},
        "eval": {"num_samples": 300, "at": [0.5, 1.0], "metrics": ["modes"]},
    }
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return parse_suite(raw, "tiny-batched.toml")


class PenalisedGAN(SGAN):
    """SGAN plus a WGAN-GP-style penalty on the critic's input gradient, taken with torch.autograd.grad
    inside the loss (Gulrajani et al. 2017, Eq. 3, on the real batch)."""

    name = "penalised"
    paper = "a test double"

    def d_loss(self, nets, x_real, x_fake, rng=None):
        x = x_real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(nets.critic(x).sum(), x, create_graph=True)
        return super().d_loss(nets, x_real, x_fake, rng) + ((grad.norm(dim=1) - 1) ** 2).mean()


class BlowUpGAN(SGAN):
    """SGAN whose critic loss turns to NaN once a real logit passes 2: a seed-dependent divergence step."""

    name = "blowup"
    paper = "a test double"

    def d_loss(self, nets, x_real, x_fake, rng=None):
        s_real, s_fake = nets.critic(x_real), nets.critic(x_fake)
        loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        return loss + torch.where(s_real.max() > 2.0, torch.tensor(float("nan")), torch.tensor(0.0))


@pytest.fixture(autouse=True)
def doubles():
    plugin = types.SimpleNamespace(register_variants=gbench.hookimpl(
        lambda register: [register(PenalisedGAN), register(BlowUpGAN)]))
    gbench.plugins._loaded = gbench.plugins.load_plugins(entry_points=False, extra=(plugin,))
    yield
    gbench.plugins.reset_plugins()


@pytest.fixture
def players(monkeypatch):
    """The stacked nets of every group trained since, as ``train`` left them."""
    seen = []
    train = trial_module.train

    def spy(variant, group, *args, **kwargs):
        seen.append(group.players)
        return train(variant, group, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train", spy)
    return seen


def _weights(players, s, critic=True):
    return {**{f"g.{k}": v[s] for k, v in players.g.state_dict().items()},
            **({f"d.{k}": v[s] for k, v in players.d.state_dict().items()} if critic else {})}


def _max_rel(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp(min=1e-12)) for k in a)


SAME = ("status", "diverged_at", "metrics", "evaluations", "loss_curve", "target", "variant_config")


def same(result: TrialResult) -> dict:
    """The fields of a record that do not depend on how its trial ran (not times, runtime, provenance)."""
    return {k: getattr(result, k) for k in SAME}


@pytest.mark.parametrize("label, optim", [(v, {}) for v in ("sgan", "deligan", "tgan", "delta(sgan)", "penalised")]
                         + [("sgan", {"lr_schedule": "cosine", "ema_decay": 0.9, "r1_gamma": 1.0})],
                         ids=["sgan", "deligan", "tgan", "delta-gan", "autograd-in-loss", "sgan-cosine-ema-r1"])
def test_a_group_trial_by_trial_is_bitwise_its_separate_runs(label, optim, players):
    trials = trials_of(suite([label], optim=optim))
    separate = [run_trial(t) for t in trials]
    together = run_group(trials, mode="loop")
    for s, (one, grouped) in enumerate(zip(separate, together)):
        a, b = one.result, grouped.result
        assert a.status == b.status == "ok", b.error
        assert b.runtime.batched == Batched(3, (0, 1, 2), "loop") and a.runtime.batched is None
        assert same(a) == same(b)
        assert one.samples is not None and np.array_equal(one.samples, grouped.samples)
        wa, wb = _weights(players[s], 0), _weights(players[-1], s)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.consumed.g_steps == b.consumed.g_steps == 30
        assert a.consumed.batched_device_seconds is None and b.consumed.batched_device_seconds > 0


@pytest.mark.parametrize("label, optim", [(v, {}) for v in ("sgan", "alpha(0.3,1)", "alpha(1,1)", "rasgan", "tgan",
                                                            "delta(sgan)")]
                         + [("sgan", {"ema_decay": 0.9, "r1_gamma": 1.0})],
                         ids=["sgan", "alpha(0.3,1)", "alpha(1,1)", "rasgan", "tgan", "delta-gan", "sgan-ema-r1"])
def test_a_vmapped_group_matches_its_separate_runs_within_the_tolerance(label, optim, players):
    trials = trials_of(suite([label], optim=optim))
    assert plan(trials[0], Runtime()) == ("vmap", "")
    separate = [run_trial(t).result for t in trials]
    together = [o.result for o in run_group(trials, mode="vmap")]
    for s, (a, b) in enumerate(zip(separate, together)):
        assert a.status == b.status == "ok", b.error
        assert _max_rel(_weights(players[s], 0, False), _weights(players[-1], s, False)) <= WEIGHT_RTOL
        assert [c.g_step for c in a.loss_curve] == [c.g_step for c in b.loss_curve]
        for ca, cb in zip(a.loss_curve, b.loss_curve):
            assert abs(ca.d_loss - cb.d_loss) <= LOSS_ATOL and abs(ca.g_loss - cb.g_loss) <= LOSS_ATOL
        assert b.metrics.keys() == a.metrics.keys()


def test_each_trial_draws_the_data_and_latents_of_its_separate_run(monkeypatch):
    """The draws are integer-seeded: bitwise equal in a group, vmapped or not, on any machine."""
    drawn: list[tuple[str, torch.Tensor]] = []
    real, latent = Group.real, Group.latent
    monkeypatch.setattr(Group, "real", lambda self, *a: drawn.append(("real", real(self, *a))) or drawn[-1][1])
    monkeypatch.setattr(Group, "latent", lambda self: drawn.append(("latent", latent(self))) or drawn[-1][1])
    trials = trials_of(suite(["delta(sgan)"], budget={"g_steps": 5}, eval={"at": [1.0]}))
    for t in trials:
        run_trial(t)
    separate, drawn[:] = list(drawn), []
    run_group(trials, mode="vmap")
    per_trial = len(separate) // len(trials)
    for i, (kind, x) in enumerate(drawn):
        for s in range(len(trials)):
            k, y = separate[s * per_trial + i]
            assert k == kind and torch.equal(x[s], y[0])


def test_batched_runs_are_deterministic_and_a_trial_does_not_depend_on_its_group():
    trials = trials_of(suite(["alpha(0.3,1)"]))
    first, second = run_group(trials, mode="vmap"), run_group(trials, mode="vmap")
    for a, b in zip(first, second):
        assert same(a.result) == same(b.result)
    pair = run_group(trials[1:], mode="loop")
    alone = run_trial(trials[2])
    assert same(pair[1].result) == same(alone.result)


def test_a_diverging_trial_stops_alone_at_its_own_step():
    trials = trials_of(suite(["blowup"], seeds=(0, 1), optim={"g_lr": 1e-2, "d_lr": 1e-2},
                             budget={"g_steps": 40}, eval={"at": [0.5, 1.0], "num_samples": 200}))
    separate = [run_trial(t).result for t in trials]
    together = [o.result for o in run_group(trials, mode="loop")]
    statuses = [r.status for r in separate]
    assert "diverged" in statuses and "ok" in statuses  # the test double does what it should
    for a, b in zip(separate, together):
        assert same(a) == same(b)
        assert a.consumed.g_steps == b.consumed.g_steps
        assert a.consumed.stopped_by == b.consumed.stopped_by
    vmapped = [o.result for o in run_group(trials, mode="vmap")]
    for a, b in zip(separate, vmapped):  # the others go on past a diverged trial's NaNs
        if a.status == "ok":
            assert b.status == "ok" and b.consumed.g_steps == 40


def test_plan_names_what_cannot_be_vmapped_and_what_cannot_be_batched(capsys):
    assert plan(trials_of(suite(["deligan"]))[0], Runtime()) == ("vmap", "")
    mode, why = plan(trials_of(suite(["t-wgan"]))[0], Runtime())  # SN's in-place power iteration
    assert mode == "loop" and "vmap" in why and "\n" not in why
    mode, why = plan(trials_of(suite(["penalised"]))[0], Runtime())  # torch.autograd.grad inside the loss
    assert mode == "loop" and "vmap" in why
    mode, why = plan(trials_of(suite(["sgan"]))[0], Runtime(precision="fp16"))
    assert mode is None and "fp16" in why
    lines: list[str] = []
    batched, alone = groups(trials_of(suite(["sgan", "t-wgan"], seeds=(0, 1))), Runtime(), False, lines.append)
    assert [(len(g), m) for g, m in batched] == [(2, "vmap")] and [t.id for t in alone] == ["t-wgan-seed0",
                                                                                         "t-wgan-seed1"]
    assert len(lines) == 1 and lines[0].startswith("gbench: t-wgan: not batched:")
    batched, alone = groups(trials_of(suite(["sgan", "t-wgan"], seeds=(0, 1))), Runtime(), True, lines.append)
    assert [m for _, m in batched] == ["vmap", "loop"] and not alone and "trial by trial" in lines[-1]
    assert groups(trials_of(suite(["sgan"])), Runtime(batch=False), True, lines.append) == ([], trials_of(suite()))


def test_the_device_seconds_cap_stops_a_group_on_each_trials_share():
    trials = trials_of(suite(["sgan"], budget={"g_steps": 100_000, "max_device_seconds": 0.3}))
    for r in [o.result for o in run_group(trials, mode="vmap")]:
        c = r.consumed
        assert r.status == "ok" and c.stopped_by == "max_device_seconds" and c.g_steps < 100_000
        assert c.device_seconds == pytest.approx(c.batched_device_seconds / 3)
        assert r.evaluations[-1].g_step == c.g_steps  # scored where it stopped


class Recorder:
    """An observer that records every call, per trial."""

    def __init__(self) -> None:
        self.calls: dict[str, list] = {}

    @gbench.hookimpl
    def trial_started(self, trial_info):
        self.calls.setdefault(trial_info["trial_id"], []).append(("trial_started", trial_info["seed"]))

    @gbench.hookimpl
    def log_scalars(self, trial_id, g_step, scalars):
        self.calls.setdefault(trial_id, []).append(("log_scalars", g_step, scalars))

    @gbench.hookimpl
    def evaluated(self, trial_id, g_step, metrics, samples):
        self.calls.setdefault(trial_id, []).append(("evaluated", g_step, metrics, samples.tolist()))

    @gbench.hookimpl
    def trial_finished(self, trial_id, result):
        self.calls.setdefault(trial_id, []).append(("trial_finished", result["status"], result["metrics"]))


def test_observers_see_in_a_group_what_they_see_in_separate_runs():
    trials = trials_of(suite(["sgan"], seeds=(0, 1), budget={"g_steps": 120}))
    pm = gbench.get_plugins().manager
    separate, together = Recorder(), Recorder()
    for recorder, run in ((separate, lambda: [run_trial(t) for t in trials]),
                          (together, lambda: run_group(trials, mode="loop"))):
        pm.register(recorder)
        try:
            run()
        finally:
            pm.unregister(recorder)
    assert together.calls == separate.calls


def test_the_cli_batches_by_default_and_no_batch_turns_it_off(tmp_path: Path):
    path = tmp_path / "tiny.toml"
    path.write_text('seeds = [0, 1]\nvariants = ["sgan"]\n[dataset]\nname = "ring8"\ntrain_size = 512\n'
                    '[model]\ng_hidden = 8\nd_hidden = 8\ndepth = 1\n[budget]\ng_steps = 10\nbatch_size = 16\n'
                    '[eval]\nnum_samples = 200\nmetrics = ["modes"]\n')
    for flags, batched in (([], 2), (["--no-batch"], None)):
        out = tmp_path / f"run{len(flags)}"
        result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--quiet", *flags])
        assert result.exit_code == 0, result.output
        _, results = load_results(out)
        assert [r["runtime"].get("batched") for r in results] == [batched, batched]
        assert all(r["runtime"]["batch"] == (not flags) for r in results)


def test_a_group_refuses_mixed_trials():
    with pytest.raises(GbenchError, match="one variant of one suite"):
        run_group(trials_of(suite(["sgan", "tgan"], seeds=(0,))))


# -- published numbers beside ours ---------------------------------------------------------------------


def test_wilson_interval():
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(87, 100) == pytest.approx((0.7902, 0.9224), abs=1e-4)  # by hand: centre 0.8563, half 0.0661
    assert wilson(5, 5)[1] == 1.0


def test_suite_reference_results_are_checked_and_reported(tmp_path: Path):
    ref = {"sgan": {"success": 0.46, "failure": 0.3, "source": "a paper, Fig. 1"}}
    s = suite(["sgan"], seeds=(0, 1), reference_results=ref)
    assert s.reference_results == ref
    with pytest.raises(GbenchError, match="no variant labelled 'nope'"):
        suite(["sgan"], reference_results={"nope": {"success": 0.5}})
    with pytest.raises(GbenchError, match=r"rate in \[0, 1\]"):
        suite(["sgan"], reference_results={"sgan": {"success": 87}})
    run_suite(s, tmp_path, Runtime(), quiet=True)
    manifest, results = load_results(tmp_path)
    assert manifest["suite_content"]["reference_results"] == ref
    results[0]["metrics"]["modes"] = 8.0  # one success, one failure
    results[1]["metrics"]["modes"] = 0.0
    (rates,) = mode_rates(results, ["sgan"])
    assert (rates["n"], rates["success"], rates["failure"]) == (2, 1, 1)
    text = render(manifest, results, "plain")
    assert "published success" in text and "0.46" in text and "a paper, Fig. 1" in text
    assert "0.50 [0.09, 0.91] (1/2)" in text
    assert "published" not in render(manifest | {"suite_content": {}}, results, "plain")
