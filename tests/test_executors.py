"""Executors: local, process pool and Ray give the same numbers for the same suite, seeds and threads."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gbench.cli import cli
from gbench.run.executors import LocalExecutor, ProcessExecutor, RayExecutor, make_executor, run_one
from gbench.errors import GbenchError
from gbench.run.record import TrialResult
from gbench.run.results import load_results
from gbench.run.runner import run_suite
from gbench.suite import load_suite
from gbench.run.trial import Runtime, trials_of

# 2 variants x 2 seeds, a few seconds in all.
TINY = """
name = "tiny"
seeds = [0, 1]
variants = ["sgan", "deligan"]
[dataset]
name = "ring8"
train_size = 512
[model]
g_hidden = 16
d_hidden = 16
depth = 2
[budget]
g_steps = 30
batch_size = 32
[eval]
num_samples = 500
at = [0.5, 1.0]
"""
COMPARED = ("status", "metrics", "loss_curve", "evaluations")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def local_results(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The reference: every trial in this process, one torch thread (separately: the executors are compared)."""
    out = tmp_path_factory.mktemp("local")
    results = run_suite(load_suite(str(tiny)), out, Runtime(batch=False), quiet=True, executor=LocalExecutor(threads=1))
    return {r["trial_id"]: r for r in results}


def same_numbers(results: list[dict], reference: dict[str, dict]) -> None:
    assert sorted(r["trial_id"] for r in results) == sorted(reference) and len(reference) == 4
    for r in results:
        ref = reference[r["trial_id"]]
        assert r["status"] == "ok", r["error"]
        for key in COMPARED:
            assert r[key] == ref[key], (r["trial_id"], key)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_local_records_executor_and_threads(local_results: dict[str, dict]):
    for r in local_results.values():
        assert r["status"] == "ok", r["error"]
        assert r["runtime"]["executor"] == "local" and r["runtime"]["threads"] == 1
        assert r["provenance"]["pid"] == os.getpid() and r["provenance"]["torch_threads"] == 1


def test_process_executor_runs_elsewhere_with_the_same_numbers(tiny: Path, tmp_path: Path,
                                                               local_results: dict[str, dict]):
    out = tmp_path / "process"
    result = invoke("run", str(tiny), "--out", str(out), "--executor", "process", "--jobs", "2", "--threads", "1",
                    "--no-batch", "--quiet")
    assert result.exit_code == 0, result.output
    manifest, results = load_results(out)
    assert {k: manifest["runtime"][k] for k in ("executor", "jobs", "threads")} == \
        {"executor": "process", "jobs": 2, "threads": 1}
    same_numbers(results, local_results)
    pids = {r["provenance"]["pid"] for r in results}
    assert os.getpid() not in pids and len(pids) == len(results)  # one spawned worker per trial
    for r in results:
        assert r["runtime"]["executor"] == "process" and r["provenance"]["torch_threads"] == 1


def test_process_executor_trains_each_batched_group_in_one_worker_with_the_local_numbers(
        tiny: Path, tmp_path: Path):
    """Batched (the default): each variant's seeds train as one group in one spawned worker, the groups
    share the pool, and the numbers are those of the same groups trained in this process (same kernels,
    same thread count)."""
    suite = load_suite(str(tiny))
    local = {r["trial_id"]: r for r in run_suite(suite, tmp_path / "local", Runtime(), quiet=True,
                                                 executor=LocalExecutor(threads=1))}
    out = tmp_path / "process"
    result = invoke("run", str(tiny), "--out", str(out), "--executor", "process", "--jobs", "2", "--threads", "1",
                    "--quiet")
    assert result.exit_code == 0, result.output
    results = load_results(out)[1]
    same_numbers(results, local)
    pids = {label: {r["provenance"]["pid"] for r in results if r["label"] == label} for label in ("sgan", "deligan")}
    assert all(len(p) == 1 for p in pids.values()), pids  # a group's seeds share their worker
    assert pids["sgan"] != pids["deligan"] and os.getpid() not in pids["sgan"] | pids["deligan"]
    assert {r["runtime"]["executor"] for r in results} == {"process"}


def test_a_dead_group_worker_fails_each_of_its_trials(tiny: Path):
    trials = trials_of(load_suite(str(tiny)))
    sgan = [t for t in trials if t.variant.label == "sgan"]
    rest = [t for t in trials if t.variant.label != "sgan"]
    got: list[tuple[str, TrialResult]] = []
    ProcessExecutor(jobs=2, threads=1).map_trials(
        rest, Runtime(), lambda t, output: got.append((t.id, output.result)),
        options=lambda t: {"resume": _DieWhenUnpickled()} if t.variant.label == "sgan" else {},
        groups=[(sgan, "vmap")])
    status = {tid: r.status for tid, r in got}
    assert status == {"sgan-seed0": "failed", "sgan-seed1": "failed", "deligan-seed0": "ok", "deligan-seed1": "ok"}
    assert all("the worker died (exit code 1)" in r.error for tid, r in got if tid.startswith("sgan"))


def test_ray_executor_same_numbers(tiny: Path, tmp_path: Path, local_results: dict[str, dict]):
    ray = pytest.importorskip("ray")
    # "local": a fresh instance even where a `ray start` cluster is running (CI starts one later)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        results = run_suite(load_suite(str(tiny)), tmp_path / "ray", Runtime(batch=False), quiet=True,
                            executor=RayExecutor(threads=1))
        assert ray.is_initialized()  # a session it did not start is left running
    finally:
        ray.shutdown()
    same_numbers(results, local_results)
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["runtime"]["executor"] == "ray" and manifest["runtime"]["threads"] == 1
    assert manifest["runtime"]["ray"] == ray.__version__ and manifest["runtime"]["cluster"]["CPU"] == 2
    for r in results:
        assert r["runtime"]["executor"] == "ray" and r["provenance"]["torch_threads"] == 1
        assert r["provenance"]["pid"] != os.getpid() and r["provenance"]["torch"]  # the worker's own provenance


def test_a_remote_worker_without_the_run_directory_trains_without_checkpoints(tiny: Path, tmp_path: Path):
    trial = trials_of(load_suite(str(tiny)))[0]
    elsewhere = {"checkpoint_path": tmp_path / "not-here" / "checkpoints" / f"{trial.id}.pt", "resume": True}
    output = run_one(trial, Runtime(), threads=1, executor="ray", remote=True, options=elsewhere)
    result = output.result
    assert result.status == "ok", result.error
    assert result.runtime.checkpoints.startswith("off") and output.worker["torch"]
    assert not (tmp_path / "not-here").exists()


class _DieWhenUnpickled:
    """Kills the worker process that unpickles it, as an out-of-memory kill would."""

    def __reduce__(self):
        return os._exit, (1,)


def test_a_dead_worker_fails_its_trial_and_the_others_are_kept(tiny: Path):
    trials = trials_of(load_suite(str(tiny)).select(["sgan"], None))
    got: list[tuple[str, TrialResult]] = []
    ProcessExecutor(jobs=1, threads=1).map_trials(
        trials, Runtime(), lambda t, output: got.append((t.id, output.result)),
        options=lambda t: {"resume": _DieWhenUnpickled()} if t.seed == 1 else {})
    status = {tid: r.status for tid, r in got}
    assert status == {"sgan-seed0": "ok", "sgan-seed1": "failed"}
    assert "the worker died (exit code 1)" in dict(got)["sgan-seed1"].error


def test_bad_executor_options_are_one_line_errors(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cases = [
        (["--executor", "slurm"], "unknown executor 'slurm' (use local, process, ray)"),
        (["--executor", "process", "--address", "auto"], "--address is for --executor ray"),
        (["--jobs", "2"], "use --executor process or ray for --jobs"),
        (["--executor", "process", "--jobs", "0"], "--jobs must be at least 1"),
    ]
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    cases.append((["--executor", "ray"], "the ray executor needs `pip install gbench[ray]`"))
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        result = invoke("run", str(tiny), "--out", str(out), "--quiet", *args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
        assert not out.exists()  # refused before anything was written
    with pytest.raises(GbenchError, match="pip install gbench"):
        make_executor("ray")


def test_ray_executor_with_tensorboard_writes_each_trials_event_directory(tmp_path: Path):
    """``--executor ray --tensorboard``: every trial, trained in a Ray worker, writes its own event
    directory with its losses, metrics and HParams (the workers learn the run directory from the task)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY.replace('variants = ["sgan", "deligan"]', 'variants = ["sgan", "rsgan"]'))
    out = tmp_path / "ray"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        result = invoke("run", str(suite), "--out", str(out), "--executor", "ray", "--threads", "1", "--no-batch",
                        "--tensorboard", "--quiet")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    results = load_results(out)[1]
    assert len(results) == 4 and {r["runtime"]["executor"] for r in results} == {"ray"}
    assert all(r["provenance"]["pid"] != os.getpid() for r in results)  # trained in Ray workers
    for r in results:
        events = EventAccumulator(str(out / "tensorboard" / r["trial_id"]), size_guidance={"tensors": 0})
        events.Reload()
        assert {"loss/d_loss", "loss/g_loss", "metrics/jsd_bits"} <= set(events.Tags()["scalars"]), r["trial_id"]
        assert [e.step for e in events.Scalars("metrics/jsd_bits")] == [15, 30]  # at 50 % and 100 %
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = start.session_start_info.hparams
        assert hp["label"].string_value == r["label"] and hp["seed"].number_value == r["seed"]


def test_planning_times_each_configuration_in_the_unit_it_trains_in(tiny: Path):
    """``groups(..., timed=...)``: one G-step cost per variant configuration, for a batched group of its
    seeds (vmapped sgan: 2 trials) or one trial (--no-batch), with torch's RNG state and threads as before."""
    import torch

    from gbench.run.executors import StepCost, groups

    trials = trials_of(load_suite(str(tiny)))
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    for batch, size in ((True, 2), (False, 1)):
        got: list[tuple[list[str], StepCost]] = []
        batched, alone = groups(trials, Runtime(batch=batch), True, lambda line: None, 1,
                                lambda unit, cost: got.append(([t.id for t in unit], cost)))
        assert [ids for ids, _ in got] == [["sgan-seed0", "sgan-seed1"], ["deligan-seed0", "deligan-seed1"]]
        assert all(cost.size == size and 0 < cost.device < 1 for _, cost in got), got
        assert len(batched) == (2 if batch else 0) and len(alone) == (0 if batch else 4)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


@pytest.mark.parametrize("batch", [True, False])
def test_the_planning_probe_changes_no_number(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              batch: bool):
    """A run's results are bitwise the same with and without the step-cost probe (same process, same
    kernels): it draws from its own generators and restores torch's global RNG state."""
    import gbench.run.executors as executors

    suite, real, costs = load_suite(str(tiny)), executors.time_step, []
    monkeypatch.setattr(executors, "time_step", lambda *a, **k: costs.append(real(*a, **k)) or costs[-1])
    probed = run_suite(suite, tmp_path / "probed", Runtime(batch=batch), quiet=True, executor=LocalExecutor(threads=1))
    assert len(costs) == 2 and all(costs)  # sgan and deligan were timed
    monkeypatch.setattr(executors, "time_step", lambda *a, **k: None)
    plain = run_suite(suite, tmp_path / "plain", Runtime(batch=batch), quiet=True, executor=LocalExecutor(threads=1))
    same_numbers(probed, {r["trial_id"]: r for r in plain})
