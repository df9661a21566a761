"""alpha-loss and the (alpha_D, alpha_G)-GAN objectives against closed forms."""
import math

import pytest
import torch

import gbench
from gbench.variant import make_config
from gbench_plugins import alpha_gan
from gbench_plugins.alpha_gan import alpha_loss


def _logits(seed=0, n=50, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=dtype) * scale


def _closed_form(s, y, alpha):
    """Welfert et al. Eq. 2 in float64, straight from sigmoid."""
    p = torch.sigmoid(s.double())
    k = (alpha - 1) / alpha
    return alpha / (alpha - 1) * (1 - y * p**k - (1 - y) * (1 - p) ** k)


@pytest.mark.parametrize("y", [0.0, 1.0])
def test_alpha_one_is_log_loss(y):
    s = _logits(1)
    p = torch.sigmoid(s)
    want = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    torch.testing.assert_close(alpha_loss(s, y, 1.0), want)


@pytest.mark.parametrize("y", [0.0, 1.0])
def test_alpha_inf_is_one_minus_accuracy(y):
    s = _logits(2)
    p = torch.sigmoid(s)
    torch.testing.assert_close(alpha_loss(s, y, math.inf), 1 - y * p - (1 - y) * (1 - p))


@pytest.mark.parametrize("y", [0.0, 1.0])
def test_alpha_half(y):
    s = _logits(3)
    p = torch.sigmoid(s)
    torch.testing.assert_close(alpha_loss(s, y, 0.5), y / p + (1 - y) / (1 - p) - 1)


@pytest.mark.parametrize("alpha", [0.2, 0.3, 0.5, 0.7, 0.9, 1.1, 1.2, 2.0, 5.0, 100.0])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_matches_closed_form(alpha, y):
    s = _logits(4)
    torch.testing.assert_close(alpha_loss(s, y, alpha), _closed_form(s, y, alpha))
    s32 = s.float()
    torch.testing.assert_close(alpha_loss(s32, y, alpha), _closed_form(s32, y, alpha).float(), rtol=1e-4, atol=1e-5)


def test_labels_as_tensor():
    s = _logits(5, n=6)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(alpha_loss(s, y, 0.6), _closed_form(s, y, 0.6))


def test_continuous_at_one():
    s = _logits(6, scale=1.0)
    for y in (0.0, 1.0):
        at_one = alpha_loss(s, y, 1.0)
        for alpha in (1 - 1e-3, 1 + 1e-3):
            torch.testing.assert_close(alpha_loss(s, y, alpha), at_one, rtol=0, atol=1e-2)
        # within the 1e-4 band the exact log-loss branch is used
        torch.testing.assert_close(alpha_loss(s, y, 1 + 5e-5), at_one)


def test_large_alpha_approaches_inf():
    s = _logits(7, scale=1.0)
    torch.testing.assert_close(alpha_loss(s, 1.0, 1e6), alpha_loss(s, 1.0, math.inf), rtol=0, atol=1e-4)


def test_finite_for_extreme_logits_at_small_alpha():
    s = torch.tensor([-50.0, -20.0, 0.0, 20.0, 50.0], requires_grad=True)
    for y in (0.0, 1.0):
        for alpha in (0.3, 0.5, 2.0, math.inf, 1.0):
            loss = alpha_loss(s, y, alpha)
            assert torch.isfinite(loss).all(), (y, alpha)
            (grad,) = torch.autograd.grad(loss.sum(), s)
            assert torch.isfinite(grad).all(), (y, alpha)


def test_d_loss_and_sign_conventions():
    s_r, s_f = _logits(8), _logits(9)
    a_d, a_g = 0.5, 1.2
    want_d = _closed_form(s_r, 1.0, a_d).mean() + _closed_form(s_f, 0.0, a_d).mean()
    torch.testing.assert_close(alpha_gan.d_loss(s_r, s_f, a_d), want_d)
    torch.testing.assert_close(alpha_gan.g_loss(s_f, a_g, non_saturating=True), _closed_form(s_f, 1.0, a_g).mean())
    torch.testing.assert_close(alpha_gan.g_loss(s_f, a_g, non_saturating=False), -_closed_form(s_f, 0.0, a_g).mean())


def test_saturating_g_decreases_as_d_is_fooled():
    s_f = torch.tensor([0.0], requires_grad=True)
    for non_saturating in (True, False):
        (grad,) = torch.autograd.grad(alpha_gan.g_loss(s_f, 0.7, non_saturating), s_f)
        assert grad.item() < 0  # raising D's logit on fakes lowers G's loss in both forms


def test_one_one_saturating_is_sgan_minimax():
    s_r, s_f = _logits(10), _logits(11)
    sig = torch.sigmoid
    minimax_g = torch.log(1 - sig(s_f)).mean()
    sgan_d = -torch.log(sig(s_r)).mean() - torch.log(1 - sig(s_f)).mean()
    torch.testing.assert_close(alpha_gan.g_loss(s_f, 1.0, non_saturating=False), minimax_g)
    torch.testing.assert_close(alpha_gan.g_loss(s_f, 1.0, non_saturating=True), -torch.log(sig(s_f)).mean())
    torch.testing.assert_close(alpha_gan.d_loss(s_r, s_f, 1.0), sgan_d)


def test_variant_uses_config():
    torch.manual_seed(0)
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    variant = alpha_gan.AlphaGAN(alpha_gan.AlphaGANConfig(alpha_d=0.3, alpha_g=2.0, non_saturating=False))
    nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
    x_r, x_f = torch.randn(8, 2), torch.randn(8, 2)
    s_r, s_f = nets.critic(x_r).double(), nets.critic(x_f).double()
    want_d = _closed_form(s_r, 1.0, 0.3).mean() + _closed_form(s_f, 0.0, 0.3).mean()
    torch.testing.assert_close(variant.d_loss(nets, x_r, x_f).double(), want_d, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(variant.g_loss(nets, x_r, x_f).double(), -_closed_form(s_f, 0.0, 2.0).mean(), rtol=1e-4, atol=1e-5)


def test_config_validation():
    cfg = make_config(alpha_gan.AlphaGANConfig, {"alpha_d": 1, "alpha_g": math.inf, "non_saturating": False}, "suite.toml")
    assert cfg.alpha_d == 1.0 and isinstance(cfg.alpha_d, float) and math.isinf(cfg.alpha_g)
    tomllib = pytest.importorskip("tomllib")
    from_toml = make_config(alpha_gan.AlphaGANConfig, tomllib.loads("alpha_d = 0.5\nalpha_g = inf"), "suite.toml")
    assert from_toml.alpha_d == 0.5 and math.isinf(from_toml.alpha_g)
    with pytest.raises(gbench.GbenchError, match="suite.toml"):
        make_config(alpha_gan.AlphaGANConfig, {"alpha": 0.5}, "suite.toml")
    for bad in ({"alpha_d": 0.0}, {"alpha_g": -1.0}, {"alpha_d": math.nan}, {"alpha_g": "2"}):
        with pytest.raises(gbench.GbenchError):
            make_config(alpha_gan.AlphaGANConfig, bad, "suite.toml")


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.15])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_small_alpha_is_finite_and_matches_float64_where_representable(alpha, y):
    """alpha <= 0.15 used to give inf / NaN: values and gradients are finite in float32 everywhere, and
    equal the float64 closed form (value and d/ds) wherever p^k <= e^MAX_EXPONENT."""
    s = torch.linspace(-60.0, 60.0, 241, requires_grad=True)
    loss = alpha_loss(s, y, alpha)
    (grad,) = torch.autograd.grad(loss.sum(), s)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    s64 = s.detach().double().requires_grad_(True)
    p64 = torch.sigmoid(s64 if y == 1.0 else -s64)  # the probability of the true label, float64
    want = alpha / (alpha - 1) * (1 - p64 ** ((alpha - 1) / alpha))  # Eq. 2 for that label
    (want_grad,) = torch.autograd.grad(want.sum(), s64)
    k = (alpha - 1) / alpha
    log_p = torch.nn.functional.logsigmoid(s64 if y == 1.0 else -s64).detach()
    exact = k * log_p <= alpha_gan.MAX_EXPONENT
    assert exact.sum() > 50  # the comparison covers a wide range of logits
    torch.testing.assert_close(loss.detach().double()[exact], want.detach()[exact], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.double()[exact], want_grad[exact], rtol=1e-4, atol=1e-6)
    # past that point the loss keeps increasing as D grows more wrong, with a gradient of the right sign
    wrong = ~exact & (log_p > alpha_gan.MIN_LOG_PROB)
    assert wrong.any()
    order = torch.argsort(log_p[wrong])  # most wrong first: loss decreasing along that order
    assert (loss.detach()[wrong][order].diff() < 0).all()
    sign = -1.0 if y == 1.0 else 1.0  # dl/ds < 0 for a real sample, > 0 for a fake one
    assert (sign * grad[wrong] > 0).all()


def test_small_alpha_tangent_continuation_is_c1():
    """The tangent continuation meets exp at t = MAX_EXPONENT with equal value and slope."""
    m = alpha_gan.MAX_EXPONENT
    t = torch.tensor([m - 1e-3, m, m + 1e-3], dtype=torch.float64, requires_grad=True)
    v = alpha_gan._expm1_tangent(t)
    (g,) = torch.autograd.grad(v.sum(), t)
    torch.testing.assert_close(v[1], torch.tensor(math.expm1(m), dtype=torch.float64))
    torch.testing.assert_close(g, torch.full_like(g, math.exp(m)), rtol=2e-3, atol=0)


def test_small_alpha_d_step_stays_finite_under_adam():
    """A few Adam steps of a D on the alpha_D = 0.01 loss, from a D that is badly wrong: no inf, no NaN."""
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1))
    with torch.no_grad():
        d[2].bias.fill_(-30.0)  # D(x_real) ~ 1e-13: p^k far past e^38 at alpha = 0.01
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    for _ in range(5):
        loss = alpha_gan.d_loss(d(torch.randn(64, 2)).squeeze(-1), d(torch.randn(64, 2) + 3).squeeze(-1), 0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p).all() for p in d.parameters())
