"""One trial: a variant, a dataset and a seed, trained under the suite's budget and scored."""
from __future__ import annotations

import dataclasses
import inspect
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from gbench.backbones import build_backbone
from gbench.errors import GbenchError
from gbench.run.batched import Players, Stack, stack
from gbench.run.budget import Consumed, Meter
from gbench.run.checkpoint import GroupState
from gbench.run.loop import BatchStream, Group, Outcome, train
from gbench.metrics import Metric
from gbench.metrics.jsd import jsd_mc
from gbench.observers import notify, observing
from gbench.plugins import get_plugins
from gbench.run.record import (Batched, Evaluation, Protocol, Runtime, RuntimeRecord, Target, TrialOutput,
                               TrialResult)
from gbench.suite import DatasetSpec, Suite, VariantSpec, safe_label
from gbench.datasets.toy import ToyMixture
from gbench.variant import Nets, Variant, make_config

# Independent RNG streams of a trial, derived from its seed: net initialisation (torch's global RNG),
# the data order, the latents, the variant's perturbation of the real stream, its losses' ``rng``.
STREAM_INIT, STREAM_DATA, STREAM_LATENT, STREAM_VARIANT, STREAM_LOSS = range(5)

# Samples kept from the final evaluation for the report's plots (the runner saves them as .npy).
KEPT_SAMPLES = {"toy": 2000, "image": 64}
# With an EMA of G's weights the EMA generator is reported; the raw G's metrics sit beside its under this prefix.
RAW_PREFIX = "raw."


@dataclass(frozen=True)
class Trial:
    suite: Suite
    variant: VariantSpec
    seed: int

    @property
    def id(self) -> str:
        return f"{safe_label(self.variant.label)}-seed{self.seed}"  # unique: checked by the suite parser


def trials_of(suite: Suite) -> list[Trial]:
    """Every trial; each sees the suite with its variant's own optimiser and budget (``Suite.for_variant``)."""
    return [Trial(suite.for_variant(v), v, s) for v in suite.variants for s in suite.seeds]


def stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for one RNG stream of a trial (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def build_dataset(spec: DatasetSpec, data_root: str | None = None) -> Any:
    """The training law of ``spec``: a registered dataset or a weighted mixture of them."""
    if spec.name:
        return _open(spec.name, spec.options, data_root)
    parts = [_open(name, {**spec.options, **options}, data_root) for name, _, options in spec.mixture]
    weights = [w for _, w, _ in spec.mixture]
    if all(isinstance(p, ToyMixture) for p in parts):
        return ToyMixture.mix(parts, weights)
    from gbench.datasets.images import ImageMixture

    return ImageMixture.mix(parts, weights)


def build_reference(spec: DatasetSpec, dataset: Any, data_root: str | None = None) -> Any:
    """What samples are scored against: ``reference`` if the suite names one, else the training law."""
    return _open(spec.reference, spec.options, data_root) if spec.reference else dataset


def _open(name: str, options: Mapping[str, Any], data_root: str | None) -> Any:
    factory = get_plugins().datasets.get(name)
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in options.items() if k in params or any(p.kind == p.VAR_KEYWORD for p in params.values())}
    unknown = sorted(set(options) - set(kwargs))
    if unknown:
        raise GbenchError(f"dataset {name!r}: unknown option {unknown[0]!r} (it takes: {', '.join(params) or 'none'})")
    if data_root and "root" in params:
        kwargs["root"] = data_root
    missing = [p.name for p in params.values() if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD
               and p.name not in kwargs]
    if missing:
        raise GbenchError(f"dataset {name!r} needs the option {missing[0]!r} ([dataset] options.{missing[0]} = ...)")
    return factory(**kwargs)


def reference_weight(spec: DatasetSpec) -> float:
    """The weight of the scoring reference inside the training law: 1 without a ``reference`` (or when
    it names the training dataset), else the normalised weight of the mixture parts that are it (same
    name, no options of their own), 0 when none is."""
    if not spec.reference or spec.reference == spec.name:
        return 1.0
    total = sum(w for _, w, _ in spec.mixture)
    return sum(w for name, w, options in spec.mixture if name == spec.reference and not options) / total if total else 0.0


def build_variant(spec: VariantSpec, dataset: DatasetSpec | None = None) -> Variant:
    """The variant of ``spec``; with the suite's ``dataset``, told what it will be scored against."""
    cls = get_plugins().variants.get(spec.name)
    variant = cls(make_config(cls.Config, spec.options, f"variant {spec.label!r}"))
    if dataset is not None:
        try:
            variant.score_against(reference_weight(dataset))
        except GbenchError as exc:
            raise GbenchError(f"variant {spec.label!r}: {exc}") from None
    return variant


def run_trial(trial: Trial, runtime: Runtime = Runtime(), progress: Callable[[int], None] | None = None,
              checkpoint_path: Path | None = None, resume: bool = False) -> TrialOutput:
    """Train and evaluate one trial (a group of one, the plain loop): its record with its samples
    beside it. Never raises for a failed trial: the status says what happened.

    With ``checkpoint_path``, the training state is saved there (``gbench.run.checkpoint``) at each
    evaluation and every ``runtime.checkpoint_every`` G steps; with ``resume`` too, a checkpoint found
    there is restored and training continues from it."""
    return run_group([trial], runtime, progress, checkpoint_path, resume)[0]


def run_group(trials: Sequence[Trial], runtime: Runtime = Runtime(), progress: Callable[[int], None] | None = None,
              checkpoint_path: Path | None = None, resume: bool = False, mode: str = "loop") -> list[TrialOutput]:
    """Train the S ``trials`` (one variant configuration of one suite, distinct seeds) together in the
    one loop (``gbench.run.loop``; ``mode`` "vmap" or "loop", ``gbench.run.batched``) and evaluate
    each; one output per trial, in order. Never raises for a failed group: every trial's status says
    what happened. Checkpoints as :func:`run_trial`, one file for the group."""
    trials = list(trials)
    first = trials[0]
    if any(t.suite.hash != first.suite.hash or t.variant != first.variant for t in trials) or \
            len({t.seed for t in trials}) != len(trials):
        raise GbenchError("a batched group is one variant of one suite with distinct seeds")
    started = time.time()
    batched = Batched(len(trials), tuple(t.seed for t in trials), mode) if len(trials) > 1 else None
    untrained = [result_of(t, runtime, started, batched=batched) for t in trials]
    if observing("trial_started"):
        unknown_yet = ("status", "error", "started", "provenance")
        for result in untrained:
            notify("trial_started", trial_info={k: v for k, v in result.to_json().items() if k not in unknown_yet})
    try:
        outputs = _run(trials, untrained, runtime, progress, checkpoint_path, resume, mode)
    except GbenchError as exc:
        outputs = [TrialOutput(dataclasses.replace(r, error=str(exc))) for r in untrained]
    except Exception as exc:  # a crashing group is recorded and the suite goes on
        outputs = [TrialOutput(dataclasses.replace(r, error=f"{type(exc).__name__}: {exc}",
                                                   traceback=traceback.format_exc())) for r in untrained]
    if observing("trial_finished"):
        for t, output in zip(trials, outputs):
            notify("trial_finished", trial_id=t.id, result=output.result.to_json())
    return outputs


def result_of(trial: Trial, runtime: Runtime, started: float, error: str | None = None, trace: str | None = None,
              batched: Batched | None = None) -> TrialResult:
    """The record of a trial before it trained (status "failed", with ``error`` if one is known): what
    a number needs beside it to be compared with another; :func:`_output` adds what it measured.
    ``batched``: the batched group it trains in."""
    suite = trial.suite
    protocol = Protocol(suite.eval.num_samples, suite.eval.seed, tuple(suite.eval.at),
                        suite.dataset.reference or suite.dataset.label)
    return TrialResult(
        trial_id=trial.id, status="failed", suite=suite.name, suite_hash=suite.hash,
        variant=trial.variant.name, label=trial.variant.label, seed=trial.seed,
        dataset=dataclasses.asdict(suite.dataset), budget=dataclasses.asdict(suite.budget),
        model=dataclasses.asdict(suite.model), optim=dataclasses.asdict(suite.optim),
        runtime=RuntimeRecord(runtime, batched), protocol=protocol, started=started,
        error=error, traceback=trace)


def build_nets(variant: Variant, backbone: Any, seed: int, device: torch.device) -> Nets:
    """Trial ``seed``'s nets: built by the variant from the backbone right after seeding torch's global
    RNG with the trial's init stream, generator first."""
    torch.manual_seed(stream_seed(seed, STREAM_INIT))
    return Nets(variant.build_generator(backbone).to(device), variant.build_critic(backbone).to(device))


def _run(trials: list[Trial], untrained: list[TrialResult], runtime: Runtime, progress: Callable[[int], None] | None,
         checkpoint_path: Path | None, resume: bool, mode: str) -> list[TrialOutput]:
    suite, device, S = trials[0].suite, torch.device(runtime.device), len(trials)
    variant = build_variant(trials[0].variant, suite.dataset)
    dataset = build_dataset(suite.dataset, runtime.data_root)
    reference = build_reference(suite.dataset, dataset, runtime.data_root)
    metrics = metrics_for(reference, suite.eval.metrics, metric_options(suite, runtime))
    train_set = dataset.training_set(suite.dataset.train_size, suite.dataset.seed).to(device)

    backbone = build_backbone(suite.model.arch, dataset.data_shape, dict(suite.model.options))
    global_rngs = []
    nets = []
    for t in trials:
        nets.append(build_nets(variant, backbone, t.seed, device))
        global_rngs.append(torch.get_rng_state())  # each trial's global RNG continues from its own init
    players = Players(stack([n.generator for n in nets]), stack([n.critic for n in nets]), mode)
    del nets
    opt = suite.optim
    # foreach: the multi-tensor form of Adam, elementwise like the per-tensor one (one Adam per player
    # over the stacked tensors is S Adams with the same settings)
    opt_g = torch.optim.Adam(players.g.params.values(), lr=opt.g_lr, betas=opt.betas, foreach=True)
    opt_d = torch.optim.Adam(players.d.params.values(), lr=opt.d_lr, betas=opt.betas, foreach=True)
    ema = ema_copy(players.g) if opt.ema_decay > 0 else None

    def rng(seed: int, stream: int) -> torch.Generator:
        return torch.Generator(device).manual_seed(stream_seed(seed, stream))

    batch = suite.budget.batch_size
    group = Group(players, opt_g, opt_d, [BatchStream(train_set, batch, rng(t.seed, STREAM_DATA)) for t in trials],
                  [rng(t.seed, STREAM_LATENT) for t in trials], [rng(t.seed, STREAM_VARIANT) for t in trials],
                  [rng(t.seed, STREAM_LOSS) for t in trials], suite.model.z_dim, ema,
                  global_rngs if S > 1 and mode == "loop" else None)

    meter = Meter(device)
    evaluations: list[list[Evaluation]] = [[] for _ in trials]
    kept: list[list[np.ndarray]] = [[] for _ in trials]  # each trial's latest evaluation's first samples
    eval_seconds = [0.0] * S
    steps_at = {max(1, round(a * suite.budget.g_steps)): a for a in suite.eval.at}

    def reported(s: int) -> torch.nn.Module:
        """The generator whose metrics trial s reports: the EMA copy if there is one."""
        return (ema if ema is not None else players.g).unstack(s)

    def checkpoint(step: int, active: list[int]) -> None:
        for s in active:
            t0 = time.perf_counter()
            with group.own_rng(s):  # a net that draws (DeLiGAN) draws from the trial's own global RNG
                values, errors = evaluate(reported(s), reference, metrics, suite, device, kept[s])
            if ema is not None:  # the raw G too, under "raw." keys
                with group.own_rng(s):
                    raw_values, raw_errors = evaluate(players.g.unstack(s), reference, metrics, suite, device)
                values.update({f"{RAW_PREFIX}{k}": v for k, v in raw_values.items()})
                errors.update({f"{RAW_PREFIX}{k}": v for k, v in raw_errors.items()})
            evaluations[s].append(Evaluation(step, step / suite.budget.g_steps, values, errors))
            eval_seconds[s] += time.perf_counter() - t0
            if observing("evaluated"):
                notify("evaluated", trial_id=trials[s].id, g_step=step, metrics=values,
                       samples=kept[s][0] if kept[s] else None)

    state = GroupState(group, meter, evaluations, {"trial_ids": [t.id for t in trials], "suite_hash": suite.hash,
                                                   "device": runtime.device, "precision": runtime.precision,
                                                   "mode": mode})
    start = state.resume(checkpoint_path) if resume and checkpoint_path and checkpoint_path.is_file() else None
    save = (lambda loop: state.save(checkpoint_path, loop)) if checkpoint_path else None
    log = (lambda s, step, scalars: notify("log_scalars", trial_id=trials[s].id, g_step=step, scalars=scalars)) \
        if observing("log_scalars") else None
    outcomes = train(variant, group, suite.budget, meter, checkpoint, set(steps_at),
                     progress or (lambda step: None), precision=runtime.precision, start=start, save=save,
                     save_every=runtime.checkpoint_every, log=log, optim=opt, log_every=suite.eval.log_every)
    late = [s for s, o in enumerate(outcomes) if o.diverged_at is None and
            (not evaluations[s] or evaluations[s][-1].g_step != o.stopped_at)]
    if late:  # stopped early by the device-seconds cap: score where it stopped
        checkpoint(outcomes[late[0]].stopped_at, late)
    return [_output(untrained[s], variant, dataset, reference, suite, metrics, device, outcomes[s], evaluations[s],
                    kept[s], Nets(reported(s), players.d.unstack(s)),
                    _consumed(meter, outcomes[s], S, eval_seconds[s], suite.budget), state.resumed_at, ema is not None)
            for s in range(S)]


def _consumed(meter: Meter, outcome: Outcome, size: int, eval_seconds: float, budget: Any) -> Consumed:
    """One trial's consumption: its own steps and images, its 1/S share of the group's time (the
    group's totals beside it when S > 1)."""
    d_steps = outcome.stopped_at * budget.d_steps_per_g_step
    return Consumed(
        g_steps=outcome.stopped_at, d_steps=d_steps, d_real_images=d_steps * budget.batch_size,
        d_fake_images=d_steps * budget.batch_size, g_images=outcome.stopped_at * budget.batch_size,
        device_seconds=meter.device_time / size, wall_seconds=meter.wall_time / size, eval_seconds=eval_seconds,
        stopped_by="diverged" if outcome.diverged_at is not None else meter.stopped_by,
        batched_device_seconds=meter.device_time if size > 1 else None,
        batched_wall_seconds=meter.wall_time if size > 1 else None)


def _output(untrained: TrialResult, variant: Variant, dataset: Any, reference: Any, suite: Suite,
            metrics: list[Metric], device: torch.device, outcome: Outcome, evaluations: list[Evaluation],
            kept: list[np.ndarray], nets: Nets, consumed: Consumed, resumed_at: list[int],
            has_ema: bool) -> TrialOutput:
    """One trial's record with what it measured (its :func:`result_of` record completed), and the final
    evaluation's first samples beside it."""
    status = "diverged" if outcome.diverged_at is not None else "ok"
    error = None
    if status == "ok" and "samples" in evaluations[-1].metric_errors:
        # finite losses, but G outputs NaN/inf: nothing to score, so G diverged (at its first such evaluation)
        first = next(e for e in evaluations if "samples" in e.metric_errors)
        status, outcome.diverged_at = "diverged", first.g_step
        error = f"generator output not finite at G step {first.g_step} (its losses were finite)"
    result = dataclasses.replace(
        untrained, status=status, error=error, diverged_at=outcome.diverged_at,
        metrics=evaluations[-1].metrics if status == "ok" else {},
        metric_errors=evaluations[-1].metric_errors if status == "ok" else {},
        evaluations=tuple(evaluations),
        generator="ema" if has_ema else "raw",  # whose metrics "metrics" holds ("raw." keys: G's)
        target=_target(variant, dataset, reference, suite, nets, metrics, device, status == "ok"),
        consumed=consumed, loss_curve=tuple(outcome.loss_curve),
        resumed_at=list(resumed_at),  # G steps this trial continued from a checkpoint (killed runs)
        variant_config=variant.describe(),
        protocol=dataclasses.replace(untrained.protocol, metrics={m.name: m.protocol() for m in metrics}),
        data_kind=reference.kind,
        data_provenance=getattr(dataset, "provenance", {"law": getattr(dataset, "name", "")}))
    return TrialOutput(result, kept[0] if status == "ok" and kept else None)


def ema_copy(generator: Stack) -> Stack:
    """A frozen copy of the stacked G for the exponential moving average of its weights (``gbench.run.loop``)."""
    return Stack(generator.module, {k: v.detach().clone() for k, v in generator.params.items()},
                 {k: v.detach().clone() for k, v in generator.buffers.items()})


def sample_generator(generator: torch.nn.Module, n: int, z_dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """``n`` samples on the CPU from the common evaluation noise (the same z for every trial of a suite)."""
    rng = torch.Generator(device).manual_seed(seed)
    was_training = generator.training
    generator.eval()
    out = []
    with torch.no_grad():
        for start in range(0, n, 1024):
            z = torch.randn(min(1024, n - start), z_dim, generator=rng, device=device)
            out.append(generator(z).float().cpu())
    generator.train(was_training)
    return torch.cat(out)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, the one conversion before image metrics."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


def evaluate(generator: torch.nn.Module, reference: Any, metrics: list[Metric], suite: Suite,
             device: torch.device, keep: list[np.ndarray] | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Score ``suite.eval.num_samples`` samples; with ``keep``, it then holds only a copy of the first
    ``KEPT_SAMPLES[kind]`` of them (float32 points, or uint8 NCHW images), emptied if they are not finite."""
    x = sample_generator(generator, suite.eval.num_samples, suite.model.z_dim, suite.eval.seed, device)
    if keep is not None:
        keep.clear()
    if not torch.isfinite(x).all():
        return {}, {"samples": f"{int((~torch.isfinite(x)).flatten(1).any(1).sum())} samples are not finite"}
    samples = to_uint8(x).numpy() if reference.kind == "image" else x.numpy()
    if keep is not None:
        keep.append(samples[: KEPT_SAMPLES.get(reference.kind, 2000)].copy())
    return score(samples, reference, metrics, suite.eval.seed)


def metric_options(suite: Suite, runtime: Runtime) -> dict[str, dict[str, Any]]:
    """The suite's [eval.<metric>] tables with the run's overrides (weights path, GPU) for every metric
    that has such a setting."""
    options = {name: dict(table) for name, table in suite.eval.options.items()}
    overrides = {"weights": runtime.inception_weights, "cuda": runtime.device == "cuda" or None}
    for entry in get_plugins().metrics:
        fields = {f.name for f in dataclasses.fields(entry.obj.Config)}
        for key, value in overrides.items():
            if value and key in fields:
                options.setdefault(entry.name, {})[key] = value
    return options


def metrics_for(reference: Any, names: tuple[str, ...] = (), options: Mapping[str, Any] | None = None) -> list[Metric]:
    """The metrics named (default: all for ``reference``'s kind), configured from ``options``."""
    registry, options = get_plugins().metrics, options or {}
    chosen = names or tuple(e.name for e in registry if reference.kind in e.obj.kinds)
    return [registry.get(n)(make_config(registry.get(n).Config, options.get(n, {}), f"[eval.{n}]")) for n in chosen]


def score(samples: np.ndarray, reference: Any, metrics: list[Metric], seed: int = 2024
          ) -> tuple[dict[str, float], dict[str, str]]:
    """Every metric on ``samples``; a metric that cannot run (no weights offline...) is reported, not fatal."""
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    for metric in metrics:
        try:
            values.update(metric.compute(samples, reference, np.random.default_rng(seed)))
        except (GbenchError, ValueError) as exc:  # e.g. no Inception weights offline: the run goes on
            errors[metric.name] = str(exc)
    return values, errors


def _target(variant: Variant, dataset: Any, reference: Any, suite: Suite, nets: Nets, metrics: list[Metric],
            device: torch.device, finished: bool) -> Target | None:
    """For a variant that controls JSD(p, p_g): its target and the divergences of its training stream.

    Toys: the exact JSD(p, p_delta) by Monte Carlo with both densities known. Images: classifier
    lower bounds JSD(p, p_delta) and JSD(p_delta, p_g) on the ``classifier-jsd`` metric's features,
    p_delta being the training stream after the variant's perturbation.
    """
    if variant.target_jsd is None:
        return None
    target = Target(variant.target_jsd, variant.target_details())
    n, seed = suite.eval.num_samples, suite.eval.seed
    law = variant.training_law(dataset)
    if isinstance(law, ToyMixture) and isinstance(reference, ToyMixture):
        g = torch.Generator().manual_seed(seed)
        est = jsd_mc(reference.log_prob, law.log_prob, reference.sample(n, g).numpy(), law.sample(n, g).numpy())
        target = dataclasses.replace(target, jsd_p_pdelta=est.bits, jsd_p_pdelta_ci=(est.ci_low, est.ci_high))
        jsd_metric = next((m for m in metrics if m.name == "jsd"), None)
        if finished and jsd_metric is not None:  # how well the GAN learned its own training law
            samples = sample_generator(nets.generator, n, suite.model.z_dim, seed, device).numpy()
            if np.isfinite(samples).all():
                got = jsd_metric.compute(samples, law, np.random.default_rng([seed, 1]))
                target = dataclasses.replace(target, jsd_pdelta_pg=got["jsd_bits"],
                                             jsd_pdelta_pg_ci=(got.get("jsd_ci_low"), got.get("jsd_ci_high")))
    elif reference.kind == "image":
        jsd_metric = next((m for m in metrics if m.name == "classifier-jsd"), None)
        if jsd_metric is None:
            return dataclasses.replace(
                target, note="add the classifier-jsd metric to measure JSD(p, p_delta) and JSD(p_delta, p_g)")
        from gbench.metrics.classifier_jsd import image_jsd

        rng = torch.Generator().manual_seed(seed)
        p_images = reference.images(jsd_metric.config.reference_split)
        p_images = p_images[torch.randperm(len(p_images), generator=rng)[:n]]
        stream = dataset.training_set(n, seed).float().div_(127.5).sub_(1.0)
        p_delta = to_uint8(variant.perturb_real(stream, rng))
        try:
            for key, (a, b) in {"jsd_p_pdelta": (p_images, p_delta), "jsd_pdelta_pg": (p_delta, None)}.items():
                if b is None:
                    if not finished:
                        continue
                    b = to_uint8(sample_generator(nets.generator, n, suite.model.z_dim, seed, device))
                est = image_jsd(a, b, jsd_metric.config, seed)
                target = dataclasses.replace(target, **{key: est["jsd_bits"],
                                                        f"{key}_ci": (est["jsd_ci_low"], est["jsd_ci_high"])})
        except GbenchError as exc:
            target = dataclasses.replace(target, error=str(exc))
    return target
