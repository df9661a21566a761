"""Batched seeds: S seeds of one variant trained as one model, one kernel per layer for all seeds.

On the 2-D toys a trial is a few small matrix products per step, so a GPU (and, less so, a CPU)
spends its time launching kernels, not computing. Here the S generators of a group of trials
become one ``StackedMLP`` whose layers hold weights of shape (S, out, in) and biases (S, out),
and a forward pass is one ``torch.baddbmm`` per layer for all seeds (likewise the S critics).

What stays exactly as in S separate ``run_trial`` runs (``gbench.run.trial``):

* initialisation: seed s's nets are built by the variant from the backbone right after
  ``torch.manual_seed(stream_seed(s, STREAM_INIT))``, generator first, then stacked;
* data: seed s gets exactly the batches of a ``BatchStream`` over the (shared) training set with its
  own data generator (``StackedBatchStream`` gathers all seeds' batches in one indexing), its
  latents from its own latent generator and the variant's randomness
  (``perturb_real``) from its own variant generator, in the same order as the loop of
  ``gbench.run.loop.train`` (per D step: real batch, perturbation, latent; then the same for G);
* losses: the variant's own ``d_loss`` / ``g_loss``, evaluated per seed on that seed's critic
  logits (``torch.func.vmap`` over the seed axis, with an identity "critic" fed precomputed logits)
  and SUMMED over seeds, so seed s's gradient is exactly its own loss's gradient;
* optimisers: one ``torch.optim.Adam`` per player over the stacked tensors. Adam is elementwise
  (moments, bias corrections from the common step count, eps added to sqrt(v_hat)), so it is S
  Adams with identical hyper-parameters; no gradient is rescaled, so eps means the same thing. It
  runs in its multi-tensor (``foreach``) form, bitwise equal to the per-tensor form on CPU;
* the D:G schedule, loss-curve windows, divergence detection (per seed: a seed whose losses stop
  being finite is recorded as ``diverged`` at the same step, its evaluations stop, the others go
  on), evaluation points, the evaluation itself (each seed's generator is copied into an ordinary
  module and scored by ``gbench.run.trial.evaluate``), and the record format of ``run_trial``.

What differs: ``consumed.device_seconds`` and ``wall_seconds`` of each seed are its 1/S share of
the group's training time (the group total is ``consumed.batched_device_seconds``), and
``runtime.batched`` = S, ``runtime.batched_seeds`` = the seeds trained together.

Tolerance. The only source of difference is float summation order: a batched matrix product may
sum in another order than the ``addmm`` / ``addmv`` of ``nn.Linear``, and a vmapped loss may be
differentiated piecewise. Measured on CPU (torch 2.14.1, MKL, 1 and 2 threads): NO difference.
Each layer's forward and backward is bitwise that of ``nn.Linear`` (the one-unit critic head is
computed as W @ x^T, which keeps the order of the ``addmv`` that ``nn.Linear`` uses for one
output), and a loss whose vmapped form is not bitwise that of per-seed calls (alpha-gan's alpha = 1
branch, ``binary_cross_entropy_with_logits``) is computed seed by seed instead (``loss_mode``). So
on this CPU the trained weights, loss curves, evaluations and metrics equal those of separate runs
bit for bit (``tests/test_batched.py``: sgan, alpha-gan (0.3, 1) and (1, 1), RaSGAN, delta-gan; 3
seeds, 50 steps; and per-seed divergence). Where the order does differ (a GPU, where cuBLAS picks
other kernels for batched and single products; another BLAS), results drift apart as after any
rounding perturbation of a GAN. Measured by reordering one product on purpose (the critic head as
x @ W^T: ``python benchmarks/batched_seeds.py --tolerance``; ring suite backbone 3x128, sgan, batch
128, lr 1e-3, 4 seeds): after 50 G steps the generator weights agree to at most 1.1e-5 relative
(max |dw| / max |w| per tensor; 0.7e-6 to 1.1e-5 over the seeds), the loss curve and the metrics
exactly; after 2,000 G steps the weights have decorrelated (relative differences ~1) and a seed's
metrics differ as much as two seeds' do (modes 8 vs 6 and 7 vs 8, HQ % 27 vs 77, JSD 0.89 vs 0.53
bits). On such hardware the per-seed tolerance is therefore ~1e-5 relative on weights over tens
of steps, and long runs agree in distribution over seeds, not seed by seed. Determinism: a
batched run repeats bitwise on the same machine, and a seed's numbers do not depend on which other
seeds share its model (checked on CPU; on a GPU as far as its kernels are deterministic).

Supported: suites with the ``mlp`` backbone on a toy dataset, fp32, no ``max_device_seconds``
cap, and variants whose nets are the plain backbone nets (Linear + elementwise activation stacks,
no spectral norm) and whose losses are pure functions of the critic's logits on the real and fake
batches: ``sgan``, ``rsgan`` (both forms), ``alpha-gan``, ``delta-gan`` over one of those. Others
(``tgan``'s pairwise critic, ``deligan``'s mixture latent) are refused with a ``GbenchError``
naming the reason (``check``); the runner then trains them as separate trials.
"""
from __future__ import annotations

import copy
import dataclasses
import time
import traceback
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from gbench.backbones import Logits, build_backbone
from gbench.run.budget import Meter
from gbench.errors import GbenchError
from gbench.run.loop import lr_factor, set_lr
from gbench.observers import notify, observing
from gbench.run.trial import (
    STREAM_DATA,
    STREAM_INIT,
    STREAM_LATENT,
    STREAM_VARIANT,
    Runtime,
    Trial,
    _target,
    build_dataset,
    build_reference,
    build_variant,
    describe,
    evaluate,
    metric_options,
    metrics_for,
    stream_seed,
)
from gbench.variant import Nets, Variant

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity)  # elementwise, stateless


# -- stacked networks ---------------------------------------------------------------------------------


def _layers(module: nn.Module) -> tuple[list[nn.Module], bool]:
    """``module`` as a flat list of Linear / activation layers, and whether its output is squeezed
    (a ``Logits`` critic). Anything else raises GbenchError."""
    if parametrize.is_parametrized(module) or any(parametrize.is_parametrized(m) for m in module.modules()):
        raise GbenchError("spectral normalisation (parametrised weights) is not supported")
    if type(module) is Logits:
        body, squeeze = _layers(module.body)
        if squeeze:
            raise GbenchError("nested Logits heads are not supported")
        return body + _layers(module.head)[0], True
    if type(module) is nn.Sequential:
        out: list[nn.Module] = []
        for child in module:
            layers, squeeze = _layers(child)
            if squeeze:
                raise GbenchError("a Logits head inside a Sequential is not supported")
            out += layers
        return out, False
    if type(module) is nn.Linear or type(module) in ACTIVATIONS:
        return [module], False
    raise GbenchError(f"layer {type(module).__name__} is not supported (only Linear and elementwise activations)")


class StackedMLP(nn.Module):
    """S copies of one MLP architecture with their own weights: (S, B, in) -> (S, B, out)."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        structures = [_layers(net) for net in nets]
        first, self.squeeze = structures[0]
        for layers, squeeze in structures[1:]:
            same = squeeze == self.squeeze and len(layers) == len(first) and all(
                type(a) is type(b) and (not isinstance(a, nn.Linear) or a.weight.shape == b.weight.shape)
                for a, b in zip(layers, first))
            if not same:
                raise GbenchError("the seeds' nets differ in structure")
        self.ops: list[Any] = []  # ("linear", index) or an activation module
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for i, layer in enumerate(first):
            if isinstance(layer, nn.Linear):
                column = [s[0][i] for s in structures]
                self.weights.append(nn.Parameter(torch.stack([m.weight.detach() for m in column]).clone()))
                has_bias = layer.bias is not None
                if any((m.bias is not None) != has_bias for m in column):
                    raise GbenchError("the seeds' nets differ in structure")
                self.biases.append(nn.Parameter(torch.stack([m.bias.detach() for m in column]).clone())
                                   if has_bias else None)
                self.ops.append(("linear", len(self.weights) - 1))
            else:
                self.ops.append(copy.deepcopy(layer))
        # an ordinary module to copy one seed's weights into (kept out of this module's parameters)
        self.__dict__["template"] = copy.deepcopy(nets[0])

    @property
    def seeds(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            if isinstance(op, tuple):
                x = _linear(x, self.weights[op[1]], self.biases[op[1]])
            else:
                x = op(x)
        return x.squeeze(-1) if self.squeeze else x

    def unstack(self, s: int) -> nn.Module:
        """Seed ``s``'s net as an ordinary module (a copy of its current weights)."""
        net = copy.deepcopy(self.template).to(self.weights[0].device)
        linears = [m for m in _layers(net)[0] if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for m, w, b in zip(linears, self.weights, self.biases):
                m.weight.copy_(w[s])
                if b is not None:
                    m.bias.copy_(b[s])
        return net


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (S, B, in), w (S, out, in), b (S, out) -> (S, B, out), one batched product for all seeds.

    With one output unit, ``nn.Linear`` runs a matrix-vector product (addmv); computing W @ x^T
    (S, 1, B) keeps its summation order, x @ W^T would not (measured on CPU, see the module doc).
    """
    if w.shape[1] == 1:
        if b is None:
            return torch.bmm(w, x.transpose(1, 2)).transpose(1, 2)
        return torch.baddbmm(b.unsqueeze(-1), w, x.transpose(1, 2)).transpose(1, 2)
    if b is None:
        return torch.bmm(x, w.transpose(1, 2))
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


# -- which variants and suites -------------------------------------------------------------------------


class _Recorder(nn.Module):
    """A probe critic: a fixed random linear map that records what it is called on."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w, self.calls = torch.randn(dim, generator=g), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x)
        return x.flatten(1) @ self.w


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclasses.dataclass(frozen=True)
class LossUse:
    """Which critic outputs each loss needs: (real, fake)."""

    d: tuple[bool, bool]
    g: tuple[bool, bool]


def probe_losses(variant: Variant, data_dim: int) -> LossUse:
    """Check that ``variant``'s losses are pure functions of the critic's logits on the two batches
    (the critic called only on x_real / x_fake, nothing else read from them, the generator and the
    global RNG untouched) and say which logits each loss needs. Raises GbenchError if not."""
    g = torch.Generator().manual_seed(1)
    x_real, x_fake = torch.randn(6, data_dim, generator=g), torch.randn(6, data_dim, generator=g)
    use = {}
    state = torch.get_rng_state()
    for which in ("d", "g"):
        loss_fn = variant.d_loss if which == "d" else variant.g_loss
        critic = _Recorder(data_dim)
        try:
            ref = loss_fn(Nets(None, critic), x_real, x_fake)  # type: ignore[arg-type]
            calls = list(critic.calls)
            via_logits = loss_fn(Nets(None, _identity), critic(x_real), critic(x_fake))  # type: ignore[arg-type]
        except Exception as exc:  # e.g. the loss calls the generator or a custom critic's method
            raise GbenchError(f"its {which}_loss is not a function of critic logits "
                              f"({type(exc).__name__}: {exc})") from None
        if any(c is not x_real and c is not x_fake for c in calls):
            raise GbenchError(f"its {which}_loss calls the critic on something other than the two batches")
        if not torch.allclose(ref, via_logits, rtol=1e-6, atol=1e-7, equal_nan=True):
            raise GbenchError(f"its {which}_loss reads the batches other than through the critic")
        use[which] = (any(c is x_real for c in calls), any(c is x_fake for c in calls))
    if not torch.equal(state, torch.get_rng_state()):
        torch.set_rng_state(state)
        raise GbenchError("its losses draw from the global RNG")
    return LossUse(**use)


def check(trial: Trial, runtime: Runtime = Runtime()) -> LossUse:
    """Raise GbenchError saying why ``trial`` cannot be trained batched; else its loss usage."""
    suite, where = trial.suite, f"--batch-seeds: variant {trial.variant.label!r}"
    if suite.model.arch != "mlp":
        raise GbenchError(f"{where}: batched seeds need the mlp backbone (suite has {suite.model.arch!r})")
    if runtime.precision != "fp32":
        raise GbenchError(f"{where}: batched seeds run in fp32 only (asked {runtime.precision})")
    if suite.budget.max_device_seconds:
        raise GbenchError(f"{where}: batched seeds do not support a max_device_seconds cap")
    on = [k for k in ("ema_decay", "r1_gamma") if getattr(suite.optim, k)]  # lr_schedule is supported
    if on:
        raise GbenchError(f"{where}: batched seeds do not support the [optim] stabilisers {' and '.join(on)}; "
                          "run without --batch-seeds")
    variant = build_variant(trial.variant, suite.dataset)
    dataset = build_dataset(suite.dataset, runtime.data_root)
    if getattr(dataset, "kind", None) != "toy":
        raise GbenchError(f"{where}: batched seeds need a toy dataset")
    backbone = build_backbone(suite.model.arch, dataset.data_shape, dict(suite.model.options))
    state = torch.get_rng_state()
    try:
        for net in (variant.build_generator(backbone), variant.build_critic(backbone)):
            _layers(net)
        return probe_losses(variant, dataset.data_shape[0])
    except GbenchError as exc:
        raise GbenchError(f"{where} ({trial.variant.name}) cannot be batched: {exc}") from None
    finally:
        torch.set_rng_state(state)


def supports(trial: Trial, runtime: Runtime = Runtime()) -> bool:
    try:
        check(trial, runtime)
    except GbenchError:
        return False
    return True


def groups(trials: Sequence[Trial], runtime: Runtime) -> list[list[Trial]]:
    """The trials that can be batched, grouped by variant (same suite), at most
    ``runtime.batch_seeds`` per group (-1: all seeds of a variant in one group)."""
    by_label: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        by_label.setdefault((t.suite.hash, t.variant.label), []).append(t)
    size = getattr(runtime, "batch_seeds", 0)
    out = []
    for group in by_label.values():
        if not supports(group[0], runtime):
            continue
        n = len(group) if size < 0 else max(1, size)
        out += [group[i : i + n] for i in range(0, len(group), n)]
    return [g for g in out if len(g) > 1]


# -- per-seed losses ------------------------------------------------------------------------------------

_IDENT = Nets(None, _identity)  # type: ignore[arg-type]  # the "critic" of losses fed logits


def per_seed_losses(loss_fn: Callable[..., torch.Tensor], mode: str = "vmap"
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(S, B) real and fake logits -> (S,) losses, seed s's loss being ``loss_fn`` on row s.

    ``"vmap"``: one kernel per operation for all seeds (``torch.func.vmap``); ``"loop"``: one call
    per seed, which reproduces a separate run's kernels exactly.
    """
    if mode == "vmap":
        return torch.func.vmap(lambda sr, sf: loss_fn(_IDENT, sr, sf))
    return lambda sr, sf: torch.stack([loss_fn(_IDENT, sr[s], sf[s]) for s in range(len(sr))])


def loss_mode(loss_fn: Callable[..., torch.Tensor], device: torch.device) -> str:
    """``"vmap"`` where vmapping ``loss_fn`` gives bitwise the values and gradients of per-seed calls
    (checked on a probe), or, on a GPU (where batched products reorder sums anyway), where it runs
    cleanly; else ``"loop"`` (also when vmap raises or warns, e.g. an operation without a batching rule).

    Composite operations can differ under vmap: ``F.binary_cross_entropy_with_logits`` (alpha-gan's
    alpha = 1 branch) is decomposed and differentiated piecewise there, ~1e-9 off its fused backward.
    """
    g = torch.Generator().manual_seed(2)
    sr, sf = (torch.randn(3, 16, generator=g) * 4 for _ in range(2))
    results = []
    for mode in ("vmap", "loop"):
        a, b = sr.clone().requires_grad_(), sf.clone().requires_grad_()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                loss = per_seed_losses(loss_fn, mode)(a, b)
                grads = torch.autograd.grad(loss.sum(), (a, b), allow_unused=True)
        except Exception:  # noqa: BLE001 - vmap cannot run this loss cleanly: one call per seed
            if mode == "vmap":
                return "loop"
            raise
        results.append([loss.detach()] + [torch.zeros(0) if x is None else x for x in grads])
    if device.type != "cpu":
        return "vmap"
    exact = all(torch.equal(x, y) for x, y in zip(*results))
    return "vmap" if exact else "loop"


def run_groups(trials: Sequence[Trial], runtime: Runtime, on_result: Callable[[Trial, dict[str, Any]], None],
               on_progress: Callable[[Trial, int], None] | None = None, threads: int | None = None) -> list[Trial]:
    """The runner's branch for ``runtime.batch_seeds``: train every batchable group of ``trials``
    (``groups``) in this process with ``threads`` torch threads (None: torch's setting), handing each
    record to ``on_result(trial, record)``; returns the trials left for the executor (variants that
    cannot be batched, single seeds)."""
    done: set[str] = set()
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        for group in groups(trials, runtime):
            def progress(step: int, group: list[Trial] = group) -> None:
                for t in group:
                    if on_progress is not None:
                        on_progress(t, step)

            for t, record in zip(group, run_trials(group, runtime, progress)):
                record["runtime"].update(executor="batched", jobs=1, threads=threads)
                record["provenance"] = {**record.get("provenance", {}), "torch_threads": torch.get_num_threads()}
                on_result(t, record)
                done.add(t.id)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
    return [t for t in trials if t.id not in done]


# -- training -----------------------------------------------------------------------------------------


def run_trials(trials: Sequence[Trial], runtime: Runtime = Runtime(),
               progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Train the seeds of ``trials`` (one variant of one suite) as one batched model and evaluate
    each; one ``run_trial``-style record per trial. ``progress(step)`` is called at each loss
    window. Raises GbenchError for trials that cannot be batched; a crash in training is recorded
    as a ``failed`` status on every trial of the group."""
    trials = list(trials)
    if not trials:
        return []
    first = trials[0]
    if any(t.suite is not first.suite and t.suite.hash != first.suite.hash for t in trials) or \
            any(t.variant != first.variant for t in trials):
        raise GbenchError("batched seeds: all trials of a group must be one variant of one suite")
    if len({t.seed for t in trials}) != len(trials):
        raise GbenchError("batched seeds: a seed appears twice in the group")
    use = check(first, runtime)
    variant = build_variant(first.variant, first.suite.dataset)
    modes = tuple(loss_mode(fn, torch.device(runtime.device)) for fn in (variant.d_loss, variant.g_loss))
    started = time.time()
    seeds = [t.seed for t in trials]
    extra = {"batched": len(trials), "batched_seeds": seeds, "batched_losses": dict(zip(("d", "g"), modes))}
    records = []
    for t in trials:
        record: dict[str, Any] = {"trial_id": t.id, "status": "failed", "error": None, **describe(t, runtime)}
        record["runtime"].update(extra)
        records.append(record)
        if observing("trial_started"):
            notify("trial_started", trial_info={k: v for k, v in record.items() if k not in ("status", "error")})
    try:
        outputs = _run(trials, runtime, use, modes, progress or (lambda step: None))
        for record, output in zip(records, outputs):
            record.update(output)
            record["protocol"]["metrics"] = record.pop("metric_protocol")
    except GbenchError as exc:
        for record in records:
            record["error"] = str(exc)
    except Exception as exc:  # recorded, as run_trial does; the suite goes on
        for record in records:
            record["error"] = f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc()
    for t, record in zip(trials, records):
        record["started"] = started
        if observing("trial_finished"):
            notify("trial_finished", trial_id=t.id, result={k: v for k, v in record.items() if k != "_samples"})
    return records


class StackedBatchStream:
    """S ``gbench.run.loop.BatchStream``s over one training set in lockstep: seed s's batches are exactly
    those of ``BatchStream(data, batch_size, rngs[s])`` (a new permutation from its generator each
    epoch), gathered for all seeds at once as (S, batch_size, ...)."""

    def __init__(self, data: torch.Tensor, batch_size: int, rngs: Sequence[torch.Generator]) -> None:
        self.data, self.batch_size, self.rngs = data, batch_size, list(rngs)
        self._order = torch.empty(len(self.rngs), 0, dtype=torch.long, device=data.device)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self._order.shape[1]:
            self._order = torch.stack([torch.randperm(len(self.data), generator=r, device=self.data.device)
                                       for r in self.rngs])
            self._pos = 0
        idx = self._order[:, self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        batch = self.data[idx]
        return batch.float().div_(127.5).sub_(1.0) if batch.dtype == torch.uint8 else batch


def build_stacked(trials: Sequence[Trial], variant: Variant, backbone: Any, device: torch.device
                  ) -> tuple[StackedMLP, StackedMLP]:
    """Each seed's nets built exactly as ``run_trial`` builds them, stacked (generator, critic)."""
    gens, critics = [], []
    for t in trials:
        torch.manual_seed(stream_seed(t.seed, STREAM_INIT))
        gens.append(variant.build_generator(backbone))
        critics.append(variant.build_critic(backbone))
    return StackedMLP(gens).to(device), StackedMLP(critics).to(device)


def _run(trials: list[Trial], runtime: Runtime, use: LossUse, loss_modes: tuple[str, str],
         progress: Callable[[int], None]) -> list[dict[str, Any]]:
    suite, device = trials[0].suite, torch.device(runtime.device)
    S, budget = len(trials), suite.budget
    variant = build_variant(trials[0].variant, suite.dataset)
    dataset = build_dataset(suite.dataset, runtime.data_root)
    reference = build_reference(suite.dataset, dataset, runtime.data_root)
    metrics = metrics_for(reference, suite.eval.metrics, metric_options(suite, runtime))
    train_set = dataset.training_set(suite.dataset.train_size, suite.dataset.seed).to(device)
    backbone = build_backbone(suite.model.arch, dataset.data_shape, dict(suite.model.options))
    G, D = build_stacked(trials, variant, backbone, device)
    opt = suite.optim
    # foreach: the multi-tensor form of the same update (bitwise equal to the per-tensor form a
    # separate CPU run uses, checked by tests/test_batched.py; a GPU run uses it by default)
    opt_g = torch.optim.Adam(G.parameters(), lr=opt.g_lr, betas=opt.betas, foreach=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=opt.d_lr, betas=opt.betas, foreach=True)

    def rng(seed: int, stream: int) -> torch.Generator:
        return torch.Generator(device).manual_seed(stream_seed(seed, stream))

    batch, z_dim = budget.batch_size, suite.model.z_dim
    stream = StackedBatchStream(train_set, batch, [rng(t.seed, STREAM_DATA) for t in trials])
    latent_rngs = [rng(t.seed, STREAM_LATENT) for t in trials]
    variant_rngs = [rng(t.seed, STREAM_VARIANT) for t in trials]
    perturbs = type(variant).perturb_real is not Variant.perturb_real  # else the identity: skip the calls

    def real() -> torch.Tensor:
        x = stream.next()
        return torch.stack([variant.perturb_real(x[s], r) for s, r in enumerate(variant_rngs)]) if perturbs else x

    def latent() -> torch.Tensor:
        return torch.stack([torch.randn(batch, z_dim, generator=r, device=device) for r in latent_rngs])

    d_losses, g_losses = (per_seed_losses(fn, how) for fn, how in zip((variant.d_loss, variant.g_loss), loss_modes))

    meter = Meter(device)
    used = meter.consumed
    steps_at = {max(1, round(a * budget.g_steps)): a for a in suite.eval.at}
    evaluations: list[list[dict[str, Any]]] = [[] for _ in trials]
    kept: list[list[Any]] = [[] for _ in trials]  # each seed's latest evaluation's first samples (report plots)
    eval_seconds = [0.0] * S
    curves: list[list[dict]] = [[] for _ in trials]
    diverged_at: list[int | None] = [None] * S
    stopped_at = [0] * S  # the G step each seed's training counts up to
    active = list(range(S))

    def checkpoint(step: int) -> None:
        for s in active:
            t0 = time.perf_counter()
            values, errors = evaluate(G.unstack(s), reference, metrics, suite, device, kept[s])
            evaluations[s].append({"g_step": step, "fraction": step / budget.g_steps, "metrics": values,
                                   **({"metric_errors": errors} if errors else {})})
            eval_seconds[s] += time.perf_counter() - t0
            if observing("evaluated"):
                notify("evaluated", trial_id=trials[s].id, g_step=step, metrics=values,
                       samples=kept[s][0] if kept[s] else None)

    losses: list[torch.Tensor] = []
    log_every = suite.eval.log_every  # as gbench.run.loop.train
    meter.resume()
    for step in range(1, budget.g_steps + 1):
        if opt.lr_schedule != "constant":  # as gbench.run.loop.train, so each seed stays bit-identical
            f = lr_factor(opt.lr_schedule, step, budget.g_steps)
            set_lr(opt_g, opt.g_lr * f)
            set_lr(opt_d, opt.d_lr * f)
        for _ in range(budget.d_steps_per_g_step):
            x_real = real()
            with torch.no_grad():
                x_fake = G(latent())
            loss_d = d_losses(D(x_real) if use.d[0] else x_real, D(x_fake) if use.d[1] else x_fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.sum().backward()
            opt_d.step()
        x_real = real()
        x_fake = G(latent())
        loss_g = g_losses(D(x_real) if use.g[0] else x_real, D(x_fake) if use.g[1] else x_fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.sum().backward()
        opt_g.step()

        used.g_steps, used.d_steps = step, step * budget.d_steps_per_g_step
        losses.append(torch.stack((loss_d.detach(), loss_g.detach()), 1))  # (S, 2)
        last = step == budget.g_steps
        if len(losses) == log_every or last or step in steps_at:
            window = torch.stack(losses).cpu()  # (n, S, 2)
            losses = []
            for s in list(active):
                w = window[:, s].contiguous()
                stopped_at[s] = step
                finite = torch.isfinite(w).all(1)
                if not finite.all():
                    diverged_at[s] = step - len(w) + 1 + int((~finite).nonzero()[0])
                    stopped_at[s] = diverged_at[s]  # consumed up to the divergence step, as gbench.run.loop.train
                    active.remove(s)
                    continue
                d_mean, g_mean = w.mean(0).tolist()
                curves[s].append({"g_step": step, "d_loss": d_mean, "g_loss": g_mean})
            progress(step)
            if observing("log_scalars"):  # outside the timed training, as in gbench.run.loop.train
                meter.pause()
                for s in active:
                    scalars = {k: curves[s][-1][k] for k in ("d_loss", "g_loss")}
                    notify("log_scalars", trial_id=trials[s].id, g_step=step, scalars=scalars)
                meter.resume()
            if not active:
                break
        if step in steps_at:
            meter.pause()
            checkpoint(step)
            meter.resume()
    meter.pause()

    outputs = []
    for s in range(S):
        ok = diverged_at[s] is None
        target = None if variant.target_jsd is None else _target(
            variant, dataset, reference, suite, Nets(G.unstack(s), D.unstack(s)), metrics, device, ok)
        c = dataclasses.replace(used, g_steps=stopped_at[s], d_steps=stopped_at[s] * budget.d_steps_per_g_step,
                                device_seconds=used.device_seconds / S, wall_seconds=used.wall_seconds / S,
                                eval_seconds=eval_seconds[s], stopped_by="g_steps" if ok else "diverged")
        c.d_real_images = c.d_fake_images = c.d_steps * batch
        c.g_images = c.g_steps * batch
        consumed = {**c.as_dict(), "batched_device_seconds": used.device_seconds,
                    "batched_wall_seconds": used.wall_seconds}
        last_eval = evaluations[s][-1] if evaluations[s] else {}
        outputs.append({
            "status": "ok" if ok else "diverged",
            "diverged_at": diverged_at[s],
            "metrics": last_eval.get("metrics", {}) if ok else {},
            "metric_errors": last_eval.get("metric_errors", {}) if ok else {},
            "evaluations": evaluations[s],
            "generator": "raw",  # no EMA in batched runs (check refuses it)
            "target": target,
            "consumed": consumed,
            "loss_curve": curves[s],
            "resumed_at": [],  # G steps continued from a checkpoint: none (a batched group is trained whole)
            "variant_config": variant.describe(),
            "metric_protocol": {m.name: m.protocol() for m in metrics},
            "data_kind": reference.kind,
            "data_provenance": getattr(dataset, "provenance", {"law": getattr(dataset, "name", "")}),
            "_samples": kept[s][0] if ok and kept[s] else None,  # not JSON: the runner saves and pops it
        })
    return outputs
