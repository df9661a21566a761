"""DeLiGAN: the mixture latent lives in G, is stratified, and its sigma penalty is in G's loss."""
import pytest
import torch
from torch import nn

import gbench
from gbench.variant import make_config
from gbench_plugins import deligan


def _setup(**config):
    torch.manual_seed(0)
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    variant = deligan.DeLiGAN(deligan.DeLiGANConfig(**config))
    return backbone, variant, gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))


class ZeroCritic(nn.Module):
    """Returns zeros that still depend on x, so the adversarial term has zero gradient."""

    def forward(self, x):
        return 0.0 * x.sum(-1)


def test_mu_and_sigma_are_generator_parameters():
    backbone, variant, nets = _setup(components=5, sigma0=0.3)
    latent = deligan.mixture_latent(nets.generator)
    g_params = {id(p) for p in nets.generator.parameters()}
    assert id(latent.mu) in g_params and id(latent.sigma) in g_params
    assert not {id(latent.mu), id(latent.sigma)} & {id(p) for p in nets.critic.parameters()}
    assert latent.mu.shape == latent.sigma.shape == (5, backbone.z_dim)
    assert torch.all(latent.sigma == 0.3)
    assert latent.mu.min() >= -1 and latent.mu.max() <= 1


def test_output_shape():
    backbone, variant, nets = _setup(components=4)
    assert nets.generator(torch.randn(11, backbone.z_dim)).shape == (11, backbone.data_shape[0])


def test_stratified_components():
    latent = deligan.MixtureLatent(components=4, z_dim=3, sigma0=0.5)
    eps = torch.randn(10, 3)
    z = latent(eps)
    idx = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(z, latent.mu[idx] + 0.5 * eps)
    # every component used equally on a batch that is a multiple of N
    assert torch.bincount(latent.component_index(12), minlength=4).tolist() == [3, 3, 3, 3]
    # no hidden randomness: same eps, same z
    torch.testing.assert_close(latent(eps), z)


def test_penalty_gradient_on_sigma_is_analytic():
    backbone, variant, nets = _setup(components=3, sigma0=0.2, sigma_penalty=0.25)
    nets.critic = ZeroCritic()
    latent = deligan.mixture_latent(nets.generator)
    with torch.no_grad():
        latent.sigma.copy_(torch.linspace(-0.5, 2.0, latent.sigma.numel()).view_as(latent.sigma))
    x_f = nets.generator(torch.randn(9, backbone.z_dim))
    loss = variant.g_loss(nets, torch.randn(9, 2), x_f)
    loss.backward()
    sigma = latent.sigma.detach()
    # log 2 from -log sigma(0), plus 0.25 * mean((1 - sigma)^2)
    torch.testing.assert_close(loss, torch.log(torch.tensor(2.0)) + 0.25 * ((1 - sigma) ** 2).mean())
    torch.testing.assert_close(latent.sigma.grad, 0.25 * 2 * (sigma - 1) / sigma.numel())


def test_g_loss_gradient_reaches_mu_and_sigma_through_the_critic():
    backbone, variant, nets = _setup(components=3, sigma_penalty=0.0)
    x_f = nets.generator(torch.randn(9, backbone.z_dim))
    variant.g_loss(nets, torch.randn(9, 2), x_f).backward()
    latent = deligan.mixture_latent(nets.generator)
    assert latent.mu.grad.abs().sum() > 0 and latent.sigma.grad.abs().sum() > 0


def test_losses_are_sgan_plus_penalty():
    backbone, variant, nets = _setup(components=4, sigma_penalty=0.1)
    x_r = torch.randn(8, 2)
    x_f = nets.generator(torch.randn(8, backbone.z_dim))
    s_r, s_f = nets.critic(x_r), nets.critic(x_f)
    sigma = deligan.mixture_latent(nets.generator).sigma
    want_d = -torch.log(torch.sigmoid(s_r)).mean() - torch.log(1 - torch.sigmoid(s_f)).mean()
    want_g = -torch.log(torch.sigmoid(s_f)).mean() + 0.1 * ((1 - sigma) ** 2).mean()
    torch.testing.assert_close(variant.d_loss(nets, x_r, x_f.detach()), want_d)
    torch.testing.assert_close(variant.g_loss(nets, x_r, x_f), want_g)


def test_missing_latent_is_a_clear_error():
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    nets = gbench.Nets(backbone.generator(), backbone.discriminator())
    with pytest.raises(gbench.GbenchError, match="MixtureLatent"):
        deligan.DeLiGAN().g_loss(nets, torch.randn(4, 2), torch.randn(4, 2))


def test_config_validation():
    cfg = make_config(deligan.DeLiGANConfig, {"components": 10, "sigma0": 1, "sigma_penalty": 0.05}, "suite.toml")
    assert (cfg.components, cfg.sigma0) == (10, 1.0)
    with pytest.raises(gbench.GbenchError, match="suite.toml"):
        make_config(deligan.DeLiGANConfig, {"n_components": 10}, "suite.toml")
    for bad in ({"components": 0}, {"sigma0": 0.0}, {"sigma_penalty": -1.0}, {"components": 2.5}):
        with pytest.raises(gbench.GbenchError):
            make_config(deligan.DeLiGANConfig, bad, "suite.toml")
