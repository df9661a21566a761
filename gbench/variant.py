"""The contract between the harness and a GAN variant.

The harness owns the loop, optimisers, D:G schedule, seeds, device and budget. A variant owns its
math: which networks it builds from the shared backbone, its D and G objectives (given the nets
and both batches, so relativistic and pairwise critics fit), and anything it does to the real
stream. A variant never calls ``backward()``, ``optimizer.step()``, ``torch.manual_seed`` or
``.cuda()``.

Random numbers. The harness owns every generator: ``perturb_real`` draws from the trial's variant
stream and the losses from the ``rng`` they are given (the trial's loss stream); a net may also draw
from torch's global RNG (seeded per trial before its nets are built; DeLiGAN's component offsets).
Nothing else may draw. Gradients. A loss may differentiate inside itself with
``torch.autograd.grad`` (a gradient penalty); it then trains trial by trial in a batched group,
since ``torch.func.vmap`` cannot batch that call (the harness's own R1 penalty, ``[optim]
r1_gamma``, is computed outside the vmapped call and batches). Batching (``gbench.run.loop``) calls
the losses once per group under ``torch.func.vmap`` where that gives the trial-by-trial results
(checked once per configuration, ``gbench.run.batched.probe``), so a loss also must not call
``.item()`` or branch on tensor values; one that does is trained trial by trial, named in the run's
output with the reason.
"""
from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn



@dataclass(frozen=True)
class VariantConfig:
    """Base for a variant's settings; subclass it with documented, typed fields."""


@dataclass
class Nets:
    """The two players of one trial, as built by the variant."""

    generator: nn.Module  # z ~ N(0, I) of shape (N, z_dim) -> x
    critic: nn.Module  # whatever the variant's losses call (a discriminator, a pairwise critic...)


class Variant(ABC):
    """A GAN variant. Subclass, set ``name``/``paper``/``Config``, implement the two losses."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    Config: ClassVar[type[VariantConfig]] = VariantConfig

    def __init__(self, config: VariantConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    # -- structure ------------------------------------------------------------------------
    def build_generator(self, backbone: Any) -> nn.Module:
        """The generator; by default the backbone's."""
        return backbone.generator()

    def build_critic(self, backbone: Any) -> nn.Module:
        """The critic the losses use; by default the backbone's discriminator (x -> logits (N,))."""
        return backbone.discriminator()

    # -- the real-data stream -----------------------------------------------------------------
    def perturb_real(self, x_real: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Transform each real batch before both players see it (identity unless overridden)."""
        return x_real

    def training_law(self, dataset: Any) -> Any:
        """The law of the stream this variant trains on, for exact divergences on toys."""
        return dataset

    target_jsd: float | None = None  # a target JSD(p, p_g) in bits, if the variant controls one

    def score_against(self, reference_weight: float) -> None:
        """Called before training with the mixture weight the training law puts on the law samples are
        scored against (1 when it is the training law itself, 0 when it is not a part of it). A variant
        whose guarantee depends on it adapts here, or raises ``GbenchError`` with the reason."""

    def target_details(self) -> dict[str, Any]:
        """How a variant with a ``target_jsd`` meets it, recorded beside the target (e.g. its eps)."""
        return {}

    # -- objectives (scalars to minimise) ------------------------------------------------------
    @abstractmethod
    def d_loss(self, nets: Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        """The critic's loss; ``x_fake`` is already detached from G. ``rng``: the only generator a
        loss may draw from (the harness always passes it; None only outside the harness)."""

    @abstractmethod
    def g_loss(self, nets: Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
               rng: torch.Generator | None = None) -> torch.Tensor:
        """The generator's loss; gets a real batch too (relativistic and pairwise critics need it)."""

    def real_scores(self, nets: Nets, x_real: torch.Tensor, x_fake: torch.Tensor,
                    rng: torch.Generator | None = None) -> torch.Tensor:
        """The critic's outputs (N,) on real data, for the harness's R1 penalty: D(x_real) by default."""
        return nets.critic(x_real)

    def describe(self) -> dict[str, Any]:
        """The variant's settings, for results and reports."""
        return {"variant": self.name, **config_dict(self.config)}


def with_rng(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn(nets, x_real, x_fake, rng)`` for a variant's loss or ``real_scores``; one written without
    the ``rng`` argument (the contract before it had one: it draws nothing) is called without it."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(params) >= 4:
        return fn
    return lambda nets, x_real, x_fake, rng: fn(nets, x_real, x_fake)


def config_dict(config: VariantConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def make_config(cls: type[VariantConfig], overrides: Mapping[str, Any], where: str) -> VariantConfig:
    """Build ``cls`` from ``overrides`` with the one settings validator (:func:`gbench.validation.build`):
    unknown keys, wrong types and NaN are errors that say ``where``; infinities are the config's to judge."""
    from gbench.validation import build

    return build(cls, overrides, where, finite=False)
