"""Stacked trials: S copies of one variant's nets as (S, ...) tensors, and whether a group may be vmapped.

``gbench.run.loop.train`` trains a group of S trials (one variant configuration, S seeds) at once.
Their nets are built one by one exactly as a single trial builds them, then stacked
(``torch.func.stack_module_state``): each parameter and buffer becomes one (S, ...) tensor, and one
Adam per player steps all of them (Adam is elementwise, so it is S Adams with the same settings).
A step computes the S trials' losses either

* ``"vmap"``: in one vectorised call, ``torch.func.vmap`` over the trial axis of
  ``torch.func.functional_call`` on the variant's own ``d_loss`` / ``g_loss`` (nets, batches, rng):
  one kernel per layer for all trials; or
* ``"loop"``: trial by trial (``functional_call`` on trial s's slices), the kernels of a single
  trial: S = 1 is the plain loop, and a group that cannot be vmapped trains this way (named, with
  the reason, by :func:`plan`).

Either way the S losses are summed before one backward (trial s's gradient is its own loss's).
:func:`plan` decides once per variant configuration by running one D and one G loss both ways on a
probe group and comparing: an operation vmap cannot batch (spectral normalisation's in-place
power iteration, ``torch.autograd.grad`` inside a loss, ``.item()``), or any difference beyond
float rounding, gives ``"loop"`` with its reason.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gbench.variant import Nets, Variant, with_rng

PROBE_RTOL = 1e-4  # vmap vs trial by trial on the probe: float rounding only


@dataclass
class Stack:
    """S nets of one structure as stacked tensors; ``module`` is the template they are called through."""

    module: nn.Module
    params: dict[str, torch.Tensor]  # name -> (S, ...) leaf tensors, trained
    buffers: dict[str, torch.Tensor]  # name -> (S, ...), updated in place by the nets (BatchNorm, SN)

    @property
    def size(self) -> int:
        return next(iter({**self.params, **self.buffers}.values())).shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def trial(self, s: int) -> dict[str, torch.Tensor]:
        """Trial ``s``'s parameters and buffers (views: gradients and in-place updates reach the stack)."""
        return {k: v[s] for k, v in self.tensors().items()}

    def unstack(self, s: int) -> nn.Module:
        """Trial ``s``'s net as an ordinary module (a copy of its current values)."""
        net = copy.deepcopy(self.module)
        net.load_state_dict({k: v[s].detach().clone() for k, v in self.tensors().items()}, strict=False)
        own = dict(net.named_parameters())
        with torch.no_grad():  # parametrised weights (SN) load through their originals
            for k, v in self.params.items():
                own[k].copy_(v[s])
        return net

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.tensors().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.tensors().items():
                v.copy_(state[k])


def stack(nets: Sequence[nn.Module]) -> Stack:
    """Stack ``nets`` (same structure); the template is a copy of the first."""
    params, buffers = stack_module_state(list(nets))
    return Stack(copy.deepcopy(nets[0]), dict(params), {k: v.clone() for k, v in buffers.items()})


class Pair(nn.Module):
    """Both players in one module, so one ``functional_call`` swaps in a trial's G and D together."""

    def __init__(self, generator: nn.Module, critic: nn.Module) -> None:
        super().__init__()
        self.generator, self.critic = generator, critic

    def forward(self, fn: Callable[[Nets], torch.Tensor]) -> torch.Tensor:
        return fn(Nets(self.generator, self.critic))


@dataclass
class Players:
    """The S trials' generators and critics, stacked, and how their losses are computed (``mode``)."""

    g: Stack
    d: Stack
    mode: str  # "vmap" or "loop"

    def __post_init__(self) -> None:
        self.pair = Pair(self.g.module, self.d.module)

    @property
    def size(self) -> int:
        return self.g.size

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"generator.{k}": v for k, v in self.g.tensors().items()},
                **{f"critic.{k}": v for k, v in self.d.tensors().items()}}

    def run(self, fn: Callable[..., torch.Tensor], *args: torch.Tensor | Sequence[Any],
            active: Sequence[int] | None = None) -> torch.Tensor:
        """(S, ...) results of ``fn(nets, *trial_args, rng)`` for each trial: ``args`` are (S, ...)
        tensors sliced per trial; the last is the trials' generators (a list, one per trial; in vmap
        mode the first is used by all, its draws spread over the trials: module doc of ``gbench.run.loop``).
        In loop mode only the ``active`` trials are computed (the others' results are zeros)."""
        *tensors, rngs = args
        if self.mode == "vmap":
            rng = rngs[0]

            def one(params: dict[str, torch.Tensor], *xs: torch.Tensor) -> torch.Tensor:
                return functional_call(self.pair, params, (lambda nets: fn(nets, *xs, rng),))

            return vmap(one, randomness="different")(self._tensors(), *tensors)
        out = [None if active is not None and s not in active else
               self.run_one(s, fn, *(x[s] for x in tensors), rngs[s]) for s in range(self.size)]
        return stack_results(out)

    def run_one(self, s: int, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """``fn(nets, *args)`` on trial ``s``'s nets (the kernels of a single trial)."""
        params = {k: v[s] for k, v in self._tensors().items()}
        return functional_call(self.pair, params, (lambda nets: fn(nets, *args),))


def stack_results(out: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Per-trial results stacked, zeros for the trials not computed (None)."""
    like = next(o for o in out if o is not None)
    return torch.stack([torch.zeros_like(like) if o is None else o for o in out])


def generate(nets: Nets, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return nets.generator(z)


def probe(variant: Variant, build: Callable[[int], Nets], x_real: torch.Tensor, z: torch.Tensor,
          rngs: Callable[[], list[torch.Generator]]) -> str | None:
    """Why a group of this variant cannot be vmapped (None: it can). ``build(s)`` makes probe trial
    s's nets; ``x_real`` (S, B, ...) and ``z`` (S, B, z_dim) are probe batches; ``rngs()`` fresh
    probe generators. One D loss and one G loss (values, parameter gradients, buffers after) are
    computed vmapped and trial by trial and must agree to ``PROBE_RTOL``."""
    S = x_real.shape[0]
    results = []
    for mode in ("vmap", "loop"):
        torch.manual_seed(0)
        nets = [build(s) for s in range(S)]
        players = Players(stack([n.generator for n in nets]), stack([n.critic for n in nets]), mode)
        try:
            with torch.no_grad():
                x_fake = players.run(generate, z, rngs())
            d = players.run(with_rng(variant.d_loss), x_real, x_fake, rngs())

            def g_loss(nets: Nets, x_r: torch.Tensor, z_: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
                return with_rng(variant.g_loss)(nets, x_r, nets.generator(z_), rng)

            g = players.run(g_loss, x_real, z, rngs())
            (d.sum() + g.sum()).backward()
        except Exception as exc:  # noqa: BLE001 - whatever vmap cannot do is the reason, in one line
            if mode == "loop":
                raise
            return f"torch.func.vmap cannot run it ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        grads = [p.grad if p.grad is not None else torch.zeros_like(p)
                 for st in (players.g, players.d) for p in st.params.values()]
        results.append([d.detach(), g.detach(), *grads, *players.g.buffers.values(), *players.d.buffers.values()])
    for a, b in zip(*results):
        scale = float(torch.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0).abs().max().clamp(min=1e-6))
        if a.shape != b.shape or not torch.allclose(a, b, rtol=PROBE_RTOL, atol=PROBE_RTOL * scale, equal_nan=True):
            return "its vmapped losses or gradients differ from trial-by-trial ones beyond float rounding"
    return None
