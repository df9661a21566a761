"""Backbone families: the toy MLP and SN-GAN's standard CNN for 32x32 images, and every variant on the CNN."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gbench
from gbench.backbones import BACKBONES, CNNBackbone, DCGANBackbone, MLPBackbone, build_backbone
from gbench.errors import GbenchError
from gbench.suite import parse_suite
from gbench.variant import make_config

SMALL = dict(g_channels=8, d_channels=8, z_dim=16)
VARIANTS = ("sgan", "rsgan", "tgan", "deligan", "alpha-gan", "delta-gan")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


# -- the registry -------------------------------------------------------------------------------


def test_registry():
    assert BACKBONES["mlp"] is MLPBackbone
    assert BACKBONES["cnn"] is CNNBackbone
    assert BACKBONES["dcgan"] is DCGANBackbone
    cnn = build_backbone("cnn", (3, 32, 32), {"g_channels": 8})
    assert isinstance(cnn, CNNBackbone) and cnn.g_channels == 8 and cnn.data_shape == (3, 32, 32)
    assert build_backbone("cnn", [3, 32, 32], {}).data_shape == (3, 32, 32)  # a list is fine


def test_suite_selects_the_cnn_and_validates_its_keys():
    base = {"variants": ["sgan"], "dataset": {"name": "ring8"}}
    suite = parse_suite({**base, "model": {"arch": "cnn", "d_channels": 32}}, "s.toml")
    assert suite.model.arch == "cnn" and suite.model.z_dim == 128
    with pytest.raises(GbenchError, match="s.toml"):
        parse_suite({**base, "model": {"arch": "cnn", "g_hidden": 32}}, "s.toml")  # an MLP key
    with pytest.raises(GbenchError, match="s.toml"):
        parse_suite({**base, "model": {"arch": "cnn", "g_channels": 0}}, "s.toml")


# -- the MLP path is unchanged ------------------------------------------------------------------


def test_mlp_backbone_unchanged():
    backbone = build_backbone("mlp", (2,), {"z_dim": 2, "g_hidden": 16, "d_hidden": 16, "depth": 2})
    assert isinstance(backbone, MLPBackbone) and backbone.feature_dim == 16 and backbone.data_dim == 2
    torch.manual_seed(0)
    G, D = backbone.generator(), backbone.discriminator()
    assert G(torch.randn(5, 2)).shape == (5, 2) and D(torch.randn(5, 2)).shape == (5,)
    assert backbone.critic_body()(torch.randn(5, 2)).shape == (5, 16)
    assert n_params(G) == (2 * 16 + 16) + (16 * 16 + 16) + (16 * 2 + 2)
    assert n_params(D) == (2 * 16 + 16) + (16 * 16 + 16) + (16 + 1)
    assert not any(parametrize.is_parametrized(m) for m in D.modules())
    sn = backbone.discriminator(spectral_norm=True)
    assert all(parametrize.is_parametrized(m, "weight") for m in weighted_layers(sn))


# -- the standard CNN -------------------------------------------------------------------------


def test_cnn_shapes_and_range():
    backbone = CNNBackbone(**SMALL)
    assert backbone.feature_dim == 4 * 4 * 8 * 8
    torch.manual_seed(0)
    G, D, body = backbone.generator(), backbone.discriminator(), backbone.critic_body()
    x = G(torch.randn(4, 16)).detach()
    assert x.shape == (4, 3, 32, 32)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert D(x).shape == (4,)
    assert body(x).shape == (4, backbone.feature_dim)
    gray = CNNBackbone(data_shape=(1, 32, 32), **SMALL)
    assert gray.generator()(torch.randn(2, 16)).shape == (2, 1, 32, 32)
    assert gray.discriminator()(torch.zeros(2, 1, 32, 32)).shape == (2,)


def test_cnn_layer_list_is_the_standard_cnn():
    backbone = CNNBackbone()
    convs = [m for m in backbone.critic_body().modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]) for m in convs] == [
        (3, 64, 3, 1, 1), (64, 64, 4, 2, 1), (64, 128, 3, 1, 1), (128, 128, 4, 2, 1),
        (128, 256, 3, 1, 1), (256, 256, 4, 2, 1), (256, 512, 3, 1, 1),
    ]
    acts = [m for m in backbone.critic_body().modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 7 and all(a.negative_slope == 0.1 for a in acts)
    G = backbone.generator()
    deconvs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in deconvs] == [
        (512, 256, 4, 2), (256, 128, 4, 2), (128, 64, 4, 2)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 3
    assert isinstance(G[0], nn.Linear) and (G[0].in_features, G[0].out_features) == (128, 4 * 4 * 512)
    assert isinstance(G[-1], nn.Tanh)


def test_cnn_parameter_counts():
    backbone = CNNBackbone()  # z_dim 128, 64 channels: the published standard CNN
    # G: Linear 128 -> 4*4*512; ConvT 512->256, 256->128, 128->64 (4x4) each + BN (2 per channel); Conv 64->3 (3x3)
    g = (128 * 8192 + 8192) + (512 * 256 * 16 + 256 + 2 * 256) + (256 * 128 * 16 + 128 + 2 * 128) \
        + (128 * 64 * 16 + 64 + 2 * 64) + (64 * 3 * 9 + 3)
    # D: conv 3->64 (3x3), 64->64 (4x4), 64->128 (3x3), 128->128 (4x4), 128->256 (3x3), 256->256 (4x4),
    #    256->512 (3x3), all with bias; Linear 8192 -> 1
    d = (3 * 64 * 9 + 64) + (64 * 64 * 16 + 64) + (64 * 128 * 9 + 128) + (128 * 128 * 16 + 128) \
        + (128 * 256 * 9 + 256) + (256 * 256 * 16 + 256) + (256 * 512 * 9 + 512) + (8192 + 1)
    assert (g, d) == (3_812_355, 2_935_873)
    assert n_params(backbone.generator()) == g
    assert n_params(backbone.discriminator()) == d  # SN keeps the count: weight_orig replaces weight
    assert n_params(backbone.discriminator(spectral_norm=False)) == d
    # the DCGAN flavour adds a BN (gamma, beta) after each critic conv but the first
    bn = 2 * (64 + 128 + 128 + 256 + 256 + 512)
    assert n_params(DCGANBackbone().discriminator()) == d + bn


def test_spectral_norm_on_every_critic_weight():
    backbone = CNNBackbone(**SMALL)
    assert backbone.spectral_norm is True
    D = backbone.discriminator()
    layers = weighted_layers(D)
    assert len(layers) == 8  # 7 convs and the linear head
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert all(parametrize.is_parametrized(m, "weight") for m in weighted_layers(backbone.critic_body()))
    plain = backbone.discriminator(spectral_norm=False)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    assert not any(parametrize.is_parametrized(m) for m in CNNBackbone(spectral_norm=False, **SMALL)
                   .discriminator().modules())
    assert not any(parametrize.is_parametrized(m) for m in backbone.generator().modules())  # G has no SN
    # the SN weight has spectral norm ~1 after a few power iterations
    conv = layers[2]
    with torch.no_grad():
        for _ in range(50):
            D(torch.randn(2, 3, 32, 32))
        sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_dcgan_flavour():
    backbone = DCGANBackbone(**SMALL)
    assert backbone.spectral_norm is False and backbone.d_batch_norm is True
    D = backbone.discriminator()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 6
    assert not any(parametrize.is_parametrized(m) for m in D.modules())
    assert D(torch.randn(4, 3, 32, 32)).shape == (4,)
    # a spectrally normalised body (T-GAN's E) normalises the BN gammas too
    body = backbone.critic_body(spectral_norm=True)
    bns = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(parametrize.is_parametrized(m, "weight") for m in bns)
    assert bns[0].weight.norm().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shape", [(2,), (3, 64, 64), (3, 32), (3, 32, 16), (0, 32, 32), (3, 32, 32, 1)])
def test_cnn_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="32"):
        CNNBackbone(data_shape=shape)
    with pytest.raises(ValueError):
        build_backbone("cnn", shape, {})


def test_cnn_rejects_bad_widths():
    for bad in ({"z_dim": 0}, {"g_channels": 0}, {"d_channels": -1}):
        with pytest.raises(ValueError):
            CNNBackbone(**bad)
        with pytest.raises(GbenchError, match="suite.toml"):
            make_config(CNNBackbone, bad, "suite.toml")


# -- every built-in variant on the CNN --------------------------------------------------------


def _grads(loss: torch.Tensor, module: nn.Module) -> list[torch.Tensor | None]:
    params = [p for p in module.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_trains_on_the_cnn(name):
    torch.manual_seed(0)
    backbone = CNNBackbone(**SMALL)
    variant = gbench.get_plugins().variants.get(name)()
    nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
    rng = torch.Generator().manual_seed(0)
    x_real = variant.perturb_real(torch.rand(4, 3, 32, 32, generator=rng) * 2 - 1, rng)
    assert x_real.shape == (4, 3, 32, 32) and float(x_real.abs().max()) <= 1
    z = torch.randn(4, 16, generator=rng)
    with torch.no_grad():
        x_fake = nets.generator(z)
    assert x_fake.shape == (4, 3, 32, 32)

    loss_d = variant.d_loss(nets, x_real, x_fake)
    assert loss_d.dim() == 0 and math.isfinite(loss_d.item())
    found = _grads(loss_d, nets.critic)
    assert all(g is not None for g in found), f"{name}: d_loss does not reach every critic parameter"
    assert all(bool(torch.isfinite(g).all()) for g in found)

    x_fake = nets.generator(z)
    loss_g = variant.g_loss(nets, x_real, x_fake)
    assert loss_g.dim() == 0 and math.isfinite(loss_g.item())
    found = _grads(loss_g, nets.generator)
    assert all(g is not None for g in found), f"{name}: g_loss does not reach every generator parameter"
    assert any(bool(g.ne(0).any()) for g in found)


def test_tgan_on_the_cnn_reuses_the_backbone():
    from gbench_plugins import tgan

    backbone = CNNBackbone(**SMALL)
    critic = tgan.TGAN().build_critic(backbone)
    assert isinstance(critic, tgan.PairwiseCritic)
    # E is the backbone's critic body with SN on every weight; D is SN Linear -> LeakyReLU -> SN Linear (no bias)
    convs = [m for m in critic.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7 and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert critic.head[0].in_features == backbone.feature_dim
    assert critic.head[0].out_features == 256  # min(feature_dim, 256): not a feature_dim^2 layer
    assert critic.head[2].bias is None
    assert all(parametrize.is_parametrized(m, "weight") for m in weighted_layers(critic.head))
    wide = tgan.PairwiseCritic.from_backbone(CNNBackbone())
    assert (wide.head[0].in_features, wide.head[0].out_features) == (8192, 256)
    assert tgan.PairwiseCritic.from_backbone(backbone, hidden=32).head[0].out_features == 32


def test_deligan_on_the_cnn_puts_the_mixture_before_the_backbone_generator():
    from gbench_plugins import deligan

    backbone = CNNBackbone(**SMALL)
    generator = deligan.DeLiGAN().build_generator(backbone)
    latent = deligan.mixture_latent(generator)
    assert latent.mu.shape == (50, 16)
    assert generator(torch.randn(6, 16)).shape == (6, 3, 32, 32)
