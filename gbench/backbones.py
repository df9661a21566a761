"""Shared generator and discriminator families: every variant on a suite gets the same ones.

A variant builds its networks from a backbone, so structure it adds (T-GAN's pairwise head,
DeLiGAN's mixture latent) sits on top of the shared body instead of copying it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


def maybe_sn(layer: nn.Module, spectral_norm: bool) -> nn.Module:
    """Wrap ``layer`` in forward-time spectral normalisation (Miyato et al., 2018) if asked."""
    return _sn(layer) if spectral_norm else layer


class Logits(nn.Module):
    """``body`` then a linear unit: x -> logits of shape (N,)."""

    def __init__(self, body: nn.Module, feature_dim: int, spectral_norm: bool = False, bias: bool = True) -> None:
        super().__init__()
        self.body = body
        self.head = maybe_sn(nn.Linear(feature_dim, 1, bias=bias), spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


@dataclass(frozen=True)
class MLPBackbone:
    """Fully connected nets for 2-D toys (cf. Welfert et al. 2023: 4 hidden layers, LeakyReLU D, ReLU G)."""

    data_shape: tuple[int, ...] = (2,)
    z_dim: int = 2
    g_hidden: int = 128
    d_hidden: int = 128
    depth: int = 3
    spectral_norm: bool = False

    @property
    def data_dim(self) -> int:
        return self.data_shape[0]

    @property
    def feature_dim(self) -> int:
        return self.d_hidden

    def generator(self) -> nn.Module:
        """z of shape (N, z_dim) -> x of shape (N, data_dim), linear output."""
        return _mlp(self.z_dim, self.g_hidden, self.depth, lambda: nn.ReLU(), self.data_dim)

    def critic_body(self, spectral_norm: bool | None = None) -> nn.Module:
        """x -> features of shape (N, feature_dim)."""
        sn = self.spectral_norm if spectral_norm is None else spectral_norm
        return _mlp(self.data_dim, self.d_hidden, self.depth, lambda: nn.LeakyReLU(0.2), None, sn)

    def discriminator(self, spectral_norm: bool | None = None) -> nn.Module:
        """x -> logits of shape (N,)."""
        sn = self.spectral_norm if spectral_norm is None else spectral_norm
        return Logits(self.critic_body(sn), self.feature_dim, sn)


def _mlp(
    d_in: int, width: int, depth: int, act: Callable[[], nn.Module], d_out: int | None, spectral_norm: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [maybe_sn(nn.Linear(d_in if i == 0 else width, width), spectral_norm), act()]
    if d_out is not None:
        layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


BACKBONES: dict[str, type] = {"mlp": MLPBackbone}  # suite `[model] arch` -> backbone family


def build_backbone(arch: str, data_shape: tuple[int, ...], options: dict[str, Any]) -> Any:
    """The suite's backbone for data of ``data_shape``."""
    return BACKBONES[arch](data_shape=tuple(data_shape), **options)
