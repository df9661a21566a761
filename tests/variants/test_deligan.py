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


def test_balanced_components_with_a_uniform_offset():
    latent = deligan.MixtureLatent(components=4, z_dim=3, sigma0=0.5)
    eps = torch.randn(10, 3)
    torch.manual_seed(7)
    offset = int(torch.randint(4, (1,)))
    torch.manual_seed(7)
    z = latent(eps)
    idx = (torch.arange(10) + offset) % 4
    with torch.no_grad():
        torch.testing.assert_close(z, latent.mu[idx] + 0.5 * eps)
    # every component used equally on a batch that is a multiple of N, whatever the offset
    for c in range(4):
        assert torch.bincount(latent.component_index(12, offset=c), minlength=4).tolist() == [3, 3, 3, 3]
    # the same global RNG state gives the same z (seeded per trial, saved in checkpoints)
    torch.manual_seed(7)
    torch.testing.assert_close(latent(eps), z)


def test_component_weights_are_equal_whatever_the_batch_size():
    """N = 50 over batches of 128 (the suite's batch): each component's share is 1/N exactly in
    expectation (offset uniform), and within a batch counts differ by at most one."""
    latent = deligan.MixtureLatent(components=50, z_dim=2)
    per_offset = torch.stack([torch.bincount(latent.component_index(128, offset=c), minlength=50) for c in range(50)])
    assert int(per_offset.max() - per_offset.min()) == 1
    # averaged over the uniform offset: 128 / 50 rows for every component
    torch.testing.assert_close(per_offset.double().mean(0), torch.full((50,), 128 / 50, dtype=torch.float64))
    # and drawn as the forward pass draws it: close to uniform over many batches
    torch.manual_seed(0)
    counts = sum(torch.bincount(latent.component_index(128), minlength=50) for _ in range(2000)).double()
    share = counts / counts.sum()
    assert (share - 1 / 50).abs().max() < 0.002  # s.e. of a share here is ~3.4e-4


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


def test_evaluation_draws_nothing_and_splits_evenly():
    """Eval mode: rows continue one rotation from component 0 across forward passes (chunks of 7 and 5
    with N = 4: 0,1,2,3,0,1,2 then 3,0,1,2,3), restarted by the next eval(); the global RNG is untouched."""
    latent = deligan.MixtureLatent(components=4, z_dim=2, sigma0=0.0)
    with torch.no_grad():
        latent.mu.copy_(torch.arange(8.0).view(4, 2))
    eps = torch.zeros(12, 2)
    latent.eval()
    state = torch.get_rng_state()
    first, second = latent(eps[:7]), latent(eps[7:])
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.cat([first, second]), latent.mu.detach()[torch.arange(12) % 4])
    latent.train()
    latent.eval()
    assert torch.equal(latent(eps[:3]), latent.mu.detach()[:3])


def test_training_stream_does_not_depend_on_evaluations():
    """The same seed gives the same training draws whether or not the generator was evaluated in between."""
    _, _, nets = _setup(components=5)
    eps = torch.randn(9, 2)

    def train_twice(evaluate: bool) -> torch.Tensor:
        torch.manual_seed(3)
        out = [nets.generator(eps)]
        if evaluate:
            nets.generator.eval()
            with torch.no_grad():
                nets.generator(torch.randn(2048, 2, generator=torch.Generator().manual_seed(0)))
            nets.generator.train()
        out.append(nets.generator(eps))
        return torch.cat(out).detach()

    assert torch.equal(train_twice(True), train_twice(False))
