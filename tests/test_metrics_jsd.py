"""JSD estimators (gbench.metrics.jsd, gbench.metrics.gmm) against cases whose JSD is known in closed
form, by numerical integration, or by exact Monte Carlo with both densities known (computed here,
with its own standard error). The full accuracy table is benchmarks/jsd_accuracy.py (README).

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
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from gbench.metrics.gmm import Mixture2D, bic, features, fit_em, isotropic, reselect, rivals, select_mixture
from gbench.metrics.jsd import JSDEstimate, _bound, j_perp, j_perp_inverse, jsd_mc, jsd_to_known, knn_logpdf
from gbench.datasets.toy import ToyMixture, grid25, ring8

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
    assert est.method == "mc-exact" and est.components is None and (est.n_p, est.n_q) == (5000, 5000)
    assert {"bits", "ci_low", "ci_high", "se", "n_p", "n_q", "method", "check_bits", "agree"} <= set(est.as_dict())


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


# -- the Gaussian mixture (gbench.metrics.gmm) -----------------------------------------------------


def _random_mixture(seed: int, k: int = 3) -> Mixture2D:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.05, 0.5, k)
    c = rng.uniform(0.05, 0.5, k)
    b = rng.uniform(-0.8, 0.8, k) * np.sqrt(a * c)
    return Mixture2D(rng.dirichlet(np.ones(k) * 3), rng.normal(0, 2, (k, 2)), np.stack([a, b, c], 1))


def test_mixture_logpdf_and_sampling_are_exact() -> None:
    mix = _random_mixture(0)
    x = np.random.default_rng(1).normal(0, 2, (500, 2))
    dense = logsumexp(np.stack([np.log(w) + multivariate_normal(m, [[c[0], c[1]], [c[1], c[2]]]).logpdf(x)
                                for w, m, c in zip(mix.weights, mix.means, mix.cov)]), axis=0)
    np.testing.assert_allclose(mix.logpdf(x), dense, rtol=0, atol=1e-9)
    rng = np.random.default_rng(2)
    y = mix.sample(rng.random(200_000), rng.standard_normal((200_000, 2)))
    mean = (mix.weights[:, None] * mix.means).sum(0)
    second = sum(w * (np.array([[c[0], c[1]], [c[1], c[2]]]) + np.outer(m, m))
                 for w, m, c in zip(mix.weights, mix.means, mix.cov))
    np.testing.assert_allclose(y.mean(0), mean, atol=0.02)  # se ~ 2 / sqrt(2e5) = 0.0045
    np.testing.assert_allclose(np.cov(y.T), second - np.outer(mean, mean), atol=0.05)


def test_em_matches_scikit_learn() -> None:
    """Same init, same reg_covar: our vectorised 2-D EM reaches scikit-learn's log-likelihood."""
    truth = _random_mixture(3)
    rng = np.random.default_rng(4)
    x = truth.sample(rng.random(5000), rng.standard_normal((5000, 2)))
    init = isotropic(truth.means + 0.3, 0.2)
    mine, ll = fit_em(x, init, reg=1e-6, max_iter=500, tol=1e-9)
    sk = GaussianMixture(3, covariance_type="full", reg_covar=1e-6, weights_init=init.weights,
                         means_init=init.means, precisions_init=np.stack([np.eye(2) / 0.2] * 3),
                         max_iter=500, tol=1e-9).fit(x)
    assert ll == pytest.approx(sk.score(x), abs=1e-5)
    order = np.argsort(mine.means[:, 0])
    np.testing.assert_allclose(mine.means[order], sk.means_[np.argsort(sk.means_[:, 0])], atol=1e-3)


def test_bic_selects_the_number_of_components() -> None:
    p = ring8()
    half = ToyMixture("ring8-4", p.means[:4], p.sigmas[:4], p.weights[:4])
    for q, k in ((p, 8), (half, 4)):
        x = _draw(q, 4000, 5).astype(np.float64)
        sel = select_mixture(x, isotropic(p.means, p.sigmas**2, p.weights), 1e-8, 32, seed=0)
        assert sel.mixture.k == k and sel.path[0][0] == k  # from p's components, dead ones pruned


def test_features_give_the_exact_log_components() -> None:
    """The (n, K) log-densities as one product features(x) @ coefficients equal the direct
    quadratic form, also far from the origin with tiny variances (the expanded form's cancellation)."""
    mix = _random_mixture(5, k=4)
    mix = Mixture2D(mix.weights, mix.means + [4.0, -4.0], mix.cov * 1e-3)
    x = mix.means[[0, 1, 2, 3] * 50] + np.random.default_rng(6).normal(0, 0.02, (200, 2))
    direct = np.stack([np.log(w) + multivariate_normal(m, [[c[0], c[1]], [c[1], c[2]]]).logpdf(x)
                       for w, m, c in zip(mix.weights, mix.means, mix.cov)], 1)
    np.testing.assert_allclose(mix.log_components(features(x)), direct, rtol=1e-10, atol=1e-7)


def test_rivals_and_reselect_follow_bic() -> None:
    """Ring8 samples: the 8-component fit is chosen; the 1-component k-means++ candidate (BIC gap
    of thousands, many bootstrap sd) is not a rival; reselect keeps the lower-BIC fit on resampled
    weights whatever the order it is given them in."""
    p = ring8()
    x = _draw(p, 3000, 9).astype(np.float64)
    f = features(x)
    sel = select_mixture(x, isotropic(p.means, p.sigmas**2, p.weights), 1e-8, 32, seed=0, f=f)
    assert len(sel.fits) == len(sel.path) and sel.mixture.k == 8
    riv = rivals(sel, f)
    assert riv[0] is sel.mixture and all(m.k != 1 for m in riv)
    one = next(m for (k, _), m in zip(sel.path, sel.fits) if k == 1)
    w = np.random.default_rng(1).multinomial(3000, np.full(3000, 1 / 3000)).astype(np.float64)
    for fits in ((one, sel.mixture), (sel.mixture, one)):
        assert reselect(x, f, fits, 1e-8, w, 30, 1e-6).k == 8
    one_fit, ll1 = fit_em(x, one, 1e-8, w=w, max_iter=30, tol=1e-6, f=f)
    eight_fit, ll8 = fit_em(x, sel.mixture, 1e-8, w=w, max_iter=30, tol=1e-6, f=f)
    assert bic(ll8, 8, 3000) < bic(ll1, 1, 3000)


def test_bound_is_exact_at_q_and_second_order_below_it() -> None:
    """The estimate's formula (:func:`_bound`, D = p/(p + q_hat), q side over samples of q): with
    q_hat = q it is the exact-density Monte Carlo itself; with q_hat's sigmas 10 % and 20 % too wide
    it falls below the truth by a gap that grows as the square of the error (measured 0.0026 and
    0.0094 bits, ratio 3.6), while the plug-in JSD(p, q_hat) is off at first order (+0.055, +0.103
    bits). Common random numbers, so the differences carry almost no Monte-Carlo error."""
    p = ring8()
    q = ToyMixture("s2", p.means, 2 * p.sigmas, p.weights)
    xp, x = _draw(p, 100_000, 0).astype(np.float64), _draw(q, 100_000, 1).astype(np.float64)
    lp_xp, lp_x = p.log_prob(xp), p.log_prob(x)
    rng = np.random.default_rng(2)
    u, z = rng.random(len(x)), rng.standard_normal((len(x), 2))
    truth = jsd_mc(p.log_prob, q.log_prob, xp, x)
    gaps, plug_err = [], []
    for s in (0.0, 0.1, 0.2):
        mix = isotropic(q.means, (2 * p.sigmas * (1 + s)) ** 2, q.weights)
        bits, se_mc = _bound(mix, xp, lp_xp, x, lp_x)
        gaps.append(truth.bits - bits)
        plug_err.append(jsd_mc(p.log_prob, mix.logpdf, xp, mix.sample(u, z)).bits - truth.bits)
        assert se_mc == pytest.approx(0.5 * np.std(1 + (lp_xp - np.logaddexp(lp_xp, mix.logpdf(xp))) / LN2,
                                                   ddof=1) / math.sqrt(len(xp)))
    assert abs(gaps[0]) < 1e-12 and 0.001 < gaps[1] < gaps[2] < 0.02
    assert 3.0 < gaps[2] / gaps[1] < 5.0  # quadratic in the error of q_hat
    assert plug_err[1] > 10 * gaps[1] and plug_err[2] > 5 * gaps[2]
    w = np.random.default_rng(3).multinomial(len(x), np.full(len(x), 1 / len(x))).astype(np.float64)
    bw = _bound(isotropic(q.means, (2 * p.sigmas) ** 2, q.weights), xp, lp_xp, x, lp_x, w)[0]
    b = 1 + (q.log_prob(x) - np.logaddexp(lp_x, q.log_prob(x))) / LN2
    a = 1 + (lp_xp - np.logaddexp(lp_xp, q.log_prob(xp))) / LN2
    assert bw == pytest.approx(0.5 * (a.mean() + (w @ b) / w.sum()), abs=1e-12)  # the weighted q side


# -- jsd_to_known against exact truths ---------------------------------------------------------


def _p_delta(p: ToyMixture, delta: float, scale: float = 0.5) -> ToyMixture:
    """delta-gan's training law on toys (plugins/delta_gan.py training_law, default noise_scale)."""
    eps = j_perp_inverse(delta)
    return ToyMixture.mix([p, p.convolve(scale)], [1 - eps, eps])


def _hard(p: ToyMixture) -> ToyMixture:
    """Sharp cores (sigma / 3), thin bridges between neighbouring modes, a diffuse part (10 %)."""
    m = p.means
    d = np.sqrt(((m[:, None] - m[None]) ** 2).sum(-1))
    near = d[d > 0].min()
    t = (np.arange(5) + 0.5)[:, None] / 5
    links = np.concatenate([m[i] + t * (m[j] - m[i]) for i in range(len(m)) for j in range(i + 1, len(m))
                            if d[i, j] < 1.01 * near])
    parts = [ToyMixture("c", m, p.sigmas / 3, p.weights), ToyMixture("b", links, near / 20, np.ones(len(links))),
             ToyMixture("d", np.zeros((1, 2)), np.sqrt((m**2).sum(1)).max() / 2, np.ones(1))]
    return ToyMixture.mix(parts, [0.75, 0.15, 0.1])


def _truth(p: ToyMixture, q: ToyMixture, n: int = 100_000, seed: int = 99) -> tuple[float, float]:
    est = jsd_mc(p.log_prob, q.log_prob, _draw(p, n, seed), _draw(q, n, seed + 1))
    return est.bits, est.se


def _collapse(p: ToyMixture) -> ToyMixture:
    """Partial collapse: 3 of the modes, twice as wide, 5 % of the mass smeared between them."""
    chain = p.means[0] + np.linspace(0, 1, 12)[:, None] * (p.means[2] - p.means[0])
    return ToyMixture.mix([ToyMixture("k", p.means[:3], p.sigmas[:3] * 2, np.ones(3)),
                           ToyMixture("c", chain, 4 * p.sigmas.max(), np.ones(12))], [0.95, 0.05])


def _drop1(p: ToyMixture) -> ToyMixture:
    return ToyMixture("-1", p.means[1:], p.sigmas[1:], p.weights[1:])


CASES = {  # name: (p, q from p, generated samples)
    "ring8/sigma2": (ring8(), lambda p: ToyMixture("s2", p.means, 2 * p.sigmas, p.weights), 10_000),
    "ring8/drop1of8": (ring8(), _drop1, 10_000),
    "ring8/delta0.1": (ring8(), lambda p: _p_delta(p, 0.1), 10_000),
    "ring8/delta0.3": (ring8(), lambda p: _p_delta(p, 0.3), 10_000),
    "ring8/hard": (ring8(), _hard, 10_000),
    "ring8/collapse3": (ring8(), _collapse, 10_000),
    "grid25/sigma2": (grid25(), lambda p: ToyMixture("s2", p.means, 2 * p.sigmas, p.weights), 5000),
    "grid25/drop1of25": (grid25(), _drop1, 5000),
    "grid25/delta0.3": (grid25(), lambda p: _p_delta(p, 0.3), 5000),
    "grid25/hard": (grid25(), _hard, 5000),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_jsd_to_known_recovers_exact_truth(case: str) -> None:
    """One evaluation per case (10^4 samples on ring8, 5,000 on grid25): within 0.01 bits + 3 se
    of the exact truth (the benchmark measures |bias| <= 0.01 and coverage over repeats at 10^4),
    the k-NN bound below it."""
    p, make, n = CASES[case]
    q = make(p)
    truth, truth_se = _truth(p, q)
    if "drop1" in case:
        assert truth == pytest.approx(j_perp(1 / p.num_components), abs=4 * truth_se + 1e-3)  # closed form
    est = jsd_to_known(p, _draw(q, n, 7), np.random.default_rng(8))
    assert est.method == "gmm-plugin-bootstrap" and est.n == n and est.n_boot == 10
    assert abs(est.bits - truth) <= 0.01 + 3 * math.hypot(est.se, truth_se)
    assert 0.0 <= est.ci_low <= est.ci_high <= 1.0 and est.se_fit > 0 and est.se_mc > 0
    assert est.bits == pytest.approx(est.plug_in_bits - est.bias)
    assert est.check_bits <= truth + 4 * est.check_se  # a lower bound (variational, §8(i))
    assert est.agree == (est.check_bits - 1.96 * est.check_se <= est.ci_high
                         and est.bits - est.check_bits <= 0.15 + 1.96 * math.hypot(est.se, est.check_se))


def test_jsd_to_known_interval_covers_over_repeats() -> None:
    """Eight independent repeats at 3,000 samples on two ring8 cases (one mode dropped: closed form;
    p_delta at delta = 0.1): >= 14 of 16 intervals hold the truth (P(<= 13 of 16) = 4.3 % at
    coverage 0.95; the benchmark measures coverage over many repeats at 10,000 samples)."""
    p = ring8()
    covered = 0
    for q, truth in ((ToyMixture("7", p.means[1:], p.sigmas[1:], p.weights[1:]), j_perp(1 / 8)),
                     (_p_delta(p, 0.1), _truth(p, _p_delta(p, 0.1))[0])):
        covered += sum(e.ci_low <= truth <= e.ci_high for e in
                       (jsd_to_known(p, _draw(q, 3000, 100 + r), np.random.default_rng(r), n_mc=20_000)
                        for r in range(8)))
    assert covered >= 14


def test_jsd_to_known_se_matches_the_spread_over_repeats() -> None:
    """Calibration: over 10 independent sample sets (2,000 samples of p_delta at delta = 0.3 on
    ring8, where the fit error dominates), the spread of the estimates matches the reported se:
    ratio in [0.5, 1.8] (measured 1.27; the sd of 10 values leaves that band with probability
    < 1.5 % when they agree). The Monte-Carlo error alone is the smaller part (asserted)."""
    p = ring8()
    q = _p_delta(p, 0.3)
    est = [jsd_to_known(p, _draw(q, 2000, 200 + r), np.random.default_rng(300 + r)) for r in range(10)]
    bits = np.array([e.bits for e in est])
    rms_se = math.sqrt(np.mean([e.se**2 for e in est]))
    assert 0.5 <= bits.std(ddof=1) / rms_se <= 1.8
    assert all(e.se_fit > e.se_mc for e in est)  # the fit, not the Monte Carlo, is the larger error here
    assert all(len(e.boot_components) == e.n_boot and e.rivals >= 1 for e in est)


def test_jsd_to_known_bias_correction_at_q_equals_p() -> None:
    """q = p on grid25: the raw (in-sample) estimate is biased upward, about (6K - 1)/(8 n ln 2)
    bits (0.0027 at K = 25, n = 10^4; measured 0.0021 here); the corrected value is within 3 se of 0
    (se 0.0008, so the uncorrected one would not be) and the interval reaches 0."""
    p = grid25()
    est = jsd_to_known(p, _draw(p, 10_000, 11), np.random.default_rng(12))
    assert est.components == 25
    assert 0.001 < est.plug_in_bits < 0.006 and est.bias > 0.001 and est.se < 0.001
    assert abs(est.bits) <= 3 * est.se and est.ci_low == 0.0 and est.ci_high > 0.0


def test_jsd_to_known_disjoint_is_one() -> None:
    p = ring8()
    est = jsd_to_known(p, _draw(_shifted(p, 10.0), 2000, 1), np.random.default_rng(0))
    assert est.bits == pytest.approx(1.0, abs=1e-6) and est.ci_high == 1.0 and est.ci_low > 0.999


def test_jsd_to_known_is_deterministic_and_fast() -> None:
    p = ring8()
    x = _draw(_p_delta(p, 0.1), 3000, 3)
    a = jsd_to_known(p, x, np.random.default_rng(5))
    assert a == jsd_to_known(p, x, np.random.default_rng(5))
    assert a != jsd_to_known(p, x, np.random.default_rng(6))
    t0 = time.perf_counter()
    jsd_to_known(p, _draw(_p_delta(p, 0.1), 10_000, 4), np.random.default_rng(5))
    # a gross-regression guard only (shared CI machines): the benchmark's s/eval column measures cost
    assert time.perf_counter() - t0 < 60.0


def test_knn_logpdf_digamma_corrected() -> None:
    """k-NN log-density of a standard 2-D normal: mean error ~0 at the centre region (digamma
    correction), where the uncorrected log(k / (n pi r^2)) is off by log k - psi(k) ~ 0.05."""
    rng = np.random.default_rng(0)
    fit, x = rng.standard_normal((20_000, 2)), rng.standard_normal((2000, 2)) * 0.5
    err = knn_logpdf(fit, x, 10, 1e-9) - (-0.5 * (x**2).sum(1) - math.log(2 * math.pi))
    assert abs(err.mean()) < 0.03


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_jsd_to_known_rejects_non_finite(bad: float) -> None:
    x = _draw(ring8(), 200, 1)
    x[5, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        jsd_to_known(ring8(), x, np.random.default_rng(0))


def test_jsd_to_known_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        jsd_to_known(ring8(), np.zeros((100, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 50"):
        jsd_to_known(ring8(), np.zeros((10, 2)), np.random.default_rng(0))
