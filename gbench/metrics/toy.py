"""Built-in metrics for the 2-D toy mixtures (algorithms.md §7, §8(a)): mode coverage and achieved JSD."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from gbench.hookspecs import hookimpl
from gbench.metrics import Metric, MetricConfig
from gbench.metrics.jsd import jsd_to_known

HQ_RADIUS_SIGMA = 3.0


def _points(samples: Any) -> np.ndarray:
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape (N, 2), got {x.shape}")
    if len(x) == 0:
        raise ValueError("no samples")
    if not np.isfinite(x).all():
        raise ValueError("samples contain non-finite values")
    return x


def nearest_component(
    x: np.ndarray, means: np.ndarray, sigmas: np.ndarray, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest component, its standardised distance ||x - mean_k|| / sigma_k) per row."""
    idx = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x))
    inv_var = 1.0 / np.asarray(sigmas, dtype=np.float64) ** 2
    for start in range(0, len(x), chunk):
        xc = x[start : start + chunk]
        with np.errstate(over="ignore", invalid="ignore"):
            z2 = np.subtract(xc[:, 0:1], means[:, 0])
            np.square(z2, out=z2)
            dy = np.subtract(xc[:, 1:2], means[:, 1])
            z2 += np.square(dy, out=dy)
            z2 *= inv_var
        k = z2.argmin(1)
        idx[start : start + chunk] = k
        dist[start : start + chunk] = np.sqrt(z2[np.arange(len(xc)), k])
    return idx, dist


class ModeMetrics(Metric):
    """Mode coverage on a toy mixture (VEEGAN / PacGAN style), with these exact definitions:

    * assignment: every sample goes to the component k minimising the standardised distance
      ||x - mean_k|| / sigma_k (PacGAN's variance-standardised distance; SankarLab uses the plain
      Euclidean one, which differs only when the sigmas differ);
    * high quality (HQ): that standardised distance is <= 3 (within 3 sigma);
    * ``modes``: number of components that are the nearest component of at least one HQ sample
      (VEEGAN definition); ``modes_total`` = K;
    * ``hq_percent`` = 100 * #HQ / #samples;
    * ``reverse_kl`` = KL(q_hat || w) in nats = sum_k q_hat_k log(q_hat_k / w_k) over q_hat_k > 0, where
      q_hat is the normalised histogram of the assignments of ALL samples (HQ or not) and w the
      mixture weights. For the uniform ring8 / grid25 w = 1/K, so this is KL(q_hat || u) =
      log K - H(q_hat); for a mixture with unequal weights the weights replace u (so a generator
      reproducing the weights scores 0). No smoothing is needed: empty bins contribute 0.

    Not directly comparable with PacGAN's Table 1: its logger built the histogram from HQ samples
    only (algorithms.md §7, item 5); SankarLab uses all samples with add-one smoothing.
    """

    name = "modes"
    kinds = ("toy",)

    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        x = _points(samples)
        means = np.asarray(dataset.means, dtype=np.float64)
        weights = np.asarray(dataset.weights, dtype=np.float64)
        k_total = len(means)
        idx, dist = nearest_component(x, means, dataset.sigmas)
        hq = dist <= HQ_RADIUS_SIGMA
        q_hat = np.bincount(idx, minlength=k_total) / len(x)
        nz = q_hat > 0
        reverse_kl = float(np.sum(q_hat[nz] * np.log(q_hat[nz] / weights[nz])))
        return {
            "modes": float(len(np.unique(idx[hq]))),
            "modes_total": float(k_total),
            "hq_percent": 100.0 * float(hq.mean()),
            "reverse_kl": max(reverse_kl, 0.0),  # KL >= 0; clears rounding at q_hat = w
        }

    def protocol(self) -> dict[str, Any]:
        return {
            "hq_radius_sigma": HQ_RADIUS_SIGMA,
            "assignment": "nearest component, standardised distance ||x - mean_k|| / sigma_k",
            "modes": "components nearest to >= 1 HQ sample (VEEGAN)",
            "hq_percent": "100 * #HQ / #samples",
            "reverse_kl": "KL(hist_all || weights), nats, no smoothing (weights = 1/K for ring8, grid25)",
        }


@dataclass(frozen=True)
class JSDConfig(MetricConfig):
    """Settings of :class:`JSDMetric` (a suite's ``[eval.jsd]`` table); see ``jsd_to_known``."""

    fit_fraction: float = 0.5  # share of the samples the KDE is fitted on
    select_fraction: float = 0.2  # share used to choose the bandwidth by held-out likelihood
    eval_fraction: float = 0.3  # fresh share the Monte-Carlo average runs over
    h_min_factor: float = 0.1  # bandwidth grid starts at h_min_factor * min(sigma_p)
    per_octave: int = 4  # grid points per factor 2 in h
    cutoff: float = 4.0  # kernels summed out to cutoff * h
    bandwidth: float | None = None  # fixed bandwidth (skips the selection) when set

    def __post_init__(self) -> None:
        fr = (self.fit_fraction, self.select_fraction, self.eval_fraction)
        if min(fr) < 0 or self.fit_fraction <= 0 or self.eval_fraction <= 0:
            raise ValueError(f"fractions must be >= 0 with fit and eval > 0, got {fr}")
        if self.bandwidth is None and self.select_fraction <= 0:
            raise ValueError("select_fraction must be > 0 unless a fixed bandwidth is given")
        if self.h_min_factor <= 0 or self.per_octave < 1 or self.cutoff <= 0:
            raise ValueError("h_min_factor and cutoff must be > 0 and per_octave >= 1")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth}")


class JSDMetric(Metric):
    """Achieved JSD(p, q) in bits between the known data mixture p and the generator (algorithms.md
    §8(a) method 1): exact p, Gaussian KDE for q with the bandwidth chosen by held-out likelihood,
    Monte-Carlo over fresh samples; see :func:`gbench.metrics.jsd.jsd_to_known`. The CI covers the
    Monte-Carlo error only; at small n the estimate is biased slightly downward (a variational
    lower bound), and can be slightly negative when q = p."""

    name = "jsd"
    kinds = ("toy",)
    Config = JSDConfig
    config: JSDConfig

    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        c = self.config
        est = jsd_to_known(
            dataset, samples, rng, split=(c.fit_fraction, c.select_fraction, c.eval_fraction),
            bandwidth=c.bandwidth, h_min_factor=c.h_min_factor, per_octave=c.per_octave, cutoff=c.cutoff,
        )
        return {"jsd_bits": est.bits, "jsd_ci_low": est.ci_low, "jsd_ci_high": est.ci_high}

    def protocol(self) -> dict[str, Any]:
        c = self.config
        return {
            **asdict(c),
            "method": "exact p, isotropic Gaussian KDE for q, Monte-Carlo on fresh samples (algorithms.md §8(a).1)",
            "units": "bits",
            "bandwidth_rule": (
                "fixed" if c.bandwidth is not None else
                f"max held-out log-likelihood on grid {c.h_min_factor:g} * min(sigma_p) * 2^(k/{c.per_octave})"
            ),
            "n_p": "exact draws from p, as many as evaluation samples",
            "ci": "bits +- 1.96 se, Monte-Carlo error only (not KDE fitting error)",
            "bias": "downward at small n (variational lower bound); raw value, may be slightly < 0",
        }


@hookimpl
def register_metrics(register) -> None:
    register(ModeMetrics)
    register(JSDMetric)


__all__ = ["HQ_RADIUS_SIGMA", "JSDConfig", "JSDMetric", "ModeMetrics", "nearest_component"]
