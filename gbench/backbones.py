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


@dataclass(frozen=True)
class CNNBackbone:
    """The "standard CNN" for 32x32 images of Miyato et al. 2018 (SN-GAN, arXiv:1802.05957, Table 3(a)).

    It is also the DCGAN-style net of RSGAN's ``--arch 1`` (Jolicoeur-Martineau 2019). With the
    defaults (g_channels = d_channels = 64, z_dim = 128):

    G: z (N, z_dim) -> Linear -> 4x4x512 -> [ConvT 4x4 s2 -> BN -> ReLU] to 256, 128, 64 channels
       (8x8, 16x16, 32x32) -> Conv 3x3 s1 to C channels -> tanh: x of shape (N, C, 32, 32) in [-1, 1].
    D: conv3x3 s1 64, conv4x4 s2 64, conv3x3 s1 128, conv4x4 s2 128, conv3x3 s1 256, conv4x4 s2 256,
       conv3x3 s1 512, each followed by LeakyReLU(0.1); flatten 4x4x512 -> Linear -> 1.

    ``g_channels`` and ``d_channels`` scale the widths (64 -> 64, 128, 256, 512 = 8 * channels at
    4x4). ``spectral_norm`` (SN-GAN, the default) wraps every conv and linear weight of the critic
    in forward-time spectral normalisation. ``d_batch_norm`` puts a BatchNorm after every critic
    conv but the first (DCGAN style; off in the standard CNN); in a spectrally normalised body
    the BN gammas are normalised too (to unit L2 norm, as in T-GAN's official code). All layers
    have biases and PyTorch's default initialisation. C = ``data_shape[0]`` (3 for RGB).
    """

    data_shape: tuple = (3, 32, 32)
    z_dim: int = 128
    g_channels: int = 64
    d_channels: int = 64
    spectral_norm: bool = True
    d_batch_norm: bool = False

    def __post_init__(self) -> None:
        shape = tuple(self.data_shape)
        object.__setattr__(self, "data_shape", shape)
        if len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape) or shape[1:] != (32, 32):
            raise ValueError(f"the cnn backbone needs images of shape (channels, 32, 32), got data_shape {shape}")
        for key in ("z_dim", "g_channels", "d_channels"):
            value = getattr(self, key)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")

    @property
    def channels(self) -> int:
        return self.data_shape[0]

    @property
    def feature_dim(self) -> int:
        """Width of ``critic_body``'s output: the flattened 4x4 x (8 d_channels) map."""
        return 4 * 4 * 8 * self.d_channels

    def generator(self) -> nn.Module:
        """z of shape (N, z_dim) -> x of shape (N, C, 32, 32), tanh output in [-1, 1]."""
        g = self.g_channels
        layers: list[nn.Module] = [nn.Linear(self.z_dim, 4 * 4 * 8 * g), nn.Unflatten(1, (8 * g, 4, 4))]
        for c_in, c_out in ((8 * g, 4 * g), (4 * g, 2 * g), (2 * g, g)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.Conv2d(g, self.channels, 3, stride=1, padding=1), nn.Tanh()]
        return nn.Sequential(*layers)

    def critic_body(self, spectral_norm: bool | None = None) -> nn.Module:
        """x (N, C, 32, 32) -> features of shape (N, feature_dim) (the conv stack, then flatten)."""
        sn = self.spectral_norm if spectral_norm is None else spectral_norm
        d = self.d_channels
        widths = (d, d, 2 * d, 2 * d, 4 * d, 4 * d, 8 * d)
        layers: list[nn.Module] = []
        c_in = self.channels
        for i, c_out in enumerate(widths):
            kernel, stride = (3, 1) if i % 2 == 0 else (4, 2)
            layers.append(maybe_sn(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1), sn))
            if self.d_batch_norm and i > 0:
                layers.append(maybe_sn(nn.BatchNorm2d(c_out), sn))  # SN of a 1-D gamma: gamma / |gamma|_2
            layers.append(nn.LeakyReLU(0.1))
            c_in = c_out
        layers.append(nn.Flatten())
        return nn.Sequential(*layers)

    def discriminator(self, spectral_norm: bool | None = None) -> nn.Module:
        """x (N, C, 32, 32) -> logits of shape (N,)."""
        sn = self.spectral_norm if spectral_norm is None else spectral_norm
        return Logits(self.critic_body(sn), self.feature_dim, sn)


@dataclass(frozen=True)
class DCGANBackbone(CNNBackbone):
    """The same 32x32 net without spectral normalisation and with BatchNorm in the critic (DCGAN style)."""

    spectral_norm: bool = False
    d_batch_norm: bool = True


BACKBONES: dict[str, type] = {  # suite `[model] arch` -> backbone family
    "mlp": MLPBackbone,
    "cnn": CNNBackbone,  # SN-GAN's standard CNN for 32x32 images
    "dcgan": DCGANBackbone,  # the same net, no SN, BatchNorm in D
}


def build_backbone(arch: str, data_shape: tuple[int, ...], options: dict[str, Any]) -> Any:
    """The suite's backbone for data of ``data_shape``."""
    return BACKBONES[arch](data_shape=tuple(data_shape), **options)
