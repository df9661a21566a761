"""One trial: a variant, a dataset and a seed, trained under the suite's budget and scored."""
from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from gbench.backbones import build_backbone
from gbench.budget import Meter
from gbench.errors import GbenchError
from gbench.loop import BatchStream, train
from gbench.metrics.jsd import jsd_mc
from gbench.plugins import get_plugins
from gbench.results import SCHEMA
from gbench.suite import DatasetSpec, Suite, VariantSpec
from gbench.toy import ToyMixture
from gbench.variant import Nets, Variant, make_config

# Independent RNG streams of a trial, derived from its seed.
STREAM_INIT, STREAM_DATA, STREAM_LATENT, STREAM_VARIANT = range(4)


@dataclass(frozen=True)
class Trial:
    suite: Suite
    variant: VariantSpec
    seed: int

    @property
    def id(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in self.variant.label)
        return f"{safe}-seed{self.seed}"


def trials_of(suite: Suite) -> list[Trial]:
    return [Trial(suite, v, s) for v in suite.variants for s in suite.seeds]


def stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for one RNG stream of a trial (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def build_dataset(spec: DatasetSpec) -> Any:
    datasets = get_plugins().datasets
    if spec.name:
        return datasets.get(spec.name)(**spec.options)
    parts = [datasets.get(name)() for name, _ in spec.mixture]
    if not all(isinstance(p, ToyMixture) for p in parts):
        raise GbenchError("mixtures of non-toy datasets are not supported yet")
    return ToyMixture.mix(parts, [w for _, w in spec.mixture])


def build_variant(spec: VariantSpec) -> Variant:
    cls = get_plugins().variants.get(spec.name)
    return cls(make_config(cls.Config, spec.options, f"variant {spec.label!r}"))


def run_trial(trial: Trial, device: str = "cpu", progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one trial. Never raises for a failed trial: the status says what happened."""
    started = time.time()
    record: dict[str, Any] = {"trial_id": trial.id, "status": "failed", "error": None, **describe(trial)}
    try:
        record.update(_run(trial, torch.device(device), progress))
        record["protocol"]["metrics"] = record.pop("metric_protocol")
    except GbenchError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # a crashing trial is recorded and the suite goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    record["started"] = started
    return record


def _run(trial: Trial, device: torch.device, progress: Callable[[int], None] | None) -> dict[str, Any]:
    suite, seed = trial.suite, trial.seed
    variant = build_variant(trial.variant)
    dataset = build_dataset(suite.dataset)
    reference = get_plugins().datasets.get(suite.dataset.reference)() if suite.dataset.reference else dataset
    train_set = dataset.training_set(suite.dataset.train_size, suite.dataset.seed)

    backbone = build_backbone(suite.model.arch, dataset.data_shape, dict(suite.model.options))
    torch.manual_seed(stream_seed(seed, STREAM_INIT))
    nets = Nets(variant.build_generator(backbone).to(device), variant.build_critic(backbone).to(device))
    opt = suite.optim
    opt_g = torch.optim.Adam(nets.generator.parameters(), lr=opt.g_lr, betas=opt.betas)
    opt_d = torch.optim.Adam(nets.critic.parameters(), lr=opt.d_lr, betas=opt.betas)

    def rng(stream: int) -> torch.Generator:
        return torch.Generator(device).manual_seed(stream_seed(seed, stream))

    data = BatchStream(train_set.to(device), suite.budget.batch_size, rng(STREAM_DATA))
    latent_rng, batch, z_dim = rng(STREAM_LATENT), suite.budget.batch_size, suite.model.z_dim

    def latent() -> torch.Tensor:
        return torch.randn(batch, z_dim, generator=latent_rng, device=device)

    meter = Meter(device)
    evaluations: list[dict[str, Any]] = []
    steps_at = {max(1, round(a * suite.budget.g_steps)): a for a in suite.eval.at}

    def checkpoint(step: int) -> None:
        t0 = time.perf_counter()
        evaluations.append({"g_step": step, "fraction": step / suite.budget.g_steps,
                            "metrics": evaluate(nets.generator, reference, suite, device)})
        meter.consumed.eval_seconds += time.perf_counter() - t0

    outcome = train(variant, nets, opt_g, opt_d, data, latent, rng(STREAM_VARIANT), suite.budget, meter,
                    checkpoint, set(steps_at), progress or (lambda step: None))
    used = meter.consumed
    if outcome.diverged_at is None and (not evaluations or evaluations[-1]["g_step"] != used.g_steps):
        checkpoint(used.g_steps)  # stopped early by the device-seconds cap: score where it stopped
    status = "diverged" if outcome.diverged_at is not None else "ok"
    return {
        "status": status,
        "diverged_at": outcome.diverged_at,
        "metrics": evaluations[-1]["metrics"] if status == "ok" else {},
        "evaluations": evaluations,
        "target": _target(variant, dataset, reference, suite),
        "consumed": used.as_dict(),
        "loss_curve": outcome.loss_curve,
        "variant_config": variant.describe(),
        "metric_protocol": {m.name: m.protocol() for m in metrics_for(reference, suite.eval.metrics, suite.eval.options)},
    }


def describe(trial: Trial) -> dict[str, Any]:
    """What a number needs beside it to be compared with another."""
    suite = trial.suite
    return {
        "schema": SCHEMA,
        "suite": suite.name,
        "suite_hash": suite.hash,
        "variant": trial.variant.name,
        "label": trial.variant.label,
        "seed": trial.seed,
        "dataset": dataclasses.asdict(suite.dataset),
        "budget": dataclasses.asdict(suite.budget),
        "model": dataclasses.asdict(suite.model),
        "optim": dataclasses.asdict(suite.optim),
        "protocol": {
            "eval_samples": suite.eval.num_samples,
            "eval_seed": suite.eval.seed,
            "eval_at": list(suite.eval.at),
            "reference": suite.dataset.reference or suite.dataset.label,
        },
    }


def sample_generator(generator: torch.nn.Module, n: int, z_dim: int, seed: int, device: torch.device) -> np.ndarray:
    """``n`` samples from the common evaluation noise (the same z for every trial of a suite)."""
    rng = torch.Generator(device).manual_seed(seed)
    was_training = generator.training
    generator.eval()
    out = []
    with torch.no_grad():
        for start in range(0, n, 4096):
            z = torch.randn(min(4096, n - start), z_dim, generator=rng, device=device)
            out.append(generator(z).float().cpu())
    generator.train(was_training)
    return torch.cat(out).numpy()


def evaluate(generator: torch.nn.Module, reference: Any, suite: Suite, device: torch.device) -> dict[str, float]:
    samples = sample_generator(generator, suite.eval.num_samples, suite.model.z_dim, suite.eval.seed, device)
    if not np.isfinite(samples).all():
        return {"non_finite_samples": float((~np.isfinite(samples).all(1)).sum())}
    return score(samples, reference, suite.eval.metrics, suite.eval.seed, suite.eval.options)


def metrics_for(reference: Any, names: tuple[str, ...] = (), options: Mapping[str, Any] | None = None) -> list[Any]:
    """The metrics named (default: all for ``reference``'s kind), configured from ``options``."""
    registry, options = get_plugins().metrics, options or {}
    chosen = names or tuple(e.name for e in registry if reference.kind in e.obj.kinds)
    return [registry.get(n)(make_config(registry.get(n).Config, options.get(n, {}), f"[eval.{n}]")) for n in chosen]


def score(samples: np.ndarray, reference: Any, names: tuple[str, ...] = (), seed: int = 2024,
          options: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Every metric for ``reference``'s kind (or those named) on ``samples``."""
    values: dict[str, float] = {}
    for metric in metrics_for(reference, names, options):
        values.update(metric.compute(samples, reference, np.random.default_rng(seed)))
    return values


def _target(variant: Variant, dataset: Any, reference: Any, suite: Suite) -> dict[str, Any] | None:
    """For a variant that controls JSD(p, p_g): the target and the exact JSD(p, p_delta) of its stream."""
    if variant.target_jsd is None:
        return None
    target: dict[str, Any] = {"jsd": variant.target_jsd}
    law = variant.training_law(dataset)
    if isinstance(law, ToyMixture) and isinstance(reference, ToyMixture):
        g = torch.Generator().manual_seed(suite.eval.seed)
        n = suite.eval.num_samples
        x_p, x_q = reference.sample(n, g).numpy(), law.sample(n, g).numpy()
        est = jsd_mc(reference.log_prob, law.log_prob, x_p, x_q)
        target.update(jsd_p_pdelta=est.bits, jsd_p_pdelta_ci=[est.ci_low, est.ci_high])
    return target
