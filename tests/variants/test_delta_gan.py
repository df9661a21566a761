"""delta-controlled GAN: eps from delta, the perturbed stream, its exact law, and delegation."""
import math

import numpy as np
import pytest
import torch

import gbench
from gbench.metrics.jsd import j_perp
from gbench.datasets.toy import ring8
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


def _images(n, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _bounding_box(mask):
    """(rows, cols) spanned by the True entries of a 2-D mask."""
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1


def test_images_get_one_random_patch_replaced():
    variant = _variant(delta=0.2)
    eps, n = variant.epsilon, 4000
    x = _images(n)
    y = variant.perturb_real(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    changed = (y != x).flatten(1).any(1)
    assert abs(changed.sum().item() - n * eps) < 5 * math.sqrt(n * eps * (1 - eps))
    assert torch.equal(y[~changed], x[~changed])  # the others are left exactly as they were
    corners = set()
    for i in changed.nonzero().flatten().tolist():
        diff = (y[i] != x[i]).any(0)  # (32, 32): positions changed in some channel
        top, bottom, left, right = _bounding_box(diff)
        assert bottom - top <= 8 and right - left <= 8  # only inside one 8x8 square
        assert diff.sum().item() >= 60  # and (almost) all of it: U(-1, 1) noise has no atom
        corners.add((top, left))
    assert len(corners) > 100  # the patch moves around the image


def test_patch_noise_is_uniform_on_minus_one_one():
    variant = _variant(delta=1.0)
    x = torch.zeros(500, 3, 32, 32)
    y = variant.perturb_real(x, torch.Generator().manual_seed(2))
    assert bool(((y != 0).flatten(1).sum(1) == 3 * 64).all())  # exactly one 8x8 patch, all channels
    values = y[y != 0]
    assert values.min() >= -1 and values.max() <= 1
    assert values.mean().abs().item() < 0.01
    assert values.var().item() == pytest.approx(1 / 3, rel=0.02)


def test_patch_size_is_configurable_and_clipped_to_the_image():
    x = torch.zeros(200, 1, 32, 32)
    y = _variant(delta=1.0, patch_size=4).perturb_real(x, torch.Generator().manual_seed(3))
    assert bool(((y != 0).flatten(1).sum(1) == 16).all())
    small = torch.zeros(50, 3, 4, 4)  # a patch larger than the image covers all of it
    y = _variant(delta=1.0).perturb_real(small, torch.Generator().manual_seed(3))
    assert bool((y != 0).all())


def test_pixel_noise_hits_five_percent_of_pixels_then_clips():
    variant = _variant(delta=0.5, image_noise="pixels", noise_scale=2.0)
    eps, n = variant.epsilon, 2000
    x = _images(n, seed=4)
    y = variant.perturb_real(x, torch.Generator().manual_seed(5))
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    changed = (y != x).flatten(1).any(1)
    assert abs(changed.sum().item() - n * eps) < 5 * math.sqrt(n * eps * (1 - eps))
    assert torch.equal(y[~changed], x[~changed])
    positions = (y != x).any(1).flatten(1).sum(1)[changed]  # changed pixel positions per image
    assert int(positions.max()) <= round(0.05 * 32 * 32) == 51
    assert float(positions.float().mean()) > 49  # a position is unchanged only if clipping undoes it


def test_image_perturbation_is_deterministic_given_the_generator():
    x = _images(64)
    for mode in ("patch", "pixels"):
        variant = _variant(delta=0.3, image_noise=mode)
        a = variant.perturb_real(x, torch.Generator().manual_seed(7))
        b = variant.perturb_real(x, torch.Generator().manual_seed(7))
        c = variant.perturb_real(x, torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_image_perturbation_does_not_touch_global_rng():
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    for mode in ("patch", "pixels"):
        _variant(delta=0.3, image_noise=mode).perturb_real(_images(16), torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    assert torch.equal(torch.rand(1), before)


def test_image_delta_zero_is_the_identity():
    x = _images(32)
    assert torch.equal(_variant(delta=0.0).perturb_real(x, torch.Generator().manual_seed(0)), x)


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
    assert info["image_noise"] == "patch" and info["patch_size"] == 8 and info["pixel_fraction"] == 0.05
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
    assert make_config(DeltaGANConfig, {"image_noise": "pixels", "patch_size": 4}, "suite.toml").patch_size == 4
    for bad in ({"delta": 1.5}, {"delta": -0.1}, {"noise_scale": -1.0}, {"base": 3}, {"image_noise": "blur"},
                {"patch_size": 0}, {"pixel_fraction": 0.0}, {"pixel_fraction": 1.5}):
        with pytest.raises(gbench.GbenchError):
            make_config(DeltaGANConfig, bad, "suite.toml")


def test_registered():
    assert gbench.get_plugins().variants.get("delta-gan") is delta_gan.DeltaGAN
