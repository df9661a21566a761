"""T-GAN: pairwise critic structure and the T-SGAN / T-WGAN losses."""
import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gbench
from gbench.variant import make_config
from gbench_plugins import rsgan, tgan


def _backbone():
    return gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)


def _logits(seed, n=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64) * 2, torch.randn(n, generator=g, dtype=torch.float64) * 2


def test_sgan_losses_match_the_formula():
    t_rf, t_fr = _logits(1)
    sig = torch.sigmoid
    want_d = (-torch.log(sig(t_rf)) - torch.log(1 - sig(t_fr))).mean()
    want_g = (-torch.log(1 - sig(t_rf)) - torch.log(sig(t_fr))).mean()
    torch.testing.assert_close(tgan.sgan_d_loss(t_rf, t_fr), want_d)
    torch.testing.assert_close(tgan.sgan_g_loss(t_rf, t_fr), want_g)


def test_wgan_losses_are_negatives_of_each_other():
    t_rf, t_fr = _logits(2)
    torch.testing.assert_close(tgan.wgan_d_loss(t_rf, t_fr), (t_fr - t_rf).mean())
    torch.testing.assert_close(tgan.wgan_g_loss(t_rf, t_fr), -tgan.wgan_d_loss(t_rf, t_fr))


def test_antisymmetric_t_sgan_is_twice_rsgan():
    c_r, c_f = _logits(3)
    t_rf, t_fr = c_r - c_f, c_f - c_r
    torch.testing.assert_close(tgan.sgan_d_loss(t_rf, t_fr), 2 * rsgan.d_loss(c_r, c_f))
    torch.testing.assert_close(tgan.sgan_g_loss(t_rf, t_fr), 2 * rsgan.g_loss(c_r, c_f))


def test_antisymmetric_pairwise_critic_is_twice_rsgan():
    torch.manual_seed(0)
    backbone = _backbone()
    critic = tgan.PairwiseCritic.from_backbone(backbone)
    critic.head = gbench.maybe_sn(nn.Linear(backbone.feature_dim, 1, bias=False), True)  # linear: T antisymmetric
    critic.eval()  # fixed spectral-norm weights, so C is the same function in every call
    nets = gbench.Nets(backbone.generator(), critic)
    x_r, x_f = torch.randn(16, 2), torch.randn(16, 2)
    c_r, c_f = critic.head(critic.encoder(x_r)).squeeze(-1), critic.head(critic.encoder(x_f)).squeeze(-1)
    variant = tgan.TGAN()
    torch.testing.assert_close(variant.d_loss(nets, x_r, x_f), 2 * rsgan.d_loss(c_r, c_f))
    torch.testing.assert_close(variant.g_loss(nets, x_r, x_f), 2 * rsgan.g_loss(c_r, c_f))


def test_t_of_equal_arguments_is_the_constant_d_of_zero():
    torch.manual_seed(1)
    backbone = _backbone()
    critic = tgan.PairwiseCritic.from_backbone(backbone).eval()
    x = torch.randn(10, 2) * 3
    t = critic(x, x)
    d0 = critic.head(torch.zeros(1, backbone.feature_dim)).squeeze()
    torch.testing.assert_close(t, d0.expand(10))
    assert d0.abs() > 0  # the hidden layer of D has a bias, so D(0) need not vanish


def test_both_orders_matches_two_calls():
    torch.manual_seed(2)
    critic = tgan.PairwiseCritic.from_backbone(_backbone(), hidden=8).eval()
    x_r, x_f = torch.randn(12, 2), torch.randn(12, 2)
    t_rf, t_fr = critic.both_orders(x_r, x_f)
    assert t_rf.shape == t_fr.shape == (12,)
    torch.testing.assert_close(t_rf, critic(x_r, x_f))
    torch.testing.assert_close(t_fr, critic(x_f, x_r))


def test_both_orders_runs_the_encoder_once_per_batch():
    critic = tgan.PairwiseCritic.from_backbone(_backbone())
    calls = []
    critic.encoder.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    critic.both_orders(torch.randn(5, 2), torch.randn(5, 2))
    assert calls == [5, 5]


def test_t_sgan_spectral_norm_follows_the_model_setting():
    """T-SGAN gets SN exactly when the suite's [model] spectral_norm gives it to every other variant."""
    for sn in (False, True):
        backbone = dataclasses.replace(_backbone(), spectral_norm=sn)
        critic = tgan.TGAN(tgan.TGANConfig(loss="sgan")).build_critic(backbone)
        sgan_d = backbone.discriminator()
        linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
        assert [parametrize.is_parametrized(m, "weight") for m in linears] == [sn] * len(linears)
        assert all(parametrize.is_parametrized(m, "weight") == sn for m in sgan_d.modules() if isinstance(m, nn.Linear))


def test_t_wgan_keeps_spectral_norm_on_every_weight_of_e_and_d():
    backbone = dataclasses.replace(_backbone(), spectral_norm=False)
    critic = tgan.TGAN(tgan.TGANConfig(loss="wgan", head_hidden=7)).build_critic(backbone)
    linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == backbone.depth + 2
    assert all(parametrize.is_parametrized(m, "weight") for m in linears)
    head = [m for m in critic.head.modules() if isinstance(m, nn.Linear)]
    assert (head[0].out_features, head[-1].in_features, head[-1].bias) == (7, 7, None)
    assert any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in critic.head.modules())


def test_head_hidden_zero_uses_feature_dim():
    backbone = _backbone()
    critic = tgan.TGAN().build_critic(backbone)
    assert critic.head[0].out_features == backbone.feature_dim


def test_variant_losses_and_gradients():
    torch.manual_seed(3)
    backbone = _backbone()
    for loss in ("sgan", "wgan"):
        variant = tgan.TGAN(tgan.TGANConfig(loss=loss))
        nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
        x_f = nets.generator(torch.randn(8, 2))
        d = variant.d_loss(nets, torch.randn(8, 2), x_f.detach())
        d.backward()
        assert all(p.grad is not None for p in nets.critic.parameters())
        g = variant.g_loss(nets, torch.randn(8, 2), x_f)
        g.backward()
        assert torch.isfinite(d) and torch.isfinite(g)
        assert all(p.grad is not None for p in nets.generator.parameters())


def test_config_validation():
    assert make_config(tgan.TGANConfig, {"loss": "wgan", "head_hidden": 32}, "suite.toml").loss == "wgan"
    with pytest.raises(gbench.GbenchError, match="suite.toml"):
        make_config(tgan.TGANConfig, {"hidden": 3}, "suite.toml")
    with pytest.raises(gbench.GbenchError, match="loss"):
        make_config(tgan.TGANConfig, {"loss": "hinge"}, "suite.toml")
    with pytest.raises(gbench.GbenchError):
        make_config(tgan.TGANConfig, {"head_hidden": -1}, "suite.toml")
    with pytest.raises(ValueError):
        tgan.TGANConfig(loss="lsgan")
