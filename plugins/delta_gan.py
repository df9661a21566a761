"""The delta-controlled GAN of Truong (2022), "Generative Adversarial Nets: Can we generate a new
dataset based on only one training set?", arXiv:2210.06005, as reconstructed in algorithms.md §6.2.

The paper's method section could not be obtained; this is our design, consistent with its
abstract. A wrapper around any base variant: each real sample x becomes y = x + B * s * W with
B ~ Bernoulli(eps) per sample and W ~ N(0, I), so the base GAN is trained on
p_delta = (1 - eps) p + eps (p * N(0, s^2 I)). Since a mixture weight eps of anything else moves
the JSD by at most J_perp(eps) bits (equality for a disjoint component), eps = J_perp^{-1}(delta)
guarantees JSD(p, p_delta) <= delta, with near equality when the perturbed part is far from p.
The base variant's nets and losses are used unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gbench
from gbench.metrics.jsd import j_perp_inverse


def perturb(x: torch.Tensor, eps: float, noise_scale: float, rng: torch.Generator) -> torch.Tensor:
    """x + B * noise_scale * W per row, B ~ Bernoulli(eps), W ~ N(0, I), both drawn from ``rng``."""
    hit = torch.rand(x.shape[0], generator=rng, device=x.device, dtype=x.dtype) < eps
    noise = torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
    hit = hit.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(hit, x + noise_scale * noise, x)


@dataclass(frozen=True)
class DeltaGANConfig(gbench.VariantConfig):
    base: str = "sgan"  # the variant trained on the perturbed stream, with its default settings
    delta: float = 0.1  # target JSD(p, p_delta) in bits, in [0, 1]; sets eps = J_perp^{-1}(delta)
    noise_scale: float = 0.5  # std of the Gaussian W added to a perturbed sample

    def __post_init__(self) -> None:
        if not 0.0 <= self.delta <= 1.0:
            raise ValueError(f"delta must be in [0, 1] bits, got {self.delta}")
        if not self.noise_scale >= 0.0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale}")
        if self.base == DeltaGAN.name:
            raise ValueError("base cannot be 'delta-gan' itself")


class DeltaGAN(gbench.Variant):
    name = "delta-gan"
    paper = "Truong 2022, GANs: can we generate a new dataset based on only one training set? (arXiv:2210.06005)"
    Config = DeltaGANConfig

    def __init__(self, config: DeltaGANConfig | None = None) -> None:
        super().__init__(config)
        base_name = self.config.base
        if base_name == self.name:
            raise gbench.GbenchError("delta-gan: base cannot be 'delta-gan' itself")
        variants = gbench.get_plugins().variants
        if base_name not in variants:
            known = ", ".join(n for n in variants.names() if n != self.name) or "none"
            raise gbench.GbenchError(f"delta-gan: unknown base variant {base_name!r} (known: {known})")
        base_cls = variants.get(base_name)
        if issubclass(base_cls, DeltaGAN):
            raise gbench.GbenchError(f"delta-gan: base {base_name!r} is itself a delta-controlled GAN")
        self.base: gbench.Variant = base_cls()
        self._epsilon = j_perp_inverse(self.config.delta)
        self.target_jsd = self.config.delta

    @property
    def epsilon(self) -> float:
        """The fraction of perturbed samples, J_perp^{-1}(delta)."""
        return self._epsilon

    # -- the base's structure and objectives ----------------------------------------------------
    def build_generator(self, backbone: Any) -> nn.Module:
        return self.base.build_generator(backbone)

    def build_critic(self, backbone: Any) -> nn.Module:
        return self.base.build_critic(backbone)

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return self.base.d_loss(nets, x_real, x_fake)

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return self.base.g_loss(nets, x_real, x_fake)

    # -- the perturbed real stream ----------------------------------------------------------------
    def perturb_real(self, x_real: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        x = self.base.perturb_real(x_real, rng)
        return perturb(x, self._epsilon, self.config.noise_scale, rng)

    def training_law(self, dataset: Any) -> Any:
        """(1 - eps) p + eps (p * N(0, noise_scale^2 I)) exactly on a toy mixture; None otherwise."""
        law = self.base.training_law(dataset)
        if not isinstance(law, gbench.ToyMixture):
            return None
        eps = self._epsilon
        if eps == 0.0 or self.config.noise_scale == 0.0:
            return law
        noisy = law.convolve(self.config.noise_scale)
        if eps == 1.0:
            return noisy
        return gbench.ToyMixture.mix([law, noisy], [1 - eps, eps])

    def describe(self) -> dict[str, Any]:
        base_config = {f.name: getattr(self.base.config, f.name) for f in dataclasses.fields(self.base.config)}
        return {
            "variant": self.name,
            "base": self.config.base,
            "delta": self.config.delta,
            "eps": self._epsilon,
            "noise_scale": self.config.noise_scale,
            "base_config": base_config,
        }


@gbench.hookimpl
def register_variants(register) -> None:
    register(DeltaGAN)
