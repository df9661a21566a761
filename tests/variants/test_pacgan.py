"""PacGAN: packs of m samples, the standard GAN losses on packs, m = 1 is SGAN, the official toy nets."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gbench
from gbench.variant import make_config
from gbench_plugins import pacgan, sgan


def _setup(**config):
    torch.manual_seed(0)
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    variant = pacgan.PacGAN(pacgan.PacGANConfig(**config))
    return backbone, variant, gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))


class RecordingCritic(nn.Module):
    """A fixed linear critic w . x that keeps every input it is given."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, width))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x @ self.w


def test_pack_puts_consecutive_rows_side_by_side_and_drops_the_remainder():
    x = torch.arange(14.0).view(7, 2)  # rows (0,1), (2,3), ...
    packed = pacgan.pack(x, 3)
    assert packed.shape == (2, 6)
    assert packed.tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]  # row 6 (12, 13) is left out
    assert torch.equal(pacgan.pack(x, 1), x)


@pytest.mark.parametrize("m", [2, 3])
def test_losses_are_the_standard_gan_losses_on_packs(m):
    """Against the formulas written out: D: mean softplus(-w.real pack) + mean softplus(w.fake pack); G: mean softplus(-w.fake pack)."""
    _, variant, nets = _setup(packing=m)
    critic = RecordingCritic(2 * m)
    nets = gbench.Nets(nets.generator, critic)
    g = torch.Generator().manual_seed(1)
    x_real, x_fake = torch.randn(12, 2, generator=g), torch.randn(12, 2, generator=g) + 3.0
    real_packs, fake_packs = x_real.reshape(12 // m, 2 * m), x_fake.reshape(12 // m, 2 * m)
    w = critic.w.detach()
    want_d = F.softplus(-(real_packs @ w)).mean() + F.softplus(fake_packs @ w).mean()
    want_g = F.softplus(-(fake_packs @ w)).mean()
    torch.testing.assert_close(variant.d_loss(nets, x_real, x_fake), want_d)
    torch.testing.assert_close(variant.g_loss(nets, x_real, x_fake), want_g)
    # the critic only ever sees whole packs of one kind: real packs, then fake packs, then fake packs
    assert [s.shape for s in critic.seen] == [(12 // m, 2 * m)] * 3
    assert torch.equal(critic.seen[0], real_packs) and torch.equal(critic.seen[1], fake_packs)
    assert torch.equal(critic.seen[2], fake_packs)
    torch.testing.assert_close(variant.real_scores(nets, x_real, x_fake), real_packs @ w)


def test_packing_one_is_sgan_on_the_same_nets():
    _, variant, nets = _setup(packing=1)
    x_real, x_fake = torch.randn(16, 2), torch.randn(16, 2)
    reference = sgan.SGAN()
    torch.testing.assert_close(variant.d_loss(nets, x_real, x_fake), reference.d_loss(nets, x_real, x_fake))
    torch.testing.assert_close(variant.g_loss(nets, x_real, x_fake), reference.g_loss(nets, x_real, x_fake))


def test_shared_nets_widen_only_the_critic_input():
    backbone, variant, nets = _setup(packing=4)
    plain = backbone.discriminator()
    assert nets.critic(torch.randn(5, 8)).shape == (5,)
    first = next(m for m in nets.critic.modules() if isinstance(m, nn.Linear))
    assert first.in_features == 8
    widened = sum(p.numel() for p in nets.critic.parameters()) - sum(p.numel() for p in plain.parameters())
    assert widened == (8 - 2) * backbone.d_hidden  # only the first layer's extra input weights
    assert [p.shape for p in nets.generator.parameters()] == [p.shape for p in backbone.generator().parameters()]


def test_maxout_is_the_max_over_pieces():
    torch.manual_seed(3)
    layer = pacgan.Maxout(3, 4, 5)
    x = torch.randn(6, 3)
    lin = x @ layer.linear.weight.T + layer.linear.bias  # (6, 20): unit u's pieces are columns 5u .. 5u + 4
    want = torch.stack([lin[:, 5 * u: 5 * u + 5].max(1).values for u in range(4)], 1)
    torch.testing.assert_close(layer(x), want)


def test_paper_nets_have_the_official_sizes_and_init():
    """Parameter counts written out from config.py / pacgan_task.py: G 2-400-400-400-400-2 without hidden
    biases, batch norm (scale, shift) on each hidden layer; D maxout 200 x 5 pieces, three layers, linear out."""
    backbone, variant, nets = _setup(packing=3, nets="paper")
    g_count = 2 * 400 + 3 * 400 * 400 + 4 * 2 * 400 + 400 * 2 + 2
    d_count = (6 * 1000 + 1000) + 2 * (200 * 1000 + 1000) + (200 + 1)
    assert sum(p.numel() for p in nets.generator.parameters()) == g_count
    assert sum(p.numel() for p in nets.critic.parameters()) == d_count
    linears = [m for m in [*nets.generator.modules(), *nets.critic.modules()] if isinstance(m, nn.Linear)]
    weights = torch.cat([m.weight.detach().flatten() for m in linears])
    assert abs(float(weights.std()) - 0.02) < 0.001 and abs(float(weights.mean())) < 0.001
    assert all(m.bias is None or not m.bias.any() for m in linears)
    norms = [m for m in nets.generator.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == 4 and all(m.momentum == 0.05 for m in norms)
    assert nets.critic(torch.randn(7, 6)).shape == (7,)


def test_paper_generator_samples_with_population_statistics_in_eval_mode():
    _, _, nets = _setup(nets="paper")
    G = nets.generator
    z = torch.randn(64, 2)
    G.train()
    G(z)  # one training batch moves the running statistics by 5 %
    G.eval()
    with torch.no_grad():
        one, alone = G(z), G(z[:1])
    torch.testing.assert_close(alone, one[:1])  # a sample does not depend on its batch-mates


def test_config_validation_and_backbone_check():
    assert make_config(pacgan.PacGANConfig, {"packing": 4, "nets": "paper"}, "test") == pacgan.PacGANConfig(4, "paper")
    with pytest.raises(Exception, match="packing"):
        make_config(pacgan.PacGANConfig, {"packing": 0}, "test")
    with pytest.raises(Exception, match="nets"):
        make_config(pacgan.PacGANConfig, {"nets": "official"}, "test")
    with pytest.raises(gbench.GbenchError, match="MLP backbone"):
        pacgan.PacGAN().build_critic(object())


def test_registered_as_builtin():
    plugins = gbench.get_plugins()
    assert plugins.variants.get("pacgan") is pacgan.PacGAN
