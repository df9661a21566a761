"""2-D toy mixtures with exactly known densities: the 8-Gaussian ring and the 5x5 grid.

Settings follow PacGAN (Lin et al., 2018) and Welfert et al. (ISIT 2023): ring of radius 1 with
sigma 0.01; grid with means {-4,-2,0,2,4}^2 and sigma 0.05. A mixture of mixtures, or a mixture
convolved with isotropic Gaussian noise, is again a ``ToyMixture``, so every law used in the
toy benchmarks (including the delta-controlled GAN's perturbed stream) has an exact density.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from gbench.errors import GbenchError
from gbench.hookspecs import hookimpl

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True, eq=False)
class ToyMixture:
    """Isotropic 2-D Gaussian mixture: sum_k w_k N(mean_k, sigma_k^2 I)."""

    name: str
    means: np.ndarray  # (K, 2)
    sigmas: np.ndarray  # (K,)
    weights: np.ndarray  # (K,), sums to 1

    kind = "toy"
    data_shape = (2,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "means", np.asarray(self.means, dtype=np.float64).reshape(-1, 2))
        k = len(self.means)
        object.__setattr__(self, "sigmas", np.broadcast_to(np.asarray(self.sigmas, np.float64), (k,)).copy())
        w = np.broadcast_to(np.asarray(self.weights, np.float64), (k,)).copy()
        object.__setattr__(self, "weights", w / w.sum())

    @property
    def num_components(self) -> int:
        return len(self.means)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` float32 points on the CPU with ``generator``."""
        comp = torch.multinomial(torch.as_tensor(self.weights), n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = torch.as_tensor(self.means)[comp] + torch.as_tensor(self.sigmas)[comp, None] * noise
        return x.float()

    def training_set(self, size: int, seed: int) -> torch.Tensor:
        """The fixed training set: ``size`` points drawn with ``seed``."""
        if size <= 0:
            raise GbenchError(f"{self.name}: a toy training set needs a positive train_size, got {size}")
        return self.sample(size, torch.Generator().manual_seed(seed))

    def log_prob(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Exact log-density (natural log) at the rows of ``x``, float64, computed in chunks."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
        out = np.empty(len(x))
        log_w = np.log(self.weights) - 2 * np.log(self.sigmas) - LOG_2PI
        inv_var = 1.0 / self.sigmas**2
        for start in range(0, len(x), 4096):
            chunk = x[start : start + 4096]
            d2 = ((chunk[:, None, :] - self.means[None]) ** 2).sum(-1)
            a = log_w[None] - 0.5 * d2 * inv_var[None]
            m = a.max(1, keepdims=True)
            out[start : start + 4096] = (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]
        return out

    def convolve(self, scale: float) -> "ToyMixture":
        """The law of X + W with W ~ N(0, scale^2 I) independent of X."""
        return ToyMixture(
            f"{self.name}*N(0,{scale:g}^2)", self.means, np.sqrt(self.sigmas**2 + scale**2), self.weights
        )

    @staticmethod
    def mix(parts: Sequence["ToyMixture"], weights: Sequence[float], name: str | None = None) -> "ToyMixture":
        """The mixture sum_l a_l p_l of toy mixtures (weights are normalised)."""
        a = np.asarray(weights, dtype=np.float64)
        a = a / a.sum()
        return ToyMixture(
            name or "+".join(f"{w:g}*{p.name}" for p, w in zip(parts, a)),
            np.concatenate([p.means for p in parts]),
            np.concatenate([p.sigmas for p in parts]),
            np.concatenate([w * p.weights for p, w in zip(parts, a)]),
        )


def ring8(radius: float = 1.0, sigma: float = 0.01, modes: int = 8) -> ToyMixture:
    """8 Gaussians at (r cos 2 pi i/8, r sin 2 pi i/8), sigma 0.01 (PacGAN, Welfert et al.)."""
    angles = 2 * np.pi * np.arange(modes) / modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return ToyMixture("ring8", means, sigma, np.ones(modes))


def grid25(spacing: float = 2.0, sigma: float = 0.05, side: int = 5) -> ToyMixture:
    """5x5 Gaussians at {-4,-2,0,2,4}^2, sigma 0.05 (PacGAN)."""
    axis = spacing * (np.arange(side) - (side - 1) / 2)
    means = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return ToyMixture("grid25", means, sigma, np.ones(side * side))


@hookimpl
def register_datasets(register) -> None:
    register("ring8", ring8, description="8 Gaussians on a circle of radius 1, sigma 0.01 (PacGAN)")
    register("grid25", grid25, description="5x5 grid of Gaussians, spacing 2, sigma 0.05 (PacGAN)")
