"""The contract every registered variant keeps with the harness (see ``gbench/variant.py``).

Parametrised over every variant the installed plugins register, built-in or third-party, so a
newly installed variant package is checked by running this file.
"""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

import gbench
from gbench.datasets.toy import ring8

VARIANTS = gbench.get_plugins().variants.names()
N = 32


def build(name: str, seed: int = 0) -> tuple[gbench.Variant, gbench.Nets, torch.Tensor, torch.Tensor]:
    """The variant with its default Config, its nets on a tiny backbone, a (perturbed) real batch and z."""
    torch.manual_seed(seed)
    variant = gbench.get_plugins().variants.get(name)()
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=16, d_hidden=16, depth=2)
    nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
    rng = torch.Generator().manual_seed(seed)
    x_real = ring8().sample(N, rng)
    perturbed = variant.perturb_real(x_real, rng)
    assert perturbed.shape == x_real.shape, "perturb_real must keep the batch shape"
    z = torch.randn(N, 2, generator=rng)
    return variant, nets, perturbed, z


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def grads(loss: torch.Tensor, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor | None]:
    found = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
    return dict(zip(params, found))


def assert_finite_scalar(loss: object, what: str) -> None:
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"{what} must be a scalar tensor, got {loss!r}"
    assert loss.requires_grad, f"{what} does not depend on any parameter"
    assert math.isfinite(loss.item()), f"{what} is {loss.item()}"


def assert_reaches(found: dict[str, torch.Tensor | None], what: str) -> None:
    missing = [name for name, g in found.items() if g is None]
    assert not missing, f"{what} does not reach {missing}"
    assert any(bool(g.ne(0).any()) for g in found.values() if g is not None), f"{what} is zero everywhere"


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_contract(name: str) -> None:
    variant, nets, x_real, z = build(name)
    cls = type(variant)

    # who it is
    assert cls.name == name
    assert isinstance(cls.paper, str) and cls.paper.strip(), f"{name} must cite its paper"
    config = variant.config
    assert isinstance(config, gbench.VariantConfig) and type(config) is cls.Config
    assert dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen, "Config must be frozen"
    fields = [f.name for f in dataclasses.fields(config)]
    annotations = vars(type(config)).get("__annotations__", {})
    undeclared = {k for k, a in annotations.items() if "ClassVar" not in str(a)} - set(fields)
    assert not undeclared, f"Config fields {undeclared} are not dataclass fields: @dataclass(frozen=True) missing?"
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, fields[0], getattr(config, fields[0]))
    described = variant.describe()
    assert json.loads(json.dumps(described)) == described, "describe() must be JSON-serialisable"

    # the generator maps z of shape (N, z_dim) to x of shape (N, 2)
    critic_params, generator_params = trainable(nets.critic), trainable(nets.generator)
    assert critic_params and generator_params
    assert not set(map(id, critic_params.values())) & set(map(id, generator_params.values()))
    x_fake = nets.generator(z)
    assert x_fake.shape == (N, 2)

    # D's loss trains the critic only: the harness passes x_fake detached
    d_loss = variant.d_loss(nets, x_real, x_fake.detach())
    assert_finite_scalar(d_loss, "d_loss")
    assert_reaches(grads(d_loss, critic_params), "d_loss's gradient on the critic")
    leaked = [k for k, g in grads(d_loss, generator_params).items() if g is not None]
    assert not leaked, f"d_loss has a gradient on generator parameters {leaked}"

    # G's loss trains the generator
    g_loss = variant.g_loss(nets, x_real, x_fake)
    assert_finite_scalar(g_loss, "g_loss")
    assert_reaches(grads(g_loss, generator_params), "g_loss's gradient on the generator")

    # same seed, same losses
    variant2, nets2, x_real2, z2 = build(name)
    x_fake2 = nets2.generator(z2)
    assert torch.equal(x_real2, x_real) and torch.equal(x_fake2, x_fake)
    assert torch.equal(variant2.d_loss(nets2, x_real2, x_fake2.detach()), d_loss)
    assert torch.equal(variant2.g_loss(nets2, x_real2, x_fake2), g_loss)
