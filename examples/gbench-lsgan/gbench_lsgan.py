"""LSGAN: Least Squares Generative Adversarial Networks of Mao et al. (2017), arXiv:1611.04076.

The sigmoid cross-entropy of the standard GAN is replaced by least-squares losses on the raw
(unbounded) critic output, with target codes a for fake data, b for real data, and c for the value
G wants D to believe for fake data:

    D minimises  1/2 E_p[(D(x) - b)^2] + 1/2 E_q[(D(x) - a)^2]
    G minimises  1/2 E_q[(D(x) - c)^2]

The default is the paper's 0-1 binary coding scheme a = 0, b = c = 1. Setting a = -1, b = 1,
c = 0 (b - c = 1, b - a = 2) gives the variant that the paper relates to the Pearson chi^2
divergence between p + q and 2q.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import gbench

__version__ = "0.1.0"


def d_loss(s_real: torch.Tensor, s_fake: torch.Tensor, a: float = 0.0, b: float = 1.0) -> torch.Tensor:
    """1/2 E_p (D - b)^2 + 1/2 E_q (D - a)^2 on raw critic outputs of shape (N,)."""
    return 0.5 * (s_real - b).pow(2).mean() + 0.5 * (s_fake - a).pow(2).mean()


def g_loss(s_fake: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """1/2 E_q (D - c)^2 on raw critic outputs of shape (N,)."""
    return 0.5 * (s_fake - c).pow(2).mean()


@dataclass(frozen=True)
class LSGANConfig(gbench.VariantConfig):
    a: float = 0.0  # target code of fake data in D's loss
    b: float = 1.0  # target code of real data in D's loss
    c: float = 1.0  # value G wants D to output on fake data


class LSGAN(gbench.Variant):
    name = "lsgan"
    paper = "Mao et al. 2017, Least Squares Generative Adversarial Networks (arXiv:1611.04076)"
    Config = LSGANConfig

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return d_loss(nets.critic(x_real), nets.critic(x_fake), self.config.a, self.config.b)

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return g_loss(nets.critic(x_fake), self.config.c)


@gbench.hookimpl
def register_variants(register) -> None:
    register(LSGAN)
