"""Statistics over seeds in reports: intervals inside each metric's range (with measured coverage),
success / failure rates with Wilson intervals, the delta-controlled GAN's verdict, and eps chosen
against the scoring reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import gbench
from gbench.errors import GbenchError
from gbench.metrics.jsd import j_perp, j_perp_inverse, jsd_mc
from gbench.analysis.report import mean_ci, render, summarise, toy_rates, wilson
from gbench.suite import DatasetSpec
from gbench.datasets.toy import ToyMixture, ring8
from gbench.run.trial import reference_weight


def result(label: str, seed: int, status: str = "ok", variant: str | None = None, target: dict | None = None,
           **metrics: float) -> dict:
    return {"trial_id": f"{label}-{seed}", "label": label, "variant": variant or label, "seed": seed,
            "status": status, "metrics": metrics if status == "ok" else {}, "target": target,
            "consumed": {"g_steps": 100, "device_seconds": 1.0},
            "variant_config": {"base": "sgan"} if target else {}}


# -- intervals over seeds ------------------------------------------------------------------------------


def test_interval_is_the_t_interval_clipped_to_the_range():
    x = [0.20, 0.25, 0.27]
    s = mean_ci(x, bounds=(0.0, 1.0))
    half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((np.mean(x) - half, np.mean(x) + half))  # inside: unchanged
    modes = mean_ci([8.0, 8.0, 1.0], bounds=(0.0, 8.0))  # the "5.67 ± 10.04" modes of 8
    assert modes["mean"] == pytest.approx(17 / 3) and (modes["ci_low"], modes["ci_high"]) == (0.0, 8.0)
    assert mean_ci([0.9, 0.1, 0.95], bounds=(0.0, 1.0))["ci_high"] == 1.0
    assert mean_ci([0.5])["ci_low"] is None and mean_ci([])["mean"] is None


@pytest.mark.parametrize("law, n", [((0.5, 5.0), 5), ((2.0, 2.0), 3), ((2.0, 2.0), 10)])
def test_interval_coverage_of_the_true_mean_on_bounded_laws(law, n):
    """Coverage of the known mean of a Beta law (skewed towards 0 like a small JSD, or symmetric),
    over 2,000 simulated sets of n seeds; benchmarks/seed_intervals.py prints the full table."""
    a, b = law
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        s = mean_ci(rng.beta(a, b, n), bounds=(0.0, 1.0))
        hits += s["ci_low"] <= a / (a + b) <= s["ci_high"]
    # measured 0.85 for Beta(0.5, 5) at n = 5 (the t-interval's own skewness loss), 0.94-0.96 for Beta(2, 2)
    assert hits / 2000 >= (0.80 if a < 1 else 0.92)


def test_report_shows_intervals_inside_the_range_and_every_seed():
    results = [result("sgan", s, modes=m, modes_total=8.0, hq_percent=h, jsd_bits=j)
               for s, (m, h, j) in enumerate([(8.0, 95.0, 0.05), (8.0, 91.0, 0.9), (1.0, 3.0, 0.95)])]
    text = render({"suite": "t", "variants": ["sgan"]}, results, "plain")
    assert "5.67 [0.00, 8.00]" in text  # modes
    assert "63.0 [0.0, 100.0]" in text  # HQ %
    row = summarise(results)[0]
    assert row["metrics"]["jsd_bits"]["ci_high"] == 1.0
    for seed, value in ((0, "0.050"), (1, "0.900"), (2, "0.950")):  # the per-seed table
        assert any(line.split()[:2] == ["sgan", str(seed)] and value in line for line in text.splitlines())


# -- success and failure rates --------------------------------------------------------------------------


def test_success_needs_all_modes_and_enough_hq_failure_counts_divergence():
    group = [result("g", 0, modes=8.0, modes_total=8.0, hq_percent=92.0),
             result("g", 1, modes=8.0, modes_total=8.0, hq_percent=20.0),  # every mode, but mostly junk
             result("g", 2, modes=0.0, modes_total=8.0, hq_percent=0.0),
             result("g", 3, status="diverged"), result("g", 4, status="failed")]
    rates = toy_rates(group)
    assert (rates["n"], rates["success"], rates["failure"]) == (4, 1, 2)  # the crashed trial is left out
    for key, k in (("success", 1), ("failure", 2)):
        ci = stats.binomtest(k, 4).proportion_ci(method="wilson")
        assert rates[f"{key}_ci"] == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert wilson(0, 0) == (0.0, 1.0)
    text = render({"suite": "t", "variants": ["g"]}, group, "plain")
    assert "1/4 [" in text and "2/4 [" in text


# -- the delta-controlled GAN ------------------------------------------------------------------------------


def delta_results(base_jsd, delta_jsd, delta=0.1):
    target = {"jsd": delta, "jsd_p_pdelta": 0.098, "jsd_pdelta_pg": 0.01}
    return ([result("sgan", s, jsd_bits=j) for s, j in enumerate(base_jsd)]
            + [result("delta-gan(0.1)", s, variant="delta-gan", target=dict(target), jsd_bits=j)
               for s, j in enumerate(delta_jsd)])


@pytest.mark.parametrize("delta_jsd, verdict", [
    ([0.090, 0.088, 0.092], "yes"),  # above the base's error, upper limit below delta
    ([0.030, 0.020, 0.025], "not different from p"),  # ignored the perturbation: as close to p as sgan
    ([0.200, 0.210, 0.190], "no"),
    ([0.070, 0.110, 0.100], "unclear"),
])
def test_delta_verdict_tests_the_upper_limit_and_the_base_variant(delta_jsd, verdict):
    rows = summarise(delta_results([0.02, 0.03, 0.025], delta_jsd))
    t = rows[1]["target"]
    assert t["base_label"] == "sgan" and t["base_achieved"]["mean"] == pytest.approx(0.025)
    assert t["within_target"] == verdict
    text = render({"suite": "t", "variants": ["sgan", "delta-gan(0.1)"]}, delta_results([0.02, 0.03, 0.025], delta_jsd),
                  "plain")
    assert "JSD(p_δ, p_g)" in text and "base JSD(p, p_g)" in text and verdict in text


def test_eps_holds_the_guarantee_against_a_reference_inside_a_mixture():
    """Train on 0.95 ring8 + 0.05 (a far blob), score against ring8: eps is chosen so that the exact
    JSD(ring8, p_delta) is <= delta (checked by Monte Carlo with both densities)."""
    spec = DatasetSpec(mixture=(("ring8", 0.95, {}), ("blob", 0.05, {})), reference="ring8")
    assert reference_weight(spec) == pytest.approx(0.95)
    assert reference_weight(DatasetSpec(name="ring8")) == 1.0
    assert reference_weight(DatasetSpec(mixture=(("grid25", 1.0, {}),), reference="ring8")) == 0.0
    variant = gbench.get_plugins().variants.get("delta-gan")(
        gbench.get_plugins().variants.get("delta-gan").Config(delta=0.1))
    assert variant.epsilon == pytest.approx(j_perp_inverse(0.1))
    variant.score_against(0.95)
    eps = variant.epsilon
    assert 1 - 0.95 * (1 - eps) == pytest.approx(j_perp_inverse(0.1))
    p = ring8()
    blob = ToyMixture("blob", [[3.0, 3.0]], 0.05, [1.0])
    law = variant.training_law(ToyMixture.mix([p, blob], [0.95, 0.05]))
    g = __import__("torch").Generator().manual_seed(0)
    est = jsd_mc(p.log_prob, law.log_prob, p.sample(40_000, g).numpy(), law.sample(40_000, g).numpy())
    assert est.bits <= 0.1 + 3 * est.se
    assert est.bits > 0.1 - 0.01  # disjoint perturbation and blob: the bound is nearly tight
    with pytest.raises(GbenchError, match=r"cannot be guaranteed .* weight 0.8 .* needs at least 0.814"):
        variant.score_against(0.8)
    # the smallest delta it accepts there is J_perp(0.2), named in the message
    smallest = variant.Config(delta=round(j_perp(0.2) + 1e-4, 4))
    type(variant)(smallest).score_against(0.8)
    with pytest.raises(GbenchError, match=f"use delta >= {j_perp(0.2):.3g}"):
        variant.score_against(0.8)


def test_a_target_that_cannot_hold_against_the_reference_is_refused_before_training(tmp_path):
    from click.testing import CliRunner

    from gbench.cli import cli

    suite = tmp_path / "dmix.toml"
    suite.write_text('name = "dmix"\nseeds = [0]\nvariants = [{ name = "delta-gan", label = "d", delta = 0.1 }]\n'
                     '[dataset]\nmixture = [{ name = "ring8", weight = 0.8 }, { name = "grid25", weight = 0.2 }]\n'
                     'reference = "ring8"\ntrain_size = 1000\n[budget]\ng_steps = 10\nbatch_size = 64\n')
    result = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot be guaranteed against the scoring reference" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out" / "trials").exists()


def test_fit_table_keeps_every_cell_within_80_columns():
    from gbench.analysis.text import fit_table, render

    headers = ["variant"] + [f"metric {i}" for i in range(8)] + ["G steps"]
    rows = [[f"v{r}"] + [f"{r}.{i}00 [{r}.{i}00, {r}.{i}99]" for i in range(8)] + ["600"] for r in range(3)]
    wide = render(headers, rows, "github")
    assert max(map(len, wide.splitlines())) > 80
    text = fit_table(headers, rows)
    assert max(map(len, text.splitlines())) <= 80
    for r in rows:  # every varying cell is shown, each variant on every part, the constant column once
        assert all(cell in text for cell in r[:-1])
        assert text.count(f"| {r[0]} ") == text.count("| variant ")
    assert "| G steps" not in text and "same in every row: G steps 600" in text
    assert fit_table(headers, rows, wide=True) == wide
    one = fit_table(headers, rows[:1])  # a single row: nothing is constant, only split
    assert "G steps" in one and max(map(len, one.splitlines())) <= 80


def test_latex_escapes_specials_and_aligns_numbers_right():
    from gbench.analysis.text import latex_table

    tex = latex_table(["variant", "target δ", "HQ %"], [["a_b & c", "0.2", "91.5 ± 1.0"], ["d", "-", "−3"]])
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{lrr}" and lines[1] == r"\toprule" and lines[-2] == r"\bottomrule"
    assert r"target $\delta$ & HQ \% \\" in tex and r"a\_b \& c & 0.2 & 91.5 $\pm$ 1.0 \\" in tex
