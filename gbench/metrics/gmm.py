"""Full-covariance 2-D Gaussian mixtures fitted by EM, with the number of components chosen by BIC.

Used by :func:`gbench.metrics.jsd.jsd_to_known` as the density model q_hat of generated toy samples.
EM (Dempster, Laird & Rubin, 1977) and BIC (Schwarz, 1978) are the textbook ones, as in
scikit-learn's ``GaussianMixture`` (same E/M steps, same ``reg_covar`` added to every covariance,
k-means++ seeding from ``sklearn.cluster.kmeans_plusplus``); the E/M steps are written out for d = 2
because the bootstrap refits of the JSD interval need them fast: every log-density and every
moment of the M-step is linear in the features (1, x, y, x^2, xy, y^2), so an E-step is one
(n, 6) x (6, K) matrix product plus float32 exponentials and an M-step one (K, n) x (n, 6) product,
closed-form 2x2 inverses for all components at once. tests/test_metrics_jsd.py checks the fit
against scikit-learn's. The candidate fits of a selection are kept (:class:`Selection`) so that a
bootstrap can repeat the choice of K on resampled weights (:func:`rivals`, :func:`reselect`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import kmeans_plusplus

LOG_2PI = math.log(2 * math.pi)


def features(x: np.ndarray) -> np.ndarray:
    """(n, 6) float64 rows (1, x, y, x^2, xy, y^2): every Gaussian log-density in 2-D is linear in
    them, so the (n, K) log-densities of a mixture are one matrix product (:meth:`Mixture2D.log_components`)."""
    x = np.asarray(x, dtype=np.float64)
    u, v = x[:, 0], x[:, 1]
    return np.stack([np.ones(len(x)), u, v, u * u, u * v, v * v], 1)


@dataclass(frozen=True)
class Mixture2D:
    """sum_k w_k N(mean_k, cov_k) in 2-D; ``cov`` rows are (var_x, cov_xy, var_y)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, 2)
    cov: np.ndarray  # (K, 3)

    @property
    def k(self) -> int:
        return len(self.weights)

    def coefficients(self) -> np.ndarray:
        """(6, K): log w_k + log N(x; mean_k, cov_k) = :func:`features` (x) @ this. Float64; the
        expanded quadratic loses about 1e-16 * |x|^2 / var relative precision, < 1e-8 nats on the toys."""
        a, b, c = self.cov[:, 0], self.cov[:, 1], self.cov[:, 2]
        det = a * c - b * b
        p11, p12, p22 = c / det, -b / det, a / det  # the precision matrix
        mx, my = self.means[:, 0], self.means[:, 1]
        with np.errstate(divide="ignore"):
            const = np.log(self.weights) - LOG_2PI - 0.5 * np.log(det)
        quad0 = p11 * mx * mx + 2 * p12 * mx * my + p22 * my * my
        return np.stack([const - 0.5 * quad0, p11 * mx + p12 * my, p22 * my + p12 * mx,
                         -0.5 * p11, -p12, -0.5 * p22])

    def log_components(self, f: np.ndarray) -> np.ndarray:
        """(n, K): log w_k + log N(x_i; mean_k, cov_k) from the :func:`features` ``f`` of the x_i."""
        return f @ self.coefficients()

    def logpdf(self, x: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """Natural-log density at the rows of ``x`` (n, 2)."""
        out = np.empty(len(x))
        coef = self.coefficients()
        for s in range(0, len(x), chunk):
            lc = features(x[s : s + chunk]) @ coef
            m = lc.max(1, keepdims=True)
            out[s : s + chunk] = (m + np.log(np.exp(lc - m).sum(1, keepdims=True)))[:, 0]
        return out

    def sample(self, u: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Draws from common random numbers: component by inverse CDF of the weights at ``u`` (n,),
        then mean + L z with L the Cholesky factor of its covariance and ``z`` (n, 2) standard normal."""
        cdf = np.cumsum(self.weights)
        comp = np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), self.k - 1)
        a, b, c = self.cov[comp, 0], self.cov[comp, 1], self.cov[comp, 2]
        l11 = np.sqrt(a)
        l21 = b / l11
        l22 = np.sqrt(np.maximum(c - l21 * l21, 0.0))
        m = self.means[comp]
        return np.stack([m[:, 0] + l11 * z[:, 0], m[:, 1] + l21 * z[:, 0] + l22 * z[:, 1]], 1)


def _e_step(mix: Mixture2D, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unnormalised responsibilities e (n, K) float32, their row sums s (n,), per-point
    log-likelihood (n,)): the responsibilities are e / s. The (n, K) exponentials are float32
    (relative error ~1e-7, far below the sampling noise); log-densities and sums stay float64."""
    lc = mix.log_components(f)
    m = lc.max(1, keepdims=True)
    lc -= m
    e = np.exp(lc.astype(np.float32))
    s = e.sum(1, dtype=np.float64)
    return e, s, m[:, 0] + np.log(s)


def _m_step(f: np.ndarray, e: np.ndarray, s: np.ndarray, w: np.ndarray, reg: float, old: Mixture2D) -> Mixture2D:
    """Weighted M-step: the weighted moments sum_i w_i r_ik (1, x, y, x^2, xy, y^2)_i of every
    component in one float64 product; a component with (numerically) no mass keeps its parameters
    and gets weight 0."""
    mom = e.T.astype(np.float64) @ (f * (w / s)[:, None])  # (K, 6)
    nk = mom[:, 0]
    live = nk > 1e-10 * w.sum()
    safe = np.where(live, nk, 1.0)
    mean = mom[:, 1:3] / safe[:, None]
    mx, my = mean[:, 0], mean[:, 1]
    cov = mom[:, 3:6] / safe[:, None] - np.stack([mx * mx, mx * my, my * my], 1)
    cov[:, 0] += reg
    cov[:, 2] += reg
    return Mixture2D(np.where(live, nk, 0.0) / w.sum(), np.where(live[:, None], mean, old.means),
                     np.where(live[:, None], cov, old.cov))


def fit_em(x: np.ndarray, init: Mixture2D, reg: float, w: np.ndarray | None = None,
           max_iter: int = 100, tol: float = 1e-4, f: np.ndarray | None = None) -> tuple[Mixture2D, float]:
    """EM from ``init`` until the mean log-likelihood gains less than ``tol`` nats per point.

    ``w``: per-point weights (bootstrap counts); ``reg`` is added to both variances (scikit-learn's
    ``reg_covar``); ``f``: ``features(x)`` if already computed. Returns (mixture, mean weighted
    log-likelihood of the returned mixture)."""
    f = features(x) if f is None else f
    w = np.ones(len(f)) if w is None else w
    total = w.sum()
    mix, prev = init, -math.inf
    for _ in range(max_iter):
        e, s, ll = _e_step(mix, f)
        cur = float(w @ ll) / total
        if cur - prev < tol:
            break
        prev = cur
        mix = _m_step(f, e, s, w, reg, mix)
    else:
        cur = float(w @ _e_step(mix, f)[2]) / total
    return mix, cur


def n_params(k: int) -> int:
    """Free parameters of a K-component full-covariance 2-D mixture: 6K - 1."""
    return 6 * k - 1


def bic(ll_mean: float, k: int, n: int) -> float:
    """Schwarz's BIC = -2 log L + p log n (lower is better)."""
    return -2.0 * ll_mean * n + n_params(k) * math.log(n)


def prune(mix: Mixture2D, n: int, min_points: float) -> Mixture2D:
    """Drop components carrying fewer than ``min_points`` samples (dead or degenerate)."""
    keep = mix.weights * n >= min_points
    if keep.all() or not keep.any():
        return mix
    w = mix.weights[keep]
    return Mixture2D(w / w.sum(), mix.means[keep], mix.cov[keep])


def isotropic(means: np.ndarray, var: np.ndarray | float, weights: np.ndarray | None = None) -> Mixture2D:
    """Mixture with components N(mean_k, var_k I)."""
    k = len(means)
    var = np.broadcast_to(np.asarray(var, dtype=np.float64), (k,))
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    return Mixture2D(w, np.asarray(means, dtype=np.float64), np.stack([var, np.zeros(k), var], 1))


def _kmeanspp(x: np.ndarray, k: int, seed: int) -> Mixture2D:
    centres, _ = kmeans_plusplus(x, k, random_state=seed)
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1) if len(x) * k <= 4_000_000 else None
    if d2 is None:
        var = float(x.var(0).mean()) / k
        return isotropic(centres, var)
    near = d2.argmin(1)
    counts = np.bincount(near, minlength=k).astype(np.float64)
    var = np.bincount(near, weights=d2[np.arange(len(x)), near], minlength=k) / np.maximum(2 * counts, 1)
    return isotropic(centres, np.maximum(var, var[var > 0].min() if (var > 0).any() else 1e-12),
                     np.maximum(counts, 1.0))


def _grow(x: np.ndarray, mix: Mixture2D, ll: np.ndarray, add: int, seed: int) -> Mixture2D:
    """``mix`` plus ``add`` components seeded (k-means++) among the 10 % worst-explained samples."""
    worst = x[np.argsort(ll)[: max(add * 5, len(x) // 10)]]
    new = _kmeanspp(worst, min(add, len(worst)), seed)
    share = len(worst) / len(x)
    w = np.concatenate([mix.weights * (1 - share), new.weights * share])
    return Mixture2D(w, np.concatenate([mix.means, new.means]), np.concatenate([mix.cov, new.cov]))


def _two_scale(x: np.ndarray, start: Mixture2D) -> Mixture2D:
    """``start``'s components plus a wide copy of each (same mean, variance + s^2, s^2 the mean
    squared distance of the samples to their nearest mean, per axis): a start for a generator with
    a diffuse part around the modes."""
    d2 = np.min(((x[:, None, :] - start.means[None]) ** 2).sum(-1), 1)
    s2 = max(float(d2.mean()) / 2, 1e-12)
    wide = Mixture2D(start.weights, start.means, start.cov + np.array([s2, 0.0, s2]))
    return Mixture2D(np.concatenate([start.weights, wide.weights]) / 2, np.concatenate([start.means, wide.means]),
                     np.concatenate([start.cov, wide.cov]))


@dataclass(frozen=True)
class Selection:
    """The chosen mixture, the BIC path [(K, BIC)] of the candidates tried and their fits (same order)."""

    mixture: Mixture2D
    bic: float
    path: tuple[tuple[int, float], ...]
    fits: tuple[Mixture2D, ...]


def select_mixture(x: np.ndarray, start: Mixture2D, reg: float, k_max: int, seed: int,
                   min_points: float = 5.0, patience: int = 1, f: np.ndarray | None = None) -> Selection:
    """The BIC-best full-covariance mixture for the samples ``x``.

    Candidates: EM from ``start`` (the data law's components: the right answer when q is near p),
    from ``start`` plus a wide copy of each component (:func:`_two_scale`), and from k-means++ seeds
    with K = 1, 2, 4 and len(start); each is pruned of components with fewer than ``min_points``
    samples and refitted. From the best, components are added (a quarter of K at a time, at least 2,
    seeded among the worst-explained 10 % of samples) while BIC improves (stopping after
    ``patience`` candidates without improvement), up to ``k_max`` components. ``f``: ``features(x)``.
    """
    n = len(x)
    f = features(x) if f is None else f
    path: list[tuple[int, float]] = []
    fits: list[Mixture2D] = []

    def run(init: Mixture2D) -> tuple[Mixture2D, float]:
        mix, ll = fit_em(x, init, reg, f=f)
        pruned = prune(mix, n, min_points)
        if pruned.k != mix.k:
            mix, ll = fit_em(x, pruned, reg, f=f)
        score = bic(ll, mix.k, n)
        path.append((mix.k, score))
        fits.append(mix)
        return mix, score

    inits = [start, _two_scale(x, start)] + [_kmeanspp(x, k, seed + k) for k in sorted({1, 2, 4, start.k}) if k < n]
    best, best_bic = min((run(i) for i in inits), key=lambda t: t[1])
    misses, cur = 0, best
    while cur.k < k_max and misses < patience:
        ll = _e_step(cur, f)[2]
        add = min(max(2, cur.k // 4), k_max - cur.k)
        cur, score = run(_grow(x, cur, ll, add, seed + 1000 + cur.k))
        if score < best_bic:
            best, best_bic, misses = cur, score, 0
        else:
            misses += 1
    return Selection(best, best_bic, tuple(path), tuple(fits))


def rivals(sel: Selection, f: np.ndarray, z: float = 4.0) -> tuple[Mixture2D, ...]:
    """The candidate fits of ``sel`` that a bootstrap resample could select: the chosen one first,
    then every distinct candidate whose BIC gap to it is at most ``z`` bootstrap standard
    deviations of that gap, 2 sqrt(n) sd_i(l_i^c - l_i^best) with l_i the per-point
    log-likelihoods (the penalty does not vary over resamples). A gap beyond 4 sd has a chance
    below 1e-4 of flipping in a resample, so those candidates are not refitted."""
    n = len(f)
    ll_best = _e_step(sel.mixture, f)[2]
    out, seen = [sel.mixture], {(sel.mixture.k, round(sel.bic))}
    for (k, score), mix in sorted(zip(sel.path, sel.fits), key=lambda t: t[0][1]):
        if (k, round(score)) in seen:
            continue
        seen.add((k, round(score)))
        sd = 2.0 * math.sqrt(n) * float(np.std(_e_step(mix, f)[2] - ll_best))
        if score - sel.bic <= z * sd:
            out.append(mix)
    return tuple(out)


def reselect(x: np.ndarray, f: np.ndarray, fits: tuple[Mixture2D, ...], reg: float, w: np.ndarray,
             max_iter: int, tol: float) -> Mixture2D:
    """BIC selection repeated on weighted samples (bootstrap counts ``w``): each of ``fits`` refitted
    by weighted EM from itself, the lowest BIC (with n = sum w) returned."""
    n = int(round(w.sum()))
    best, best_bic = fits[0], math.inf
    for init in fits:
        mix, ll = fit_em(x, init, reg, w=w, max_iter=max_iter, tol=tol, f=f)
        score = bic(ll, mix.k, n)
        if score < best_bic:
            best, best_bic = mix, score
    return best
