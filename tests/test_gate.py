"""The CI quality gate: `gbench baseline` records a run, `gbench check` passes, fails or refuses."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scipy import stats

import gbench
from gbench.analysis import gate
from gbench.cli import cli
from gbench.errors import GbenchError
from gbench.run.results import write_json

ROOT = Path(__file__).resolve().parent.parent

PROTOCOL = {"eval_samples": 2000, "eval_seed": 2024, "eval_at": [1.0], "reference": "ring8",
            "metrics": {"jsd": {"cutoff": 4.0, "units": "bits"},
                        "fidelity": {"weights_path": "/home/a/inception.pth", "weights_sha256": "abc", "cuda": False}}}


def fake_run(path: Path, metrics: dict[str, list[float]] | None = None, statuses: dict[str, list[str]] | None = None,
             seeds: tuple[int, ...] = (0, 1, 2), protocol: dict[str, Any] | None = None, budget_steps: int = 500,
             suite_hash: str = "h1") -> Path:
    """A run directory written the way the runner writes one, with chosen metric values per seed."""
    metrics = metrics if metrics is not None else {
        "sgan": [{"hq_percent": 80.0 + s, "jsd_bits": 0.5 + 0.01 * s, "modes": 6.0, "jsd_ci_low": 0.4}
                 for s in seeds],
        "rsgan": [{"hq_percent": 90.0 - s, "jsd_bits": 0.6, "modes": 5.0 + s} for s in seeds]}
    statuses = statuses or {}
    trials = []
    for label, per_seed in metrics.items():
        for i, seed in enumerate(seeds):
            status = statuses.get(label, ["ok"] * len(seeds))[i]
            tid = f"{label}-seed{seed}"
            trials.append(tid)
            write_json(path / "trials" / f"{tid}.json", {
                "trial_id": tid, "label": label, "variant": label, "seed": seed, "status": status,
                "metrics": per_seed[i] if status == "ok" else {},
                "protocol": copy.deepcopy(protocol or PROTOCOL),
                "dataset": {"name": "ring8", "options": {"sigma": 0.25}, "train_size": 5000, "seed": 1},
                "budget": {"g_steps": budget_steps, "batch_size": 128, "d_steps_per_g_step": 1},
                "runtime": {"device": "cpu", "precision": "fp32"},
                "provenance": {"gbench": gbench.__version__}})
    write_json(path / "manifest.json", {"suite": "gate", "suite_hash": suite_hash, "variants": list(metrics),
                                        "trials": trials, "provenance": {"gbench": gbench.__version__,
                                                                         "processor": "test"}})
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def rows_by(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["variant"], r["metric"]): r for r in rows}


# -- the rule ------------------------------------------------------------------------------------------


def test_tolerance_is_the_one_sided_t_rule_with_a_floor():
    entry = {"sd": 2.0, "n": 3}
    tol, basis = gate.tolerance(entry, 5, 0.01, 0.5)
    assert basis == "spread"
    assert tol == pytest.approx(stats.t.ppf(0.99, 2) * 2.0 * math.sqrt(1 / 3 + 1 / 5))
    assert gate.tolerance({"sd": 0.0, "n": 3}, 3, 0.01, 0.5) == (0.5, "floor")  # no spread: the floor
    assert gate.tolerance({"sd": None, "n": 1}, 1, 0.01, 1.0) == (1.0, "floor")  # one seed
    assert gate.tolerance(entry, 3, 0.01, 0.5, explicit=0.1) == (0.1, "explicit")


def test_directions_and_what_is_gated():
    assert gate.direction("modes") == gate.direction("hq_percent") == gate.direction("nonstd_isc_mean") == 1
    assert gate.direction("jsd_bits") == gate.direction("fid") == gate.direction("nonstd_kid_mean") == -1
    for key in ("jsd_ci_low", "modes_total", "isc_std", "nonstd_kid_std"):
        assert gate.direction(key) is None


def test_tolerance_options_parse_and_bad_ones_are_errors():
    assert gate.parse_tolerances(["modes=1", "sgan:jsd_bits=0.2", "alpha(0.3,1):fid=3"]) == {
        "*": {"modes": 1.0}, "sgan": {"jsd_bits": 0.2}, "alpha(0.3,1)": {"fid": 3.0}}
    for bad in ("modes", "modes=x", "modes=-1", "=1", "jsd_ci_low=0.1", "sgan:=1"):
        with pytest.raises(GbenchError, match="--tolerance"):
            gate.parse_tolerances([bad])


# -- baseline and check on written runs -----------------------------------------------------------------


def test_baseline_records_means_spread_protocol_and_seeds(tmp_path):
    run = fake_run(tmp_path / "run")
    r = invoke("baseline", run, "-o", tmp_path / "b.json")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "b.json").read_text())
    hq = data["variants"]["sgan"]["metrics"]["hq_percent"]
    assert hq["mean"] == pytest.approx(81.0) and hq["sd"] == pytest.approx(1.0) and hq["n"] == 3
    assert hq["direction"] == "higher" and data["variants"]["sgan"]["metrics"]["jsd_bits"]["direction"] == "lower"
    assert "jsd_ci_low" not in data["variants"]["sgan"]["metrics"]  # not gated
    assert data["seeds"] == [0, 1, 2]
    assert data["variants"]["rsgan"]["status_by_seed"] == {"0": "ok", "1": "ok", "2": "ok"}
    p = data["protocol"]
    assert p["suite_hash"] == "h1" and p["eval_samples"] == 2000 and p["gbench"] == gbench.__version__
    assert p["budget"]["g_steps"] == 500 and p["dataset"]["options"] == {"sigma": 0.25}
    assert "weights_path" not in p["metric_protocols"]["fidelity"]  # machine-local, not protocol
    assert data["gate"]["alpha"] == gate.ALPHA
    assert "hq_percent" in r.output and "tolerance at equal n" in r.output


def test_same_run_passes_with_every_metric_in_the_table(tmp_path):
    run = fake_run(tmp_path / "run")
    invoke("baseline", run, "-o", tmp_path / "b.json")
    r = invoke("check", run, "--baseline", tmp_path / "b.json")
    assert r.exit_code == 0, r.output
    for text in ("hq_percent", "jsd_bits", "modes", "trials ok", "gate: passed"):
        assert text in r.output
    assert "jsd_ci_low" not in r.output


def test_worse_beyond_tolerance_fails_better_does_not(tmp_path):
    base = fake_run(tmp_path / "base")
    data = gate.make_baseline(base)
    worse = fake_run(tmp_path / "worse", {
        "sgan": [{"hq_percent": 60.0, "jsd_bits": 0.5, "modes": 6.0}] * 3,   # HQ down 21 points: regression
        "rsgan": [{"hq_percent": 89.0, "jsd_bits": 0.3, "modes": 8.0}] * 3})  # JSD better: fine
    rows = rows_by(gate.check_run(worse, data))
    assert rows[("sgan", "hq_percent")]["status"] == "regressed"
    assert rows[("sgan", "jsd_bits")]["status"] == "ok"
    assert rows[("rsgan", "jsd_bits")]["status"] == "better"
    assert rows[("rsgan", "modes")]["status"] == "ok"  # +2 is within 5.7 (sd 1 over 3 seeds)
    assert [(r["variant"], r["metric"]) for r in gate.failures(list(rows.values()))] == [("sgan", "hq_percent")]
    write_json(tmp_path / "b.json", data)
    r = invoke("check", worse, "--baseline", tmp_path / "b.json", "--format", "plain")
    assert r.exit_code == 1
    regressions = r.output.split("regression(s) against")[1]
    assert "hq_percent" in regressions and "REGRESSED" in regressions and "jsd_bits" not in regressions
    assert max(len(line) for line in r.output.splitlines() if str(tmp_path) not in line) <= 80  # tables fit 80
    j = invoke("check", worse, "--baseline", tmp_path / "b.json", "--json")
    assert j.exit_code == 1  # the same exit codes
    checks = json.loads(j.output)
    assert checks["passed"] is False and checks["failed"] == 1
    assert {(c["variant"], c["metric"]) for c in checks["rows"] if c["status"] == "regressed"} == {("sgan", "hq_percent")}
    b = invoke("baseline", base, "-o", tmp_path / "b2.json", "--json")
    assert b.exit_code == 0 and json.loads(b.output)["variants"] == json.loads((tmp_path / "b2.json").read_text())["variants"]
    assert "gate: FAILED (1 of" in r.output


def test_within_tolerance_passes_and_the_threshold_is_the_t_rule(tmp_path):
    base = fake_run(tmp_path / "base")
    data = gate.make_baseline(base)
    entry = data["variants"]["sgan"]["metrics"]["hq_percent"]
    tol = gate.tolerance(entry, 3, gate.ALPHA, gate.FLOORS["hq_percent"])[0]
    assert tol > gate.FLOORS["hq_percent"]  # sd 1 over 3 seeds: about 5.7
    rsgan = [{"hq_percent": 89.0, "jsd_bits": 0.6, "modes": 6.0}] * 3
    just_in = fake_run(tmp_path / "in", {"sgan": [{"hq_percent": 81.0 - tol + 0.01, "jsd_bits": 0.51}] * 3,
                                         "rsgan": rsgan})
    just_out = fake_run(tmp_path / "out", {"sgan": [{"hq_percent": 81.0 - tol - 0.01, "jsd_bits": 0.51}] * 3,
                                           "rsgan": rsgan})
    assert rows_by(gate.check_run(just_in, data))[("sgan", "hq_percent")]["status"] == "ok"
    assert rows_by(gate.check_run(just_out, data))[("sgan", "hq_percent")]["status"] == "regressed"


def test_explicit_tolerances_from_the_file_and_the_command_line(tmp_path):
    base = fake_run(tmp_path / "base")
    r = invoke("baseline", base, "-o", tmp_path / "b.json", "--tolerance", "hq_percent=30", "--tolerance",
               "sgan:hq_percent=25")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["tolerances"] == {"*": {"hq_percent": 30.0}, "sgan": {"hq_percent": 25.0}}
    run = fake_run(tmp_path / "run", {"sgan": [{"hq_percent": 60.0, "jsd_bits": 0.51, "modes": 6.0}] * 3,
                                      "rsgan": [{"hq_percent": 65.0, "jsd_bits": 0.6, "modes": 6.0}] * 3})
    rows = rows_by(gate.check_run(run, data))
    assert rows[("sgan", "hq_percent")]["tolerance"] == 25.0 and rows[("sgan", "hq_percent")]["status"] == "ok"
    assert rows[("rsgan", "hq_percent")]["tolerance"] == 30.0 and rows[("rsgan", "hq_percent")]["basis"] == "explicit"
    assert invoke("check", run, "--baseline", tmp_path / "b.json").exit_code == 0
    r = invoke("check", run, "--baseline", tmp_path / "b.json", "--tolerance", "sgan:hq_percent=10")
    assert r.exit_code == 1 and "REGRESSED" in r.output
    r = invoke("baseline", base, "-o", tmp_path / "c.json", "--tolerance", "nope:modes=1")
    assert r.exit_code == 2 and "unknown variant 'nope'" in r.output


def test_trials_that_stop_being_ok_are_regressions(tmp_path):
    base = fake_run(tmp_path / "base", statuses={"rsgan": ["ok", "diverged", "ok"]})
    data = gate.make_baseline(base, {"rsgan": {"modes": 1.0}})  # 2 seeds: the spread rule could not fail
    assert data["variants"]["rsgan"]["ok"] == 2
    same_failure = fake_run(tmp_path / "same", statuses={"rsgan": ["ok", "diverged", "ok"]})
    rows = rows_by(gate.check_run(same_failure, data))
    assert rows[("rsgan", "trials ok")]["status"] == "ok"  # seed 1 diverged in the baseline too
    new_failure = fake_run(tmp_path / "new", statuses={"sgan": ["ok", "failed", "ok"]})
    rows = rows_by(gate.check_run(new_failure, data))
    assert rows[("sgan", "trials ok")]["status"] == "regressed"
    assert rows[("sgan", "trials ok")]["note"] == "seed 1 failed"
    all_bad = fake_run(tmp_path / "bad", statuses={"sgan": ["diverged"] * 3})
    rows = rows_by(gate.check_run(all_bad, data))
    assert rows[("sgan", "hq_percent")]["status"] == "missing"  # nothing left to compare


def test_a_variant_missing_from_the_run_is_a_regression(tmp_path):
    data = gate.make_baseline(fake_run(tmp_path / "base"))
    only_sgan = fake_run(tmp_path / "run", {"sgan": [{"hq_percent": 81.0, "jsd_bits": 0.51, "modes": 6.0}] * 3})
    rows = gate.check_run(only_sgan, data)
    assert [(r["variant"], r["metric"], r["status"]) for r in gate.failures(rows)] == [
        ("rsgan", "trials ok", "missing")]
    write_json(tmp_path / "b.json", data)
    r = invoke("check", only_sgan, "--baseline", tmp_path / "b.json")
    assert r.exit_code == 1 and "MISSING: variant not in the run" in r.output


@pytest.mark.parametrize("change, field", [
    ({"protocol": {**PROTOCOL, "eval_samples": 1000}}, "eval_samples"),
    ({"protocol": {**PROTOCOL, "eval_seed": 7}}, "eval_seed"),
    ({"protocol": {**PROTOCOL, "metrics": {**PROTOCOL["metrics"], "jsd": {"cutoff": 5.0, "units": "bits"}}}},
     "metric_protocols.jsd.cutoff"),
    ({"budget_steps": 1000}, "budget.g_steps"),
    ({"suite_hash": "h2"}, "suite_hash"),
])
def test_a_baseline_of_another_protocol_is_refused_naming_the_field(tmp_path, change, field):
    invoke("baseline", fake_run(tmp_path / "base"), "-o", tmp_path / "b.json")
    r = invoke("check", fake_run(tmp_path / "run", **change), "--baseline", tmp_path / "b.json")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and f"protocol differs from baseline {tmp_path / 'b.json'} in {field}:" in lines[0], r.output


def test_machine_local_fields_and_seeds_are_not_protocol(tmp_path):
    data = gate.make_baseline(fake_run(tmp_path / "base"))
    local = {**PROTOCOL, "metrics": {**PROTOCOL["metrics"], "fidelity": {
        "weights_path": "/elsewhere/inception.pth", "weights_sha256": "abc", "cuda": True}}}
    assert not gate.failures(gate.check_run(fake_run(tmp_path / "run", protocol=local), data))
    other_seeds = fake_run(tmp_path / "seeds", seeds=(3, 4, 5))
    assert not gate.failures(gate.check_run(other_seeds, data))
    changed_sha = {**PROTOCOL, "metrics": {**PROTOCOL["metrics"], "fidelity": {"weights_sha256": "def"}}}
    with pytest.raises(GbenchError, match="metric_protocols.fidelity.weights_sha256"):
        gate.check_run(fake_run(tmp_path / "sha", protocol=changed_sha), data)


def test_bad_input_exits_2(tmp_path):
    run = fake_run(tmp_path / "run")
    r = invoke("check", run, "--baseline", tmp_path / "none.json")
    assert r.exit_code == 2 and "no such baseline file" in r.output
    (tmp_path / "x.json").write_text('{"a": 1}')
    r = invoke("check", run, "--baseline", tmp_path / "x.json")
    assert r.exit_code == 2 and "not a gbench baseline" in r.output
    r = invoke("baseline", tmp_path / "nothing", "-o", tmp_path / "b.json")
    assert r.exit_code == 2 and "not a gbench run directory" in r.output
    r = invoke("check", run, "--baseline", tmp_path / "x.json", "--tolerance", "modes")
    assert r.exit_code == 2


# -- a real (tiny) run: the gate catches a generator that never learns -------------------------------------


def tiny_suite(seeds=(0, 1, 2)):
    from gbench.suite import parse_suite

    return parse_suite({"name": "tiny-gate", "seeds": list(seeds), "variants": ["sgan"],
                        "dataset": {"name": "ring8", "options": {"sigma": 0.25}, "train_size": 512},
                        "model": {"g_hidden": 32, "d_hidden": 32, "depth": 1},
                        "optim": {"g_lr": 2e-3, "d_lr": 2e-3},
                        "budget": {"g_steps": 150, "batch_size": 64}, "eval": {"num_samples": 500}}, "tiny.toml")


def test_gate_catches_a_generator_loss_with_the_wrong_sign(tmp_path, monkeypatch):
    import gbench_plugins.sgan as sgan
    from gbench.run.runner import run_suite

    run_suite(tiny_suite(), tmp_path / "healthy", quiet=True)
    # 3 seeds of 150 steps: the spread rule's tolerances for modes and JSD could not fail, so they are refused
    assert invoke("baseline", tmp_path / "healthy", "-o", tmp_path / "b.json").exit_code == 2
    assert invoke("baseline", tmp_path / "healthy", "-o", tmp_path / "b.json", "--tolerance", "modes=2",
                  "--tolerance", "jsd_bits=0.2").exit_code == 0
    run_suite(tiny_suite(), tmp_path / "again", quiet=True)  # deterministic here: passes
    assert invoke("check", tmp_path / "again", "--baseline", tmp_path / "b.json").exit_code == 0

    healthy_g_loss = sgan.SGAN.g_loss
    monkeypatch.setattr(sgan.SGAN, "g_loss",
                        lambda self, nets, x_real, x_fake: -healthy_g_loss(self, nets, x_real, x_fake))
    run_suite(tiny_suite(), tmp_path / "broken", quiet=True)
    r = invoke("check", tmp_path / "broken", "--baseline", tmp_path / "b.json")
    assert r.exit_code == 1, r.output
    rows = gate.check_run(tmp_path / "broken", gate.read_baseline(tmp_path / "b.json"))
    failed = {row["metric"] for row in gate.failures(rows)}
    assert {"hq_percent", "jsd_bits"} <= failed


# -- the committed baseline ------------------------------------------------------------------------------


def test_committed_gate_baseline_matches_the_gate_suite():
    """Editing suites/gate.toml (or bumping gbench's version) needs a new baselines/gate.json:
    OMP_NUM_THREADS=1 gbench run gate --out RUN --quiet, then gbench baseline RUN -o baselines/gate.json
    with the tolerances it holds now (``--tolerance`` per metric)."""
    from gbench.suite import load_suite

    data = gate.read_baseline(ROOT / "baselines" / "gate.json")
    suite = load_suite("gate")
    assert data["protocol"]["suite_hash"] == suite.hash
    assert data["protocol"]["gbench"] == gbench.__version__
    assert data["protocol"]["eval_samples"] == suite.eval.num_samples
    assert set(data["variants"]) == {v.label for v in suite.variants}
    assert all(v["ok"] == v["trials"] == len(suite.seeds) for v in data["variants"].values())
    assert {"hq_percent", "jsd_bits"} <= set(data["tolerances"]["*"])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "gbench run gate" in ci and "--baseline baselines/gate.json" in ci


# -- tolerances that cannot fail -------------------------------------------------------------------------


def test_a_tolerance_that_cannot_fail_is_refused_by_baseline_and_check(tmp_path):
    # the case: modes 8, 8, 1 of 8 -> mean 5.67, spread tolerance ~ 8.7 > 5.67: no run can fall below
    wide = {"sgan": [{"modes": m, "modes_total": 8.0, "jsd_bits": 0.5} for m in (8.0, 8.0, 1.0)]}
    run = fake_run(tmp_path / "wide", metrics=wide)
    with pytest.raises(GbenchError, match=r"tolerance .* for sgan modes \(from the spread of 3 seeds\) cannot fail"):
        gate.make_baseline(run)
    result = CliRunner().invoke(cli, ["baseline", str(run), "-o", str(tmp_path / "b.json")])
    assert result.exit_code == 2 and "cannot fail" in result.output and "Traceback" not in result.output
    data = gate.make_baseline(run, {"sgan": {"modes": 2.0}})  # an explicit tolerance that can fail is kept
    assert data["variants"]["sgan"]["metrics"]["modes"]["bounds"] == [0.0, 8.0]
    assert gate.headroom(data["variants"]["sgan"]["metrics"]["modes"]) == pytest.approx(17 / 3)
    assert gate.headroom(data["variants"]["sgan"]["metrics"]["jsd_bits"]) == pytest.approx(0.5)  # worst: 1 bit
    with pytest.raises(GbenchError, match="cannot fail"):
        gate.check_run(run, data, {"sgan": {"jsd_bits": 0.6}})  # 0.5 + 0.6 > 1 bit: check refuses it too
    rows = rows_by(gate.check_run(run, data))
    assert rows[("sgan", "modes")]["tolerance"] == 2.0
