"""(alpha_D, alpha_G)-GAN: GANs on the tunable alpha-loss.

alpha-GAN: Kurri, Sypherd & Sankar, "Realizing GANs via a Tunable Loss Function", ITW 2021
(arXiv:2106.05232). Dual-objective (alpha_D, alpha_G)-GAN: Welfert, Otstot, Kurri & Sankar,
"Towards Addressing GAN Training Instabilities: Dual-objective GANs with Tunable Parameters",
ISIT 2023 (arXiv:2302.14320).

The alpha-loss of a prediction p = sigma(s) for a label y in {0, 1} is (Welfert et al. Eq. 2)
    l_alpha(y, p) = alpha/(alpha-1) * (1 - y p^((alpha-1)/alpha) - (1-y) (1-p)^((alpha-1)/alpha)),
the log-loss at alpha = 1, 1 - y p - (1-y)(1-p) at alpha = inf and y/p + (1-y)/(1-p) - 1 at 1/2.
D minimises l_{alpha_D}(1, D(x_r)) + l_{alpha_D}(0, D(G z)); the saturating G minimises
-l_{alpha_G}(0, D(G z)) (Eq. 5), the non-saturating G l_{alpha_G}(1, D(G z)) (Eqs. 10-11).
(1, 1) is the standard GAN, so a suite's "alpha-gan" row means something only at other alphas: the
authors' ring settings are (0.3, 1) saturating and (0.5, 1.2) non-saturating (Welfert et al. 2023,
Fig. 2(b) and Table III).

Stable form, finite for every alpha in (0, inf]: computed from log-probabilities, p^k = exp(t) with
t = k log p and k = (alpha-1)/alpha, through expm1. For alpha < 1, k < 0 and p^k blows up as p -> 0
(at alpha = 0.01 it is p^-99), so (i) log p is clamped at -16 (p >= 1.1e-7, the official code's
1e-7 clamp on p) and (ii) above t = MAX_EXPONENT, exp(t) is continued by its tangent,
e^M (1 + t - M): the loss stays finite and increasing, and a sample past that point keeps the
largest representable gradient instead of overflowing (inf, then NaN in backward) or losing its
gradient. Exact wherever p^k <= e^M; with M = 38 that is everywhere for alpha >= 0.3 (the authors'
smallest ring alpha), and only the region p < e^(-38 alpha/(1-alpha)) is linearised below it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import gbench

MIN_LOG_PROB = -16.0  # log p clamp for alpha < 1: p >= 1.1e-7, like the official 1e-7 clamp on p
MAX_EXPONENT = 38.0  # t = k log p past which exp(t) is linearised: >= 16 (1 - 0.3) / 0.3 = 37.3, and
# e^(2 M) = 1e33 leaves float32 (max 3e38) room for Adam's squared gradients


def alpha_loss(s: torch.Tensor, y: float | torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-sample l_alpha(y, sigma(s)) for logits ``s`` and labels ``y`` in [0, 1]; alpha in (0, inf]."""
    y = torch.as_tensor(y, dtype=s.dtype, device=s.device).expand_as(s)
    if abs(alpha - 1.0) < 1e-4:
        return F.binary_cross_entropy_with_logits(s, y, reduction="none")
    log_p, log_q = F.logsigmoid(s), F.logsigmoid(-s)  # log p, log(1 - p)
    if math.isinf(alpha):
        return 1 - y * log_p.exp() - (1 - y) * log_q.exp()
    k = (alpha - 1) / alpha  # alpha / (alpha - 1) = 1 / k
    if alpha < 1:
        log_p, log_q = log_p.clamp(min=MIN_LOG_PROB), log_q.clamp(min=MIN_LOG_PROB)
        return (y * _expm1_tangent(k * log_p) + (1 - y) * _expm1_tangent(k * log_q)) / -k
    return -(y * torch.expm1(k * log_p) + (1 - y) * torch.expm1(k * log_q)) / k


def _expm1_tangent(t: torch.Tensor) -> torch.Tensor:
    """expm1(t) for t <= MAX_EXPONENT, continued by its tangent e^M (1 + t - M) - 1 above (C^1, finite)."""
    m = MAX_EXPONENT
    return torch.where(t < m, torch.expm1(t.clamp(max=m)), math.exp(m) * (1 + (t - m)) - 1)


def d_loss(s_real: torch.Tensor, s_fake: torch.Tensor, alpha_d: float) -> torch.Tensor:
    """E_p l_{alpha_D}(1, D(x)) + E_q l_{alpha_D}(0, D(x)): minus the value V_{alpha_D}."""
    return alpha_loss(s_real, 1.0, alpha_d).mean() + alpha_loss(s_fake, 0.0, alpha_d).mean()


def g_loss(s_fake: torch.Tensor, alpha_g: float, non_saturating: bool = True) -> torch.Tensor:
    """Non-saturating E_q l_{alpha_G}(1, D(x)), or saturating -E_q l_{alpha_G}(0, D(x))."""
    if non_saturating:
        return alpha_loss(s_fake, 1.0, alpha_g).mean()
    return -alpha_loss(s_fake, 0.0, alpha_g).mean()


@dataclass(frozen=True)
class AlphaGANConfig(gbench.VariantConfig):
    alpha_d: float = 1.0  # alpha of D's loss, in (0, inf]; < 1 stabilises the saturating ring (best 0.3)
    alpha_g: float = 1.0  # alpha of G's loss, in (0, inf]; NS ring best (alpha_d, alpha_g) = (0.5, 1.2)
    non_saturating: bool = True  # False: G minimises -l_{alpha_G}(0, D(G z)) (Eq. 5)

    def __post_init__(self) -> None:
        for key in ("alpha_d", "alpha_g"):
            value = getattr(self, key)
            if not value > 0:  # also rejects NaN
                raise ValueError(f"{key} must be > 0 (inf allowed), got {value}")


class AlphaGAN(gbench.Variant):
    name = "alpha-gan"
    paper = (
        "Kurri, Sypherd & Sankar 2021, Realizing GANs via a Tunable Loss Function (arXiv:2106.05232); "
        "Welfert et al. 2023, Dual-objective GANs with Tunable Parameters (arXiv:2302.14320)"
    )
    Config = AlphaGANConfig

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return d_loss(nets.critic(x_real), nets.critic(x_fake), self.config.alpha_d)

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return g_loss(nets.critic(x_fake), self.config.alpha_g, self.config.non_saturating)


@gbench.hookimpl
def register_variants(register) -> None:
    register(AlphaGAN)
