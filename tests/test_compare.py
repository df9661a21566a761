"""gbench compare: statistics, ranking, success rates and the protocol check, on hand-built result files."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scipy import stats

from gbench.cli import cli
from gbench.analysis.compare import compare_runs, compare_values, holm, rank_groups, wilson_interval
from gbench.errors import GbenchError

# The fields of a real toy result (gbench run smoke), trimmed of the loss curve and provenance.
TOY_PROTOCOL = {
    "eval_at": [0.5, 1.0],
    "eval_samples": 2000,
    "eval_seed": 2024,
    "metrics": {
        "jsd": {"bandwidth": None, "cutoff": 4.0, "eval_fraction": 0.3, "fit_fraction": 0.5, "h_min_factor": 0.1,
                "per_octave": 4, "select_fraction": 0.2, "units": "bits"},
        "modes": {"hq_radius_sigma": 3.0, "modes": "components nearest to >= 1 HQ sample (VEEGAN)"},
    },
    "reference": "ring8",
}
FIDELITY = {
    "feature_extractor": "inception-v3-compat", "weights": "/data/w.pth", "weights_path": "/data/w.pth",
    "weights_source": "argument", "weights_sha256": "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "standard": True, "cache_dir": "", "cuda": False, "batch_size": 64, "reference_split": "train",
    "isc_splits": 10, "num_samples": 2000, "torch_fidelity_version": "0.3.0",
    "reference": {"dataset": "cifar10", "split": "train", "size": 50000, "cache_name": "gbench-cifar10-train-ab",
                  "cache_hit": True, "cache_root": "/home/u/.cache/gbench/fidelity"},
}


def result(label: str, seed: int, metrics: dict[str, float], status: str = "ok", image: bool = False,
           **changes: Any) -> dict[str, Any]:
    """One trial result in the real layout; ``changes`` maps dotted paths to new values."""
    r: dict[str, Any] = {
        "schema": 1, "suite": "t", "suite_hash": "0" * 16, "trial_id": f"{label}-seed{seed}", "label": label,
        "variant": label.split("(")[0], "seed": seed, "status": status, "error": None, "diverged_at": None,
        "data_kind": "image" if image else "toy",
        "dataset": {"mixture": [], "name": "cifar10" if image else "ring8", "options": {}, "reference": "",
                    "seed": 1, "train_size": 5000},
        "budget": {"batch_size": 64, "d_steps_per_g_step": 1, "g_steps": 50, "max_device_seconds": 0.0},
        "consumed": {"g_steps": 50, "d_steps": 50, "device_seconds": 1.0},
        "protocol": copy.deepcopy(TOY_PROTOCOL),
        "metrics": dict(metrics) if status == "ok" else {},
        "metric_errors": {},
        "runtime": {"device": "cpu", "precision": "fp32", "data_root": None, "inception_weights": None},
    }
    if image:
        r["protocol"]["reference"] = "cifar10"
        r["protocol"]["metrics"] = {"fidelity": copy.deepcopy(FIDELITY)}
    if status == "diverged":
        r["diverged_at"] = 20
    if status == "failed":
        r["error"] = "RuntimeError: boom"
        del r["protocol"]["metrics"]
    if status == "ok" and not image:
        r["metrics"].setdefault("modes_total", 8.0)
        r["metrics"].setdefault("jsd_ci_low", 0.0)
        r["metrics"].setdefault("jsd_ci_high", 1.0)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = r
        for p in parents:
            node = node[p]
        node[leaf] = value
    return r


def write_run(root: Path, results: list[dict[str, Any]], labels: list[str] | None = None) -> Path:
    (root / "trials").mkdir(parents=True)
    labels = labels or list(dict.fromkeys(r["label"] for r in results))
    (root / "manifest.json").write_text(json.dumps({
        "schema": 1, "suite": "t", "suite_hash": "0" * 16, "variants": labels,
        "trials": [r["trial_id"] for r in results]}))
    for r in results:
        (root / "trials" / f"{r['trial_id']}.json").write_text(json.dumps(r))
    return root


def toy_run(root: Path, values: dict[str, list[float | str]], key: str = "modes", seeds: dict[str, list[int]] | None = None,
            **changes: Any) -> Path:
    """A run with one group per label; a value "diverged"/"failed" makes that trial so."""
    results = []
    for label, vals in values.items():
        for seed, v in zip((seeds or {}).get(label, range(len(vals))), vals):
            if isinstance(v, str):
                results.append(result(label, seed, {}, status=v, **changes))
            else:
                results.append(result(label, seed, {key: v, "hq_percent": 50.0 + seed}, **changes))
    return write_run(root, results)


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def metric(c, key):
    return next(m for m in c.metrics if m.key == key)


def pair(m, a, b):
    return next(p for p in m.pairs if {p.a, p.b} == {a, b})


# -- statistics --------------------------------------------------------------------------------


def test_clear_difference_is_significant_and_ranked_1_then_2(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"good": [8, 8, 8, 8], "bad": [2, 3, 2, 1]})
    m = metric(compare_runs([run]), "modes")
    p = pair(m, "good", "bad")
    assert p.test == "paired t" and p.diff == pytest.approx(6.0) and p.significant
    assert p.p == pytest.approx(stats.ttest_rel([8, 8, 8, 8], [2, 3, 2, 1]).pvalue)
    assert (m.summaries["good"]["rank"], m.summaries["bad"]["rank"]) == (1, 2)
    assert not m.summaries["good"]["tied"] and m.direction == 1


def test_noise_level_differences_tie_and_lower_is_better_ranks_low_first(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [0.50, 0.52, 0.49], "b": [0.51, 0.50, 0.50], "c": [0.90, 0.91, 0.92]},
                  key="jsd_bits")
    m = metric(compare_runs([run]), "jsd_bits")
    assert m.direction == -1
    assert not pair(m, "a", "b").significant
    ranks = {g: (s["rank"], s["tied"]) for g, s in m.summaries.items()}
    assert ranks == {"a": (1, True), "b": (1, True), "c": (3, False)}


def test_intervals_stay_in_the_metric_range_and_the_forest_leads_with_the_best_mean(tmp_path: Path):
    """Wide seed spreads near the range's ends: the mean's interval is clipped to [0, 1] bits and a
    difference's to [-1, 1]; with every rank tied, the forest plot's reference is the best mean, not
    the first label alphabetically."""
    from gbench.analysis.dynamics import forest_figure

    run = toy_run(tmp_path / "r", {"a-wide": [0.02, 0.9, 0.05], "z-best": [0.01, 0.02, 0.03]}, key="jsd_bits")
    c = compare_runs([run])
    m = metric(c, "jsd_bits")
    for s in m.summaries.values():
        assert 0.0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 1.0
    p = pair(m, "a-wide", "z-best")
    unclipped = compare_values(dict(enumerate([0.02, 0.9, 0.05])), dict(enumerate([0.01, 0.02, 0.03])))
    assert unclipped["ci_high"] > 1.0 and p.ci_high == 1.0 and p.ci_low == pytest.approx(unclipped["ci_low"])
    fig = forest_figure(c, "jsd_bits")
    assert "(z-best)" in fig.axes[0].get_title()


def test_holm_on_known_p_values():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_holm_is_applied_within_a_metric(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [8, 8, 7, 8], "b": [2, 3, 2, 1], "c": [5, 4, 6, 5]})
    m = metric(compare_runs([run]), "modes")
    assert [p.p_holm for p in m.pairs] == pytest.approx(holm([p.p for p in m.pairs]))


def test_paired_when_seeds_match_else_welch(tmp_path: Path):
    same = compare_values({0: 1.0, 1: 2.0, 2: 4.0}, {0: 1.5, 1: 2.1, 2: 3.0})
    assert same["test"] == "paired t"
    assert same["p"] == pytest.approx(stats.ttest_rel([1, 2, 4], [1.5, 2.1, 3.0]).pvalue)
    other = compare_values({0: 1.0, 1: 2.0, 2: 4.0}, {0: 1.5, 1: 2.1, 3: 3.0})
    assert other["test"] == "Welch t"
    assert other["p"] == pytest.approx(stats.ttest_ind([1, 2, 4], [1.5, 2.1, 3.0], equal_var=False).pvalue)
    # a diverged seed leaves the groups with different seeds: Welch
    run = toy_run(tmp_path / "r", {"a": [8, 7, 8], "b": [2, "diverged", 3]})
    assert pair(metric(compare_runs([run]), "modes"), "a", "b").test == "Welch t"


def test_welch_interval_against_a_hand_computation():
    # a = 1,2,3,4 (var 5/3), b = 2,4,6 (var 4): se^2 = 5/12 + 4/3 = 1.75,
    # df = 1.75^2 / ((5/12)^2/3 + (4/3)^2/2) = 3.23472, t_0.975(3.23472) = 3.05571
    out = compare_values({0: 1, 1: 2, 2: 3, 3: 4}, {10: 2, 11: 4, 12: 6})
    half = 3.05571 * math.sqrt(1.75)
    assert out["diff"] == pytest.approx(-1.5)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((-1.5 - half, -1.5 + half), abs=1e-4)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((-5.5423, 2.5423), abs=1e-4)
    assert out["p"] == pytest.approx(0.33382, abs=1e-5)


def test_paired_interval_and_degenerate_cases():
    out = compare_values({0: 3, 1: 5, 2: 4}, {0: 1, 1: 2, 2: 2})  # differences 2, 3, 2
    half = stats.t.ppf(0.975, 2) * math.sqrt(1 / 3) / math.sqrt(3)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert compare_values({0: 8, 1: 8, 2: 8}, {0: 8, 1: 8, 2: 8})["p"] == 1.0
    assert compare_values({0: 8, 1: 8, 2: 8}, {0: 2, 1: 2, 2: 2})["p"] == 0.0
    one = compare_values({0: 8}, {0: 2, 1: 3})
    assert one["test"] == "n/a" and one["p"] is None and one["ci_low"] is None and one["diff"] == pytest.approx(5.5)


def test_single_seed_runs_report_n_a_and_tie(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [8], "b": [1]})
    m = metric(compare_runs([run]), "modes")
    assert pair(m, "a", "b").test == "n/a" and pair(m, "a", "b").significant is None
    assert m.summaries["a"]["rank"] == m.summaries["b"]["rank"] == 1


def test_rank_classes_follow_the_leader():
    means = {"a": 3.0, "b": 2.5, "c": 2.0, "d": None}
    sig = {frozenset("ab"): False, frozenset("ac"): True, frozenset("bc"): False}
    assert rank_groups(means, 1, sig) == {"a": (1, True), "b": (1, True), "c": (3, False), "d": (None, False)}
    assert rank_groups(means, -1, sig)["c"] == (1, True)


def test_unknown_metric_keys_are_compared_but_not_ranked(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [1, 2, 3], "b": [4, 5, 6]}, key="my_score")
    m = metric(compare_runs([run]), "my_score")
    assert m.direction is None and all(s["rank"] is None for s in m.summaries.values())
    keys = [m.key for m in compare_runs([run]).metrics]
    assert "modes_total" not in keys and "jsd_ci_low" not in keys


# -- success rates ---------------------------------------------------------------------------------


def test_wilson_interval_against_hand_computed_values():
    # statsmodels proportion_confint(k, n, method="wilson") gives these values
    assert wilson_interval(3, 10) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    assert wilson_interval(0, 4) == pytest.approx((0.0, 0.4899), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_success_rates_count_diverged_as_failure_and_leave_failed_out(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [8, 8, 0, "diverged", "failed"], "b": [8, 3, 2, 5, 1]})
    rates = {s.group: s for s in compare_runs([run]).success_rates}
    a = rates["a"]
    assert (a.trials, a.all_modes, a.no_mode, a.diverged) == (4, 2, 2, 1)
    assert a.all_modes_ci == pytest.approx(wilson_interval(2, 4))
    assert (rates["b"].trials, rates["b"].all_modes, rates["b"].no_mode) == (5, 1, 0)


# -- protocol ------------------------------------------------------------------------------------------


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_different_eval_sample_counts_are_refused(tmp_path: Path):
    a = toy_run(tmp_path / "a", {"sgan": [8, 7]})
    b = toy_run(tmp_path / "b", {"rsgan": [8, 7]}, protocol__eval_samples=10000)
    line = one_line_error(invoke("compare", a, b))
    assert "protocol.eval_samples differs" in line and "2000 in" in line and "10000 in" in line
    assert str(b) in line and "--allow-different-budgets" not in line
    assert "protocol.eval_samples" in one_line_error(invoke("compare", a, b, "--allow-different-budgets"))


def image_run(root: Path, labels: dict[str, list[float]], **fidelity: Any) -> Path:
    results = []
    for label, fids in labels.items():
        for seed, fid in enumerate(fids):
            r = result(label, seed, {"fid": fid, "isc_mean": 5.0 + seed, "isc_std": 0.1}, image=True)
            r["protocol"]["metrics"]["fidelity"].update(fidelity)
            results.append(r)
    return write_run(root, results)


def test_different_fidelity_weights_or_reference_split_are_refused(tmp_path: Path):
    a = image_run(tmp_path / "a", {"sgan": [30.0, 32.0]})
    b = image_run(tmp_path / "b", {"rsgan": [31.0, 33.0]}, weights_sha256="ff" * 32, standard=False)
    line = one_line_error(invoke("compare", a, b))
    assert "protocol.metrics.fidelity.weights_sha256 differs" in line and "also differs" in line
    assert "protocol.metrics.fidelity.standard" in line
    c = image_run(tmp_path / "c", {"rsgan": [31.0, 33.0]}, reference_split="test")
    line = one_line_error(invoke("compare", a, c, "--allow-different-budgets"))
    assert "protocol.metrics.fidelity.reference_split differs (train in" in line and "test in" in line


def test_paths_caches_and_versions_are_not_protocol(tmp_path: Path):
    a = image_run(tmp_path / "a", {"sgan": [30.0, 32.0, 31.0]})
    b = image_run(tmp_path / "b", {"rsgan": [41.0, 43.0, 42.0]}, weights_path="/elsewhere/w.pth", cuda=True,
                  torch_fidelity_version="0.3.1")
    c = compare_runs([a, b])
    p = pair(metric(c, "fid"), "sgan", "rsgan")
    assert p.significant and metric(c, "fid").summaries["sgan"]["rank"] == 1
    assert [m.key for m in c.metrics] == ["fid", "isc_mean"] and c.success_rates == []


def test_a_failed_trial_without_metric_protocol_is_no_difference(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [8, 7, "failed"], "b": [3, 2, 1]})
    c = compare_runs([run])
    assert c.groups[0].failed == 1 and metric(c, "modes").summaries["a"]["n"] == 2


def test_budget_differences_need_the_explicit_opt_out(tmp_path: Path):
    a = toy_run(tmp_path / "a", {"sgan": [8, 7]})
    b = toy_run(tmp_path / "b", {"rsgan": [3, 2]}, budget__g_steps=2000)
    line = one_line_error(invoke("compare", a, b))
    assert "budget.g_steps differs (50 in" in line and "2000 in" in line and "--allow-different-budgets" in line
    out = invoke("compare", a, b, "--allow-different-budgets")
    assert out.exit_code == 0, out.output
    assert "budgets DIFFER (budget.g_steps)" in out.output
    data = json.loads(invoke("compare", a, b, "--allow-different-budgets", "--format", "json").output)
    assert data["budget_differences"] == ["budget.g_steps"]
    assert data["protocol"]["budget.g_steps"] == {"sgan": [50], "rsgan": [2000]}


def test_mixed_values_inside_one_run_name_the_labels(tmp_path: Path):
    results = [result("sgan", s, {"modes": 8}) for s in (0, 1)] + [
        result("rsgan", s, {"modes": 3}, dataset__reference="grid25") for s in (0, 1)]
    run = write_run(tmp_path / "r", results)
    with pytest.raises(GbenchError, match=r"dataset.reference differs \(\"\" in .*r \(sgan\); grid25 in .*r \(rsgan\)\)"):
        compare_runs([run])


# -- groups and the command -----------------------------------------------------------------------


def test_two_runs_of_one_variant_are_label_at_dir(tmp_path: Path):
    a = toy_run(tmp_path / "lr1e-3", {"sgan": [8, 8, 7], "rsgan": [4, 4, 4]})
    b = toy_run(tmp_path / "lr2e-4", {"sgan": [2, 3, 2]})
    c = compare_runs([a, b])
    assert [g.name for g in c.groups] == ["sgan@lr1e-3", "rsgan", "sgan@lr2e-4"]
    p = pair(metric(c, "modes"), "sgan@lr1e-3", "sgan@lr2e-4")
    assert p.test == "paired t" and p.diff == pytest.approx(23 / 3 - 7 / 3)
    out = invoke("compare", a, b, "--metric", "modes")
    assert out.exit_code == 0 and "sgan@lr1e-3" in out.output and "sgan@lr2e-4" in out.output


def test_same_dir_twice_and_a_single_group_are_errors(tmp_path: Path):
    a = toy_run(tmp_path / "a", {"sgan": [8, 7]})
    assert "given twice" in one_line_error(invoke("compare", a, a))
    assert "nothing to compare" in one_line_error(invoke("compare", a))
    assert one_line_error(invoke("compare", tmp_path / "missing")).startswith("Error: ")
    assert invoke("compare").exit_code == 2


def test_cli_formats_and_json(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"good": [8, 8, 8, 8], "bad": [2, 3, 2, 1], "mid": [5, 5, 6, "diverged"]})
    for fmt in ("github", "plain", "latex"):
        out = invoke("compare", run, "--format", fmt)
        assert out.exit_code == 0, out.output
        text = out.output
        assert "good" in text and "bad" in text and "3/4 (1 diverged)" in text and "Holm" in text
        assert "all modes covered" in text and "paired t" in text
    assert "8.00 (1)" in invoke("compare", run).output
    assert "\\toprule" in invoke("compare", run, "--format", "latex").output
    data = json.loads(invoke("compare", run, "--format", "json", "--metric", "modes", "--alpha", "0.01").output)
    assert data["alpha"] == 0.01 and [m["key"] for m in data["metrics"]] == ["modes"]
    modes = data["metrics"][0]
    assert modes["summaries"]["good"]["rank"] == 1 and modes["direction"] == 1
    assert {(p["a"], p["b"]) for p in modes["pairs"]} == {("good", "bad"), ("good", "mid"), ("bad", "mid")}
    assert all(set(p) >= {"diff", "ci_low", "ci_high", "test", "p", "p_holm", "significant"} for p in modes["pairs"])
    rates = {s["group"]: s for s in data["success_rates"]}
    assert rates["mid"]["no_mode"] == 1 and rates["good"]["all_modes"] == 4
    assert [g["name"] for g in data["groups"]] == ["good", "bad", "mid"]


def test_cli_rejects_an_unknown_metric_and_a_bad_alpha(tmp_path: Path):
    run = toy_run(tmp_path / "r", {"a": [8, 7], "b": [3, 2]})
    line = one_line_error(invoke("compare", run, "--metric", "fid"))
    assert "unknown metric 'fid'" in line and "modes" in line
    assert invoke("compare", run, "--alpha", "1.5").exit_code == 2


def test_header_names_differing_optimiser_schedule_model_and_variant_settings(tmp_path: Path):
    optim = {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.999], "lr_schedule": "constant"}
    a = toy_run(tmp_path / "a", {"sgan": [8, 8, 7], "rsgan": [4, 4, 5]}, optim=optim,
                model={"arch": "mlp", "options": {"g_hidden": 64}}, variant_config={"non_saturating": True})
    b = toy_run(tmp_path / "b", {"sgan": [2, 3, 2]}, optim={**optim, "lr_schedule": "linear", "g_lr": 1e-4},
                model={"arch": "mlp", "options": {"g_hidden": 128}}, variant_config={"non_saturating": False})
    c = compare_runs([a, b])
    d = c.settings_differences
    assert d["optim.lr_schedule"] == {"sgan@a": "constant", "rsgan": "constant", "sgan@b": "linear"}
    assert d["optim.g_lr"]["sgan@b"] == "0.0001" and d["model.options.g_hidden"]["sgan@b"] == "128"
    assert d["variant_config.non_saturating"] == {"sgan@a": "true", "sgan@b": "false"}  # same variant only
    assert "optim.d_lr" not in d and "optim.betas" not in d  # equal everywhere: not named
    text = invoke("compare", a, b).output
    assert "settings differ between groups" in text and "optim.lr_schedule: sgan@a constant" in text
    assert json.loads(invoke("compare", a, b, "--json").output)["settings_differences"] == d
    # budgets still refused unless allowed
    c2 = toy_run(tmp_path / "c", {"sgan": [1, 2, 3]}, budget__g_steps=99)
    assert "budget.g_steps" in one_line_error(invoke("compare", a, c2))
