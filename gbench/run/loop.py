"""The one training loop. Every variant trains here, under the same budget.

Each generator step is preceded by ``d_steps_per_g_step`` critic steps (Goodfellow et al. 2014,
Algorithm 1). The variant supplies the objectives; the harness does everything else, including the
stabilisers of ``[optim]``, applied identically to every variant:

- ``lr_schedule``: both learning rates are base_lr x f(t) during G step t = 1..T (and its D steps),
  f = 1 (constant), 1 - (t-1)/T (linear decay to 0) or (1 + cos(pi (t-1)/T)) / 2 (cosine). f depends
  on the G step only, so a resumed trial recomputes it exactly.
- ``r1_gamma``: D's loss gets gamma/2 E_p |grad_x D(x)|^2 on the real batch (R1, Mescheder et al.
  2018, "Which Training Methods for GANs do actually Converge?", Eq. 9), through the variant's
  ``real_scores`` (D(x_r), or T(x_r, x_f) for a pairwise critic).
- ``ema_decay``: after each G step t, ema <- d ema + (1 - d) G (parameters; buffers copied), and
  ema <- G while t <= ``ema_start`` (Yazici et al. 2019, "The Unusual Effectiveness of Averaging in
  GAN Training"). The EMA generator is evaluated beside G (``gbench.run.trial``).

One loop for S trials. ``train`` trains a group of S trials of one variant configuration at once
(``gbench.run.batched``: stacked nets, one Adam per player over the stacked tensors); S = 1 is the
plain loop. Each trial keeps its own random streams and draws exactly what a single trial draws, in
the same order: per D step its real batch (its data stream), the variant's perturbation (its variant
stream), its latent (its latent stream); then the same for the G step. The S losses are summed
before backward; divergence, loss windows, evaluations and the budget are per trial (a diverged
trial stops counting at its divergence step and is no longer evaluated; the others go on).

Random numbers inside the losses and nets. A loss draws only from the ``rng`` it is given (the
trial's loss stream) or from torch's global RNG (seeded per trial at its net initialisation; e.g.
DeLiGAN's component offsets). Trial by trial (``mode = "loop"``), each trial gets its own ``rng`` and
its own global RNG state (swapped in around its calls), so its draws are those of a single run. In a
vmapped group (``mode = "vmap"``) one call computes all trials: a draw of shape ``shape`` is one draw
of (S, *shape) (``torch.func.vmap(randomness="different")``), trial s taking row s, from the first
trial's ``rng`` and from the global RNG: every trial's draws have the law of a single run's, but they
are not the same numbers. ``--no-batch`` gives single runs.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from gbench.run.batched import Players, Stack, generate, stack_results
from gbench.run.budget import Meter
from gbench.run.record import LossPoint
from gbench.suite import Budget, Optim
from gbench.variant import Nets, Variant, with_rng


class BatchStream:
    """Minibatches of a fixed training set, reshuffled each epoch with the trial's data RNG.

    A uint8 image set stays uint8 in memory; each batch is mapped to [-1, 1] floats.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, rng: torch.Generator) -> None:
        self.data, self.batch_size, self.rng = data, batch_size, rng
        self._order = torch.empty(0, dtype=torch.long, device=data.device)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(len(self.data), generator=self.rng, device=self.data.device)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        batch = self.data[idx]
        return batch.float().div_(127.5).sub_(1.0) if batch.dtype == torch.uint8 else batch


class Precision:
    """fp32, or autocast to bf16 / fp16 (fp16 with loss scaling, one scaler per optimiser)."""

    DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, name: str, device: torch.device) -> None:
        self.dtype, self.device_type = self.DTYPES[name], device.type
        self.scalers: dict[int, torch.amp.GradScaler] = {}
        self.fp16 = name == "fp16"

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if not self.fp16:
            loss.backward()
            optimizer.step()
            return
        scaler = self.scalers.setdefault(id(optimizer), torch.amp.GradScaler(self.device_type))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self, **optimizers: torch.optim.Optimizer) -> dict[str, dict]:
        """The loss scalers' states by player (``g=opt_g, d=opt_d``); empty unless fp16."""
        return {k: self.scalers[id(o)].state_dict() for k, o in optimizers.items() if id(o) in self.scalers}

    def load_state_dict(self, state: dict[str, dict], **optimizers: torch.optim.Optimizer) -> None:
        for k, o in optimizers.items():
            if k in state:
                self.scalers.setdefault(id(o), torch.amp.GradScaler(self.device_type)).load_state_dict(state[k])


def lr_factor(schedule: str, step: int, total: int) -> float:
    """f(t) for G step ``step`` = t in 1..``total``: the learning rates are base_lr x f(t)."""
    frac = (step - 1) / total
    if schedule == "linear":
        return 1.0 - frac
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


@torch.no_grad()
def ema_update(ema: Stack, model: Stack, decay: float, copy: bool = False) -> None:
    """ema <- decay ema + (1 - decay) model on parameters (model's values if ``copy``); buffers copied."""
    for k, e in ema.params.items():
        if copy:
            e.copy_(model.params[k])
        else:
            e.lerp_(model.params[k], 1.0 - decay)
    for k, e in ema.buffers.items():
        e.copy_(model.buffers[k])


def r1_penalty(variant: Variant, players: Players, x_real: torch.Tensor, x_fake: torch.Tensor,
               rngs: Sequence[torch.Generator], gamma: float, active: Sequence[int]) -> torch.Tensor:
    """(S,) gamma/2 E_p |grad_x D(x)|^2 on each trial's real batch (Mescheder et al. 2018, R1),
    differentiable in D. The input gradient is taken outside the vmapped call, so it works batched."""
    x = x_real.detach().requires_grad_(True)
    scores = players.run(with_rng(variant.real_scores), x, x_fake, rngs, active=active)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return 0.5 * gamma * grad.pow(2).flatten(2).sum(2).mean(1)


@dataclass
class Outcome:
    """One trial's training: where it stopped and its loss curve."""

    diverged_at: int | None = None  # the first G step whose losses were not finite
    loss_curve: list[LossPoint] = field(default_factory=list)  # mean losses per logging window
    stopped_at: int = 0  # the G step its training counts up to


@dataclass
class LoopState:
    """What the loop carries from one G step to the next besides the nets, optimisers, RNGs and data
    streams: what a checkpoint saves of it (``save``), and where ``train(start=...)`` resumes."""

    step: int = 0  # G steps done
    outcomes: list[Outcome] = field(default_factory=list)  # per trial
    window: list[torch.Tensor] = field(default_factory=list)  # (S, 2) losses (d, g) per step not yet logged
    scalers: dict[str, dict] = field(default_factory=dict)  # fp16 loss scalers, "g" and "d"


@dataclass
class Group:
    """The live objects of S trials trained together (built by ``gbench.run.trial``)."""

    players: Players
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    streams: list[BatchStream]  # per trial
    latent_rngs: list[torch.Generator]
    variant_rngs: list[torch.Generator]
    loss_rngs: list[torch.Generator]
    z_dim: int
    ema: Stack | None = None
    global_rngs: list[torch.Tensor] | None = None  # per-trial global RNG states (loop mode, S > 1)

    @property
    def size(self) -> int:
        return self.players.size

    def real(self, variant: Variant, perturbs: bool) -> torch.Tensor:
        """(S, B, ...) each trial's next real batch, perturbed by the variant with its own stream."""
        xs = [s.next() for s in self.streams]
        if perturbs:
            xs = [variant.perturb_real(x, r) for x, r in zip(xs, self.variant_rngs)]
        return torch.stack(xs)

    @contextlib.contextmanager
    def own_rng(self, s: int) -> Iterator[None]:
        """Trial ``s``'s own global RNG state swapped in (loop mode, S > 1; else nothing to swap)."""
        if self.global_rngs is None:
            yield
            return
        outer = torch.get_rng_state()
        torch.set_rng_state(self.global_rngs[s])
        try:
            yield
        finally:
            self.global_rngs[s] = torch.get_rng_state()
            torch.set_rng_state(outer)

    def run(self, fn: Callable[..., torch.Tensor], *args: Any, active: Sequence[int] | None = None) -> torch.Tensor:
        """``Players.run``, each trial with its own global RNG state where the group keeps them."""
        if self.global_rngs is None or self.players.mode == "vmap":
            return self.players.run(fn, *args, active=active)
        tensors, rngs = args[:-1], args[-1]
        out = []
        for s in range(self.size):
            if active is not None and s not in active:
                out.append(None)
                continue
            with self.own_rng(s):
                out.append(self.players.run_one(s, fn, *(x[s] for x in tensors), rngs[s]))
        return stack_results(out)

    def latent(self) -> torch.Tensor:
        """(S, B, z_dim) each trial's next latent batch from its own stream."""
        batch, device = self.streams[0].batch_size, self.streams[0].data.device
        return torch.stack([torch.randn(batch, self.z_dim, generator=r, device=device) for r in self.latent_rngs])


def train(
    variant: Variant,
    group: Group,
    budget: Budget,
    meter: Meter,
    checkpoint: Callable[[int, list[int]], None],
    checkpoint_steps: set[int],
    progress: Callable[[int], None] = lambda step: None,
    log_every: int = 100,
    precision: str = "fp32",
    start: LoopState | None = None,
    save: Callable[[LoopState], None] | None = None,
    save_every: int = 0,
    log: Callable[[int, int, dict[str, float]], None] | None = None,
    optim: Optim | None = None,
) -> list[Outcome]:
    """Train the S trials of ``group`` for ``budget``; one ``Outcome`` per trial.

    ``checkpoint(step, active)`` (untimed) is the evaluation callback, called at ``checkpoint_steps``
    with the trials still training; ``progress(step)`` every ``log_every`` steps. Saving the training
    state for a resume is ``save`` (untimed): called after the evaluation at each of
    ``checkpoint_steps`` and every ``save_every`` G steps (0: only there), never at the last step.
    ``start`` continues from a saved ``LoopState`` (with the nets, optimisers, RNGs and data streams
    restored by the caller). ``log(s, step, {"d_loss": ..., "g_loss": ...})`` (untimed) gets trial
    s's logging window means (the observer hooks). ``optim`` gives the stabilisers (module doc).
    ``budget.max_device_seconds`` caps each trial's share (the group's device-seconds / S)."""
    S, players = group.size, group.players
    state = start or LoopState(outcomes=[Outcome() for _ in range(S)])
    outcomes, losses = state.outcomes, state.window
    amp = Precision(precision, group.streams[0].data.device)
    amp.load_state_dict(state.scalers, g=group.opt_g, d=group.opt_d)
    optim = optim or Optim()
    if (group.ema is None) != (optim.ema_decay == 0):
        raise ValueError("train: pass an EMA copy of G exactly when optim.ema_decay > 0")
    perturbs = type(variant).perturb_real is not Variant.perturb_real  # else the identity: skip the calls
    active = [s for s in range(S) if outcomes[s].diverged_at is None]

    d_loss, g_loss_of_fake = with_rng(variant.d_loss), with_rng(variant.g_loss)

    def g_loss(nets: Nets, x_real: torch.Tensor, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return g_loss_of_fake(nets, x_real, nets.generator(z), rng)

    meter.resume()
    for step in range(state.step + 1, budget.g_steps + 1):
        if optim.lr_schedule != "constant":
            f = lr_factor(optim.lr_schedule, step, budget.g_steps)
            set_lr(group.opt_g, optim.g_lr * f)
            set_lr(group.opt_d, optim.d_lr * f)
        # (1) critic: minimise the variant's D objective on real and detached fake batches
        for _ in range(budget.d_steps_per_g_step):
            x_real = group.real(variant, perturbs)
            z = group.latent()
            with torch.no_grad(), amp.autocast():
                x_fake = group.run(generate, z, group.loss_rngs, active=active)
            with amp.autocast():
                loss_d = group.run(d_loss, x_real, x_fake, group.loss_rngs, active=active)
                if optim.r1_gamma > 0:
                    loss_d = loss_d + r1_penalty(variant, players, x_real, x_fake, group.loss_rngs,
                                                 optim.r1_gamma, active)
            group.opt_d.zero_grad(set_to_none=True)
            amp.step(loss_d.sum(), group.opt_d)

        # (2) generator: minimise the variant's G objective (a fresh real batch, for relativistic critics)
        x_real = group.real(variant, perturbs)
        z = group.latent()
        with amp.autocast():
            loss_g = group.run(g_loss, x_real, z, group.loss_rngs, active=active)
        group.opt_g.zero_grad(set_to_none=True)
        amp.step(loss_g.sum(), group.opt_g)
        if group.ema is not None:
            ema_update(group.ema, players.g, optim.ema_decay, copy=step <= optim.ema_start)

        losses.append(torch.stack((loss_d.detach().float(), loss_g.detach().float()), 1))  # (S, 2)
        last = step == budget.g_steps
        if len(losses) == log_every or last or step in checkpoint_steps:
            window = torch.stack(losses).cpu()  # (n, S, 2)
            losses = []
            for s in list(active):
                w, out = window[:, s].contiguous(), outcomes[s]
                out.stopped_at = step
                finite = torch.isfinite(w).all(1)
                if not finite.all():
                    out.diverged_at = step - len(w) + 1 + int((~finite).nonzero()[0])
                    out.stopped_at = out.diverged_at  # consumed: up to the divergence step, not the window's end
                    active.remove(s)
                    continue
                d_mean, g_mean = w.mean(0).tolist()
                out.loss_curve.append(LossPoint(step, d_mean, g_mean))
            progress(step)
            if log is not None:
                meter.pause()
                for s in active:
                    point = outcomes[s].loss_curve[-1]
                    log(s, step, {"d_loss": point.d_loss, "g_loss": point.g_loss})
                meter.resume()
            if not active:
                break
        if step in checkpoint_steps:
            meter.pause()
            checkpoint(step, list(active))
            meter.resume()
        if save is not None and step < budget.g_steps and (step in checkpoint_steps or
                                                            (save_every > 0 and step % save_every == 0)):
            meter.pause()
            state.step, state.window = step, losses
            state.scalers = amp.state_dict(g=group.opt_g, d=group.opt_d)
            save(state)
            meter.resume()
        if budget.max_device_seconds and meter.device_seconds() / S >= budget.max_device_seconds:
            meter.stopped_by = "max_device_seconds"
            for s in active:
                outcomes[s].stopped_at = step
            break
    meter.pause()
    meter.stopped_by = meter.stopped_by or "g_steps"
    return outcomes
