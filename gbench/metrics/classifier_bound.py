"""The cross-fitted classifier LOWER bound on JSD between two feature sets (algorithms.md §8(b)).

For any classifier D, JSD_bits(p, q) >= 1 - BCE(D)/ln 2 (balanced classes, BCE in nats), with equality
at the optimal D = p/(p+q). :func:`classifier_jsd_bits` trains an L2-regularised logistic regression
on standardised features, temperature-calibrates it on a validation part of its training data and
evaluates the bound on held-out samples, K times (cross-fitting). It is a lower bound in expectation
and raw (it can be slightly negative for a useless classifier). No scikit-learn: the logistic
regression is torch's L-BFGS in float64. Pure numerics: the image metrics that use it
(:mod:`gbench.metrics.fidelity`, :mod:`gbench.metrics.classifier_jsd`) import it from here.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.special import expit

Z95 = 1.96
EPS = 1e-6
L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)  # strongest first: each fit warm-starts the next
VAL_FRACTION = 0.2


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, lam: float, theta0: torch.Tensor | None) -> torch.Tensor:
    """argmin over (w, b) of mean log-loss + lam/2 ||w||^2 (float64, y in {0, 1}); returns [w, b].

    Strictly convex for lam > 0; torch's L-BFGS (strong Wolfe line search) with the analytic gradient,
    so it needs no autograd (works under ``torch.no_grad``/``inference_mode`` too). Kept in torch: the
    same thread pool as the feature extractor (scipy's L-BFGS-B was several times slower here)."""
    n, d = x.shape
    theta = torch.zeros(d + 1, dtype=torch.float64) if theta0 is None else theta0.clone()
    s = 2.0 * y - 1.0
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=1000, tolerance_grad=1e-7, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        w = theta[:d]
        margin = -s * (x @ w + theta[d])
        loss = F.softplus(margin).mean() + 0.5 * lam * (w @ w)
        gz = -s * torch.sigmoid(margin) / n
        grad = torch.empty_like(theta)
        grad[:d] = x.T @ gz + lam * w
        grad[d] = gz.sum()
        theta.grad = grad
        return loss

    opt.step(closure)
    return theta.detach().clone()


def _bce(z: torch.Tensor, y: torch.Tensor) -> float:
    """Mean log-loss (nats) of logits z for labels y in {0, 1}."""
    # softplus, not binary_cross_entropy_with_logits: on torch 2.14 CPU with 2 threads the latter
    # (logsigmoid inside) took ~10 ms on a few hundred values here, softplus ~10 us
    return float((y * F.softplus(-z) + (1.0 - y) * F.softplus(z)).mean())


def _temperature(z: torch.Tensor, y: torch.Tensor) -> float:
    """The scale a = 1/T minimising the log-loss of a * z (temperature scaling)."""
    res = minimize_scalar(lambda t: _bce(math.exp(t) * z, y), bounds=(-12.0, 12.0), method="bounded",
                          options={"xatol": 1e-4})
    return math.exp(res.x)


def _fit_calibrated(x_fit: torch.Tensor, y_fit: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Standardise on the fit part, choose the L2 strength and the temperature on the validation part."""
    mu = x_fit.mean(0)
    sd = x_fit.std(0, unbiased=False)
    sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
    xf, xv = (x_fit - mu) / sd, (x_val - mu) / sd
    best: tuple[float, torch.Tensor, float] | None = None
    theta = None
    for lam in L2_GRID:
        theta = _fit_logreg(xf, y_fit, lam, theta)
        zv = xv @ theta[:-1] + theta[-1]
        a = _temperature(zv, y_val)
        loss = _bce(a * zv, y_val)
        if best is None or loss < best[0] - 1e-12:
            best = (loss, theta, a)
    assert best is not None
    return mu, sd, best[1], best[2]


def classifier_jsd_bits(feat_real: np.ndarray, feat_fake: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Cross-fitted classifier estimate of JSD(real, fake) in bits: a LOWER bound (see the module doc).

    * Balanced classes: the larger side is subsampled (seeded) to the smaller side's size m.
    * Each class is split into ``folds`` equal folds (seeded); for fold k the classifier is trained on
      the other folds: an L2-regularised logistic regression on features standardised with the fitting
      part's mean/std, the L2 strength (grid ``L2_GRID``) and a temperature chosen by log-loss on a
      validation part (20 % of the training folds, per class).
    * On the held-out fold, D is clipped to [1e-6, 1 - 1e-6] and the per-sample terms are
      h = 1 + log2 D(x) (real) and 1 + log2(1 - D(y)) (fake); the fold estimate is
      1/2 (mean_real h + mean_fake h) with SE 1/2 sqrt(s_real^2/m_k + s_fake^2/m_k).
    * The estimate is the mean over folds; its SE combines the within-fold SEs and the between-fold
      spread, SE^2 = mean(SE_k^2)/K + var_k(estimate_k)/K (conservative), and the CI is +-1.96 SE.

    Returns ``jsd_bits`` (raw, may be < 0), ``jsd_ci_low``, ``jsd_ci_high``, ``se``, ``folds``,
    ``n_real`` and ``n_fake`` (the sizes given), ``n_per_class`` (used per class after balancing) and
    ``fold_estimates``.
    """
    real = np.asarray(feat_real, dtype=np.float64)
    fake = np.asarray(feat_fake, dtype=np.float64)
    if real.ndim == 1:
        real = real[:, None]
    if fake.ndim == 1:
        fake = fake[:, None]
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, d) arrays with the same d, got {real.shape} and {fake.shape}")
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        raise ValueError("features contain non-finite values")
    folds = int(folds)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    n_real, n_fake = len(real), len(fake)
    m = min(n_real, n_fake)
    if m < 5 * folds:
        raise ValueError(f"need at least {5 * folds} samples per class for {folds} folds, got {n_real} real and "
                         f"{n_fake} fake")
    rng = np.random.default_rng(seed)
    real = real[rng.permutation(n_real)[:m]]  # seeded balancing and fold assignment in one permutation
    fake = fake[rng.permutation(n_fake)[:m]]
    fold_of = np.array_split(np.arange(m), folds)

    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    ests, ses = [], []
    for k in range(folds):
        test = fold_of[k]
        train = np.concatenate([fold_of[j] for j in range(folds) if j != k])
        train = train[rng.permutation(len(train))]
        n_val = max(2, int(round(VAL_FRACTION * len(train))))
        val, fit = torch.from_numpy(train[:n_val]), torch.from_numpy(train[n_val:])
        x_fit = torch.cat([real_t[fit], fake_t[fit]])
        y_fit = torch.cat([torch.ones(len(fit), dtype=torch.float64), torch.zeros(len(fit), dtype=torch.float64)])
        x_val = torch.cat([real_t[val], fake_t[val]])
        y_val = torch.cat([torch.ones(len(val), dtype=torch.float64), torch.zeros(len(val), dtype=torch.float64)])
        mu, sd, theta, a = _fit_calibrated(x_fit, y_fit, x_val, y_val)
        te = torch.from_numpy(test)
        z_real = (a * (((real_t[te] - mu) / sd) @ theta[:-1] + theta[-1])).numpy()
        z_fake = (a * (((fake_t[te] - mu) / sd) @ theta[:-1] + theta[-1])).numpy()
        d_real = np.clip(expit(z_real), EPS, 1 - EPS)
        d_fake = np.clip(expit(z_fake), EPS, 1 - EPS)
        h_real = 1.0 + np.log2(d_real)
        h_fake = 1.0 + np.log2(1.0 - d_fake)
        ests.append(0.5 * (h_real.mean() + h_fake.mean()))
        ses.append(0.5 * math.sqrt(h_real.var(ddof=1) / len(h_real) + h_fake.var(ddof=1) / len(h_fake)))
    est = float(np.mean(ests))
    se = math.sqrt(float(np.mean(np.square(ses))) / folds + float(np.var(ests, ddof=1)) / folds)
    return {
        "jsd_bits": est,
        "jsd_ci_low": est - Z95 * se,
        "jsd_ci_high": est + Z95 * se,
        "se": se,
        "folds": folds,
        "n_real": n_real,
        "n_fake": n_fake,
        "n_per_class": m,
        "fold_estimates": [float(e) for e in ests],
    }
