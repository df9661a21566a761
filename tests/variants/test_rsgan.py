"""RSGAN / RaSGAN losses against their formulas written out independently."""
import pytest
import torch

import gbench
from gbench.variant import make_config
from gbench_plugins import rsgan


def _logits(seed, n=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64) * 2, torch.randn(n, generator=g, dtype=torch.float64) * 2


def _nets():
    torch.manual_seed(0)
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    variant = rsgan.RSGAN()
    return backbone, gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))


def test_paired_losses_match_the_formula():
    c_r, c_f = _logits(1)
    want_d = -torch.log(torch.sigmoid(c_r - c_f)).mean()
    want_g = -torch.log(torch.sigmoid(c_f - c_r)).mean()
    torch.testing.assert_close(rsgan.d_loss(c_r, c_f), want_d)
    torch.testing.assert_close(rsgan.g_loss(c_r, c_f), want_g)


def test_pairing_is_by_minibatch_index():
    c_r, c_f = _logits(2, n=8)
    by_hand = sum(-torch.log(torch.sigmoid(c_r[i] - c_f[i])) for i in range(8)) / 8
    torch.testing.assert_close(rsgan.d_loss(c_r, c_f), by_hand)
    # permuting the fakes changes the pairs, hence the loss
    assert not torch.isclose(rsgan.d_loss(c_r, c_f), rsgan.d_loss(c_r, c_f.flip(0)))
    with pytest.raises(ValueError):
        rsgan.d_loss(c_r, c_f[:4])


def test_average_losses_match_the_formula_with_explicit_means():
    c_r, c_f = _logits(3)
    m_r, m_f = c_r.sum() / len(c_r), c_f.sum() / len(c_f)
    d_real, d_fake = torch.sigmoid(c_r - m_f), torch.sigmoid(c_f - m_r)
    want_d = 0.5 * (-torch.log(d_real).mean() - torch.log(1 - d_fake).mean())
    want_g = 0.5 * (-torch.log(d_fake).mean() - torch.log(1 - d_real).mean())
    torch.testing.assert_close(rsgan.average_d_loss(c_r, c_f), want_d)
    torch.testing.assert_close(rsgan.average_g_loss(c_r, c_f), want_g)


def test_average_means_are_inside_the_graph():
    c_r, c_f = _logits(4, n=5)
    c_f = c_f.clone().requires_grad_(True)
    rsgan.average_g_loss(c_r, c_f).backward()
    # by hand: d/dc_f_j of 0.5*(mean_i sp(m_r - c_f_i) + mean_i sp(c_r_i - m_f))
    m_r, m_f = c_r.mean(), c_f.detach().mean()
    sig = torch.sigmoid
    n = len(c_r)
    want = 0.5 * (-sig(m_r - c_f.detach()) / n - sig(c_r - m_f).mean() / n)
    torch.testing.assert_close(c_f.grad, want)


def test_losses_stable_for_extreme_logits():
    c_r = torch.tensor([100.0, -100.0])
    c_f = torch.tensor([-100.0, 100.0])
    for loss in (rsgan.d_loss, rsgan.g_loss, rsgan.average_d_loss, rsgan.average_g_loss):
        assert torch.isfinite(loss(c_r, c_f))


def test_variant_uses_the_critic_on_both_batches():
    backbone, nets = _nets()
    x_r, x_f = torch.randn(16, 2), torch.randn(16, 2)
    c_r, c_f = nets.critic(x_r), nets.critic(x_f)
    torch.testing.assert_close(rsgan.RSGAN().d_loss(nets, x_r, x_f), -torch.log(torch.sigmoid(c_r - c_f)).mean())
    torch.testing.assert_close(rsgan.RSGAN().g_loss(nets, x_r, x_f), -torch.log(torch.sigmoid(c_f - c_r)).mean())
    ra = rsgan.RSGAN(rsgan.RSGANConfig(average=True))
    torch.testing.assert_close(ra.d_loss(nets, x_r, x_f), rsgan.average_d_loss(c_r, c_f))
    torch.testing.assert_close(ra.g_loss(nets, x_r, x_f), rsgan.average_g_loss(c_r, c_f))


def test_g_loss_gradient_reaches_generator():
    backbone, nets = _nets()
    x_f = nets.generator(torch.randn(16, 2))
    rsgan.RSGAN().g_loss(nets, torch.randn(16, 2), x_f).backward()
    assert all(p.grad is not None for p in nets.generator.parameters())


def test_config_validation():
    assert make_config(rsgan.RSGANConfig, {"average": True}, "suite.toml").average is True
    with pytest.raises(gbench.GbenchError, match="suite.toml"):
        make_config(rsgan.RSGANConfig, {"averag": True}, "suite.toml")
    with pytest.raises(gbench.GbenchError):
        make_config(rsgan.RSGANConfig, {"average": 1}, "suite.toml")


def test_registered():
    assert gbench.get_plugins().variants.get("rsgan") is rsgan.RSGAN
