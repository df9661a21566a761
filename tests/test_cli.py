"""The command line, as a user meets it: output, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gbench.cli import cli
from gbench.datasets.toy import ring8

TINY = """
name = "tiny"
seeds = [0, 1]
variants = ["sgan", {{ name = "delta-gan", label = "delta(0.2)", delta = 0.2 }}]
[dataset]
name = "ring8"
train_size = 512
[model]
g_hidden = 16
d_hidden = 16
depth = 2
[budget]
g_steps = {steps}
batch_size = 32
[eval]
num_samples = 500
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(steps=20))
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_run_prints_table_and_report_renders_every_format(tiny: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = invoke("run", str(tiny), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list((out / "trials").glob("*.json"))) == 4
    result = invoke("run", str(tiny), "--out", str(out / "2"), "--variants", "sgan", "--seeds", "3")
    assert result.exit_code == 0, result.output
    assert "| sgan" in result.output and "1/1" in result.output and "JSD (bits)" in result.output
    for fmt in ("github", "plain", "latex"):
        text = invoke("report", str(out), "--format", fmt).output
        assert "sgan" in text and "delta(0.2)" in text and "2/2" in text
    data = json.loads(invoke("report", str(out), "--format", "json").output)
    rows = {r["label"]: r for r in data["variants"]}
    assert rows["sgan"]["ok"] == 2 and rows["sgan"]["metrics"]["modes"]["n"] == 2
    assert rows["delta(0.2)"]["target"]["delta"] == 0.2
    assert "within target" in invoke("report", str(out)).output


def test_resume_via_cli(tiny: Path, tmp_path: Path):
    out = tmp_path / "run"
    assert invoke("run", str(tiny), "--out", str(out), "--quiet", "--seeds", "0").exit_code == 0
    again = invoke("run", str(tiny), "--out", str(out), "--quiet", "--seeds", "0")
    assert again.exit_code == 2 and "--resume" in again.output
    assert invoke("run", str(tiny), "--out", str(out), "--quiet", "--seeds", "0", "--resume").exit_code == 0


def test_variants_plugins_suites_listings():
    names = {v["name"] for v in json.loads(invoke("variants", "--json").output)}
    assert {"sgan", "rsgan", "tgan", "deligan", "alpha-gan", "delta-gan"} <= names
    plugins = json.loads(invoke("plugins", "--json").output)
    assert {"name": "gbench_plugins.sgan", "source": "builtin", "hooks": ["register_variants"], "error": None} in plugins
    assert "alpha-gan" in invoke("variants").output
    listing = invoke("suites").output
    for name in ("smoke", "ring", "grid", "delta-ring"):
        assert name in listing


def test_score_external_samples(tmp_path: Path):
    import torch

    path = tmp_path / "s.npy"
    np.save(path, ring8().sample(4000, torch.Generator().manual_seed(0)).numpy())
    result = invoke("score", "ring8", str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["metrics"]["modes"] == 8 and data["protocol"]["samples"] == 4000
    assert "hq_percent" in invoke("score", "ring8", str(path)).output


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.toml"], "no suite file 'missing.toml'"),
        (["run", "smoke", "--variants", "wgan"], "variant 'wgan' is not in suite"),
        (["run", "smoke", "--seeds", "a,b"], "comma-separated"),
        (["run", "smoke", "--resume"], "--resume needs --out"),
        (["report", "nowhere"], "not a gbench run directory"),
        (["score", "moon", "x.npy"], "unknown dataset 'moon'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_suite_files_and_samples(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.format(steps=0))
    result = invoke("run", str(bad))
    assert result.exit_code == 2 and "'g_steps': must be greater than 0" in result.output
    bad.write_text(TINY.format(steps=5) + "\ncolour = 1\n")
    result = invoke("run", str(bad))
    assert result.exit_code == 2 and "unknown key 'colour'" in result.output and "bad.toml" in result.output
    wrong = tmp_path / "w.npy"
    np.save(wrong, np.zeros((10, 3)))
    result = invoke("score", "ring8", str(wrong))
    assert result.exit_code == 2 and "expected an array of shape N x 2, got (10, 3)" in result.output
    np.save(wrong, np.full((10, 2), np.nan))
    assert "finite" in invoke("score", "ring8", str(wrong)).output
    (tmp_path / "t.npy").write_text("not numpy")
    assert invoke("score", "ring8", str(tmp_path / "t.npy")).exit_code == 2


def test_console_script_error_is_one_line_on_stderr(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "gbench", "run", str(tmp_path / "none.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "no suite file" in proc.stderr


def test_smoke_suite_runs_all_six_variants(tmp_path: Path):
    result = invoke("run", "smoke", "--out", str(tmp_path / "smoke"))
    assert result.exit_code == 0, result.output
    for name in ("sgan", "rsgan", "tgan", "deligan", "alpha-gan", "delta-gan"):
        assert f"| {name}" in result.output
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "smoke" / "trials").glob("*.json")]
    assert statuses == ["ok"] * 6


def test_image_smoke_suite_runs_and_records_missing_weights(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("GBENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr("gbench.metrics.fidelity.hub_cached_weights", lambda: None)
    result = invoke("run", "image-smoke", "--out", str(tmp_path / "img"), "--quiet")
    assert result.exit_code == 0, result.output
    results = [json.loads(p.read_text()) for p in (tmp_path / "img" / "trials").glob("*.json")]
    assert sorted(r["variant"] for r in results) == sorted(["sgan", "rsgan", "tgan", "deligan", "alpha-gan", "delta-gan"])
    for r in results:
        assert r["status"] == "ok", r["error"]
        assert r["data_kind"] == "image" and r["model"]["arch"] == "cnn"
        assert "GBENCH_INCEPTION_WEIGHTS" in r["metric_errors"]["fidelity"]
    report = invoke("report", str(tmp_path / "img")).output
    assert "delta-gan" in report
    assert "fidelity not computed in 6 trials" in report and "GBENCH_INCEPTION_WEIGHTS" in report
