"""Jensen-Shannon divergence, in bits, for the toy benchmarks (algorithms.md §6.2, §8).

JSD(p, q) = 1/2 E_p[log2(2p/(p+q))] + 1/2 E_q[log2(2q/(p+q))], in [0, 1] bits.

* :func:`j_perp`, :func:`j_perp_inverse`: the closed-form JSD of a mixture with a disjoint part (§6.2).
* :func:`jsd_mc`: Monte-Carlo JSD when both log-densities are known exactly (e.g. p vs p_delta,
  two ``ToyMixture`` objects). Unbiased; the CI is the usual normal interval.
* :func:`jsd_to_known`: achieved JSD between an exactly known data law p and a generator known only
  through samples: the discriminator D = p/(p + q_hat) of a Gaussian mixture q_hat fitted by EM/BIC
  plugged into the JSD formula, its p side by exact Monte Carlo and its q side over the generated
  samples themselves, bootstrap-bias-corrected, with a bootstrap interval that includes the data
  and fit error; a k-nearest-neighbour estimate is reported beside it as a cross-check.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.spatial import cKDTree
from scipy.special import digamma
from scipy.stats import t as student_t

from gbench.metrics.gmm import Mixture2D, features, isotropic, reselect, rivals, select_mixture

LN2 = math.log(2.0)
Z95 = 1.96
AGREE_GAP = 0.15  # the k-NN lower bound may sit this far below the mixture estimate and still "agree"


def j_perp(eps: float) -> float:
    """J_perp(eps) = JSD(p, (1-eps) p + eps r) in bits when r is disjoint from p: the largest
    JSD a mixture weight eps of anything else can cause (data processing on the component label)."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1], got {eps}")
    if eps == 0.0:
        return 0.0
    if eps == 1.0:
        return 1.0
    return 0.5 * (eps + (1 - eps) * math.log2(1 - eps) - (2 - eps) * math.log2(1 - eps / 2))


def j_perp_inverse(delta: float) -> float:
    """The eps with J_perp(eps) = delta: perturbing a fraction eps guarantees JSD(p, p_delta) <= delta."""
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be in [0, 1] bits, got {delta}")
    if delta in (0.0, 1.0):
        return delta
    return brentq(lambda e: j_perp(e) - delta, 0.0, 1.0, xtol=1e-12)


# -- estimates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JSDEstimate:
    """A JSD estimate in bits with a 95 % confidence interval.

    ``bits``: the reported value, raw (after bias correction it can fall slightly below 0; it is not
    clipped); ``ci_low``/``ci_high``: the 95 % interval (clipped to [0, 1] by :func:`jsd_to_known`,
    raw for :func:`jsd_mc`); ``se``: its standard error; ``n_p``/``n_q``: draws on the p
    and q side; ``method``: how it was made. For :func:`jsd_to_known` also: ``n`` generated samples,
    ``components`` (K of the fitted mixture), ``plug_in_bits`` (the estimate before bias
    correction), ``bias`` (its bootstrap bias estimate, subtracted), ``se_fit``/``se_mc`` (data-and-fit and
    Monte-Carlo parts of ``se``), ``n_boot``, ``boot_components`` (K re-selected in each bootstrap
    resample), ``rivals`` (candidate fits refitted per resample), and the cross-check: ``check_method``, ``check_bits``,
    ``check_se`` and ``agree`` (see :func:`jsd_to_known`).
    """

    bits: float
    ci_low: float
    ci_high: float
    se: float
    n_p: int
    n_q: int
    method: str
    n: int | None = None
    components: int | None = None
    plug_in_bits: float | None = None
    bias: float | None = None
    se_fit: float | None = None
    se_mc: float | None = None
    n_boot: int | None = None
    boot_components: tuple[int, ...] | None = None
    rivals: int | None = None
    check_method: str | None = None
    check_bits: float | None = None
    check_se: float | None = None
    agree: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _as_points(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, d)"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain non-finite values" if name == "samples" else f"{name} has non-finite values")
    return x


def _combine(lp_x: np.ndarray, lq_x: np.ndarray, lp_y: np.ndarray, lq_y: np.ndarray,
             method: str) -> JSDEstimate:
    """Per-sample terms a_i = log2(2p/(p+q))(x_i), x_i ~ p and b_j = log2(2q/(p+q))(y_j), y_j ~ q
    (natural-log densities in, logaddexp for stability); J = (mean a + mean b)/2,
    se = 1/2 sqrt(s_a^2/n_p + s_b^2/n_q)."""
    for arr in (lp_x, lq_x, lp_y, lq_y):
        if not np.isfinite(arr).all():
            raise ValueError("log-densities must be finite at every sample (got -inf/nan)")
    a = 1.0 + (lp_x - np.logaddexp(lp_x, lq_x)) / LN2
    b = 1.0 + (lq_y - np.logaddexp(lp_y, lq_y)) / LN2
    n_p, n_q = len(a), len(b)
    if n_p < 2 or n_q < 2:
        raise ValueError(f"need at least 2 samples on each side, got n_p={n_p}, n_q={n_q}")
    bits = 0.5 * (a.mean() + b.mean())
    se = 0.5 * math.sqrt(a.var(ddof=1) / n_p + b.var(ddof=1) / n_q)
    return JSDEstimate(float(bits), float(bits - Z95 * se), float(bits + Z95 * se), float(se),
                       n_p, n_q, method)


def jsd_mc(
    p_logpdf: Callable[[np.ndarray], np.ndarray],
    q_logpdf: Callable[[np.ndarray], np.ndarray],
    x_p: np.ndarray | torch.Tensor,
    x_q: np.ndarray | torch.Tensor,
) -> JSDEstimate:
    """Monte-Carlo JSD in bits between two laws whose log-densities (natural log) are known exactly.

    ``x_p`` ~ p and ``x_q`` ~ q are independent samples (rows). The estimate
    J = 1/2 mean_i log2(2p/(p+q))(x_i) + 1/2 mean_j log2(2q/(p+q))(y_j) is unbiased, every term lies
    in (-inf, 1], and the CI J +- 1.96 SE with SE = 1/2 sqrt(s_p^2/n_p + s_q^2/n_q) covers the
    Monte-Carlo error (the only error here). Used e.g. for JSD(p, p_delta) of the delta-controlled GAN.
    """
    x_p = _as_points(x_p, "x_p")
    x_q = _as_points(x_q, "x_q", x_p.shape[1])
    lp_x = np.asarray(p_logpdf(x_p), dtype=np.float64).reshape(-1)
    lq_x = np.asarray(q_logpdf(x_p), dtype=np.float64).reshape(-1)
    lp_y = np.asarray(p_logpdf(x_q), dtype=np.float64).reshape(-1)
    lq_y = np.asarray(q_logpdf(x_q), dtype=np.float64).reshape(-1)
    return _combine(lp_x, lq_x, lp_y, lq_y, "mc-exact")




# -- achieved JSD against a known p: Gaussian-mixture discriminator -------------------------------


def _terms(lp_x: np.ndarray, lq_x: np.ndarray, lp_y: np.ndarray, lq_y: np.ndarray) -> tuple[float, float]:
    """(J, Monte-Carlo se) from natural-log densities at x ~ p and y ~ q (see :func:`_combine`)."""
    a = 1.0 + (lp_x - np.logaddexp(lp_x, lq_x)) / LN2
    b = 1.0 + (lq_y - np.logaddexp(lp_y, lq_y)) / LN2
    return float(0.5 * (a.mean() + b.mean())), float(0.5 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


BOOT_ITER = 30  # most EM iterations of a bootstrap refit (warm-started from a candidate fit)
BOOT_TOL = 1e-6  # its tolerance, nats per point


def _bound(mix: Mixture2D, xp: np.ndarray, lp_xp: np.ndarray, x: np.ndarray, lp_x: np.ndarray,
           w: np.ndarray | None = None) -> tuple[float, float]:
    """(J, its Monte-Carlo se) for the discriminator D = p/(p + q_hat): 1/2 E_p[log2 2D] over the exact
    draws ``xp`` from p plus 1/2 of the (``w``-weighted) mean of log2 2(1 - D) over the generated
    samples ``x`` themselves. Given q_hat this is the variational lower bound of §8(i), tight at
    q_hat = q with a gap of second order in the error of q_hat; the se is the p side's only (the
    generated side's error is the data's, left to the bootstrap)."""
    a = 1.0 + (lp_xp - np.logaddexp(lp_xp, mix.logpdf(xp))) / LN2
    lq_x = mix.logpdf(x)
    b = 1.0 + (lq_x - np.logaddexp(lp_x, lq_x)) / LN2
    b_mean = float(b.mean()) if w is None else float(w @ b) / float(w.sum())
    return 0.5 * (float(a.mean()) + b_mean), 0.5 * float(a.std(ddof=1)) / math.sqrt(len(a))


def knn_logpdf(fit: np.ndarray, x: np.ndarray, k: int, r_min: float, tree: cKDTree | None = None) -> np.ndarray:
    """k-nearest-neighbour log-density of the law of ``fit`` at ``x`` (2-D), with the digamma
    correction of Kozachenko & Leonenko (1987): log q(x) ~ psi(k) - log(n pi r_k(x)^2). Distances
    are floored at ``r_min`` so repeated points keep a finite density."""
    tree = tree if tree is not None else cKDTree(fit)
    r, _ = tree.query(x, k=[k])
    r = np.maximum(r[:, 0], r_min)
    return float(digamma(k)) - math.log(len(fit) * math.pi) - 2.0 * np.log(r)


def jsd_to_known(
    p: Any,
    samples: np.ndarray | torch.Tensor,
    rng: np.random.Generator,
    *,
    n_boot: int = 10,
    n_mc: int = 100_000,
    n_mc_boot: int = 10_000,
    k_max: int | None = None,
    reg_scale: float = 0.01,
    knn_k: int = 10,
) -> JSDEstimate:
    """Achieved JSD(p, q) in bits between the exactly known data law ``p`` (a ``ToyMixture``: needs
    ``log_prob``, ``sample``, ``means``, ``sigmas``, ``weights``) and a generator law q on R^2 seen
    only through ``samples``. All randomness comes from ``rng``.

    Reported estimate (method ``gmm-plugin-bootstrap``):

    1. q_hat = full-covariance Gaussian mixture fitted to all samples by EM, K chosen by BIC
       (:func:`gbench.metrics.gmm.select_mixture`: starts at p's own components and at k-means++
       seeds with K = 1, 2, 4, K_p, then grows while BIC improves, up to ``k_max`` = 3 K_p + 8).
       ``reg_covar`` = (``reg_scale`` * min sigma_p)^2 is tied to the data scale, so a degenerate
       generator (repeated points) cannot drive a covariance to 0.
    2. J_plug = 1/2 E_p[log2 2D] + 1/2 E_q[log2 2(1 - D)] with D = p/(p + q_hat) (:func:`_bound`):
       the p side over ``n_mc`` exact draws from p (Monte-Carlo se ``se_mc``), the q side over the
       generated samples themselves, not over draws from q_hat. Given q_hat this is the variational
       bound of §8(i): equal to JSD(p, q) at q_hat = q and, unlike the plug-in JSD(p, q_hat) whose
       error is of first order in q_hat - q, only second-order below it, so a mixture that cannot
       follow every detail of q (thin bridges, a diffuse part) costs little. Evaluating the q side on
       the samples q_hat was fitted to biases it upward (overfitting), which step 3 removes.
    3. Data and fit error, model selection included: ``n_boot`` bootstrap resamples of the samples
       (multinomial weights). In each, K is selected again: every candidate of step 1 that a
       resample could prefer (:func:`gbench.metrics.gmm.rivals`: BIC gap within 4 bootstrap sd) is
       refitted by weighted EM from its own fit (at most :data:`BOOT_ITER` iterations) and the
       lowest-BIC one is kept (``boot_components``: the K chosen per resample; ``rivals``: how many
       candidates were refitted). J is recomputed with the resample's weights on the q side and on
       the first ``n_mc_boot`` of the same Monte-Carlo draws on the p side (common random numbers,
       so the spread is the data's and the fit's, not the draws'; J_plug is recomputed on that
       subset for the bias): ``se_fit`` = their standard deviation, ``bias`` = mean(J*) - J_plug
       (Efron's bootstrap bias estimate; the in-sample estimate is biased upward, about
       (6K - 1)/(8 n ln 2) bits when q is a K-component mixture near p).
    4. bits = J_plug - bias; se = sqrt(se_fit^2 (1 + 1/n_boot) + se_mc^2); the 95 % interval is
       bits +- t_{0.975, n_boot - 1} se, clipped to [0, 1] (``bits`` itself is left raw).

    Cross-check (``check_*``, independent of the mixture fit): the k-nearest-neighbour density
    q_knn (:func:`knn_logpdf`, ``knn_k`` neighbours) of one half of the samples, plugged into the
    exact-p Monte-Carlo formula over exact draws from p and the other, unused half. Given q_knn its
    expectation is 1 - BCE(p/(p + q_knn))/ln 2, the variational bound of §8(i), so it is a LOWER
    bound on JSD(p, q) up to Monte-Carlo error (measured 0.02-0.11 bits low at 10^4 samples).
    ``agree``: the bound does not contradict the interval (its lower 95 % limit <= ``ci_high``) and
    lies at most :data:`AGREE_GAP` (plus the combined 95 % error) below ``bits``.

    Accuracy and cost are measured by benchmarks/jsd_accuracy.py on laws with exactly known JSD
    (README, "The toy JSD estimator"). Raises ValueError if ``samples`` contain NaN/inf, are not
    (N, 2) or are too few (< 50).
    """
    x = _as_points(samples, "samples", 2)
    n = len(x)
    if n < 50:
        raise ValueError(f"jsd_to_known needs at least 50 samples, got {n}")
    if n_boot < 2 or n_mc < 2 or knn_k < 1 or not reg_scale > 0:
        raise ValueError("need n_boot >= 2, n_mc >= 2, knn_k >= 1 and reg_scale > 0")
    sigma_min = float(np.min(p.sigmas))
    reg = (reg_scale * sigma_min) ** 2
    k_p = len(p.means)
    k_max = 3 * k_p + 8 if k_max is None else int(k_max)
    start = isotropic(p.means, np.asarray(p.sigmas) ** 2, p.weights)
    f = features(x)
    sel = select_mixture(x, start, reg, k_max, seed=int(rng.integers(0, 2**31 - 1)), f=f)
    mix = sel.mixture
    fits = rivals(sel, f)

    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    xp = p.sample(n_mc, generator=gen).numpy().astype(np.float64)
    lp_xp, lp_x = p.log_prob(xp), p.log_prob(x)
    plug, se_mc = _bound(mix, xp, lp_xp, x, lp_x)
    m = min(n_mc_boot, n_mc)
    plug_sub = _bound(mix, xp[:m], lp_xp[:m], x, lp_x)[0]
    boot, boot_k = np.empty(n_boot), []
    for i in range(n_boot):
        counts = rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)
        refit = reselect(x, f, fits, reg, counts, BOOT_ITER, BOOT_TOL)
        boot[i] = _bound(refit, xp[:m], lp_xp[:m], x, lp_x, counts)[0]
        boot_k.append(refit.k)
    bias = float(boot.mean() - plug_sub)
    bits = plug - bias
    se_fit = float(boot.std(ddof=1))
    se = math.sqrt(se_fit**2 * (1 + 1 / n_boot) + se_mc**2)
    half = float(student_t.ppf(0.975, n_boot - 1)) * se

    perm = rng.permutation(n)
    fit, ev = x[perm[: n // 2]], x[perm[n // 2 :]]
    tree, r_min = cKDTree(fit), reg_scale * sigma_min
    xk = xp[: len(ev)]
    check = _combine(lp_xp[: len(ev)], knn_logpdf(fit, xk, knn_k, r_min, tree),
                     p.log_prob(ev), knn_logpdf(fit, ev, knn_k, r_min, tree), "knn-exact-p")
    ci_high = float(min(max(bits + half, 0.0), 1.0))
    agree = check.ci_low <= ci_high and bits - check.bits <= AGREE_GAP + Z95 * math.hypot(se, check.se)
    return JSDEstimate(
        bits=float(bits), ci_low=float(min(max(bits - half, 0.0), 1.0)), ci_high=ci_high,
        se=se, n_p=n_mc, n_q=n, method="gmm-plugin-bootstrap", n=n, components=mix.k, plug_in_bits=plug,
        bias=bias, se_fit=se_fit, se_mc=se_mc, n_boot=n_boot, boot_components=tuple(boot_k), rivals=len(fits),
        check_method=check.method, check_bits=check.bits,
        check_se=check.se, agree=bool(agree),
    )
