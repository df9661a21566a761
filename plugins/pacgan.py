"""PacGAN: Lin, Khetan, Fanti & Oh, "PacGAN: The power of two samples in generative adversarial
networks", NeurIPS 2018, arXiv:1712.04086.

The discriminator judges packs of m samples, all real or all generated, concatenated into one input
of m x data_dim (§3; official code fjxmlzn/PacGAN, ``pacgan/bricks.py`` ``compute_losses``): D
minimises softplus(-D(real pack)) + softplus(D(fake pack)), G the non-saturating softplus(-D(fake
pack)). m = 1 is the standard GAN. A batch of B rows packs into B // m packs of m consecutive rows
(rows of a batch are independent draws, as the official packs of m independent resamplings are);
B mod m leftover rows are not scored, so give B a multiple of m. The official toy runs train 100
packs per step, i.e. B = 100 m samples: ``schedule = { batch_size = 100 m }`` in a suite.

Nets. ``nets = "shared"`` (default): the suite's MLP backbone, its critic's input widened to
m x data_dim. ``nets = "paper"``: the official toy nets (``2DRing_GAN&PacGAN/pacgan_task.py``),
G: 4 hidden layers of 400 units, each linear (no bias) -> batch norm -> ReLU, linear output with
bias; D: 3 maxout layers of 200 units with 5 pieces, linear output; weights N(0, 0.02^2), biases 0;
batch-norm population statistics as a moving average with weight 0.05 on the new batch. No dropout
(the official code builds it with ``with_dropout=False``). Packing needs a flat sample, so only
toy (MLP) suites can run it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gbench
from gbench.backbones import MLPBackbone
from gbench_plugins import sgan

NETS = ("shared", "paper")
PAPER_G_HIDDEN, PAPER_G_DEPTH = 400, 4  # official config.py: gen_hidden_size, 4 decoder layers
PAPER_D_HIDDEN, PAPER_D_DEPTH, PAPER_PIECES = 200, 3, 5  # disc_hidden_size, 3 maxout layers, disc_maxout_pieces
PAPER_INIT_STD, PAPER_BN_MOMENTUM = 0.02, 0.05  # weights_init_std; bn_updates m * 0.05 + p * 0.95


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """(B, d) -> (B // m, m d): row j holds rows j m, ..., j m + m - 1 side by side."""
    n = (x.shape[0] // m) * m
    return x[:n].reshape(n // m, m * x.shape[1])


class Maxout(nn.Module):
    """Linear map to ``out * pieces`` units, then the max over each unit's ``pieces`` (Goodfellow et al. 2013)."""

    def __init__(self, d_in: int, out: int, pieces: int) -> None:
        super().__init__()
        self.out, self.pieces = out, pieces
        self.linear = nn.Linear(d_in, out * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(*x.shape[:-1], self.out, self.pieces).amax(-1)


class Logit(nn.Module):
    """``net`` then drop the last axis: x -> logits (N,)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def paper_generator(z_dim: int, data_dim: int) -> nn.Sequential:
    """The official toy G: 4 x (linear without bias, batch norm, ReLU) of 400 units, linear output."""
    layers: list[nn.Module] = []
    for i in range(PAPER_G_DEPTH):
        layers += [nn.Linear(z_dim if i == 0 else PAPER_G_HIDDEN, PAPER_G_HIDDEN, bias=False),
                   nn.BatchNorm1d(PAPER_G_HIDDEN, momentum=PAPER_BN_MOMENTUM), nn.ReLU()]
    layers.append(nn.Linear(PAPER_G_HIDDEN, data_dim))
    return _init(nn.Sequential(*layers))


def paper_discriminator(d_in: int) -> Logit:
    """The official toy D: 3 maxout layers (200 units, 5 pieces) and a linear output, on packs of width ``d_in``."""
    layers: list[nn.Module] = [Maxout(d_in if i == 0 else PAPER_D_HIDDEN, PAPER_D_HIDDEN, PAPER_PIECES)
                               for i in range(PAPER_D_DEPTH)]
    layers.append(nn.Linear(PAPER_D_HIDDEN, 1))
    return Logit(_init(nn.Sequential(*layers)))


def _init(net: nn.Sequential) -> nn.Sequential:
    """Weights N(0, 0.02^2), biases 0 (official ``IsotropicGaussian(0.02)``, ``Constant(0)``); batch norm 1, 0."""
    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, PAPER_INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


@dataclass(frozen=True)
class PacGANConfig(gbench.VariantConfig):
    packing: int = 2  # m, samples per pack (the paper's PacGAN2/3/4; 1 = the standard GAN)
    nets: str = "shared"  # "shared": the suite's MLP backbone; "paper": the official toy nets

    def __post_init__(self) -> None:
        if self.packing < 1:
            raise ValueError(f"packing must be >= 1, got {self.packing}")
        if self.nets not in NETS:
            raise ValueError(f"nets must be one of {', '.join(NETS)}, got {self.nets!r}")


class PacGAN(gbench.Variant):
    name = "pacgan"
    paper = "Lin et al. 2018, PacGAN: The power of two samples in GANs (arXiv:1712.04086)"
    Config = PacGANConfig

    def _mlp(self, backbone: Any) -> MLPBackbone:
        if not isinstance(backbone, MLPBackbone):
            raise gbench.GbenchError(f"pacgan packs flat samples: it needs the MLP backbone of a toy suite, "
                                     f"got {type(backbone).__name__}")
        return backbone

    def build_generator(self, backbone: Any) -> nn.Module:
        mlp = self._mlp(backbone)
        return mlp.generator() if self.config.nets == "shared" else paper_generator(mlp.z_dim, mlp.data_dim)

    def build_critic(self, backbone: Any) -> nn.Module:
        mlp, m = self._mlp(backbone), self.config.packing
        if self.config.nets == "paper":
            return paper_discriminator(m * mlp.data_dim)
        return dataclasses.replace(mlp, data_shape=(m * mlp.data_dim,)).discriminator()

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        m = self.config.packing
        return sgan.d_loss(nets.critic(pack(x_real, m)), nets.critic(pack(x_fake, m)))

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return sgan.g_loss(nets.critic(pack(x_fake, self.config.packing)), non_saturating=True)

    def real_scores(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
                    rng: torch.Generator | None = None) -> torch.Tensor:
        """D on the real packs, for the harness's R1 penalty (one score per pack)."""
        return nets.critic(pack(x_real, self.config.packing))


@gbench.hookimpl
def register_variants(register) -> None:
    register(PacGAN)
