"""Built-in metrics for the 2-D toy mixtures (algorithms.md §7, §8): mode coverage and achieved JSD."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from gbench.hookspecs import hookimpl
from gbench.metrics import Metric, MetricConfig
from gbench.metrics.jsd import AGREE_GAP, jsd_to_known

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

    n_boot: int = 10  # bootstrap refits for the fit error and the bias correction
    n_mc: int = 100_000  # exact Monte-Carlo draws from p and from the fitted mixture
    k_max: int | None = None  # most mixture components BIC may choose (default 3 K_p + 8)
    reg_scale: float = 0.01  # reg_covar = (reg_scale * min sigma_p)^2
    knn_k: int = 10  # neighbours of the k-NN cross-check

    def __post_init__(self) -> None:
        if self.n_boot < 2 or self.n_mc < 100 or self.knn_k < 1:
            raise ValueError(f"need n_boot >= 2, n_mc >= 100, knn_k >= 1, got {self.n_boot}, {self.n_mc}, {self.knn_k}")
        if not self.reg_scale > 0:
            raise ValueError(f"reg_scale must be > 0, got {self.reg_scale}")
        if self.k_max is not None and self.k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {self.k_max}")


def sample_seed(samples: np.ndarray, rng: np.random.Generator) -> np.random.Generator:
    """A generator mixing ``rng`` with a digest of the samples: the data-side draws (exact samples
    of p, bootstrap resamples) then differ between trials (whose samples differ) although every
    trial is scored with the suite's one evaluation seed, and stay reproducible."""
    digest = hashlib.blake2b(np.ascontiguousarray(samples, dtype=np.float64).tobytes(), digest_size=16).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(rng.integers(0, 2**32)), *words])


class JSDMetric(Metric):
    """Achieved JSD(p, q) in bits between the known data mixture p and the generator: the JSD formula
    with the discriminator p/(p + q_hat) of a full-covariance Gaussian mixture q_hat fitted by EM (K
    by BIC), its p side by exact Monte Carlo and its q side over the samples, bootstrap bias
    correction and a 95 % interval that includes the data and fit error (K re-selected in every
    bootstrap resample); a k-NN estimate beside it as a cross-check (see
    :func:`gbench.metrics.jsd.jsd_to_known`).

    Keys: ``jsd_bits`` (reported, clipped to [0, 1] so that it lies in its interval; the bias
    correction can put the raw value a hair below 0 when q = p), ``jsd_raw_bits`` (unclipped),
    ``jsd_ci_low``/``jsd_ci_high`` (95 %, in [0, 1]),
    ``jsd_check_bits`` (k-NN cross-check), ``jsd_agree`` (1 if the two agree, else 0) and
    ``jsd_components`` (K chosen)."""

    name = "jsd"
    kinds = ("toy",)
    Config = JSDConfig
    config: JSDConfig

    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        c = self.config
        x = _points(samples)
        est = jsd_to_known(dataset, x, sample_seed(x, rng), n_boot=c.n_boot, n_mc=c.n_mc, k_max=c.k_max,
                           reg_scale=c.reg_scale, knn_k=c.knn_k)
        return {"jsd_bits": min(max(est.bits, 0.0), 1.0), "jsd_raw_bits": est.bits,
                "jsd_ci_low": est.ci_low, "jsd_ci_high": est.ci_high,
                "jsd_check_bits": est.check_bits, "jsd_agree": float(est.agree), "jsd_components": float(est.components)}

    def protocol(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "method": "gmm-plugin-bootstrap: 1/2 E_p[log2 2D] + 1/2 E_q[log2 2(1 - D)], D = p/(p + q_hat), "
                      "q_hat full-covariance Gaussian mixture (EM, K by BIC); p side by exact Monte Carlo, q side "
                      "over the samples; bootstrap bias correction; K re-selected by BIC in every bootstrap resample",
            "units": "bits",
            "ci": "bits +- t(0.975, n_boot - 1) * sqrt(se_fit^2 (1 + 1/n_boot) + se_mc^2), clipped to [0, 1]",
            "cross_check": f"knn-exact-p: variational lower bound with the k-NN density (k = {self.config.knn_k}) "
                           f"of half the samples, exact p; agree: bound <= ci_high and within {AGREE_GAP} bits below",
            "seeding": "metric seed mixed with a digest of the samples (trials do not share data-side draws)",
            "accuracy": "benchmarks/jsd_accuracy.py; README, 'The toy JSD estimator'",
        }


@hookimpl
def register_metrics(register) -> None:
    register(ModeMetrics)
    register(JSDMetric)


__all__ = ["HQ_RADIUS_SIGMA", "JSDConfig", "JSDMetric", "ModeMetrics", "nearest_component", "sample_seed"]
