"""RSGAN and RaSGAN: the relativistic standard GAN of Jolicoeur-Martineau (2019), arXiv:1807.00734.

The critic C scores how much more realistic a real sample is than a fake one. RSGAN pairs the
i-th real with the i-th fake of the minibatch: D minimises -E log sigma(C(x_r) - C(x_f)) and G the
label swap -E log sigma(C(x_f) - C(x_r)) (the official non-saturating form, ``--loss_D 5``).
RaSGAN (``--loss_D 6``) compares each sample with the mean critic value of the other batch; as in
the official code each loss is the average of its real and fake terms (a factor 1/2) and the
means are taken inside the graph, so gradients flow through them. Both G losses need a real batch.
Written on logits with -log sigma(s) = softplus(-s) and -log(1 - sigma(s)) = softplus(s).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import gbench


def _check_paired(c_real: torch.Tensor, c_fake: torch.Tensor) -> None:
    if c_real.shape != c_fake.shape:
        raise ValueError(f"RSGAN pairs samples by minibatch index: got {tuple(c_real.shape)} and {tuple(c_fake.shape)}")


def d_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """RSGAN critic loss -E log sigma(C(x_r) - C(x_f)), paired by index; critic values of shape (N,)."""
    _check_paired(c_real, c_fake)
    return F.softplus(c_fake - c_real).mean()


def g_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """RSGAN generator loss -E log sigma(C(x_f) - C(x_r)), paired by index."""
    _check_paired(c_real, c_fake)
    return F.softplus(c_real - c_fake).mean()


def average_d_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """RaSGAN critic loss (1/2)(-E_r log sigma(C_r - mean C_f) - E_f log(1 - sigma(C_f - mean C_r)))."""
    return 0.5 * (F.softplus(c_fake.mean() - c_real).mean() + F.softplus(c_fake - c_real.mean()).mean())


def average_g_loss(c_real: torch.Tensor, c_fake: torch.Tensor) -> torch.Tensor:
    """RaSGAN generator loss (1/2)(-E_f log sigma(C_f - mean C_r) - E_r log(1 - sigma(C_r - mean C_f)))."""
    return 0.5 * (F.softplus(c_real.mean() - c_fake).mean() + F.softplus(c_real - c_fake.mean()).mean())


@dataclass(frozen=True)
class RSGANConfig(gbench.VariantConfig):
    average: bool = False  # True: RaSGAN (relativistic average) instead of the paired RSGAN


class RSGAN(gbench.Variant):
    name = "rsgan"
    paper = "Jolicoeur-Martineau 2019, The relativistic discriminator (arXiv:1807.00734)"
    Config = RSGANConfig

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        loss = average_d_loss if self.config.average else d_loss
        return loss(nets.critic(x_real), nets.critic(x_fake))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        loss = average_g_loss if self.config.average else g_loss
        return loss(nets.critic(x_real), nets.critic(x_fake))


@gbench.hookimpl
def register_variants(register) -> None:
    register(RSGAN)
