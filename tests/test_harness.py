"""The harness: one loop, identical budgets, determinism, divergence, results and resume."""
from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import pytest
import torch

import gbench
import gbench.plugins
from gbench.errors import GbenchError
from gbench.run.record import TRAINED, TrialResult
from gbench.run.results import SCHEMA, dumps, load_results, read_json, trial_path
from gbench.run.runner import run_suite
from gbench.suite import parse_suite
from gbench.run.trial import Runtime, run_trial, trials_of
from gbench_plugins.sgan import SGAN


def tiny_suite(**overrides):
    raw = {
        "variants": ["sgan"],
        "seeds": [0],
        "dataset": {"name": "ring8", "train_size": 512},
        "model": {"g_hidden": 16, "d_hidden": 16, "depth": 2},
        "optim": {"g_lr": 1e-3, "d_lr": 1e-3},
        "budget": {"g_steps": 30, "batch_size": 32},
        "eval": {"num_samples": 500, "at": [0.5, 1.0]},
    }
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return parse_suite(raw, "tiny.toml")


class ExplodingGAN(SGAN):
    """SGAN whose critic loss turns to NaN at its 11th critic step."""

    name = "exploding"
    paper = "a test double"

    def __init__(self, config=None):
        super().__init__(config)
        self.calls = 0

    def d_loss(self, nets, x_real, x_fake, rng=None):
        self.calls += 1
        loss = super().d_loss(nets, x_real, x_fake, rng)
        return loss * float("nan") if self.calls > 10 else loss


class CrashingGAN(SGAN):
    name = "crashing"
    paper = "a test double"

    def g_loss(self, nets, x_real, x_fake, rng=None):
        raise RuntimeError("boom")


@pytest.fixture
def test_variants():
    plugin = types.SimpleNamespace(register_variants=gbench.hookimpl(lambda register: [register(ExplodingGAN),
                                                                                    register(CrashingGAN)]))
    gbench.plugins._loaded = gbench.plugins.load_plugins(entry_points=False, extra=(plugin,))
    yield
    gbench.plugins.reset_plugins()


def test_same_seed_same_numbers_on_cpu():
    suite = tiny_suite(variants=["sgan", "deligan"])
    for trial in trials_of(suite):
        a, b = run_trial(trial).result, run_trial(trial).result
        assert a.status == b.status == "ok", a.error
        assert a.metrics == b.metrics
        assert a.loss_curve == b.loss_curve
    other = run_trial(trials_of(tiny_suite(seeds=[1]))[0]).result
    assert other.loss_curve != run_trial(trials_of(suite)[0]).result.loss_curve


def test_budget_consumed_is_recorded_and_identical_across_variants():
    suite = tiny_suite(variants=["sgan", "tgan"], budget={"d_steps_per_g_step": 2})
    results = [run_trial(t).result for t in trials_of(suite)]
    for r in results:
        c = r.consumed
        assert (c.g_steps, c.d_steps, c.stopped_by) == (30, 60, "g_steps")
        assert c.d_real_images == c.d_fake_images == 60 * 32 and c.g_images == 30 * 32
        assert c.device_seconds > 0 and c.wall_seconds > 0
        assert [(e.g_step, e.fraction) for e in r.evaluations] == [(15, 0.5), (30, 1.0)]


def test_device_seconds_cap_stops_training_and_scores_where_it_stopped():
    r = run_trial(trials_of(tiny_suite(budget={"g_steps": 100_000, "max_device_seconds": 0.3}))[0]).result
    assert r.status == "ok"
    assert r.consumed.stopped_by == "max_device_seconds"
    assert 0 < r.consumed.g_steps < 100_000
    assert r.evaluations[-1].g_step == r.consumed.g_steps
    assert "modes" in r.metrics


def test_diverged_and_crashed_trials_are_recorded_and_the_suite_goes_on(tmp_path: Path, test_variants):
    suite = tiny_suite(variants=["exploding", "crashing", "sgan"])
    run_suite(suite, tmp_path, quiet=True)
    _, results = load_results(tmp_path)
    by = {r["label"]: r for r in results}
    assert by["exploding"]["status"] == "diverged"
    assert by["exploding"]["diverged_at"] == 11
    assert by["exploding"]["metrics"] == {}
    assert by["crashing"]["status"] == "failed" and "RuntimeError: boom" in by["crashing"]["error"]
    assert by["sgan"]["status"] == "ok" and by["sgan"]["metrics"]


def test_results_carry_their_protocol(tmp_path: Path):
    run_suite(tiny_suite(), tmp_path, quiet=True)
    manifest, (result,) = load_results(tmp_path)
    assert manifest["trials"] == ["sgan-seed0"] and manifest["suite_hash"] == result["suite_hash"]
    assert result["protocol"]["eval_samples"] == 500 and result["protocol"]["reference"] == "ring8"
    assert set(result["protocol"]["metrics"]) >= {"modes", "jsd"}
    assert result["budget"]["g_steps"] == 30 and result["seed"] == 0
    for key in ("gbench", "torch", "python", "processor", "device", "commit"):
        assert key in result["provenance"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_skips_finished_trials_and_refuses_to_overwrite(tmp_path: Path):
    suite = tiny_suite(seeds=[0, 1])
    run_suite(suite.select(seeds=[0]), tmp_path, quiet=True)
    with pytest.raises(GbenchError, match="already holds a run"):
        run_suite(suite.select(seeds=[0]), tmp_path, quiet=True)
    first = trial_path(tmp_path, "sgan-seed0").read_text()
    run_suite(suite.select(seeds=[0]), tmp_path, resume=True, quiet=True)
    assert trial_path(tmp_path, "sgan-seed0").read_text() == first
    run_suite(suite, tmp_path, resume=True, quiet=True)  # more seeds of the same suite extend the run
    manifest, results = load_results(tmp_path)
    assert manifest["trials"] == ["sgan-seed0", "sgan-seed1"] and len(results) == 2
    assert trial_path(tmp_path, "sgan-seed0").read_text() == first
    with pytest.raises(GbenchError, match="different suite"):
        run_suite(tiny_suite(budget={"g_steps": 31}), tmp_path, resume=True, quiet=True)


def test_failed_trials_are_retried_on_resume(tmp_path: Path):
    suite = tiny_suite()
    run_suite(suite, tmp_path, quiet=True)
    path = trial_path(tmp_path, "sgan-seed0")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "status": "failed", "error": "killed"}))
    run_suite(suite, tmp_path, resume=True, quiet=True)
    assert json.loads(path.read_text())["status"] == "ok"


def test_delta_gan_reports_target_and_exact_jsd_of_its_stream():
    suite = tiny_suite(variants=[{"name": "delta-gan", "delta": 0.2}], eval={"num_samples": 20_000})
    r = run_trial(trials_of(suite)[0]).result
    assert r.status == "ok", r.error
    t = r.target
    assert t.jsd == 0.2 and t.details["eps"] > 0
    # the perturbed part is nearly disjoint from the ring, so JSD(p, p_delta) is close to delta and below it
    low, high = t.jsd_p_pdelta_ci
    assert 0.18 < t.jsd_p_pdelta < 0.21 and low <= t.jsd_p_pdelta <= high and low <= 0.2


def test_cuda_request_without_gpu_is_a_clear_error(tmp_path: Path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(GbenchError, match="no CUDA device"):
        run_suite(tiny_suite(), tmp_path, Runtime(device="cuda"), quiet=True)


RESULTS_V1 = Path(__file__).parent / "data" / "results-v1"  # written by gbench before TrialResult (schema 1)


def test_a_trial_result_round_trips_through_its_json_file(tmp_path: Path):
    suite = tiny_suite(budget={"g_steps": 10}, eval={"num_samples": 200})
    run_suite(suite, tmp_path, quiet=True)
    path = trial_path(tmp_path, "sgan-seed0")
    result = TrialResult.from_json(read_json(path))
    assert result.status == "ok" and result.provenance["pid"] and result.samples_file == "samples/sgan-seed0.npy"
    assert result.protocol.metrics.keys() >= {"jsd", "modes"} and result.metrics["modes"] >= 0
    assert dumps(result.to_json()) + "\n" == path.read_text()  # the same file, byte for byte
    assert TrialResult.from_json(read_json(path)) == result
    failed = dataclasses.replace(result, status="failed", error="boom", traceback="Traceback ...")
    data = failed.to_json()
    assert "metrics" not in data and "consumed" not in data and data["traceback"] == "Traceback ..."
    assert TrialResult.from_json(json.loads(dumps(data))) == dataclasses.replace(
        failed, **{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   for f in dataclasses.fields(TrialResult) if f.name in TRAINED})


def test_result_files_of_the_previous_code_still_load():
    manifest, results = load_results(RESULTS_V1)
    assert manifest["trials"] == ["sgan-seed0", "sgan-seed1"] and len(results) == 3
    by_id = {r["trial_id"]: r for r in results}
    for trial_id, data in by_id.items():
        result = TrialResult.from_json(data)
        assert result.schema == SCHEMA == 1 and result.to_json() == data
    ok, failed = TrialResult.from_json(by_id["sgan-seed0"]), TrialResult.from_json(by_id["sgan-seed2"])
    assert ok.status == "ok" and ok.runtime.batched.seeds == (0, 1) and ok.consumed.g_steps == 10
    assert failed.status == "failed" and failed.error == "RuntimeError: boom" and failed.metrics == {}
    with pytest.raises(GbenchError, match="unknown field 'extra'"):
        TrialResult.from_json({**by_id["sgan-seed0"], "extra": 1})
    with pytest.raises(GbenchError, match="schema 2"):
        TrialResult.from_json({**by_id["sgan-seed0"], "schema": 2})
