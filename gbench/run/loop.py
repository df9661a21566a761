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
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from gbench.run.budget import Meter
from gbench.suite import Budget, Optim
from gbench.variant import Nets, Variant


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
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, copy: bool = False) -> None:
    """ema <- decay ema + (1 - decay) model on parameters (model's values if ``copy``); buffers copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        if copy:
            e.copy_(p)
        else:
            e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def r1_penalty(variant: Variant, nets: Nets, x_real: torch.Tensor, x_fake: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma/2 E_p |grad_x D(x)|^2 on the real batch (Mescheder et al. 2018, R1), differentiable in D."""
    x = x_real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(variant.real_scores(nets, x, x_fake).sum(), x, create_graph=True)
    return 0.5 * gamma * grad.pow(2).flatten(1).sum(1).mean()


@dataclass
class Outcome:
    diverged_at: int | None = None  # the first G step whose losses were not finite
    loss_curve: list[dict] = field(default_factory=list)  # mean losses per logging window


@dataclass
class LoopState:
    """What the loop carries from one G step to the next besides the nets, optimisers, RNGs and data
    stream: what a checkpoint saves of it (``save``), and where ``train(start=...)`` resumes."""

    step: int = 0  # G steps done
    outcome: Outcome = field(default_factory=Outcome)
    window: list[torch.Tensor] = field(default_factory=list)  # (d, g) losses not yet logged
    scalers: dict[str, dict] = field(default_factory=dict)  # fp16 loss scalers, "g" and "d"


def train(
    variant: Variant,
    nets: Nets,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    data: BatchStream,
    latent: Callable[[], torch.Tensor],
    variant_rng: torch.Generator,
    budget: Budget,
    meter: Meter,
    checkpoint: Callable[[int], None],
    checkpoint_steps: set[int],
    progress: Callable[[int], None] = lambda step: None,
    log_every: int = 100,
    precision: str = "fp32",
    start: LoopState | None = None,
    save: Callable[[LoopState], None] | None = None,
    save_every: int = 0,
    log: Callable[[int, dict[str, float]], None] | None = None,
    optim: Optim | None = None,
    ema: torch.nn.Module | None = None,
) -> Outcome:
    """Train ``nets`` for ``budget``; call ``checkpoint(step)`` (untimed) at ``checkpoint_steps``
    and ``progress(step)`` every ``log_every`` steps.

    ``checkpoint`` is the evaluation callback. Saving the training state for a resume is ``save``
    (untimed): called after the evaluation at each of ``checkpoint_steps`` and every ``save_every`` G
    steps (0: only there), never at the last step. ``start`` continues from a saved ``LoopState``
    (with the nets, optimisers, RNGs and data stream restored by the caller). ``log(step, {"d_loss":
    ..., "g_loss": ...})`` (untimed) gets each logging window's mean losses (the observer hooks).
    ``optim`` gives the stabilisers (module docstring); ``ema`` is the EMA copy of G they update."""
    G, used = nets.generator, meter.consumed
    state = start or LoopState()
    outcome, losses = state.outcome, state.window
    amp = Precision(precision, data.data.device)
    amp.load_state_dict(state.scalers, g=opt_g, d=opt_d)
    optim = optim or Optim()
    if (ema is None) != (optim.ema_decay == 0):
        raise ValueError("train: pass an EMA copy of G exactly when optim.ema_decay > 0")
    meter.resume()
    for step in range(state.step + 1, budget.g_steps + 1):
        if optim.lr_schedule != "constant":
            f = lr_factor(optim.lr_schedule, step, budget.g_steps)
            set_lr(opt_g, optim.g_lr * f)
            set_lr(opt_d, optim.d_lr * f)
        # (1) critic: minimise the variant's D objective on real and detached fake batches
        for _ in range(budget.d_steps_per_g_step):
            x_real = variant.perturb_real(data.next(), variant_rng)
            with torch.no_grad(), amp.autocast():
                x_fake = G(latent())
            with amp.autocast():
                loss_d = variant.d_loss(nets, x_real, x_fake)
                if optim.r1_gamma > 0:
                    loss_d = loss_d + r1_penalty(variant, nets, x_real, x_fake, optim.r1_gamma)
            opt_d.zero_grad(set_to_none=True)
            amp.step(loss_d, opt_d)

        # (2) generator: minimise the variant's G objective (a fresh real batch, for relativistic critics)
        x_real = variant.perturb_real(data.next(), variant_rng)
        with amp.autocast():
            x_fake = G(latent())
            loss_g = variant.g_loss(nets, x_real, x_fake)
        opt_g.zero_grad(set_to_none=True)
        amp.step(loss_g, opt_g)
        if ema is not None:
            ema_update(ema, G, optim.ema_decay, copy=step <= optim.ema_start)

        used.g_steps, used.d_steps = step, step * budget.d_steps_per_g_step
        losses += (loss_d.detach(), loss_g.detach())
        last = step == budget.g_steps
        if len(losses) == 2 * log_every or last or step in checkpoint_steps:
            window = torch.stack(losses).view(-1, 2).cpu()
            losses = []
            finite = torch.isfinite(window).all(1)
            if not finite.all():
                outcome.diverged_at = step - len(window) + 1 + int((~finite).nonzero()[0])
                used.stopped_by = "diverged"  # consumed: up to the divergence step, not the window's end
                used.g_steps, used.d_steps = outcome.diverged_at, outcome.diverged_at * budget.d_steps_per_g_step
                break
            d_mean, g_mean = window.mean(0).tolist()
            outcome.loss_curve.append({"g_step": step, "d_loss": d_mean, "g_loss": g_mean})
            progress(step)
            if log is not None:
                meter.pause()
                log(step, {"d_loss": d_mean, "g_loss": g_mean})
                meter.resume()
        if step in checkpoint_steps:
            meter.pause()
            checkpoint(step)
            meter.resume()
        if save is not None and step < budget.g_steps and (step in checkpoint_steps or
                                                            (save_every > 0 and step % save_every == 0)):
            meter.pause()
            state.step, state.window, state.scalers = step, losses, amp.state_dict(g=opt_g, d=opt_d)
            save(state)
            meter.resume()
        if budget.max_device_seconds and meter.device_seconds() >= budget.max_device_seconds:
            used.stopped_by = "max_device_seconds"
            break
    meter.pause()
    used.stopped_by = used.stopped_by or "g_steps"
    batch = budget.batch_size
    used.d_real_images = used.d_fake_images = used.d_steps * batch
    used.g_images = used.g_steps * batch
    return outcome
