"""Resume: checkpoints restore a trial bit for bit, and a run killed with SIGKILL finishes on --resume."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gbench.run.checkpoint
import gbench.run.trial
from gbench.run.checkpoint import checkpoint_path
from gbench.run.loop import Precision
from gbench.run.results import load_results, trial_path
from gbench.run.runner import run_suite
from gbench.suite import load_suite
from gbench.run.trial import Runtime, run_group, run_trial, trials_of
from test_harness import tiny_suite


class Stop(BaseException):
    """Stands for a kill: not an Exception, so ``run_trial`` does not record it and it ends the trial."""


@pytest.fixture
def nets_of(monkeypatch):
    """The nets of every trial trained since, as ``train`` left them (the final weights)."""
    seen = []
    train = gbench.run.trial.train

    def spy(variant, group, *args, **kwargs):
        seen.append(group.players)
        return train(variant, group, *args, **kwargs)

    monkeypatch.setattr(gbench.run.trial, "train", spy)
    return seen


def stop_after_saving_at(monkeypatch, step: int) -> None:
    save = gbench.run.checkpoint.GroupState.save

    def save_then_stop(self, path, loop):
        save(self, path, loop)
        if loop.step == step:
            raise Stop

    monkeypatch.setattr(gbench.run.checkpoint.GroupState, "save", save_then_stop)


@pytest.mark.parametrize("variant", ["sgan", "deligan", {"name": "delta-gan", "delta": 0.2}],
                         ids=["sgan", "deligan", "delta-gan"])
def test_n_steps_equal_half_then_resume_then_half_bitwise(tmp_path: Path, monkeypatch, nets_of, variant):
    # deligan: its mixture latent is a G parameter; delta-gan: it draws its perturbation from the variant stream.
    # Evaluations at 10 and 40; saves every 5 steps, so the stop at 20 splits a logging window of losses.
    trial = trials_of(tiny_suite(variants=[variant], budget={"g_steps": 40}, eval={"at": [0.25, 1.0]}))[0]
    straight = run_trial(trial).result
    assert straight.status == "ok", straight.error
    assert straight.resumed_at == []

    path, runtime = checkpoint_path(tmp_path, trial.id), Runtime(checkpoint_every=5)
    with monkeypatch.context() as m:
        stop_after_saving_at(m, 20)
        with pytest.raises(Stop):
            run_trial(trial, runtime, checkpoint_path=path)
    assert path.is_file() and not list(tmp_path.rglob("*.tmp"))
    resumed = run_trial(trial, runtime, checkpoint_path=path, resume=True).result
    assert resumed.status == "ok", resumed.error
    assert resumed.resumed_at == [20]

    _same_weights(nets_of[0], nets_of[-1])
    for key in ("metrics", "evaluations", "loss_curve", "target"):
        assert getattr(straight, key) == getattr(resumed, key), key
    untimed = {f"{k}_seconds": 0.0 for k in ("device", "wall", "eval")}
    assert dataclasses.replace(straight.consumed, **untimed) == dataclasses.replace(resumed.consumed, **untimed)
    assert resumed.consumed.device_seconds > 0 and resumed.consumed.wall_seconds > 0


def _same_weights(a, b) -> None:
    for player in ("g", "d"):
        sa, sb = getattr(a, player).state_dict(), getattr(b, player).state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{player}.{key} differs after resume"


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_a_batched_group_resumes_bitwise(tmp_path: Path, monkeypatch, nets_of, mode):
    # three seeds of deligan in one group: stacked nets, per-trial streams and (loop) per-trial global RNGs
    trials = trials_of(tiny_suite(variants=[{"name": "deligan", "components": 4}], seeds=[0, 1, 2],
                                  budget={"g_steps": 20}, eval={"at": [0.5, 1.0]}))
    straight = run_group(trials, mode=mode)
    path, runtime = checkpoint_path(tmp_path, trials[0].id), Runtime(checkpoint_every=5)
    with monkeypatch.context() as m:
        stop_after_saving_at(m, 15)
        with pytest.raises(Stop):
            run_group(trials, runtime, checkpoint_path=path, mode=mode)
    resumed = run_group(trials, runtime, checkpoint_path=path, resume=True, mode=mode)
    _same_weights(nets_of[0], nets_of[-1])
    for a, b in zip([o.result for o in straight], [o.result for o in resumed]):
        assert b.status == "ok" and b.resumed_at == [15], b.error
        for key in ("metrics", "evaluations", "loss_curve"):
            assert getattr(a, key) == getattr(b, key), key


def test_loss_scaler_state_round_trips():
    layer = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(layer.parameters())
    amp = Precision("fp16", torch.device("cpu"))
    with amp.autocast():
        loss = layer(torch.randn(4, 2)).float().mean()
    amp.step(loss, opt)
    state = amp.state_dict(g=opt, d=torch.optim.Adam(layer.parameters()))
    assert set(state) == {"g"}  # a player whose scaler never ran has none
    again = Precision("fp16", torch.device("cpu"))
    again.load_state_dict(state, g=opt)
    assert again.state_dict(g=opt) == state
    assert Precision("fp32", torch.device("cpu")).state_dict(g=opt) == {}


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path, monkeypatch):
    trial = trials_of(tiny_suite(budget={"g_steps": 10}))[0]
    path = checkpoint_path(tmp_path, trial.id)
    with monkeypatch.context() as m:
        stop_after_saving_at(m, 5)
        with pytest.raises(Stop):
            run_trial(trial, Runtime(checkpoint_every=5), checkpoint_path=path)
    r = run_trial(trial, Runtime(precision="bf16"), checkpoint_path=path, resume=True).result
    assert r.status == "failed" and "precision 'fp32'" in r.error and "delete" in r.error
    path.write_bytes(b"not a checkpoint")
    r = run_trial(trial, checkpoint_path=path, resume=True).result
    assert r.status == "failed" and "cannot read" in r.error
    r = run_trial(trial, checkpoint_path=path).result  # without resume a checkpoint is overwritten, not read
    assert r.status == "ok" and r.resumed_at == []


def test_resume_cleans_temporaries_and_checkpoints_of_finished_trials(tmp_path: Path, capsys):
    suite = tiny_suite(budget={"g_steps": 10})
    run_suite(suite, tmp_path, quiet=True)
    assert not list((tmp_path / "checkpoints").glob("*"))  # deleted once the result is written
    result = trial_path(tmp_path, "sgan-seed0")
    before = (result.read_bytes(), result.stat().st_mtime_ns)
    stale = [tmp_path / ".manifest.json.k3j2.tmp", tmp_path / "trials" / ".sgan-seed0.json.x1y2.tmp",
             tmp_path / "checkpoints" / ".sgan-seed0.pt.abc.tmp"]
    for p in stale:
        p.write_text("torn")
    checkpoint_path(tmp_path, "sgan-seed0").write_bytes(b"left by a kill after the result was written")
    keep = tmp_path / "notes.tmp"  # not one of gbench's temporaries
    keep.write_text("mine")
    run_suite(suite, tmp_path, resume=True)
    assert "removed 3 temporary file(s)" in capsys.readouterr().err
    assert not any(p.exists() for p in stale) and keep.exists()
    assert not checkpoint_path(tmp_path, "sgan-seed0").exists()
    assert (result.read_bytes(), result.stat().st_mtime_ns) == before


SUITE = """
name = "resume-kill"
seeds = [0]
variants = ["sgan", "deligan", { name = "delta-gan", delta = 0.2 }]

[dataset]
name = "ring8"
train_size = 512

[model]
g_hidden = 16
d_hidden = 16
depth = 2

[budget]
g_steps = 150
batch_size = 32

[eval]
num_samples = 500
at = [0.5, 1.0]
"""


def test_sigkill_then_resume_finishes_with_the_same_numbers(tmp_path: Path):
    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(SUITE)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "gbench", "run", str(suite_file), "--out", str(out), "--checkpoint-every", "5"]
    delay = random.uniform(0.0, 0.3)
    log = tmp_path / "killed.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([*command, "--quiet"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        # kill at a random moment after the first trial finished, while a later one has a checkpoint
        deadline = time.monotonic() + 300
        while not list((out / "trials").glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)
        time.sleep(delay)
        while not list((out / "checkpoints").glob("*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, f"finished before the kill (delay {delay:.2f})"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    finished = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "trials").glob("*.json")}
    assert all(json.loads(content)["status"] == "ok" for content, _ in finished.values())
    interrupted = {p.stem for p in (out / "checkpoints").glob("*.pt")}
    assert interrupted, f"no checkpoint at the kill (delay {delay:.2f})"
    (out / "trials" / ".resume-kill-torn.json.q9z.tmp").write_text('{"status": "o')  # as a killed write leaves it

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert int(re.search(r"removed (\d+) temporary file", resumed.stderr).group(1)) >= 1
    assert not list(out.rglob("*.tmp")) and not list((out / "checkpoints").glob("*"))
    for name, (content, mtime) in finished.items():
        path = out / "trials" / name
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (content, mtime), f"{name} was rewritten"

    run_suite(load_suite(str(suite_file)), tmp_path / "straight", quiet=True)  # the uninterrupted run
    manifest, results = load_results(out)
    _, expected = load_results(tmp_path / "straight")
    assert sorted(manifest["trials"]) == sorted(r["trial_id"] for r in expected) and len(results) == 3
    by_id = {r["trial_id"]: r for r in results}
    for want in expected:
        got = by_id[want["trial_id"]]
        assert got["status"] == "ok", got["error"]
        if want["trial_id"] in interrupted:
            assert len(got["resumed_at"]) == 1 and got["resumed_at"][0] % 5 == 0, got["resumed_at"]
        else:
            assert got["resumed_at"] == []
        for key in ("metrics", "evaluations", "loss_curve", "target"):
            assert got[key] == want[key], (want["trial_id"], key, f"delay {delay:.2f}")
        assert got["consumed"]["g_steps"] == want["consumed"]["g_steps"] == 150
