"""SGAN: the standard GAN of Goodfellow et al. (2014), arXiv:1406.2661.

D maximises E_p[log D(x)] + E_q[log(1 - D(x))]. G minimises either the minimax objective
E_q[log(1 - D(x))] or the non-saturating one E_q[-log D(x)] (Goodfellow et al. §3), the default.
Written on logits s with -log sigma(s) = softplus(-s) and -log(1 - sigma(s)) = softplus(s).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import gbench


def d_loss(s_real: torch.Tensor, s_fake: torch.Tensor) -> torch.Tensor:
    """-E_p log D - E_q log(1 - D), logits of shape (N,)."""
    return F.softplus(-s_real).mean() + F.softplus(s_fake).mean()


def g_loss(s_fake: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    """Non-saturating -E_q log D, or minimax E_q log(1 - D) = -E_q softplus(s)."""
    return F.softplus(-s_fake).mean() if non_saturating else -F.softplus(s_fake).mean()


@dataclass(frozen=True)
class SGANConfig(gbench.VariantConfig):
    non_saturating: bool = True  # False: the original minimax generator loss (saturates)


class SGAN(gbench.Variant):
    name = "sgan"
    paper = "Goodfellow et al. 2014, Generative Adversarial Nets (arXiv:1406.2661)"
    Config = SGANConfig

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return d_loss(nets.critic(x_real), nets.critic(x_fake))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return g_loss(nets.critic(x_fake), self.config.non_saturating)


@gbench.hookimpl
def register_variants(register) -> None:
    register(SGAN)
