"""DeLiGAN: Gurumurthy, Sarvadevabhatla & Babu, "DeLiGAN: Generative Adversarial Networks for Diverse
and Limited Data", CVPR 2017, arXiv:1706.02071.

The latent is a mixture of N Gaussians with learnable means and scales, reparameterised as
z = mu_i + sigma_i * eps with eps ~ N(0, I), so mu and sigma are parameters of the generator and
are trained by G's optimiser (official code: ``MoGLayer``, val-iisc/deligan). As in the official
code the component is the position in the minibatch (i = row mod N): every component is used
equally and no hidden random stream picks it. D is the standard GAN discriminator; G minimises
the non-saturating loss plus ``sigma_penalty * mean((1 - sigma)^2)``, which stops sigma collapsing
to 0 (the CIFAR script computes that penalty but leaves it out of G's gradient; we include it).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gbench
from gbench_plugins import sgan


class MixtureLatent(nn.Module):
    """eps (n, z_dim) -> mu[i] + sigma[i] * eps with i = arange(n) % components."""

    def __init__(self, components: int, z_dim: int, sigma0: float = 0.2) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.empty(components, z_dim).uniform_(-1.0, 1.0))
        self.sigma = nn.Parameter(torch.full((components, z_dim), float(sigma0)))

    @property
    def components(self) -> int:
        return self.mu.shape[0]

    def component_index(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The component of each of ``n`` rows: stratified, each used equally (up to n mod N)."""
        return torch.arange(n, device=device) % self.components

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        idx = self.component_index(eps.shape[0], eps.device)
        return self.mu[idx] + self.sigma[idx] * eps

    def sigma_penalty(self) -> torch.Tensor:
        """mean((1 - sigma)^2) over all components and coordinates."""
        return ((1 - self.sigma) ** 2).mean()


def mixture_latent(generator: nn.Module) -> MixtureLatent:
    """The MixtureLatent inside ``generator`` (also through wrappers that keep it as a submodule)."""
    for module in generator.modules():
        if isinstance(module, MixtureLatent):
            return module
    raise gbench.GbenchError("deligan: the generator has no MixtureLatent (was it built by DeLiGAN.build_generator?)")


def g_loss(s_fake: torch.Tensor, latent: MixtureLatent, sigma_penalty: float) -> torch.Tensor:
    """Non-saturating -E_q log D plus sigma_penalty * mean((1 - sigma)^2)."""
    return sgan.g_loss(s_fake, non_saturating=True) + sigma_penalty * latent.sigma_penalty()


@dataclass(frozen=True)
class DeLiGANConfig(gbench.VariantConfig):
    components: int = 50  # N, the number of mixture components (50 toy/MNIST, 100 CIFAR/sketches)
    sigma0: float = 0.2  # initial value of every sigma (0.2 MNIST/sketches, 0.02 toy)
    sigma_penalty: float = 0.1  # weight of mean((1 - sigma)^2) in G's loss (0.05-0.33 in the code)

    def __post_init__(self) -> None:
        if self.components < 1:
            raise ValueError(f"components must be >= 1, got {self.components}")
        if not self.sigma0 > 0:
            raise ValueError(f"sigma0 must be > 0, got {self.sigma0}")
        if not self.sigma_penalty >= 0:
            raise ValueError(f"sigma_penalty must be >= 0, got {self.sigma_penalty}")


class DeLiGAN(gbench.Variant):
    name = "deligan"
    paper = "Gurumurthy et al. 2017, DeLiGAN: GANs for Diverse and Limited Data (arXiv:1706.02071)"
    Config = DeLiGANConfig

    def build_generator(self, backbone: Any) -> nn.Module:
        latent = MixtureLatent(self.config.components, backbone.z_dim, self.config.sigma0)
        return nn.Sequential(OrderedDict(latent=latent, net=backbone.generator()))

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return sgan.d_loss(nets.critic(x_real), nets.critic(x_fake))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return g_loss(nets.critic(x_fake), mixture_latent(nets.generator), self.config.sigma_penalty)


@gbench.hookimpl
def register_variants(register) -> None:
    register(DeLiGAN)
