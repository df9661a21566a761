"""DeLiGAN: Gurumurthy, Sarvadevabhatla & Babu, "DeLiGAN: Generative Adversarial Networks for Diverse
and Limited Data", CVPR 2017, arXiv:1706.02071.

The latent is a mixture of N Gaussians with learnable means and scales, reparameterised as
z = mu_i + sigma_i * eps with eps ~ N(0, I), so mu and sigma are parameters of the generator and
are trained by G's optimiser (official code: ``MoGLayer``, val-iisc/deligan). The mixture weights
are equal (pi_i = 1/N). The official code gets that by making the batch size N and giving row i
component i; here batches need not be N long (a suite's batch is shared by every variant), so row
r gets component (r + c) mod N with one offset c drawn uniformly per forward pass from torch's
global RNG (seeded per trial and saved in checkpoints): each component's expected share is exactly
1/N for any batch size, and counts in a batch differ by at most one. (Plain row mod N would give
the first n mod N components one extra row in every batch: with N = 50 and batch 128, 28
components get weight 3/128 and 22 get 2/128.) In eval mode nothing is drawn: the rows of all
forward passes since the last ``eval()`` continue one rotation from component 0, so the evaluation
samples split exactly evenly and scoring never moves the global RNG that training draws from
(it used to: a trial's training then depended on its evaluation schedule).
D is the standard GAN discriminator; G minimises the non-saturating loss plus
``sigma_penalty * mean((1 - sigma)^2)``, which stops sigma collapsing to 0 (the CIFAR script
computes that penalty but leaves it out of G's gradient; we include it).

Authors' toy settings (src/Toy/dg_toy.py @68451c8): N = 50 (= batch), sigma0 = 0.02, mu ~ U(-1, 1),
penalty 0.1 * mean((sigma - 1)^2), z_dim 2, eps ~ U(-1, 1) (we keep eps ~ N(0, I), the latent
every variant gets). The config defaults are N = 50, penalty 0.1 and the MNIST sigma0 = 0.2; the
toy suites set sigma0 = 0.02. mu and sigma are in G's Adam, as in the official code (its g_vars hold
g_z and g_sig), and Adam normalises each coordinate's step, so sigma climbs towards 1 at close to
the lr per step whatever the penalty weight: at the ring suite's lr 1e-3 it is ~0.3 after 900 G
steps and ~0.6 after 3000 (traced on the ring), i.e. sigma0 = 0.02 holds only at the start (the
authors' lr 1e-4 makes that climb ten times slower).
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
    """eps (n, z_dim) -> mu[i] + sigma[i] * eps with i = (arange(n) + uniform offset) % components."""

    def __init__(self, components: int, z_dim: int, sigma0: float = 0.2) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.empty(components, z_dim).uniform_(-1.0, 1.0))
        self.sigma = nn.Parameter(torch.full((components, z_dim), float(sigma0)))
        self._eval_row = 0  # eval mode: the next row's place in the rotation (restarted by train(False))

    @property
    def components(self) -> int:
        return self.mu.shape[0]

    def component_index(self, n: int, device: torch.device | str | None = None, offset: int | None = None) -> torch.Tensor:
        """The component of each of ``n`` rows: (row + offset) mod N, with ``offset`` uniform on
        0..N-1 from torch's global RNG unless given: balanced, and each component's share exactly 1/N.
        The drawn offset stays a tensor (no ``.item()``), so a batched group can vmap it."""
        drawn = torch.randint(self.components, (1,), device=device) if offset is None else offset
        return (torch.arange(n, device=device) + drawn) % self.components

    def train(self, mode: bool = True) -> MixtureLatent:
        """Switching modes restarts the evaluation rotation at component 0."""
        self._eval_row = 0
        return super().train(mode)

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        if self.training:
            idx = self.component_index(eps.shape[0], eps.device)
        else:  # no draw: evaluation must not shift the stream training draws its offsets from
            idx = self.component_index(eps.shape[0], eps.device, offset=self._eval_row)
            self._eval_row += eps.shape[0]
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
    sigma0: float = 0.2  # initial value of every sigma (0.2 MNIST/sketches, 0.02 toy: the toy suites set it)
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

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return sgan.d_loss(nets.critic(x_real), nets.critic(x_fake))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return g_loss(nets.critic(x_fake), mixture_latent(nets.generator), self.config.sigma_penalty)


@gbench.hookimpl
def register_variants(register) -> None:
    register(DeLiGAN)
