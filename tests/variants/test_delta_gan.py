"""delta-controlled GAN: eps from delta, the perturbed stream, its exact law, and delegation."""
import math

import numpy as np
import pytest
import torch

import gbench
from gbench.metrics.jsd import j_perp
from gbench.toy import ring8
from gbench.variant import make_config
from gbench_plugins import delta_gan, rsgan
from gbench_plugins.delta_gan import DeltaGAN, DeltaGANConfig


def _variant(**config):
    return DeltaGAN(DeltaGANConfig(**config))


@pytest.mark.parametrize(
    "delta, eps", [(0.01, 0.0199), (0.05, 0.0965), (0.10, 0.1862), (0.20, 0.3471), (0.30, 0.4857), (0.50, 0.7062)]
)
def test_epsilon_matches_the_table(delta, eps):
    variant = _variant(delta=delta)
    assert variant.epsilon == pytest.approx(eps, abs=6e-5)
    assert variant.target_jsd == delta


def test_epsilon_inverts_j_perp_from_its_closed_form():
    eps = _variant(delta=0.25).epsilon
    closed = 0.5 * (eps + (1 - eps) * math.log2(1 - eps) - (2 - eps) * math.log2(1 - eps / 2))
    assert closed == pytest.approx(0.25, abs=1e-9)
    assert j_perp(eps) == pytest.approx(0.25, abs=1e-9)


def test_perturb_real_leaves_about_one_minus_eps_rows_unchanged():
    variant = _variant(delta=0.2, noise_scale=0.5)
    eps, n = variant.epsilon, 20000
    x = ring8().sample(n, torch.Generator().manual_seed(0))
    y = variant.perturb_real(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    unchanged = (y == x).all(1)
    changed = (y != x).all(1)  # a perturbed row moves in every coordinate (W has no atom)
    assert bool((unchanged | changed).all())
    sd = math.sqrt(n * eps * (1 - eps))
    assert abs(unchanged.sum().item() - n * (1 - eps)) < 5 * sd
    moves = (y - x)[changed]
    assert moves.std().item() == pytest.approx(0.5, rel=0.05)
    assert moves.mean().abs().item() < 0.05


def test_perturb_real_is_deterministic_given_the_generator():
    variant = _variant(delta=0.3)
    x = torch.randn(256, 2)
    a = variant.perturb_real(x, torch.Generator().manual_seed(7))
    b = variant.perturb_real(x, torch.Generator().manual_seed(7))
    c = variant.perturb_real(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_perturb_real_does_not_touch_global_rng():
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    _variant(delta=0.3).perturb_real(torch.randn(64, 2), torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    assert torch.equal(torch.rand(1), before)


def test_perturb_real_works_on_image_shaped_batches():
    variant = _variant(delta=0.5, noise_scale=0.1)
    x = torch.zeros(400, 3, 4, 4)
    y = variant.perturb_real(x, torch.Generator().manual_seed(0))
    per_image = (y != 0).flatten(1)
    assert bool((per_image.all(1) | (~per_image).all(1)).all())  # whole images perturbed or left alone


def test_delta_zero_is_the_identity():
    variant = _variant(delta=0.0)
    x = torch.randn(100, 2)
    assert variant.epsilon == 0.0
    assert torch.equal(variant.perturb_real(x, torch.Generator().manual_seed(0)), x)
    dataset = ring8()
    assert variant.training_law(dataset) is dataset


def test_training_law_of_ring8_is_the_perturbed_mixture():
    variant = _variant(delta=0.1, noise_scale=0.5)
    eps, base = variant.epsilon, ring8()
    law = variant.training_law(base)
    assert isinstance(law, gbench.ToyMixture)
    assert law.weights.sum() == pytest.approx(1.0)
    assert law.num_components == 16
    np.testing.assert_allclose(law.weights[:8], (1 - eps) / 8)
    np.testing.assert_allclose(law.weights[8:], eps / 8)
    np.testing.assert_allclose(law.means[:8], base.means)
    np.testing.assert_allclose(law.means[8:], base.means)
    np.testing.assert_allclose(law.sigmas[:8], 0.01)
    np.testing.assert_allclose(law.sigmas[8:], math.sqrt(0.01**2 + 0.5**2))
    # density at a point: (1 - eps) p(x) + eps (p * N(0, s^2))(x), computed independently
    x = np.array([[1.0, 0.0], [0.3, -0.2]])
    s2 = 0.01**2 + 0.25

    def gauss(x, var):
        d2 = ((x[:, None, :] - base.means[None]) ** 2).sum(-1)
        return (np.exp(-0.5 * d2 / var) / (2 * np.pi * var)).mean(1)

    want = (1 - eps) * gauss(x, 0.01**2) + eps * gauss(x, s2)
    np.testing.assert_allclose(np.exp(law.log_prob(x)), want, rtol=1e-9)


def test_delta_one_perturbs_every_sample():
    variant = _variant(delta=1.0, noise_scale=0.5)
    assert variant.epsilon == 1.0
    law = variant.training_law(ring8())
    np.testing.assert_allclose(law.sigmas, math.sqrt(0.01**2 + 0.25))
    x = torch.randn(100, 2)
    assert bool((variant.perturb_real(x, torch.Generator().manual_seed(0)) != x).all())


def test_training_law_is_none_off_toys():
    assert _variant().training_law(object()) is None


def test_losses_and_nets_delegate_to_the_base():
    torch.manual_seed(0)
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    variant = _variant(base="rsgan")
    assert isinstance(variant.base, rsgan.RSGAN)
    nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
    x_r, x_f = torch.randn(16, 2), torch.randn(16, 2)
    c_r, c_f = nets.critic(x_r), nets.critic(x_f)
    base = rsgan.RSGAN()
    torch.testing.assert_close(variant.d_loss(nets, x_r, x_f), base.d_loss(nets, x_r, x_f))
    torch.testing.assert_close(variant.d_loss(nets, x_r, x_f), -torch.log(torch.sigmoid(c_r - c_f)).mean())
    torch.testing.assert_close(variant.g_loss(nets, x_r, x_f), -torch.log(torch.sigmoid(c_f - c_r)).mean())


def test_structure_delegates_to_the_base():
    from gbench_plugins import deligan, tgan

    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    assert isinstance(_variant(base="tgan").build_critic(backbone), tgan.PairwiseCritic)
    generator = _variant(base="deligan").build_generator(backbone)
    assert deligan.mixture_latent(generator) is not None


def test_describe():
    info = _variant(base="rsgan", delta=0.2, noise_scale=1.0).describe()
    assert info["variant"] == "delta-gan" and info["base"] == "rsgan"
    assert info["delta"] == 0.2 and info["noise_scale"] == 1.0
    assert info["eps"] == pytest.approx(0.3471, abs=6e-5)
    assert info["base_config"] == {"average": False}


def test_unknown_or_recursive_base_is_an_error():
    with pytest.raises(gbench.GbenchError, match="no-such-gan"):
        _variant(base="no-such-gan")
    with pytest.raises(gbench.GbenchError):
        make_config(DeltaGANConfig, {"base": "delta-gan"}, "suite.toml")
    with pytest.raises(ValueError):
        DeltaGANConfig(base="delta-gan")


def test_config_validation():
    cfg = make_config(DeltaGANConfig, {"base": "sgan", "delta": 0, "noise_scale": 2}, "suite.toml")
    assert cfg.delta == 0.0 and cfg.noise_scale == 2.0
    with pytest.raises(gbench.GbenchError, match="suite.toml"):
        make_config(DeltaGANConfig, {"eps": 0.1}, "suite.toml")
    for bad in ({"delta": 1.5}, {"delta": -0.1}, {"noise_scale": -1.0}, {"base": 3}):
        with pytest.raises(gbench.GbenchError):
            make_config(DeltaGANConfig, bad, "suite.toml")


def test_registered():
    assert gbench.get_plugins().variants.get("delta-gan") is delta_gan.DeltaGAN
