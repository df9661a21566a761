"""Per-variant optimisers and schedules, and the budgets that keep them equal (issue 10): a variant's
own settings reach its trials (and only its), D steps and batches are honoured, gradient-evaluation
and device-seconds budgets stop trials where they should, and the record says what each consumed."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gbench.errors import GbenchError
from gbench.run.record import TrialResult
from gbench.run.trial import run_trial, trials_of
from gbench.suite import Suite, parse_suite, tomllib
from gbench_plugins.sgan import SGAN

BASE: dict[str, Any] = {
    "variants": ["sgan"],
    "seeds": [0],
    "dataset": {"name": "ring8", "train_size": 512},
    "model": {"g_hidden": 16, "d_hidden": 16, "depth": 2},
    "optim": {"g_lr": 1e-3, "d_lr": 1e-3},
    "budget": {"g_steps": 20, "batch_size": 32},
    "eval": {"num_samples": 200, "metrics": ["modes"]},
}


def suite(**tables: Any) -> Suite:
    """BASE with some tables replaced."""
    return parse_suite({**BASE, **tables}, "sched.toml")


def run_all(s: Suite) -> dict[str, TrialResult]:
    """Every trial of ``s``, one after another; results by label."""
    results = [run_trial(t).result for t in trials_of(s)]
    for r in results:
        assert r.status == "ok", r.error
    return {r.label: r for r in results}


@pytest.fixture
def critic_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The real-batch size of every critic loss SGAN evaluates (one entry per D step)."""
    seen: list[int] = []
    original = SGAN.d_loss

    def counting(self: SGAN, *args: Any, **kwargs: Any) -> Any:
        seen.append(int(args[1].shape[-2]))  # (nets, x_real, x_fake, ...): x_real is (batch, 2)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SGAN, "d_loss", counting)
    return seen


def test_a_variants_optim_is_the_suite_wide_setting_for_its_trials_only():
    own = {"g_lr": 3e-3, "betas": [0.0, 0.9]}
    mixed = run_all(suite(variants=["sgan", {"name": "sgan", "label": "own", "optim": own}]))
    everywhere = run_all(suite(optim={**BASE["optim"], **own}))["sgan"]
    # the override trains exactly as the same settings given to the whole suite (same process, same kernels)
    assert mixed["own"].loss_curve == everywhere.loss_curve
    assert mixed["own"].optim == everywhere.optim == {**mixed["sgan"].optim, "g_lr": 3e-3, "betas": (0.0, 0.9)}
    # the other entry keeps the suite's [optim], so the two trials differ
    assert mixed["sgan"].optim["betas"] == (0.5, 0.999) and mixed["sgan"].optim["g_lr"] == 1e-3
    assert mixed["sgan"].loss_curve != mixed["own"].loss_curve


def test_d_steps_and_batch_of_a_schedule_are_honoured_under_a_gradient_eval_budget(critic_batches):
    # 6400 evaluations: (1 + 1) x 32 = 64 per G step -> 100 G steps; (3 + 1) x 16 = 64 -> 100; (2 + 1) x 32 -> 66
    s = suite(budget={"gradient_evals": 6400, "batch_size": 32},
              variants=["sgan", {"name": "sgan", "label": "k3", "schedule": {"d_steps_per_g_step": 3, "batch_size": 16}},
                        {"name": "sgan", "label": "k2", "schedule": {"d_steps_per_g_step": 2}}])
    expected = {"sgan": (100, 1, 32), "k3": (100, 3, 16), "k2": (66, 2, 32)}
    for trial in trials_of(s):
        g_steps, k, batch = expected[trial.variant.label]
        critic_batches.clear()
        result = run_trial(trial).result
        used = result.consumed
        assert result.status == "ok", result.error
        assert critic_batches == [batch] * (g_steps * k)  # the loop ran k critic steps of its batch per G step
        assert (used.g_steps, used.d_steps) == (g_steps, g_steps * k)
        assert used.gradient_evals == (g_steps + g_steps * k) * batch <= 6400
        assert 6400 - used.gradient_evals < (k + 1) * batch  # stopped at the last G step that fits
        assert result.budget["g_steps"] == g_steps and result.budget["gradient_evals"] == 6400
        assert (result.budget["d_steps_per_g_step"], result.budget["batch_size"]) == (k, batch)
        assert used.stopped_by == "g_steps"


def test_equal_device_seconds_stop_every_variant_at_the_same_training_time():
    seconds = 0.4
    s = suite(budget={"device_seconds": seconds, "g_steps": 10**7, "batch_size": 32},
              variants=["sgan", {"name": "sgan", "label": "k4", "schedule": {"d_steps_per_g_step": 4}}])
    results = run_all(s)
    for label, r in results.items():
        used = r.consumed
        assert used.stopped_by == "max_device_seconds"
        # the check follows each G step, so a trial overshoots by at most about one G step (a few ms here)
        assert seconds <= used.device_seconds < seconds + 0.25, (label, used)
        assert used.d_steps == used.g_steps * r.budget["d_steps_per_g_step"]
        assert used.gradient_evals == (used.g_steps + used.d_steps) * 32
        assert r.budget["device_seconds"] == seconds
        assert r.evaluations[-1].g_step == used.g_steps  # scored where it stopped
    # in the same time, 4 critic steps per G step leave fewer G steps (a G step costs about 2 D steps here)
    assert results["k4"].consumed.g_steps < results["sgan"].consumed.g_steps


def test_per_variant_settings_are_part_of_the_suite_hash():
    plain = suite(variants=["sgan", "rsgan"])
    own = suite(variants=["sgan", {"name": "rsgan", "optim": {"betas": [0.0, 0.9]}}])
    assert plain.hash != own.hash
    assert own.hash == suite(variants=["sgan", {"name": "rsgan", "optim": {"betas": [0.0, 0.9]}}]).hash
    ge = suite(budget={"gradient_evals": 6400},
               variants=["sgan", {"name": "rsgan", "schedule": {"d_steps_per_g_step": 2}}])
    assert ge.hash != suite(budget={"gradient_evals": 6400},
                            variants=["sgan", {"name": "rsgan", "schedule": {"d_steps_per_g_step": 3}}]).hash


def test_the_default_stays_one_setting_for_all():
    s = suite(variants=["sgan", {"name": "rsgan", "label": "rs"}])
    views = [t.suite for t in trials_of(s)]
    assert all(v.optim == s.optim and v.budget == s.budget for v in views)


@pytest.mark.parametrize("budget, message", [
    ({"g_steps": 20}, "train on different schedules, so equal G steps are unequal budgets"),
    ({"gradient_evals": 200}, "'gradient_evals' 200 is less than one G step of variant 'k2' ((d_steps_per_g_step "
                              "+ 1) x batch_size = 384)"),
    ({"gradient_evals": 6400, "g_steps": 20}, "give one of them"),
    ({"device_seconds": 1.0}, "with 'device_seconds', give 'g_steps' too"),
    ({"device_seconds": 1.0, "gradient_evals": 10}, "not both"),
    ({"device_seconds": 1.0, "g_steps": 9, "max_device_seconds": 2.0}, "drop 'max_device_seconds'"),
])
def test_unequal_or_contradictory_budgets_are_refused(budget, message):
    variants = [{"name": "sgan", "schedule": {"batch_size": 64}}, {"name": "sgan", "label": "k2",
                                                                   "schedule": {"d_steps_per_g_step": 2}}]
    with pytest.raises(GbenchError, match=re.escape(message)):
        suite(budget=budget, variants=variants)


def test_a_device_seconds_budget_refuses_what_needs_a_g_step_count():
    with pytest.raises(GbenchError, match=r"sched.toml \[eval\]: with \[budget\] device_seconds"):
        suite(budget={"device_seconds": 1.0, "g_steps": 9}, eval={"at": [0.5]})
    with pytest.raises(GbenchError, match="variant 'lin': lr_schedule 'linear' decays over the G steps"):
        suite(budget={"device_seconds": 1.0, "g_steps": 9},
              variants=["sgan", {"name": "sgan", "label": "lin", "optim": {"lr_schedule": "linear"}}])


def test_the_readme_example_of_per_variant_settings_parses_as_it_says():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "device_seconds = 60" in b)
    s = parse_suite({**tomllib.loads(block), "dataset": {"name": "ring8"}}, "readme.toml")
    own = s.for_variant(s.variants[0])
    assert (own.optim.g_lr, own.optim.betas, own.budget.batch_size) == (1e-4, (0.9, 0.99), 128)
    assert (own.budget.device_seconds, own.budget.max_device_seconds, own.budget.g_steps) == (60, 60, 1_000_000)


def test_compare_takes_an_equal_gradient_eval_budget_and_refuses_it_against_g_steps(tmp_path: Path):
    from click.testing import CliRunner

    from gbench.analysis.compare import compare_runs, render
    from gbench.cli import cli
    from gbench.run.runner import run_suite

    two = ["sgan", {"name": "rsgan", "schedule": {"d_steps_per_g_step": 2}}]
    run_suite(suite(budget={"gradient_evals": 3200, "batch_size": 32}, variants=two), tmp_path / "ge", quiet=True)
    compared = compare_runs([tmp_path / "ge"])  # schedules differ, the budget (3200 evaluations) does not
    assert [g.name for g in compared.groups] == ["sgan", "rsgan"] and not compared.budget_differences
    assert "budget 3200 gradient evaluations per trial" in " ".join(render(compared, wide=True).split())
    assert compared.settings_differences["budget.d_steps_per_g_step"] == {"sgan": "1", "rsgan": "2"}  # named
    report = CliRunner().invoke(cli, ["report", str(tmp_path / "ge"), "--wide"])
    assert report.exit_code == 0 and "budget 3200 gradient evaluations per trial" in report.output
    # what each consumed: (G + D steps) x 32 <= 3200, 50 x 2 and 33 x 3 steps
    assert re.search(r"\| sgan +\|.*\| 50 +\| 50 +\| 3200 +\| [\d.]+ +\|", report.output), report.output
    assert re.search(r"\| rsgan +\|.*\| 33 +\| 66 +\| 3168 +\| [\d.]+ +\|", report.output), report.output
    run_suite(suite(budget={"g_steps": 50, "batch_size": 32}, variants=["sgan", "rsgan"]), tmp_path / "gs", quiet=True)
    with pytest.raises(GbenchError, match=r"budget\.gradient_evals differs"):
        compare_runs([tmp_path / "ge", tmp_path / "gs"])


def test_a_batched_group_trains_at_its_variants_own_settings(tmp_path: Path):
    from gbench.run.results import load_results
    from gbench.run.runner import run_suite

    own = {"g_lr": 3e-3, "betas": [0.0, 0.9]}
    seeds = [0, 1]
    run_suite(suite(seeds=seeds, variants=["sgan", {"name": "sgan", "label": "own", "optim": own,
                                                    "schedule": {"d_steps_per_g_step": 2}}],
                    budget={"gradient_evals": 3840, "batch_size": 32}), tmp_path / "mixed", quiet=True)
    run_suite(suite(seeds=seeds, optim={**BASE["optim"], **own}, budget={"g_steps": 40, "d_steps_per_g_step": 2,
                                                                         "batch_size": 32}), tmp_path / "all", quiet=True)
    mixed = {(r["label"], r["seed"]): r for r in load_results(tmp_path / "mixed")[1]}
    everywhere = {r["seed"]: r for r in load_results(tmp_path / "all")[1]}
    for seed in seeds:
        assert mixed[("own", seed)]["runtime"].get("batched") == len(seeds)  # trained as one group of both seeds
        assert mixed[("own", seed)]["consumed"]["g_steps"] == 40 and mixed[("sgan", seed)]["consumed"]["g_steps"] == 60
        assert mixed[("own", seed)]["loss_curve"] == everywhere[seed]["loss_curve"]
        assert mixed[("sgan", seed)]["loss_curve"] != everywhere[seed]["loss_curve"]


def test_the_run_header_states_the_budget_once_in_its_unit():
    from gbench.run.progress import budget_text
    from gbench.suite import load_suite

    assert budget_text(trials_of(load_suite("authors-ring"))) == "60 device-s per trial"  # 5 schedules, 1 budget
    two = ["sgan", {"name": "rsgan", "schedule": {"d_steps_per_g_step": 2}}]
    assert budget_text(trials_of(suite(budget={"gradient_evals": 6400}, variants=two))) == \
        "6400 gradient evaluations per trial"
    assert budget_text(trials_of(suite())) == "20 G steps x 1 D step, batch 32"
    assert budget_text(trials_of(suite(budget={"g_steps": 20, "d_steps_per_g_step": 2, "max_device_seconds": 5}))) == \
        "20 G steps x 2 D steps, batch 128, cap 5 device-s"


def test_resume_keeps_finished_trials_of_variants_with_their_own_settings(tmp_path: Path):
    from gbench.run.runner import run_suite

    s = suite(budget={"gradient_evals": 1920, "batch_size": 32},
              variants=["sgan", {"name": "sgan", "label": "own", "optim": {"g_lr": 3e-3},
                                 "schedule": {"d_steps_per_g_step": 2}}])
    first = {r["trial_id"]: r["started"] for r in run_suite(s, tmp_path / "run", quiet=True)}
    again = {r["trial_id"]: r["started"] for r in run_suite(s, tmp_path / "run", resume=True, quiet=True)}
    assert again == first and len(first) == 2  # nothing ran again: the results match their trials' budgets


def test_device_seconds_on_a_cpu_are_process_time_not_wall_time(monkeypatch: pytest.MonkeyPatch):
    import time

    naps: list[float] = []
    original = SGAN.d_loss

    def napping(self: SGAN, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.004)  # wall time without CPU time: must not count against the budget
        naps.append(0.004)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SGAN, "d_loss", napping)
    r = run_all(suite(budget={"device_seconds": 0.3, "g_steps": 10**7, "batch_size": 32}))["sgan"]
    used = r.consumed
    assert used.stopped_by == "max_device_seconds" and 0.3 <= used.device_seconds < 0.55
    assert len(naps) == used.d_steps
    assert used.wall_seconds - used.device_seconds >= 0.9 * sum(naps)  # the naps ran, uncounted
