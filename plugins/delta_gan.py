"""The delta-controlled GAN of Truong (2022), "Generative Adversarial Nets: Can we generate a new
dataset based on only one training set?", arXiv:2210.06005, as reconstructed in algorithms.md §6.2.

The paper's method section could not be obtained; this is our design, consistent with its
abstract. A wrapper around any base variant: each real sample x becomes y = x + B * s * W with
B ~ Bernoulli(eps) per sample and W ~ N(0, I), so the base GAN is trained on
p_delta = (1 - eps) p + eps (p * N(0, s^2 I)). Since a mixture weight eps of anything else moves
the JSD by at most J_perp(eps) bits (equality for a disjoint component), eps = J_perp^{-1}(delta)
guarantees JSD(p, p_delta) <= delta, with near equality when the perturbed part is far from p.
The base variant's nets and losses are used unchanged.

On images (batches of shape (N, C, H, W), data in [-1, 1]) W is a strong sparse perturbation, as
algorithms.md §6.2 proposes for CIFAR, so the perturbed part lies far from p and JSD(p, p_delta)
is close to delta: ``image_noise = "patch"`` (the default) replaces one random patch_size x
patch_size square of each perturbed image (all channels) with uniform noise on [-1, 1];
``"pixels"`` adds N(0, noise_scale^2) noise to a random ``pixel_fraction`` of the pixel positions
(all channels; use a large noise_scale). Perturbed images are clipped to [-1, 1]; the others are
left exactly as they were (B = 0 means y = x, so TV(p, p_delta) <= eps still holds). Other
shapes (the 2-D toys) get the Gaussian W above, unclipped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gbench
from gbench.metrics.jsd import j_perp, j_perp_inverse


IMAGE_NOISES = ("patch", "pixels")
DATA_RANGE = (-1.0, 1.0)  # images are scaled to [-1, 1] (the generators' tanh range)


def perturb(x: torch.Tensor, eps: float, noise_scale: float, rng: torch.Generator) -> torch.Tensor:
    """x + B * noise_scale * W per row, B ~ Bernoulli(eps), W ~ N(0, I), both drawn from ``rng``."""
    hit = torch.rand(x.shape[0], generator=rng, device=x.device, dtype=x.dtype) < eps
    noise = torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
    hit = hit.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(hit, x + noise_scale * noise, x)


def patch_mask(n: int, height: int, width: int, size: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 1, height, width) bool: one size x size square per image (clipped to the image), placed
    uniformly at random inside it."""
    ph, pw = min(size, height), min(size, width)
    top = torch.randint(0, height - ph + 1, (n, 1), generator=rng, device=device)
    left = torch.randint(0, width - pw + 1, (n, 1), generator=rng, device=device)
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    in_rows = (rows >= top) & (rows < top + ph)  # (n, height)
    in_cols = (cols >= left) & (cols < left + pw)  # (n, width)
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


def pixel_mask(
    n: int, height: int, width: int, fraction: float, rng: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(n, 1, height, width) bool: round(fraction * height * width) (at least 1) pixel positions per
    image, chosen uniformly without replacement."""
    count = max(1, round(fraction * height * width))
    scores = torch.rand(n, height * width, generator=rng, device=device)
    chosen = scores.topk(count, dim=1).indices
    mask = torch.zeros(n, height * width, dtype=torch.bool, device=device).scatter_(1, chosen, True)
    return mask.view(n, 1, height, width)


def perturb_images(
    x: torch.Tensor,
    eps: float,
    rng: torch.Generator,
    mode: str = "patch",
    patch_size: int = 8,
    noise_scale: float = 0.5,
    pixel_fraction: float = 0.05,
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1]: each, with probability eps, gets a strong sparse perturbation
    (``mode`` "patch": a random patch_size^2 square replaced with U(-1, 1) noise; "pixels": N(0,
    noise_scale^2) added on a random pixel_fraction of positions), then is clipped to [-1, 1].
    The other images are returned unchanged. Randomness only from ``rng``."""
    if x.dim() != 4:
        raise ValueError(f"perturb_images expects a batch of shape (N, C, H, W), got {tuple(x.shape)}")
    n, _, height, width = x.shape
    device, low, high = x.device, *DATA_RANGE
    hit = (torch.rand(n, generator=rng, device=device) < eps).view(n, 1, 1, 1)
    if mode == "patch":
        where = hit & patch_mask(n, height, width, patch_size, rng, device)
        noise = torch.rand(x.shape, generator=rng, device=device, dtype=x.dtype) * (high - low) + low
        y = torch.where(where, noise, x)
    elif mode == "pixels":
        where = hit & pixel_mask(n, height, width, pixel_fraction, rng, device)
        noise = torch.randn(x.shape, generator=rng, device=device, dtype=x.dtype)
        y = torch.where(where, x + noise_scale * noise, x)
    else:
        raise ValueError(f"image_noise must be one of {', '.join(IMAGE_NOISES)}, got {mode!r}")
    return torch.where(hit, y.clamp(low, high), x)


@dataclass(frozen=True)
class DeltaGANConfig(gbench.VariantConfig):
    base: str = "sgan"  # the variant trained on the perturbed stream, with its default settings
    delta: float = 0.1  # target JSD(p, p_delta) in bits, in [0, 1]; sets eps = J_perp^{-1}(delta)
    noise_scale: float = 0.5  # std of the Gaussian W added to a perturbed sample (toys; images: "pixels")
    image_noise: str = "patch"  # on images: "patch" (U(-1, 1) patch replacement) or "pixels" (sparse Gaussian)
    patch_size: int = 8  # side of the replaced square for image_noise = "patch"
    pixel_fraction: float = 0.05  # fraction of pixel positions hit for image_noise = "pixels"

    def __post_init__(self) -> None:
        if not 0.0 <= self.delta <= 1.0:
            raise ValueError(f"delta must be in [0, 1] bits, got {self.delta}")
        if not self.noise_scale >= 0.0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale}")
        if self.image_noise not in IMAGE_NOISES:
            raise ValueError(f"image_noise must be one of {', '.join(IMAGE_NOISES)}, got {self.image_noise!r}")
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {self.patch_size}")
        if not 0.0 < self.pixel_fraction <= 1.0:
            raise ValueError(f"pixel_fraction must be in (0, 1], got {self.pixel_fraction}")
        if self.base == DeltaGAN.name:
            raise ValueError("base cannot be 'delta-gan' itself")


class DeltaGAN(gbench.Variant):
    name = "delta-gan"
    paper = "Truong 2022, GANs: can we generate a new dataset based on only one training set? (arXiv:2210.06005)"
    Config = DeltaGANConfig

    def __init__(self, config: DeltaGANConfig | None = None) -> None:
        super().__init__(config)
        base_name = self.config.base
        if base_name == self.name:
            raise gbench.GbenchError("delta-gan: base cannot be 'delta-gan' itself")
        variants = gbench.get_plugins().variants
        if base_name not in variants:
            known = ", ".join(n for n in variants.names() if n != self.name) or "none"
            raise gbench.GbenchError(f"delta-gan: unknown base variant {base_name!r} (known: {known})")
        base_cls = variants.get(base_name)
        if issubclass(base_cls, DeltaGAN):
            raise gbench.GbenchError(f"delta-gan: base {base_name!r} is itself a delta-controlled GAN")
        self.base: gbench.Variant = base_cls()
        self._epsilon = j_perp_inverse(self.config.delta)
        self._reference_weight = 1.0
        self.target_jsd = self.config.delta

    def score_against(self, reference_weight: float) -> None:
        """Choose eps so that JSD(r, p_delta) <= delta holds against the scoring reference r.

        If the training law is a r + (1 - a) o (a = ``reference_weight``), then p_delta puts weight
        a (1 - eps) on r and the rest on other laws, so JSD(r, p_delta) <= J_perp(1 - a (1 - eps)).
        eps = 1 - (1 - J_perp^{-1}(delta)) / a makes that bound delta; it exists only when
        a >= 1 - J_perp^{-1}(delta), otherwise no eps can guarantee the target and the suite is refused."""
        budget = j_perp_inverse(self.config.delta)  # the largest weight off r that keeps JSD <= delta
        if reference_weight < 1.0 - budget:
            raise gbench.GbenchError(
                f"delta = {self.config.delta:g} cannot be guaranteed against the scoring reference: the training "
                f"data puts weight {reference_weight:.3g} on it, and delta = {self.config.delta:g} needs at least "
                f"{1.0 - budget:.3g} (raise that weight, or use delta >= {j_perp(1.0 - reference_weight):.3g})")
        self._reference_weight = reference_weight
        self._epsilon = 1.0 if budget >= 1.0 else 1.0 - (1.0 - budget) / reference_weight

    def target_details(self) -> dict[str, Any]:
        return {"eps": self._epsilon, "reference_weight": self._reference_weight,
                "guarantee": "JSD(reference, p_delta) <= J_perp(1 - reference_weight (1 - eps)) = delta"}

    @property
    def epsilon(self) -> float:
        """The fraction of perturbed samples, J_perp^{-1}(delta)."""
        return self._epsilon

    # -- the base's structure and objectives ----------------------------------------------------
    def build_generator(self, backbone: Any) -> nn.Module:
        return self.base.build_generator(backbone)

    def build_critic(self, backbone: Any) -> nn.Module:
        return self.base.build_critic(backbone)

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return self.base.d_loss(nets, x_real, x_fake, rng)

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        return self.base.g_loss(nets, x_real, x_fake, rng)

    # -- the perturbed real stream ----------------------------------------------------------------
    def perturb_real(self, x_real: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        x = self.base.perturb_real(x_real, rng)
        cfg = self.config
        if x.dim() == 4:  # images (N, C, H, W) in [-1, 1]: strong sparse W, then clip
            return perturb_images(x, self._epsilon, rng, cfg.image_noise, cfg.patch_size, cfg.noise_scale,
                                  cfg.pixel_fraction)
        return perturb(x, self._epsilon, cfg.noise_scale, rng)

    def training_law(self, dataset: Any) -> Any:
        """(1 - eps) p + eps (p * N(0, noise_scale^2 I)) exactly on a toy mixture; None otherwise."""
        law = self.base.training_law(dataset)
        if not isinstance(law, gbench.ToyMixture):
            return None
        eps = self._epsilon
        if eps == 0.0 or self.config.noise_scale == 0.0:
            return law
        noisy = law.convolve(self.config.noise_scale)
        if eps == 1.0:
            return noisy
        return gbench.ToyMixture.mix([law, noisy], [1 - eps, eps])

    def describe(self) -> dict[str, Any]:
        base_config = {f.name: getattr(self.base.config, f.name) for f in dataclasses.fields(self.base.config)}
        return {
            "variant": self.name,
            "base": self.config.base,
            "delta": self.config.delta,
            "eps": self._epsilon,
            "reference_weight": self._reference_weight,
            "noise_scale": self.config.noise_scale,
            "image_noise": self.config.image_noise,
            "patch_size": self.config.patch_size,
            "pixel_fraction": self.config.pixel_fraction,
            "base_config": base_config,
        }


@gbench.hookimpl
def register_variants(register) -> None:
    register(DeltaGAN)
