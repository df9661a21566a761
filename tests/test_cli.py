"""The command line, as a user meets it: output, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fake_clock import FakeClock

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


# -- the terminal ------------------------------------------------------------------------------------------


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_run_json_quiet_and_tables_that_fit_80_columns(tiny: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(tiny), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is the JSON alone; the header, progress and path go to stderr
    assert data["results"] == str(out) and data["failed"] == []
    assert sorted(t["trial_id"] for t in data["trials"]) == ["delta_0.2_-seed0", "delta_0.2_-seed1",
                                                             "sgan-seed0", "sgan-seed1"]
    assert {v["label"] for v in data["variants"]} == {"sgan", "delta(0.2)"}
    assert "gbench: suite tiny: 4 trials to run (2 variants x 2 seeds), 20 G steps" in result.stderr
    assert result.stderr.count("done ") == 4 and "JSD" in result.stderr  # a line per finished trial
    quiet = CliRunner().invoke(cli, ["run", str(tiny), "--out", str(tmp_path / "q"), "--quiet", "--seeds", "0"])
    assert quiet.stdout.strip() == f"results: {tmp_path / 'q'}" and quiet.stderr == ""
    narrow = invoke("report", str(out)).output
    assert _widest(narrow) <= 80 and "JSD (bits)" in narrow and "same in every row" in narrow
    wide = invoke("report", str(out), "--wide").output
    assert _widest(wide) > 80
    for cmd in (["variants"], ["suites"], ["plugins"], ["compare", str(out)]):
        text = invoke(*cmd).output
        assert _widest(text) <= 80, (cmd, _widest(text))
    assert {s["suite"] for s in json.loads(invoke("suites", "--json").output)} >= {"smoke", "ring"}
    assert json.loads(invoke("report", str(out), "--json").output)["suite"] == "tiny"


def test_ctrl_c_names_the_resume_command(tiny: Path, tmp_path: Path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("gbench.run.runner.run_suite", interrupted)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(tiny), "--out", str(out), "--seeds", "0,1", "--no-batch",
                                      "--executor", "process", "--jobs", "2"])
    assert result.exit_code == 130
    expected = f"gbench run {tiny} --out {out} --seeds 0,1 --executor process --jobs 2 --no-batch --resume"
    assert expected in result.stderr and "Aborted" not in result.output


def test_latex_report_is_booktabs_with_math_and_right_aligned_numbers(tiny: Path, tmp_path: Path):
    import re
    import shutil

    out = tmp_path / "run"
    assert invoke("run", str(tiny), "--out", str(out), "--quiet").exit_code == 0
    tex = invoke("report", str(out), "--format", "latex").output
    assert "±" not in tex.replace("%", "\n%").split("\n%")[0]
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert "±" not in body and "δ" not in body and r"$\delta$" in body
    for table in re.findall(r"\\begin\{tabular\}\{([lr]+)\}(.*?)\\end\{tabular\}", body, re.S):
        spec, inner = table
        assert r"\toprule" in inner and r"\midrule" in inner and r"\bottomrule" in inner
        rows = [r for r in inner.split(r"\\") if "&" in r]
        assert all(r.count("&") == len(spec) - 1 for r in rows)  # every row has the spec's columns
    assert re.search(r"\\begin\{tabular\}\{lr", body)  # variant left, numbers right
    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex: checked by the parser above only")
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage[utf8]{inputenc}\\usepackage{booktabs}"
                   "\\usepackage[landscape,margin=5mm]{geometry}\\begin{document}\\tiny\n" + tex + "\n\\end{document}\n",
                   encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


@dataclass(frozen=True)
class FakeTrial:
    """A trial on the fake clock: G steps per second while training, start-up, evaluation seconds (at 50 %
    and at its end, as ``gbench.run.loop`` runs them: after the progress report of that step)."""

    id: str
    variant: str
    speed: float = 100.0
    startup: float = 1.0
    evaluation: float = 2.0
    final: float = 2.0  # the last evaluation (delta-gan's extra target estimates make it longer)
    total: int = 2000


def fake_run(trials: list[FakeTrial], jobs: int) -> list[tuple[float, str, int | None]]:
    """The reports of a pool of ``jobs`` slots taking the trials in order: (time, trial, step or None at
    its finish), sorted; a trial starts on the first slot to free."""
    free, events = [0.0] * jobs, []
    for t in trials:
        slot = min(range(jobs), key=lambda i: free[i])
        now = free[slot]
        events.append((now, t.id, 0))
        now += t.startup
        for step in range(100, t.total + 1, 100):
            now += 100 / t.speed
            events.append((now, t.id, step))
            if step == t.total // 2:
                now += t.evaluation
        now += t.final
        events.append((now, t.id, None))
        free[slot] = now
    return sorted(events, key=lambda e: (e[0], {None: 1, 0: 2}.get(e[2], 0)))  # a slot frees, then the next starts


def check_eta(trials: list[FakeTrial], jobs: int) -> tuple[int, float, float]:
    """Drive a :class:`Progress` through ``fake_run``; assert its ETA within x1.5 of the true time left at
    every report after a tenth of the run; return (checks, worst low ratio, worst high ratio)."""
    import io

    from gbench.run.progress import Progress

    clock, stream = FakeClock(), io.StringIO()
    p = Progress("fake", {t.id: t.total for t in trials}, "runs/x", stream=stream, clock=clock, tty=False,
                 evals={t.id: (t.total // 2, t.total) for t in trials}, groups={t.id: t.variant for t in trials})
    events = fake_run(trials, jobs)
    end, checked, ratios = events[-1][0], 0, []
    for when, tid, step in events:
        clock.now = when
        if step is None:
            p.finished(tid, {"status": "ok", "consumed": {"g_steps": 2000}, "metrics": {"jsd_bits": 0.1}})
        else:
            p.step(tid, step)
        if 0.1 * end <= when < end:
            eta, truth = p.eta(), end - when
            assert eta is not None and truth / 1.5 <= eta <= truth * 1.5, (when, eta, truth)
            checked, ratios = checked + 1, ratios + [eta / truth]
    return checked, min(ratios), max(ratios)


@pytest.mark.parametrize("jobs", [1, 3])
def test_eta_within_a_factor_1_5_after_a_tenth_of_the_run(jobs: int):
    """6 equal trials, ``jobs`` at a time: 1 s of start-up, 2 s of evaluation at 50 %, a final evaluation
    of 5 s (the trial's tail, after its last report), 100 steps/s while training."""
    import io

    from gbench.run.progress import Progress

    trials = [FakeTrial(f"t{i}", "v", final=5.0) for i in range(6)]
    checked, low, high = check_eta(trials, jobs)
    assert checked > 20
    stream, clock = io.StringIO(), FakeClock()
    p = Progress("fake", {"t5": 2000}, "runs/x", stream=stream, clock=clock, tty=False)
    p.step("t5", 0)
    clock.now = 25.0
    p.finished("t5", {"status": "ok", "consumed": {"g_steps": 2000}, "metrics": {"jsd_bits": 0.1}})
    text = stream.getvalue()
    assert "steps/s" in text and "G step/s" not in text and "done 1/1 t5: 2000 G steps in 25.0s (80 steps/s), JSD 0.100 bits" in text


@pytest.mark.parametrize("jobs, final", [(3, 10.0), (4, 6.0)])
def test_eta_holds_when_the_last_variant_is_three_times_slower(jobs: int, final: float):
    """2 variants x 2 seeds, the last variant three times slower (training and evaluation), its final
    evaluation ``final`` seconds (10 s: 5x the others', measured on b-seed0 before b-seed1 ends; with all 4
    at once no b trial has finished, so its tail must not be far off the others': 6 s): running trials are
    timed on their own rate, waiting ones on their own variant's trials. The old estimate (the finished
    trials' mean for everyone) fell to ~0.4 of the truth at the end."""
    slow = {"variant": "b", "speed": 100 / 3, "evaluation": 6.0, "final": final}
    trials = [FakeTrial("a-seed0", "a"), FakeTrial("a-seed1", "a"),
              FakeTrial("b-seed0", **slow), FakeTrial("b-seed1", **slow)]  # type: ignore[arg-type]
    checked, low, high = check_eta(trials, jobs)
    assert checked > 40, checked


def test_rates_and_durations_read_as_words():
    from gbench.run.progress import duration, rate

    assert rate(11.48) == "11.5 steps/s" and rate(1234.4) == "1234 steps/s" and rate(0.52) == "0.52 steps/s"
    assert duration(428) == "7:08" and duration(4012) == "1:06:52" and duration(5.06) == "5.1s"


def test_terminal_status_line_is_redrawn_in_place_and_fits_the_width():
    import io

    from gbench.run.progress import Progress

    clock, stream = FakeClock(), io.StringIO()
    p = Progress("s", {f"variant-with-a-long-name-seed{i}": 1000 for i in range(4)}, "runs/s", stream=stream,
                 clock=clock, tty=True, width=60)
    p.header(1, 4, "1000 G steps x 1 D step, batch 64")
    for step in range(0, 1001, 50):
        clock.now = step / 100
        for i in range(4):
            p.step(f"variant-with-a-long-name-seed{i}", step)
    assert "400 steps/s" in p.status_line() and "ETA" in p.status_line()  # 4 trials x 100 steps/s
    p.finished("variant-with-a-long-name-seed0", {"status": "diverged", "diverged_at": 700,
                                                  "consumed": {"g_steps": 700}})
    p.close()
    text = stream.getvalue()
    assert " ".join(text.split("\r")[0].replace("\n  ", " ").split()).startswith(
        "gbench: suite s: 4 trials to run (1 variant x 4 seeds), 1000 G steps")
    frames = [f for f in text.split("\r\x1b[2K") if f and not f.startswith("gbench:")]
    status = [f for f in frames if "done" in f and not f.startswith("DIVERGED")]
    assert len(status) >= 10  # redrawn in place, at most every 0.5 s of the (fake) clock
    assert all(len(f) <= 59 and "\n" not in f for f in status)  # one line, within the terminal
    assert "370 steps/s" in status[-1]  # the diverged trial counts the 700 G steps it consumed
    assert "DIVERGED 1/4 variant-with-a-long-name-seed0 at G step 700: 700 G steps in 10.0s" in text.replace("\n  ", " ")  # wrapped


@pytest.mark.parametrize("jobs", [1, 2])
def test_device_seconds_budget_shows_no_step_total_and_times_the_eta_on_the_budget(jobs: int):
    """``[budget] device_seconds = 30``: the G-step total (a cap of 1000000) is not shown, and the ETA, from
    each trial's training time against the budget (1 s start-up, 2 s final evaluation), holds within x1.5
    after 10 % of the run; 4 trials of two variants, one twice as fast in steps (which must not matter)."""
    import io

    from gbench.run.progress import Progress

    ids = {"a-seed0": 200.0, "a-seed1": 200.0, "b-seed0": 400.0, "b-seed1": 400.0}  # G steps per second
    clock, stream = FakeClock(), io.StringIO()
    p = Progress("dev", {t: 1_000_000 for t in ids}, "runs/d", stream=stream, clock=clock, tty=True, width=80,
                 evals={t: (1_000_000,) for t in ids}, groups={t: t[0] for t in ids}, seconds={t: 30.0 for t in ids})
    free, events = [0.0] * jobs, []
    for tid, speed in ids.items():
        slot = min(range(jobs), key=lambda i: free[i])
        events.append((free[slot], tid, 0))
        for k in range(1, 61):  # a report every 0.5 s of training, 30 s in all
            events.append((free[slot] + 1 + k / 2, tid, int(speed * k / 2)))
        free[slot] += 1 + 30 + 2
        events.append((free[slot], tid, None))
    events.sort(key=lambda e: (e[0], {None: 1, 0: 2}.get(e[2], 0)))
    end, checked = events[-1][0], 0
    for when, tid, step in events:
        clock.now = when
        if step is None:
            p.finished(tid, {"status": "ok", "consumed": {"g_steps": int(ids[tid] * 30)}, "metrics": {}})
        else:
            p.step(tid, step)
        if 0.1 * end <= when < end:
            eta, truth = p.eta(), end - when
            assert eta is not None and truth / 1.5 <= eta <= truth * 1.5, (when, eta, truth)
            checked += 1
    assert checked > 50
    frames = [f for f in stream.getvalue().split("\r\x1b[2K") if "ETA" in f]
    assert frames and not any("1000000" in f for f in frames) and "a-seed0 6000 " in stream.getvalue()
    import re

    rates = [float(m) for f in frames for m in re.findall(r"([0-9.]+) steps/s", f)]  # finished trials: G steps made
    assert rates and max(rates) <= 400 * jobs * 1.01, max(rates)


def test_run_header_wraps_to_80_columns_and_keeps_the_path_whole():
    import io

    from gbench.run.progress import Progress

    out = "runs/authors-ring-with-a-long-name/2026-12-02T16-20-00"
    stream = io.StringIO()
    p = Progress("authors-ring-with-a-long-name", {f"t{i}": 1000 for i in range(21)}, out, stream=stream,
                 tty=False, width=80)
    p.header(7, 3, "3000 G steps x 1 D step, batch 256, cap 60 device-s", skipped=2)
    lines = stream.getvalue().rstrip("\n").split("\n")
    flat = "gbench: suite authors-ring-with-a-long-name: 21 trials to run (7 variants x 3 seeds, 2 already " \
           f"finished), 3000 G steps x 1 D step, batch 256, cap 60 device-s; results in {out}"
    assert len(flat) > 80 and len(lines) >= 2 and all(len(line) <= 79 for line in lines)
    assert lines[0].startswith("gbench: suite") and all(line.startswith("  ") for line in lines[1:])
    assert " ".join(line.strip() for line in lines) == flat and any(line.strip().endswith(out) for line in lines)


def test_a_finished_trial_line_wraps_to_80_columns():
    import io

    from gbench.run.progress import Progress

    tid = "alpha-gan_NS_aD=0.5_aG=1.2-seed0"
    stream = io.StringIO()
    clock = iter([0.0, 1.0, 180.0, 180.0])
    p = Progress("ring", {tid: 3000}, "runs/ring", stream=stream, clock=lambda: next(clock), tty=False, width=80)
    p.step(tid, 0)
    p.step(tid, 3000)
    p.finished(tid, {"status": "ok", "consumed": {"g_steps": 3000},
                     "metrics": {"jsd_bits": 0.163, "hq_percent": 94.0, "modes": 8.0, "modes_total": 8}})
    lines = [line for line in stream.getvalue().rstrip("\n").split("\n") if not line.startswith(tid + " ")]
    done = [i for i, line in enumerate(lines) if line.startswith("done 1/1")]
    assert done, stream.getvalue()
    block = lines[done[0]:]
    assert len(block) >= 2 and all(len(line) <= 79 for line in block), block
    assert block[0].startswith(f"done 1/1 {tid}:") and all(line.startswith("  ") for line in block[1:])
