"""Batched seeds (gbench.run.batched): each seed's numbers are those of its separate run.

The documented tolerance (gbench/run/batched.py): the only possible difference is float summation
order in the batched products. On this CPU build (MKL) there is none: weights, loss curves and
metrics are bitwise equal (checked below where MKL is in use). Elsewhere the test allows the drift
measured with a reordered product after 50 steps (at most 1.1e-5 relative on weights, loss curves
and metrics unchanged) with a margin: weights to 1e-4 relative, loss curves to 1e-5, modes equal,
HQ % within 0.5 points, JSD within 0.01 bits.
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
from gbench.run import batched
from gbench.cli import cli
from gbench.errors import GbenchError
from gbench.analysis.report import mode_rates, render, wilson
from gbench.run.results import load_results
from gbench.run.runner import run_suite
from gbench.suite import parse_suite
from gbench.run.trial import Runtime, run_trial, trials_of

WEIGHT_RTOL, LOSS_ATOL, HQ_ATOL, JSD_ATOL = 1e-4, 1e-5, 0.5, 0.01
EXACT = torch.backends.mkl.is_available()  # measured bitwise on the MKL CPU build (see the module doc)

VARIANTS = {
    "sgan": "sgan",
    "alpha(0.3,1)": {"name": "alpha-gan", "label": "alpha(0.3,1)", "alpha_d": 0.3, "non_saturating": False},
    "alpha(1,1)": {"name": "alpha-gan", "label": "alpha(1,1)", "alpha_d": 1.0, "non_saturating": False},
    "rasgan": {"name": "rsgan", "label": "rasgan", "average": True},
    "delta(sgan)": {"name": "delta-gan", "label": "delta(sgan)", "delta": 0.2},
}


def suite(variants=("sgan",), seeds=(0, 1, 2), **overrides):
    raw = {
        "name": "tiny-batched",
        "seeds": list(seeds),
        "variants": [VARIANTS.get(v, v) for v in variants],
        "dataset": {"name": "ring8", "train_size": 1024},
        "model": {"g_hidden": 16, "d_hidden": 16, "depth": 2},
        "optim": {"g_lr": 1e-3, "d_lr": 1e-3},
        "budget": {"g_steps": 50, "batch_size": 32},
        "eval": {"num_samples": 500, "at": [0.5, 1.0]},
    }
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return parse_suite(raw, "tiny-batched.toml")


@pytest.fixture
def weights(monkeypatch):
    """The generator's weights at every evaluation, separate runs and batched runs apart."""
    seen: dict[str, list] = {"separate": [], "batched": []}
    evaluate = trial_module.evaluate

    def recording(kind):
        def wrapped(generator, *args, **kwargs):
            seen[kind].append({k: v.detach().clone() for k, v in generator.state_dict().items()})
            return evaluate(generator, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(trial_module, "evaluate", recording("separate"))
    monkeypatch.setattr(batched, "evaluate", recording("batched"))
    return seen


def _max_rel(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp(min=1e-12)) for k in a)


@pytest.mark.parametrize("label, optim", [(v, {}) for v in VARIANTS] + [("sgan", {"lr_schedule": "cosine"})],
                         ids=list(VARIANTS) + ["sgan-cosine-lr"])
def test_each_seed_matches_its_separate_run(label, optim, weights):
    trials = trials_of(suite([label], optim=optim))
    separate = [run_trial(t) for t in trials]
    together = batched.run_trials(trials)
    n_evals = 2
    for i, (a, b) in enumerate(zip(separate, together)):
        assert a["status"] == b["status"] == "ok", b["error"]
        assert b["runtime"]["batched"] == 3 and b["runtime"]["batched_seeds"] == [0, 1, 2]
        # weights at both evaluations: separate runs evaluate trial by trial, the batched run step by step
        for e in range(n_evals):
            wa, wb = weights["separate"][i * n_evals + e], weights["batched"][e * len(trials) + i]
            assert _max_rel(wa, wb) <= WEIGHT_RTOL
            if EXACT:
                assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert [c["g_step"] for c in a["loss_curve"]] == [c["g_step"] for c in b["loss_curve"]]
        for ca, cb in zip(a["loss_curve"], b["loss_curve"]):
            assert abs(ca["d_loss"] - cb["d_loss"]) <= LOSS_ATOL and abs(ca["g_loss"] - cb["g_loss"]) <= LOSS_ATOL
        ma, mb = a["metrics"], b["metrics"]
        assert ma["modes"] == mb["modes"] and abs(ma["hq_percent"] - mb["hq_percent"]) <= HQ_ATOL
        assert abs(ma["jsd_bits"] - mb["jsd_bits"]) <= JSD_ATOL
        if EXACT:
            assert a["loss_curve"] == b["loss_curve"] and a["evaluations"] == b["evaluations"]
            assert np.array_equal(a["_samples"], b["_samples"])
        assert a["consumed"]["g_steps"] == b["consumed"]["g_steps"] == 50
        assert a["consumed"]["g_images"] == b["consumed"]["g_images"]
        assert a.keys() == b.keys() and a["consumed"].keys() <= b["consumed"].keys()  # run_trial's record format
        if EXACT:  # everything but timings and how it ran
            same = [k for k in a if k not in ("consumed", "runtime", "started", "_samples")]
            assert {k: a[k] for k in same} == {k: b[k] for k in same}


def test_batched_runs_are_deterministic_and_independent_of_the_group():
    trials = trials_of(suite(["alpha(0.3,1)"]))
    first, second = batched.run_trials(trials), batched.run_trials(trials)
    alone = batched.run_trials(trials[2:])  # seed 2 in a group of one
    for a, b in zip(first, second):
        assert a["loss_curve"] == b["loss_curve"] and a["evaluations"] == b["evaluations"]
        assert np.array_equal(a["_samples"], b["_samples"])
    assert alone[0]["loss_curve"] == first[2]["loss_curve"] and alone[0]["metrics"] == first[2]["metrics"]


@pytest.mark.parametrize("variants, overrides, runtime, message", [
    (["tgan"], {}, Runtime(), "tgan"),
    (["deligan"], {}, Runtime(), "deligan"),
    (["sgan"], {"budget": {"max_device_seconds": 5.0}}, Runtime(), "max_device_seconds"),
    (["sgan"], {}, Runtime(precision="bf16"), "fp32"),
    (["sgan"], {"optim": {"ema_decay": 0.99}}, Runtime(), "ema_decay; run without --batch-seeds"),
    (["sgan"], {"optim": {"r1_gamma": 1.0}}, Runtime(), "r1_gamma; run without --batch-seeds"),
])
def test_unsupported_variants_and_settings_are_refused(variants, overrides, runtime, message):
    trials = trials_of(suite(variants, **overrides))
    with pytest.raises(GbenchError, match=message):
        batched.run_trials(trials, runtime)
    assert not batched.supports(trials[0], runtime)
    assert batched.groups(trials, Runtime(batch_seeds=-1, precision=runtime.precision)) == []


class BlowUpGAN(SGAN):
    """SGAN whose critic loss turns to NaN once a real logit passes 2: a pure function of the logits,
    so it diverges at a seed-dependent step."""

    name = "blowup"
    paper = "a test double"

    def d_loss(self, nets, x_real, x_fake):
        s_real, s_fake = nets.critic(x_real), nets.critic(x_fake)
        loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        return loss + torch.where(s_real.max() > 2.0, torch.tensor(float("nan")), torch.tensor(0.0))


@pytest.fixture
def blowup():
    plugin = types.SimpleNamespace(register_variants=gbench.hookimpl(lambda register: register(BlowUpGAN)))
    gbench.plugins._loaded = gbench.plugins.load_plugins(entry_points=False, extra=(plugin,))
    yield
    gbench.plugins.reset_plugins()


def test_a_diverging_seed_stops_alone_at_its_own_step(blowup):
    trials = trials_of(suite(["blowup"], seeds=(0, 1, 2, 3), optim={"g_lr": 1e-2, "d_lr": 1e-2},
                             budget={"g_steps": 120}, eval={"at": [0.25, 0.5, 1.0]}))
    separate = [run_trial(t) for t in trials]
    together = batched.run_trials(trials)
    statuses = [r["status"] for r in separate]
    assert "diverged" in statuses and "ok" in statuses  # the test double does what it should
    for a, b in zip(separate, together):
        assert (a["status"], a["diverged_at"], a["metrics"]) == (b["status"], b["diverged_at"], b["metrics"])
        assert a["loss_curve"] == b["loss_curve"] and a["evaluations"] == b["evaluations"]
        assert a["consumed"]["g_steps"] == b["consumed"]["g_steps"]
        assert a["consumed"]["stopped_by"] == b["consumed"]["stopped_by"]


def test_runner_batches_eligible_variants_and_runs_the_others_separately(tmp_path: Path):
    s = suite(["sgan", "deligan"], seeds=(0, 1))
    run_suite(s, tmp_path / "batched", Runtime(batch_seeds=-1), quiet=True)
    run_suite(s, tmp_path / "separate", Runtime(), quiet=True)
    _, with_batches = load_results(tmp_path / "batched")
    _, without = load_results(tmp_path / "separate")
    for a, b in zip(without, with_batches):
        assert a["trial_id"] == b["trial_id"] and b["status"] == "ok"
        assert b["runtime"].get("batched") == (2 if b["variant"] == "sgan" else None)
        assert (b["samples_file"] is not None) == (a["samples_file"] is not None)
        if EXACT:
            assert a["metrics"] == b["metrics"] and a["loss_curve"] == b["loss_curve"]


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


def test_observers_see_what_they_see_in_separate_runs():
    trials = trials_of(suite(["sgan"], seeds=(0, 1), budget={"g_steps": 120}))
    pm = gbench.get_plugins().manager
    separate, together = Recorder(), Recorder()
    for recorder, run in ((separate, lambda: [run_trial(t) for t in trials]),
                          (together, lambda: batched.run_trials(trials))):
        pm.register(recorder)
        try:
            run()
        finally:
            pm.unregister(recorder)
    assert set(together.calls) == {"sgan-seed0", "sgan-seed1"}
    for trial_id, calls in separate.calls.items():
        assert [c[:2] for c in together.calls[trial_id]] == [c[:2] for c in calls]
        if EXACT:
            assert together.calls[trial_id] == calls


def test_cli_flag(tmp_path: Path):
    path = tmp_path / "tiny.toml"
    path.write_text('seeds = [0, 1]\nvariants = ["sgan"]\n[dataset]\nname = "ring8"\ntrain_size = 512\n'
                    '[model]\ng_hidden = 8\nd_hidden = 8\ndepth = 1\n[budget]\ng_steps = 10\nbatch_size = 16\n'
                    '[eval]\nnum_samples = 200\nmetrics = ["modes"]\n')
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "run"), "--batch-seeds", "--quiet"])
    assert result.exit_code == 0, result.output
    _, results = load_results(tmp_path / "run")
    assert [r["runtime"]["batched"] for r in results] == [2, 2]
    assert all(r["runtime"]["batch_seeds"] == -1 for r in results)


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
    run_suite(s, tmp_path, Runtime(batch_seeds=-1), quiet=True)
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
