"""Full-covariance 2-D Gaussian mixtures fitted by EM, with the number of components chosen by BIC.

Used by :func:`gbench.metrics.jsd.jsd_to_known` as the density model q_hat of generated toy samples.
EM (Dempster, Laird & Rubin, 1977) and BIC (Schwarz, 1978) are the textbook ones, as in
scikit-learn's ``GaussianMixture`` (same E/M steps, same ``reg_covar`` added to every covariance,
k-means++ seeding from ``sklearn.cluster.kmeans_plusplus``); the E/M steps are written out for d = 2
(closed-form 2x2 inverses, vectorised over all components) because that is about 6x faster than
``GaussianMixture``'s per-component loop, which the bootstrap refits of the JSD interval need.
tests/test_metrics_jsd.py checks the fit against scikit-learn's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import kmeans_plusplus

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Mixture2D:
    """sum_k w_k N(mean_k, cov_k) in 2-D; ``cov`` rows are (var_x, cov_xy, var_y)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, 2)
    cov: np.ndarray  # (K, 3)

    @property
    def k(self) -> int:
        return len(self.weights)

    def _log_components(self, x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """(n, K): log w_k + log N(x; mean_k, cov_k); the (n, K) arithmetic in ``dtype`` (float32 in
        EM's E-step, float64 for densities), the 2x2 inverses always in float64."""
        a, b, c = self.cov[:, 0], self.cov[:, 1], self.cov[:, 2]
        det = a * c - b * b
        with np.errstate(divide="ignore"):
            const = np.log(self.weights) - LOG_2PI - 0.5 * np.log(det)
        pa, pb, pc = (-0.5 * c / det).astype(dtype), (b / det).astype(dtype), (-0.5 * a / det).astype(dtype)
        u = (x[:, 0:1] - self.means[:, 0]).astype(dtype, copy=False)
        v = (x[:, 1:2] - self.means[:, 1]).astype(dtype, copy=False)
        out = pa * u * u
        out += pb * u * v
        out += pc * v * v
        out += const.astype(dtype)
        return out

    def logpdf(self, x: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """Natural-log density at the rows of ``x`` (n, 2)."""
        out = np.empty(len(x))
        for s in range(0, len(x), chunk):
            lc = self._log_components(x[s : s + chunk])
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


def _e_step(mix: Mixture2D, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(responsibilities (n, K), per-point log-likelihood (n,))."""
    lc = mix._log_components(x, np.float32)
    m = lc.max(1, keepdims=True)
    e = np.exp(lc - m)
    s = e.sum(1, keepdims=True)
    return e / s, (m + np.log(s))[:, 0].astype(np.float64)


def _m_step(x: np.ndarray, resp: np.ndarray, w: np.ndarray, reg: float, old: Mixture2D) -> Mixture2D:
    """Weighted M-step (sums in float64); a component with (numerically) no mass keeps its
    parameters and gets weight 0."""
    r = resp.astype(np.float64) * w[:, None]
    nk = r.sum(0)
    live = nk > 1e-10 * w.sum()
    safe = np.where(live, nk, 1.0)
    means = np.where(live[:, None], (r.T @ x) / safe[:, None], old.means)
    u = x[:, 0:1] - means[:, 0]
    v = x[:, 1:2] - means[:, 1]
    cov = np.stack([(r * u * u).sum(0), (r * u * v).sum(0), (r * v * v).sum(0)], 1) / safe[:, None]
    cov[:, 0] += reg
    cov[:, 2] += reg
    cov = np.where(live[:, None], cov, old.cov)
    return Mixture2D(np.where(live, nk, 0.0) / w.sum(), means, cov)


def fit_em(x: np.ndarray, init: Mixture2D, reg: float, w: np.ndarray | None = None,
           max_iter: int = 100, tol: float = 1e-4) -> tuple[Mixture2D, float]:
    """EM from ``init`` until the mean log-likelihood gains less than ``tol`` nats per point.

    ``w``: per-point weights (bootstrap counts); ``reg`` is added to both variances (scikit-learn's
    ``reg_covar``). Returns (mixture, mean weighted log-likelihood)."""
    w = np.ones(len(x)) if w is None else w
    total = w.sum()
    mix, prev = init, -math.inf
    for _ in range(max_iter):
        resp, ll = _e_step(mix, x)
        cur = float(w @ ll) / total
        if cur - prev < tol:
            break
        prev = cur
        mix = _m_step(x, resp, w, reg, mix)
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
    """The chosen mixture and the BIC path [(K, BIC)] of the candidates tried."""

    mixture: Mixture2D
    bic: float
    path: tuple[tuple[int, float], ...]


def select_mixture(x: np.ndarray, start: Mixture2D, reg: float, k_max: int, seed: int,
                   min_points: float = 5.0, patience: int = 1) -> Selection:
    """The BIC-best full-covariance mixture for the samples ``x``.

    Candidates: EM from ``start`` (the data law's components: the right answer when q is near p),
    from ``start`` plus a wide copy of each component (:func:`_two_scale`), and from k-means++ seeds with K = 1, 2, 4 and len(start); each is pruned of components with
    fewer than ``min_points`` samples and refitted. From the best, components are added (a quarter
    of K at a time, at least 2, seeded among the worst-explained 10 % of samples) while BIC improves
    (stopping after ``patience`` candidates without improvement), up to ``k_max`` components.
    """
    n = len(x)
    path: list[tuple[int, float]] = []

    def run(init: Mixture2D) -> tuple[Mixture2D, float]:
        mix, ll = fit_em(x, init, reg)
        pruned = prune(mix, n, min_points)
        if pruned.k != mix.k:
            mix, ll = fit_em(x, pruned, reg)
        score = bic(ll, mix.k, n)
        path.append((mix.k, score))
        return mix, score

    inits = [start, _two_scale(x, start)] + [_kmeanspp(x, k, seed + k) for k in sorted({1, 2, 4, start.k}) if k < n]
    best, best_bic = min((run(i) for i in inits), key=lambda t: t[1])
    misses, cur = 0, best
    while cur.k < k_max and misses < patience:
        _, ll = _e_step(cur, x)
        add = min(max(2, cur.k // 4), k_max - cur.k)
        cur, score = run(_grow(x, cur, ll, add, seed + 1000 + cur.k))
        if score < best_bic:
            best, best_bic, misses = cur, score, 0
        else:
            misses += 1
    return Selection(best, best_bic, tuple(path))
