"""Issue 12: a plugin cannot take the suite down, exit codes CI can use, result files checked, strict
JSON, a locked run directory, and files that are never unpickled unless trusted."""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gbench.cli import cli
from gbench.errors import GbenchError
from gbench.run.results import dumps, read_json, trial_path
from gbench.plugins import get_plugins
from gbench.run.runner import locked


def RSGAN():
    """The registered rsgan class (what trials build)."""
    return get_plugins().variants.get("rsgan")

SUITE = """
name = "iso"
seeds = [0]
variants = ["sgan", "rsgan"]
[dataset]
name = "ring8"
train_size = 256
[model]
g_hidden = 8
d_hidden = 8
depth = 1
[budget]
g_steps = 4
batch_size = 16
[eval]
num_samples = 64
metrics = ["modes"]
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    path = tmp_path / "iso.toml"
    path.write_text(SUITE)
    return path


def run(*args: str):
    return CliRunner().invoke(cli, ["run", *args])


@pytest.mark.parametrize("exc", [SystemExit("plugin quit"), KeyboardInterrupt("plugin's own"), GeneratorExit("odd")],
                         ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_a_base_exception_from_a_variant_fails_that_trial_alone(suite: Path, tmp_path: Path, monkeypatch, exc):
    def g_loss(self, nets, x_real, x_fake, rng=None):
        raise exc

    monkeypatch.setattr(RSGAN(), "g_loss", g_loss)
    out = tmp_path / "run"
    result = run(str(suite), "--out", str(out))
    assert result.exit_code == 1, result.output  # a failed trial: exit 1, table and files still written
    ok, failed = read_json(trial_path(out, "sgan-seed0")), read_json(trial_path(out, "rsgan-seed0"))
    assert ok["status"] == "ok" and failed["status"] == "failed"
    assert failed["error"] == f"{type(exc).__name__}: {exc}"
    assert "| sgan" in result.output and "1 trial(s) failed (rsgan-seed0)" in result.output


def test_exit_0_when_every_trial_finished_even_diverged(suite: Path, tmp_path: Path, monkeypatch):
    def g_loss(self, nets, x_real, x_fake, rng=None):
        return nets.critic(x_fake).mean() * math.nan

    monkeypatch.setattr(RSGAN(), "g_loss", g_loss)
    out = tmp_path / "run"
    result = run(str(suite), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    diverged = read_json(trial_path(out, "rsgan-seed0"))
    assert diverged["status"] == "diverged" and diverged["diverged_at"] == 1
    assert diverged["consumed"]["g_steps"] == 1 and diverged["consumed"]["g_images"] == 16  # not the window's end


def test_generator_output_nan_with_finite_losses_is_diverged_not_ok(suite: Path, tmp_path: Path, monkeypatch):
    build = RSGAN().build_generator

    class NaNOut(torch.nn.Module):
        def __init__(self, g):
            super().__init__()
            self.g = g

        def forward(self, z):
            x = self.g(z)
            return x if self.training else x * math.nan  # finite in training, NaN at evaluation

    monkeypatch.setattr(RSGAN(), "build_generator", lambda self, b: NaNOut(build(self, b)))
    out = tmp_path / "run"
    assert run(str(suite), "--out", str(out), "--quiet").exit_code == 0
    r = read_json(trial_path(out, "rsgan-seed0"))
    assert r["status"] == "diverged" and r["error"] == "generator output not finite at G step 4 (its losses were finite)"
    assert r["diverged_at"] == 4 and r["metrics"] == {}


@pytest.mark.parametrize("content", ["garbage{", "[]", '{"status": "ok"}', "NaN"])
def test_garbled_result_files_are_named_and_rerun_by_resume(suite: Path, tmp_path: Path, content: str):
    out = tmp_path / "run"
    assert run(str(suite), "--out", str(out), "--quiet").exit_code == 0
    bad, good = trial_path(out, "rsgan-seed0"), trial_path(out, "sgan-seed0")
    bad.write_text(content)
    before = good.read_bytes()
    report = CliRunner().invoke(cli, ["report", str(out)])
    assert report.exit_code == 2 and str(bad) in report.output and len(report.output.strip().splitlines()) == 1
    resumed = run(str(suite), "--out", str(out), "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "running trial rsgan-seed0 again" in resumed.output
    assert read_json(bad)["status"] == "ok" and good.read_bytes() == before


def test_garbled_manifest_is_one_line(suite: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert run(str(suite), "--out", str(out), "--quiet").exit_code == 0
    for content in ("[]", "{]"):
        (out / "manifest.json").write_text(content)
        for args in (["report", str(out)], ["run", str(suite), "--out", str(out), "--resume", "--quiet"]):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 2 and "manifest.json" in result.output, result.output
            assert len(result.output.strip().splitlines()) == 1


def test_json_is_strict_and_non_finite_numbers_round_trip(tmp_path: Path):
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32(2.0), "d": (1, 2)}
    text = dumps(data)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in the JSON"))
    path = tmp_path / "x.json"
    path.write_text(text)
    back = read_json(path)
    assert math.isnan(back["a"]) and back["b"] == [math.inf, -math.inf, 1.5] and back["c"] == 2.0
    assert back["d"] == [1, 2]
    path.write_text('{"a": NaN}')
    with pytest.raises(GbenchError, match="bare NaN"):
        read_json(path)


def test_a_live_run_directory_is_locked(suite: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert run(str(suite), "--out", str(out), "--quiet").exit_code == 0
    with locked(out):  # as another live run holds it
        result = run(str(suite), "--out", str(out), "--resume", "--quiet")
    assert result.exit_code == 2 and "being written by another gbench run" in result.output
    assert run(str(suite), "--out", str(out), "--resume", "--quiet").exit_code == 0  # released


def test_unwritable_out_is_one_line(suite: Path, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run(str(suite), "--out", str(blocker / "run"), "--quiet")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


class _Plant:
    """A pickle that, if ever unpickled, creates a marker file (stands for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_cifar_pickle_is_refused_and_never_runs(tmp_path: Path):
    from test_images import write_cifar10

    from gbench.datasets.images import cifar10, clear_cache

    folder = write_cifar10(tmp_path / "data")
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Plant(marker), b"labels": [0]}, f)
    clear_cache()
    with pytest.raises(GbenchError, match="refused global"):
        cifar10(root=str(tmp_path / "data"))
    assert not marker.exists()


def test_unofficial_weights_and_caches_are_loaded_weights_only(tmp_path: Path):
    from gbench.metrics.fidelity import Weights, _extractor, safe_torch_load

    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pth"
    torch.save({"w": _Plant(marker)}, weights)
    with pytest.raises(GbenchError, match="cannot build feature extractor"):
        _extractor("inception-v3-compat", ("2048",), Weights(str(weights), "0" * 64, "config"), False)
    assert not marker.exists()
    stats = tmp_path / "stat.pt"
    torch.save({"mu": np.zeros(3), "sigma": np.eye(3)}, stats)
    with safe_torch_load():  # what torch-fidelity's cache read becomes: plain arrays load, code does not
        assert np.array_equal(torch.load(stats, weights_only=False)["sigma"], np.eye(3))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(weights, weights_only=False)
    assert not marker.exists()


def test_a_lying_npy_header_is_one_line(tmp_path: Path):
    from numpy.lib import format as npformat

    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        npformat.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 2)})
        f.write(b"\0" * 64)
    result = CliRunner().invoke(cli, ["score", "ring8", str(path)])
    assert result.exit_code == 2 and "not a readable" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_provenance_does_not_write_the_git_index():
    from gbench.run.results import _git_commit

    calls = []
    import subprocess

    real = subprocess.run

    def spy(cmd, *a, **k):
        calls.append(cmd)
        return real(cmd, *a, **k)

    subprocess.run = spy
    try:
        _git_commit()
    finally:
        subprocess.run = real
    status = [c for c in calls if "status" in c]
    assert status and all("--no-optional-locks" in c for c in status)


def test_an_all_diverged_group_keeps_its_success_rate_row(suite: Path, tmp_path: Path, monkeypatch):
    from gbench.analysis.compare import compare_runs

    def g_loss(self, nets, x_real, x_fake, rng=None):
        return nets.critic(x_fake).mean() * math.nan

    monkeypatch.setattr(RSGAN(), "g_loss", g_loss)
    out = tmp_path / "run"
    assert run(str(suite), "--out", str(out), "--quiet", "--seeds", "0,1").exit_code == 0
    rates = {s.group: s for s in compare_runs([out]).success_rates}
    assert set(rates) == {"sgan", "rsgan"}
    assert rates["rsgan"].trials == 2 and rates["rsgan"].diverged == 2 and rates["rsgan"].no_mode == 2
    assert rates["rsgan"].all_modes == 0
