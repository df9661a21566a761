"""Jensen-Shannon divergence, in bits, for the toy benchmarks (algorithms.md §6.2, §8).

JSD(p, q) = 1/2 E_p[log2(2p/(p+q))] + 1/2 E_q[log2(2q/(p+q))], in [0, 1] bits.

* :func:`j_perp`, :func:`j_perp_inverse`: the closed-form JSD of a mixture with a disjoint part (§6.2).
* :func:`jsd_mc`: Monte-Carlo JSD when both log-densities are known exactly (e.g. p vs p_delta,
  two ``ToyMixture`` objects). Unbiased; the CI is the usual normal interval.
* :func:`jsd_to_known`: achieved JSD between an exactly known data law p and a generator known only
  through samples (§8(a) method 1: exact p, Gaussian KDE for q, Monte-Carlo over fresh samples).
  Consistent, and biased slightly downward at finite n (a variational lower bound; see its docstring).
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

LN2 = math.log(2.0)
Z95 = 1.96


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
    """A JSD estimate in bits with a 95 % normal confidence interval (bits +- 1.96 se).

    ``n_p``/``n_q``: Monte-Carlo sample sizes on the p and q side; ``method``: how it was made;
    ``bandwidth``: the KDE bandwidth used for q (None when q's density was known exactly).
    ``bits`` is the raw estimate: it can fall slightly below 0 (or the CI beyond [0, 1]) through
    Monte-Carlo error or estimator bias; clip only for display.
    """

    bits: float
    ci_low: float
    ci_high: float
    se: float
    n_p: int
    n_q: int
    method: str
    bandwidth: float | None = None

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
             method: str, bandwidth: float | None) -> JSDEstimate:
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
                       n_p, n_q, method, bandwidth)


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
    return _combine(lp_x, lq_x, lp_y, lq_y, "mc-exact", None)


# -- Gaussian KDE with a cutoff ----------------------------------------------------------------


class _CellKDE:
    """Isotropic Gaussian KDE q_hat = 1/n sum_j N(x; y_j, h^2 I) on the fit points, evaluated with a cell list.

    Fit points are bucketed into square cells of side ``cutoff * h``; a query point sums the kernels
    of the fit points in its own and the 8 surrounding cells, which contain every fit point within
    ``cutoff * h`` of it. In d = 2 a kernel puts a fraction exp(-cutoff^2/2) of its mass beyond that
    radius (3.4e-4 at cutoff 4), so the truncation lowers log q_hat by at most ~3e-4 nats. A query
    point with no fit point in its 3x3 block gets the exact term of its nearest fit point (the
    dominant one, found with ``tree``), so log q_hat is always finite. Blocks are computed densely
    in row chunks of at most ``max_block`` pairs.
    """

    def __init__(self, fit: np.ndarray, h: float, cutoff: float, tree: cKDTree, max_block: int = 131_072):
        self.h, self.side, self.tree, self.max_block = h, cutoff * h, tree, max_block
        n_fit, d = fit.shape
        self.log_norm = math.log(n_fit) + 0.5 * d * math.log(2 * math.pi * h * h)
        cells, inv = np.unique(self._keys(fit), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        self.points = fit[np.argsort(inv, kind="stable")]
        ends = np.cumsum(np.bincount(inv, minlength=len(cells)))
        starts = ends - np.bincount(inv, minlength=len(cells))
        self.cells = {(a, b): (s, e) for (a, b), s, e in zip(cells.tolist(), starts.tolist(), ends.tolist())}

    def _keys(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # absurdly far points share a clipped edge cell: still exact
            return np.clip(np.floor(x / self.side), -(2.0**62), 2.0**62).astype(np.int64)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        cells, inv = np.unique(self._keys(x), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        order = np.argsort(inv, kind="stable")
        ends = np.cumsum(np.bincount(inv, minlength=len(cells)))
        sums = np.zeros(len(x))
        empty = np.zeros(len(x), dtype=bool)
        scale = -0.5 / (self.h * self.h)
        start = 0
        for (a, b), end in zip(cells.tolist(), ends.tolist()):
            idx = order[start:end]
            start = end
            blocks = [self.cells.get((a + i, b + j)) for i in (-1, 0, 1) for j in (-1, 0, 1)]
            blocks = [self.points[s:e] for s, e in (blk for blk in blocks if blk is not None)]
            if not blocks:
                empty[idx] = True
                continue
            fb = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            fx, fy = np.ascontiguousarray(fb[:, 0]), np.ascontiguousarray(fb[:, 1])
            rows = max(1, self.max_block // len(fb))
            for r in range(0, len(idx), rows):
                ir = idx[r : r + rows]
                d2 = np.subtract(x[ir, 0:1], fx)
                np.square(d2, out=d2)
                dy = np.subtract(x[ir, 1:2], fy)
                np.square(dy, out=dy)
                d2 += dy
                d2 *= scale
                sums[ir] = np.exp(d2, out=d2).sum(1)
        empty |= sums <= 0.0  # every term underflowed (only possible in a clipped edge cell)
        out = np.empty(len(x))
        out[~empty] = np.log(sums[~empty])
        if empty.any():
            dist, _ = self.tree.query(x[empty], k=1)
            out[empty] = scale * dist**2
        return out - self.log_norm


def _kde_logpdf(tree: cKDTree, x: np.ndarray, h: float, cutoff: float) -> np.ndarray:
    """log q_hat(x) for the Gaussian KDE with bandwidth ``h`` on ``tree.data`` (see :class:`_CellKDE`)."""
    return _CellKDE(tree.data, h, cutoff, tree).logpdf(x)


def select_bandwidth(
    fit: np.ndarray, held_out: np.ndarray, h_min: float, h_max: float, per_octave: int = 4,
    cutoff: float = 4.0, patience: int = 2, h_start: float | None = None, tree: cKDTree | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """Bandwidth maximising the mean held-out log-likelihood of a Gaussian KDE fitted on ``fit``.

    Grid: h_min * 2^(k/per_octave), k = 0, 1, ... up to h_max (log-spaced, ``per_octave`` points per
    factor 2). The walk starts at the grid point nearest ``h_start`` (default h_min), goes up while
    the likelihood improves and, if going up never improved on the start, goes down; each direction
    stops after ``patience`` consecutive grid points without improvement. This assumes the held-out
    log-likelihood is unimodal in log h (it is a smooth function of h for fixed samples, and
    unimodal in practice); it keeps the cost low, which grows with the pairs within cutoff * h.
    Returns (h, [(h, mean held-out log-lik) for the evaluated grid points, in increasing h]).
    """
    tree = tree if tree is not None else cKDTree(fit)
    h_max = max(h_max, h_min)
    count = int(math.floor(per_octave * math.log2(h_max / h_min) + 1e-9)) + 1
    grid = h_min * 2.0 ** (np.arange(count) / per_octave)
    k0 = 0 if h_start is None else int(np.clip(round(per_octave * math.log2(h_start / h_min)), 0, count - 1))
    lls: dict[int, float] = {}

    def ll(k: int) -> float:
        if k not in lls:
            lls[k] = float(_kde_logpdf(tree, held_out, float(grid[k]), cutoff).mean())
        return lls[k]

    best = k0
    ll(k0)
    for step in (1, -1):
        if step == -1 and best != k0:
            break
        k, misses = k0 + step, 0
        while 0 <= k < count and misses < patience:
            if ll(k) > ll(best):
                best, misses = k, 0
            else:
                misses += 1
            k += step
    return float(grid[best]), [(float(grid[k]), lls[k]) for k in sorted(lls)]


def jsd_to_known(
    p: Any,
    samples: np.ndarray | torch.Tensor,
    rng: np.random.Generator,
    *,
    split: tuple[float, float, float] = (0.5, 0.2, 0.3),
    bandwidth: float | None = None,
    h_min_factor: float = 0.1,
    per_octave: int = 4,
    cutoff: float = 4.0,
    n_p: int | None = None,
) -> JSDEstimate:
    """Achieved JSD(p, q) in bits between the exactly known data law ``p`` (a ``ToyMixture``: needs
    ``log_prob``, ``sample``, ``sigmas``) and the generator law q, seen only through ``samples``.

    Method (algorithms.md §8(a), method 1), all randomness from ``rng``:

    1. Shuffle ``samples`` and split them by ``split`` = (fit, select, evaluate) fractions
       (default 50 / 20 / 30 %).
    2. q_hat = isotropic Gaussian KDE with bandwidth h on the fit part (sums truncated at
       ``cutoff`` * h, see :class:`_CellKDE`; effect <= 3e-4 nats).
    3. h maximises the mean log-likelihood of the selection part over a log-spaced grid with
       ``per_octave`` points per factor 2 (:func:`select_bandwidth`). The grid starts at
       h_min = ``h_min_factor`` * min(p.sigmas) = sigma_min / 10: it is tied to the data scale so it
       is scale-free, it reaches well below the h <= sigma/3 that §8 recommends (the likelihood
       choice is ~sigma/3 at 10^4 samples on ring8 and is never cut off for q near p), and it stops a
       degenerate generator (repeated points) from driving h to 0. The grid ends at
       max(sigma_max, RMS spread of the samples around their mean). A fixed ``bandwidth`` skips
       the selection (the selection part then joins the fit part).
    4. J = 1/2 mean_i log2(2p/(p+q_hat))(x_i) + 1/2 mean_j log2(2q_hat/(p+q_hat))(y_j) with
       x_i ~ p drawn exactly (``n_p`` of them, default as many as evaluation samples; drawn by
       ``p.sample`` with a ``torch.Generator`` seeded from ``rng``) and y_j the fresh evaluation
       samples, never used for fitting or selection.

    The CI J +- 1.96 SE (SE from the per-sample terms, as in :func:`jsd_mc`) covers the
    Monte-Carlo error only, not the KDE fitting error.

    Bias. Given q_hat, E[J] = 1 - BCE(D)/ln 2 with D = p/(p + q_hat): this is the variational bound
    (i) of §8 with that D, so E[J | q_hat] <= JSD(p, q), with equality iff q_hat = q. Because the
    y_j are fresh samples of q (not of q_hat), the estimator is biased **downward** at small n, not
    upward as the plug-in JSD(p, q_hat) of §8 would be (over-smoothing raises JSD(p, q_hat) but
    lowers this J). The raw value can therefore be slightly negative when q = p; it is returned
    unclipped (clip at 0 for display only). Measured on ring8 with q = p, default settings, mean
    over 40 / 20 / 8 repeats: -0.029 bits at n = 1,000, -0.015 at n = 4,000, -0.007 at n = 16,000
    (|bias| roughly halves per 4x samples; tests/test_metrics_jsd.py checks the sign, the decrease
    and |bias| < 0.01 bits at 16,000). For q != p the same lower-bound effect applies: on ring8
    with 10^4 samples the error was within +-0.02 bits in 10 seeds (half the modes: 0.311 bits;
    sigma doubled: 0.250 bits). Hence "JSD >= ci_low" is the safer reading;
    ci_high is not a guaranteed upper bound.

    Cost: the pairs within cutoff * h (cell list, numpy) plus n log n; 10^4 ring8 samples take
    about 0.15 s, 2.5 x 10^4 under 1 s on one core.

    Raises ValueError if ``samples`` contain NaN/inf or are too few (< 20).
    """
    x = _as_points(samples, "samples", 2)
    n = len(x)
    if n < 20:
        raise ValueError(f"jsd_to_known needs at least 20 samples, got {n}")
    fr = np.asarray(split, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or fr[0] <= 0 or fr[2] <= 0:
        raise ValueError(f"split must be three non-negative fractions (fit, select, evaluate), got {split}")
    fr = fr / fr.sum()
    x = x[rng.permutation(n)]
    n_fit = int(round(fr[0] * n))
    n_sel = int(round(fr[1] * n))
    if bandwidth is not None:
        n_fit, n_sel = n_fit + n_sel, 0
    elif n_sel < 2:
        raise ValueError("bandwidth selection needs a non-empty selection part")
    fit, sel, ev = x[:n_fit], x[n_fit : n_fit + n_sel], x[n_fit + n_sel :]
    if len(ev) < 2 or len(fit) < 2:
        raise ValueError(f"split {split} leaves too few samples to fit or evaluate (n = {n})")
    tree = cKDTree(fit)

    sigmas = np.asarray(p.sigmas, dtype=np.float64)
    if bandwidth is None:
        h_min = h_min_factor * float(sigmas.min())
        with np.errstate(over="ignore", invalid="ignore"):
            spread = float(np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean() / 2))
        if not math.isfinite(spread):
            spread = float(np.abs(x).max())
        h_max = max(float(sigmas.max()), spread)
        # start the walk at the normal-reference bandwidth one component of p would get from its
        # share of the fit points (the optimum when q = p); the walk then follows the likelihood
        h_start = float(sigmas.min()) * (len(fit) / len(sigmas)) ** (-1 / 6)
        h, _ = select_bandwidth(fit, sel, h_min, h_max, per_octave, cutoff, h_start=h_start, tree=tree)
    else:
        h = float(bandwidth)
        if not (h > 0 and math.isfinite(h)):
            raise ValueError(f"bandwidth must be positive and finite, got {bandwidth}")

    n_p = len(ev) if n_p is None else int(n_p)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    xp = p.sample(n_p, generator=gen).numpy().astype(np.float64)
    kde = _CellKDE(fit, h, cutoff, tree)
    lp_x, lq_x = p.log_prob(xp), kde.logpdf(xp)
    lp_y, lq_y = p.log_prob(ev), kde.logpdf(ev)
    return _combine(lp_x, lq_x, lp_y, lq_y, "kde-exact-p", h)
