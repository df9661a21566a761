"""JSD estimators (gbench.metrics.jsd) against cases whose JSD is known in closed form or by
numerical integration.

These are statistical tests with fixed seeds. Tolerances are several standard errors wide, so the
right estimator passes reliably, but far tighter than the error of a wrong one: forgetting the 1/2
doubles every value, using nats multiplies it by ln 2 = 0.69.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import logsumexp
from scipy.spatial import cKDTree

from gbench.metrics.jsd import (
    JSDEstimate,
    _CellKDE,
    j_perp,
    j_perp_inverse,
    jsd_mc,
    jsd_to_known,
    select_bandwidth,
)
from gbench.toy import ToyMixture, ring8

LN2 = math.log(2)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _draw(mix: ToyMixture, n: int, seed: int) -> np.ndarray:
    return mix.sample(n, _gen(seed)).numpy()


def _shifted(p: ToyMixture, shift: float) -> ToyMixture:
    return ToyMixture(f"{p.name}+{shift}", p.means + shift, p.sigmas, p.weights)


def _jsd_bits_1d(logf, logg, lo: float, hi: float) -> float:
    """JSD in bits between two 1-D densities, by quadrature (log-space integrand)."""

    def integrand(t: float) -> float:
        lf, lg = logf(t), logg(t)
        m = np.logaddexp(lf, lg)
        return 0.5 * (math.exp(lf) * (LN2 + lf - m) + math.exp(lg) * (LN2 + lg - m)) / LN2

    return integrate.quad(integrand, lo, hi, limit=400, epsabs=1e-12)[0]


def _gauss2d_logpdf(mean, sigma):
    mean = np.asarray(mean, dtype=np.float64)

    def logpdf(x: np.ndarray) -> np.ndarray:
        d2 = ((np.asarray(x, dtype=np.float64) - mean) ** 2).sum(1)
        return -0.5 * d2 / sigma**2 - math.log(2 * math.pi * sigma**2)

    return logpdf


def _radial_jsd_bits(ratio: float) -> float:
    """JSD in bits between N(0, I_2) and N(0, ratio^2 I_2): polar coordinates, a 1-D integral in r."""

    def integrand(r: float) -> float:
        lp = -0.5 * r * r - math.log(2 * math.pi)
        lq = -0.5 * r * r / ratio**2 - math.log(2 * math.pi * ratio**2)
        m = np.logaddexp(lp, lq)
        return 2 * math.pi * r * 0.5 * (math.exp(lp) * (LN2 + lp - m) + math.exp(lq) * (LN2 + lq - m)) / LN2

    return integrate.quad(integrand, 0, 20 * ratio, limit=400, epsabs=1e-12)[0]


# -- J_perp ---------------------------------------------------------------------------------------

# algorithms.md §6.2. The exact inverses at 0.20 and 0.30 are 0.347046 and 0.485645: the table's
# 0.3471 / 0.4857 are double-rounded (via 0.34705 / 0.48565), so compare to table precision, 1e-4.
TABLE_6_2 = {0.01: 0.0199, 0.05: 0.0965, 0.10: 0.1862, 0.20: 0.3471, 0.30: 0.4857, 0.50: 0.7062}


@pytest.mark.parametrize("delta, eps", sorted(TABLE_6_2.items()))
def test_j_perp_inverse_reproduces_table(delta: float, eps: float) -> None:
    assert abs(j_perp_inverse(delta) - eps) <= 1e-4 + 1e-12
    assert j_perp(j_perp_inverse(delta)) == pytest.approx(delta, abs=1e-10)


def test_j_perp_and_inverse_are_inverse_and_monotone() -> None:
    eps = np.linspace(0, 1, 101)
    vals = np.array([j_perp(e) for e in eps])
    assert vals[0] == 0 and vals[-1] == 1 and np.all(np.diff(vals) > 0)
    for e in eps:
        assert j_perp_inverse(j_perp(e)) == pytest.approx(e, abs=1e-8)
    assert j_perp(1e-4) == pytest.approx(0.5e-4, rel=1e-3)  # ~ eps / 2
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError):
            j_perp(bad)
        with pytest.raises(ValueError):
            j_perp_inverse(bad)


# -- jsd_mc (exact densities) ---------------------------------------------------------------------


def test_jsd_mc_identical_laws_is_zero() -> None:
    p = ring8()
    est = jsd_mc(p.log_prob, p.log_prob, _draw(p, 5000, 1), _draw(p, 5000, 2))
    assert isinstance(est, JSDEstimate)
    assert abs(est.bits) < 1e-12 and est.se < 1e-12
    assert est.method == "mc-exact" and est.bandwidth is None and (est.n_p, est.n_q) == (5000, 5000)
    assert set(est.as_dict()) == {"bits", "ci_low", "ci_high", "se", "n_p", "n_q", "method", "bandwidth"}


def test_jsd_mc_disjoint_is_one_bit() -> None:
    p = ring8()
    q = _shifted(p, 10.0)
    est = jsd_mc(p.log_prob, q.log_prob, _draw(p, 4000, 1), _draw(q, 4000, 2))
    assert est.bits == pytest.approx(1.0, abs=1e-9)


def test_jsd_mc_two_gaussians_against_quadrature() -> None:
    # JSD(N(0, I), N((1, 0), I)) in 2-D equals the 1-D JSD(N(0, 1), N(1, 1)): the 2nd axis cancels
    truth = _jsd_bits_1d(lambda t: -0.5 * t * t - 0.5 * math.log(2 * math.pi),
                         lambda t: -0.5 * (t - 1) ** 2 - 0.5 * math.log(2 * math.pi), -30, 31)
    assert 0.15 < truth < 0.17  # 0.1607; in nats 0.111, without the 1/2 0.321
    lp, lq = _gauss2d_logpdf([0, 0], 1.0), _gauss2d_logpdf([1, 0], 1.0)
    rng = np.random.default_rng(0)
    # large n: the point estimate is sharp (se < 1e-3 bits); nats or a missing 1/2 is off by > 0.04
    n = 200_000
    est = jsd_mc(lp, lq, rng.standard_normal((n, 2)), rng.standard_normal((n, 2)) + [1.0, 0.0])
    assert est.se < 1e-3
    assert abs(est.bits - truth) < 4 * est.se
    assert est.ci_low == pytest.approx(est.bits - 1.96 * est.se)
    assert est.ci_high == pytest.approx(est.bits + 1.96 * est.se)
    # the 95 % CI covers the truth about 95 % of the time (P(< 88 of 100 | 0.95) ~ 0.1 %)
    covered = 0
    for _ in range(100):
        e = jsd_mc(lp, lq, rng.standard_normal((1000, 2)), rng.standard_normal((1000, 2)) + [1.0, 0.0])
        covered += e.ci_low <= truth <= e.ci_high
    assert covered >= 88


def test_jsd_mc_is_symmetric() -> None:
    p, q = ring8(), ring8(sigma=0.02)
    x, y = _draw(p, 3000, 1), _draw(q, 3000, 2)
    assert jsd_mc(p.log_prob, q.log_prob, x, y).bits == pytest.approx(jsd_mc(q.log_prob, p.log_prob, y, x).bits)


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.7])
def test_jsd_mc_disjoint_mixture_equals_j_perp(eps: float) -> None:
    """JSD(p, (1 - eps) p + eps r) = J_perp(eps) when r is far from p (equality case of §6.2)."""
    p = ring8()
    mixed = ToyMixture.mix([p, _shifted(p, 10.0)], [1 - eps, eps])
    est = jsd_mc(p.log_prob, mixed.log_prob, _draw(p, 20_000, 1), _draw(mixed, 20_000, 2))
    assert abs(est.bits - j_perp(eps)) < 4 * est.se + 1e-9
    assert est.se < 0.005


def test_jsd_mc_rejects_non_finite() -> None:
    p = ring8()
    x = _draw(p, 100, 1)
    x[3, 0] = np.inf
    with pytest.raises(ValueError):
        jsd_mc(p.log_prob, p.log_prob, x, _draw(p, 100, 2))


# -- KDE machinery --------------------------------------------------------------------------------


def test_cell_kde_matches_dense_logsumexp() -> None:
    p = ring8()
    fit = _draw(p, 800, 1).astype(np.float64)
    q = np.concatenate([_draw(p, 300, 2), _draw(p, 20, 3) * 1.5]).astype(np.float64)  # some off the ring
    h = 0.004
    tree = cKDTree(fit)
    got = _CellKDE(fit, h, 4.0, tree).logpdf(q)
    d2 = ((q[:, None, :] - fit[None]) ** 2).sum(-1)
    want = logsumexp(-0.5 * d2 / h**2, axis=1) - math.log(len(fit) * 2 * math.pi * h * h)
    near = np.sqrt(d2.min(1)) < 4 * h
    assert near.sum() > 250 and (~near).sum() >= 10
    # within the cutoff: truncation error <= exp(-8) relative
    assert np.allclose(got[near], want[near], atol=1e-3, rtol=0)
    # beyond it: the nearest fit point's term, a lower bound that is never far off in log terms
    assert np.all(got[~near] <= want[~near] + 1e-9)
    assert np.all(got[~near] >= want[~near] - math.log(len(fit)))


def test_select_bandwidth_finds_likelihood_maximum() -> None:
    p = ring8()
    fit, sel = _draw(p, 4000, 1).astype(np.float64), _draw(p, 1500, 2).astype(np.float64)
    h, trace = select_bandwidth(fit, sel, 0.001, 1.0, per_octave=4, h_start=0.02)
    hs, lls = zip(*trace)
    assert h == hs[int(np.argmax(lls))]
    assert list(hs) == sorted(hs) and len(hs) < 20  # walked, not the whole 40-point grid
    assert 0.002 < h < 0.008  # about sigma/3 .. sigma/2 for 500 points per mode


# -- jsd_to_known (exact p, KDE for q) ------------------------------------------------------------


def test_jsd_to_known_disjoint_is_one() -> None:
    p = ring8()
    est = jsd_to_known(p, _draw(_shifted(p, 10.0), 4000, 1), np.random.default_rng(0))
    assert est.bits == pytest.approx(1.0, abs=1e-6)
    assert est.method == "kde-exact-p" and est.bandwidth is not None


def test_jsd_to_known_null_bias_shrinks_with_n() -> None:
    """q = p: E[J | q_hat] <= JSD = 0 (variational lower bound), so the bias is negative and small.

    Measured with these seeds: -0.028 bits at n = 1,000, -0.011 at 4,000, -0.007 at 16,000
    (over 40 / 20 / 8 repeats: -0.029, -0.015, -0.007)."""
    p = ring8()
    bias = {}
    for n, reps in ((1000, 8), (4000, 4), (16_000, 2)):
        vals = [jsd_to_known(p, _draw(p, n, 100 + r), np.random.default_rng(r)).bits for r in range(reps)]
        bias[n] = float(np.mean(vals))
    assert all(b < 0 for b in bias.values()), bias
    assert abs(bias[1000]) > abs(bias[4000]) > abs(bias[16_000]), bias
    assert abs(bias[16_000]) < 0.01, bias
    assert abs(bias[1000]) < 0.06, bias


def test_jsd_to_known_half_the_modes() -> None:
    """q = ring8 restricted to 4 of its 8 modes: p = (q + r)/2 with r disjoint from q, so
    JSD = J_perp(1/2) = 3/4 (2 - log2 3) = 0.3113 bits."""
    p = ring8()
    q = ToyMixture("half", p.means[::2], p.sigmas[::2], np.ones(4))
    truth = 0.75 * (2 - math.log2(3))
    assert truth == pytest.approx(j_perp(0.5), abs=1e-12)
    mc = jsd_mc(p.log_prob, q.log_prob, _draw(p, 50_000, 1), _draw(q, 50_000, 2))
    assert abs(mc.bits - truth) < 4 * mc.se
    est = jsd_to_known(p, _draw(q, 10_000, 3), np.random.default_rng(0))
    assert est.bits == pytest.approx(truth, abs=0.03)
    assert est.ci_low <= est.bits <= est.ci_high and est.se < 0.01


def test_jsd_to_known_wider_sigma() -> None:
    """q = ring8 with sigma 0.02 instead of 0.01: the components are ~40 sigma apart, so the JSD is
    that of N(0, s^2 I_2) vs N(0, 4 s^2 I_2), a 1-D radial integral (~0.250 bits)."""
    p, q = ring8(), ring8(sigma=0.02)
    truth = _radial_jsd_bits(2.0)
    assert 0.24 < truth < 0.26
    mc = jsd_mc(p.log_prob, q.log_prob, _draw(p, 50_000, 1), _draw(q, 50_000, 2))
    assert abs(mc.bits - truth) < 4 * mc.se
    est = jsd_to_known(p, _draw(q, 10_000, 3), np.random.default_rng(0))
    assert est.bits == pytest.approx(truth, abs=0.03)


def test_jsd_to_known_is_fast_and_deterministic() -> None:
    p = ring8()
    x = _draw(p, 10_000, 5)
    t0 = time.perf_counter()
    a = jsd_to_known(p, x, np.random.default_rng(7))
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed  # ~0.15 s in practice
    b = jsd_to_known(p, torch.as_tensor(x), np.random.default_rng(7))
    assert a == b
    assert all(math.isfinite(v) for v in (a.bits, a.ci_low, a.ci_high, a.se))
    assert (a.n_p, a.n_q) == (3000, 3000)


def test_jsd_to_known_fixed_bandwidth_and_n_p() -> None:
    p = ring8()
    est = jsd_to_known(p, _draw(p, 2000, 1), np.random.default_rng(0), bandwidth=0.004, n_p=5000)
    assert est.bandwidth == 0.004 and est.n_p == 5000 and est.n_q == 600
    assert abs(est.bits) < 0.05


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_jsd_to_known_rejects_non_finite(bad: float) -> None:
    p = ring8()
    x = _draw(p, 1000, 1)
    x[17, 1] = bad
    with pytest.raises(ValueError, match="samples contain non-finite values"):
        jsd_to_known(p, x, np.random.default_rng(0))


def test_jsd_to_known_rejects_bad_shapes() -> None:
    p = ring8()
    with pytest.raises(ValueError):
        jsd_to_known(p, np.zeros((100, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError):
        jsd_to_known(p, np.zeros((5, 2)), np.random.default_rng(0))
