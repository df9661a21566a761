"""T-GAN: "Training Generative Adversarial Networks Via Turing Test", Su (2018), arXiv:1810.10948.

The critic is pairwise, T(a, b) = D(E(a) - E(b)), and classifies ordered pairs: (real, fake) is
labelled 1 and (fake, real) is labelled 0; the generator swaps the labels, so it uses the real
batch too. Following the official Keras code (bojone/T-GANs), E is the shared critic body and D a
small MLP (SN Linear -> LeakyReLU(0.1) -> SN Linear without bias), with spectral normalisation on
every weight of E and D; it is the only Lipschitz control of T-WGAN (no gradient penalty). On the
32x32 CNN backbone E is its SN conv stack (flattened, no global pooling); where that body has
BatchNorm (``arch = "dcgan"``) the BN gammas are spectrally normalised too, as in the official code.

T-SGAN:  L_T = E[-log sigma(t_rf) - log(1 - sigma(t_fr))],  L_G = E[-log(1 - sigma(t_rf)) - log sigma(t_fr)]
T-WGAN:  L_T = -E[t_rf - t_fr],                              L_G = -E[t_fr - t_rf]
with t_rf = T(x_r, x_f) and t_fr = T(x_f, x_r), pairs formed by minibatch index.
If T(a, b) = C(a) - C(b), T-SGAN is exactly twice RSGAN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import gbench

LOSSES = ("sgan", "wgan")
DEFAULT_HEAD_HIDDEN = 256  # cap on D's width by default: Dense256 in the official CIFAR-10 script


def sgan_d_loss(t_rf: torch.Tensor, t_fr: torch.Tensor) -> torch.Tensor:
    """T-SGAN critic loss: (real, fake) pairs are class 1, (fake, real) pairs class 0; logits (N,)."""
    return (F.softplus(-t_rf) + F.softplus(t_fr)).mean()


def sgan_g_loss(t_rf: torch.Tensor, t_fr: torch.Tensor) -> torch.Tensor:
    """T-SGAN generator loss: the critic's labels swapped."""
    return (F.softplus(t_rf) + F.softplus(-t_fr)).mean()


def wgan_d_loss(t_rf: torch.Tensor, t_fr: torch.Tensor) -> torch.Tensor:
    """T-WGAN critic loss -E[T(x_r, x_f) - T(x_f, x_r)] (SN keeps T Lipschitz)."""
    return -(t_rf - t_fr).mean()


def wgan_g_loss(t_rf: torch.Tensor, t_fr: torch.Tensor) -> torch.Tensor:
    """T-WGAN generator loss -E[T(x_f, x_r) - T(x_r, x_f)]."""
    return -(t_fr - t_rf).mean()


class PairwiseCritic(nn.Module):
    """T(a, b) = head(encoder(a) - encoder(b)), returning logits of shape (N,)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @classmethod
    def from_backbone(cls, backbone: Any, hidden: int = 0) -> "PairwiseCritic":
        """E = the backbone's critic body and D = SN Linear -> LeakyReLU(0.1) -> SN Linear (no bias).

        D's hidden width is ``hidden``, or min(feature_dim, 256) when 0: the MLP body's width on
        toys, and 256 on the 32x32 CNN, whose flattened 4x4x512 features would otherwise make D an
        8192 x 8192 layer (the official CIFAR-10 script uses Dense256)."""
        features = backbone.feature_dim
        hidden = hidden or min(features, DEFAULT_HEAD_HIDDEN)
        head = nn.Sequential(
            gbench.maybe_sn(nn.Linear(features, hidden), True),
            nn.LeakyReLU(0.1),
            gbench.maybe_sn(nn.Linear(hidden, 1, bias=False), True),
        )
        return cls(backbone.critic_body(spectral_norm=True), head)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(a) - self.encoder(b)).squeeze(-1)

    def both_orders(self, x_real: torch.Tensor, x_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T(x_r, x_f), T(x_f, x_r)), running E once per batch and D once on both differences."""
        diff = self.encoder(x_real) - self.encoder(x_fake)
        t = self.head(torch.cat([diff, -diff])).squeeze(-1)
        return t[: len(diff)], t[len(diff) :]


@dataclass(frozen=True)
class TGANConfig(gbench.VariantConfig):
    loss: str = "sgan"  # "sgan" (T-SGAN, pair classification) or "wgan" (T-WGAN, SN-constrained)
    head_hidden: int = 0  # width of the MLP head D on E(a) - E(b); 0 = min(backbone feature_dim, 256)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.head_hidden < 0:
            raise ValueError(f"head_hidden must be >= 0, got {self.head_hidden}")


class TGAN(gbench.Variant):
    name = "tgan"
    paper = "Su 2018, Training Generative Adversarial Networks Via Turing Test (arXiv:1810.10948)"
    Config = TGANConfig

    def build_critic(self, backbone: Any) -> nn.Module:
        return PairwiseCritic.from_backbone(backbone, self.config.head_hidden)

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        loss = sgan_d_loss if self.config.loss == "sgan" else wgan_d_loss
        return loss(*nets.critic.both_orders(x_real, x_fake))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        loss = sgan_g_loss if self.config.loss == "sgan" else wgan_g_loss
        return loss(*nets.critic.both_orders(x_real, x_fake))


@gbench.hookimpl
def register_variants(register) -> None:
    register(TGAN)
