"""T-GAN: "Training Generative Adversarial Networks Via Turing Test", Su (2018), arXiv:1810.10948.

The critic is pairwise, T(a, b) = D(E(a) - E(b)), and classifies ordered pairs: (real, fake) is
labelled 1 and (fake, real) is labelled 0; the generator swaps the labels, so it uses the real
batch too. Following the official Keras code (bojone/T-GANs), E is the shared critic body and D a
small MLP (Linear -> LeakyReLU(0.1) -> Linear without bias). On the 32x32 CNN backbone E is its
conv stack (flattened, no global pooling).

Spectral normalisation. Every official script (t_sgan_sn_*.py, t_wgan_sn_*.py @45029a8) puts SN on
every weight of E and D (and on BatchNorm gammas), and its lab/ folder also tries T-SGAN without SN.
T-SGAN is a classifier like SGAN's D and needs no constraint on T (Su 2018), so here it follows the
suite's ``[model] spectral_norm`` like every other variant: forcing SN on T-GAN alone handicapped it
(with SN on all critics, SGAN and RSGAN collapse on the ring just as SN-T-SGAN did). T-WGAN's loss
is unbounded without a Lipschitz control, and the official code's only control is SN (no gradient
penalty, no clipping), so T-WGAN keeps SN on every weight of E and D whatever the suite says (and
on BN gammas where the body has BatchNorm, ``arch = "dcgan"``), as in t_wgan_sn_celeba_64.py.

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
    def from_backbone(cls, backbone: Any, hidden: int = 0, spectral_norm: bool | None = None) -> "PairwiseCritic":
        """E = the backbone's critic body and D = Linear -> LeakyReLU(0.1) -> Linear (no bias), all
        spectrally normalised if ``spectral_norm`` (None: the backbone's setting).

        D's hidden width is ``hidden``, or min(feature_dim, 256) when 0: the MLP body's width on
        toys, and 256 on the 32x32 CNN, whose flattened 4x4x512 features would otherwise make D an
        8192 x 8192 layer (the official CIFAR-10 script uses Dense256)."""
        features = backbone.feature_dim
        hidden = hidden or min(features, DEFAULT_HEAD_HIDDEN)
        sn = backbone.spectral_norm if spectral_norm is None else spectral_norm
        head = nn.Sequential(
            gbench.maybe_sn(nn.Linear(features, hidden), sn),
            nn.LeakyReLU(0.1),
            gbench.maybe_sn(nn.Linear(hidden, 1, bias=False), sn),
        )
        return cls(backbone.critic_body(spectral_norm=sn), head)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(a) - self.encoder(b)).squeeze(-1)

    def both_orders(self, x_real: torch.Tensor, x_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T(x_r, x_f), T(x_f, x_r)), running E once per batch and D once on both differences."""
        diff = self.encoder(x_real) - self.encoder(x_fake)
        t = self.head(torch.cat([diff, -diff])).squeeze(-1)
        return t[: len(diff)], t[len(diff) :]


@dataclass(frozen=True)
class TGANConfig(gbench.VariantConfig):
    loss: str = "sgan"  # "sgan" (T-SGAN, pair classification; SN as [model]) or "wgan" (T-WGAN: SN always)
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
        return PairwiseCritic.from_backbone(backbone, self.config.head_hidden, self.spectral_norm(backbone))

    def spectral_norm(self, backbone: Any) -> bool:
        """SN on T: the suite's ``[model] spectral_norm`` for T-SGAN; always for T-WGAN (its only Lipschitz control)."""
        return True if self.config.loss == "wgan" else bool(backbone.spectral_norm)

    def real_scores(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        """T(x_r, x_f) with the fakes fixed: what R1 differentiates with respect to x_r."""
        return nets.critic(x_real, x_fake)

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        loss = sgan_d_loss if self.config.loss == "sgan" else wgan_d_loss
        return loss(*nets.critic.both_orders(x_real, x_fake))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        loss = sgan_g_loss if self.config.loss == "sgan" else wgan_g_loss
        return loss(*nets.critic.both_orders(x_real, x_fake))


@gbench.hookimpl
def register_variants(register) -> None:
    register(TGAN)
