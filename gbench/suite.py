"""Suites: TOML files that say what to train, on what, for how long, and how to score it.

Every table is parsed into a frozen dataclass and checked, before any trial starts, by the one
settings validator (:func:`gbench.validation.build`: pydantic, strict types, unknown keys refused,
ranges from the ``Annotated`` fields below); any problem is one line naming the file, the key and
the problem (exit code 2). See ``suites/smoke.toml`` for a commented example.

A variant entry may carry its own ``optim`` and ``schedule`` tables (over the suite's [optim] and
[budget]); when schedules differ, the budget must be stated in device-seconds or gradient
evaluations (``suites/authors-ring.toml``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
import inspect
import math
import re
from typing import Annotated, Any, Literal, Mapping

from pydantic import Field

from gbench.backbones import BACKBONES
from gbench.errors import GbenchError
from gbench.plugins import get_plugins
from gbench.validation import build
from gbench.variant import make_config

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(gt=0)]  # finite: the validator refuses nan and inf in suite tables
Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's beta_1, beta_2 in [0, 1)
Fraction = Annotated[float, Field(gt=0, le=1)]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]{0,79}")  # a suite name is a folder name under ./runs
MAX_ID_BYTES = 150  # a trial id is a file name (+ ".json", ".pt", ".npy"): well under NAME_MAX = 255

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Budget:
    """The suite's budget, identical for every variant: G steps by default; where the variants'
    schedules (D steps per G step, batch) differ, device-seconds or gradient evaluations.

    A trial's own budget is this one with its variant's ``schedule`` applied (:func:`variant_settings`)."""

    g_steps: Positive = 1000  # generator updates (with device_seconds: the most a trial may take)
    d_steps_per_g_step: Positive = 1  # critic updates before each generator update
    batch_size: Positive = 128  # real and fake images per update
    max_device_seconds: Annotated[float, Field(ge=0)] = 0.0  # optional cap on training time (CPU: process time; GPU: synced); 0 = none
    device_seconds: Annotated[float, Field(ge=0)] = 0.0  # > 0: the budget is this much training time per trial (clock as above)
    gradient_evals: NonNegative = 0  # > 0: the budget is (D steps + G steps) x batch_size per trial; g_steps follows

    @property
    def evals_per_g_step(self) -> int:
        """Per-example gradient evaluations of one G step and its critic steps: (k + 1) x batch."""
        return (self.d_steps_per_g_step + 1) * self.batch_size


def describe_budget(budget: Budget | Mapping[str, Any]) -> str:
    """A trial's budget (a :class:`Budget`, or a result's ``budget`` record) in words: ``60 device-s per
    trial``, ``6400 gradient evaluations per trial``, or ``3000 G steps x 1 D step, batch 256`` (with
    its device-seconds cap, if any)."""
    b = budget if isinstance(budget, Mapping) else dataclasses.asdict(budget)
    if b.get("device_seconds"):
        return f"{b['device_seconds']:g} device-s per trial"
    if b.get("gradient_evals"):
        return f"{b['gradient_evals']} gradient evaluations per trial"
    k, cap = b.get("d_steps_per_g_step"), b.get("max_device_seconds")
    return (f"{b.get('g_steps')} G steps x {k} D step{'' if k == 1 else 's'}, batch {b.get('batch_size')}"
            + (f", cap {cap:g} device-s" if cap else ""))


@dataclass(frozen=True)
class Schedule:
    """A variant entry's ``schedule = { d_steps_per_g_step = 5, batch_size = 64 }``: its own schedule
    where its paper prescribes one (unset keys: the suite's [budget])."""

    d_steps_per_g_step: Positive | None = None
    batch_size: Positive | None = None


@dataclass(frozen=True)
class Optim:
    """Adam for both players and the stabilisers, identical for every variant (harness-owned)."""

    g_lr: Rate = 1e-4
    d_lr: Rate = 1e-4
    betas: tuple[Beta, Beta] = (0.5, 0.999)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"  # both lrs x f(G step): linear/cosine decay to 0
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.0  # EMA of G's weights (0 = off); then the EMA G is reported
    ema_start: NonNegative = 0  # G steps before the EMA starts averaging (it copies G until then)
    r1_gamma: Annotated[float, Field(ge=0)] = 0.0  # R1 (Mescheder et al. 2018): + gamma/2 E_p |grad_x D(x)|^2 in D's loss


@dataclass(frozen=True)
class Model:
    """The shared backbone: a family from ``gbench.backbones.BACKBONES`` and its settings."""

    arch: str = "mlp"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def z_dim(self) -> int:
        return self.options.get("z_dim", _backbone_default(self.arch, "z_dim"))


@dataclass(frozen=True)
class DatasetSpec:
    name: str = ""  # a registered dataset; or give `mixture`
    mixture: tuple[tuple[str, float, Mapping[str, Any]], ...] = ()  # (name, weight, options): sum_l a_l p_l
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments of the dataset factory
    reference: str = ""  # score against this registered dataset instead of the training law
    train_size: NonNegative = 50_000  # a fixed training set drawn once with `seed` (Welfert et al. 2023); images: 0 = all
    seed: NonNegative = 1

    @property
    def label(self) -> str:
        return self.name or "+".join(f"{w:g}*{n}" for n, w, _ in self.mixture)


@dataclass(frozen=True)
class EvalSpec:
    num_samples: Positive = 10_000  # generated samples per evaluation
    at: Annotated[tuple[Fraction, ...], Field(min_length=1)] = (1.0,)  # fractions of the G-step budget at which to evaluate
    seed: NonNegative = 2024  # the evaluation noise, common to all trials
    log_every: Positive = 100  # G steps per loss-curve point (mean D and G losses of the window)
    metrics: tuple[str, ...] = ()  # registered metric names; empty = every metric for the dataset kind
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [eval.<metric>] tables


@dataclass(frozen=True)
class VariantSpec:
    """A variant entry: its settings (``options``) and, resolved, the optimiser and budget it trains
    under (the parser sets both for every entry; None, in a spec built by hand: the suite's)."""

    name: str
    label: str
    options: Mapping[str, Any]
    optim: Optim | None = None
    budget: Budget | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str
    seeds: tuple[int, ...]
    variants: tuple[VariantSpec, ...]
    dataset: DatasetSpec
    model: Model
    optim: Optim
    budget: Budget
    eval: EvalSpec
    raw: Mapping[str, Any]
    # published numbers to show beside ours, per variant label: [reference_results."label"] success = 0.87, ...
    reference_results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Stable hash of the suite's content (not its path): results of equal hashes are comparable."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def for_variant(self, spec: VariantSpec) -> "Suite":
        """The suite as ``spec``'s trials see it: ``optim`` and ``budget`` are that variant's resolved ones."""
        return dataclasses.replace(self, optim=spec.optim or self.optim, budget=spec.budget or self.budget)

    def select(self, variants: list[str] | None = None, seeds: list[int] | None = None) -> "Suite":
        """A copy restricted to some variant names or labels, and with other seeds."""
        chosen = self.variants
        if variants:
            known = {v.label for v in self.variants} | {v.name for v in self.variants}
            for wanted in variants:
                if wanted not in known:
                    raise GbenchError(f"variant {wanted!r} is not in suite {self.name!r} (it has: {', '.join(sorted(known))})")
            chosen = tuple(v for v in self.variants if v.label in variants or v.name in variants)
        if seeds:
            _check_seeds(list(seeds), "--seeds")
        return dataclasses.replace(self, variants=chosen, seeds=tuple(seeds) if seeds else self.seeds)


TOP_KEYS = {"name", "description", "seeds", "variants", "dataset", "model", "optim", "budget", "eval",
            "reference_results"}


def builtin_suites() -> dict[str, Path]:
    """Built-in suite name -> path."""
    folder = resources.files("gbench_suites")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def find_suite(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    suites = builtin_suites()
    if name_or_path in suites:
        return suites[name_or_path]
    raise GbenchError(f"no suite file {name_or_path!r} (built-in suites: {', '.join(sorted(suites))})")


def load_suite(name_or_path: str) -> Suite:
    path = find_suite(name_or_path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise GbenchError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise GbenchError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise GbenchError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_suite(raw, str(path))


def parse_suite(raw: Mapping[str, Any], where: str) -> Suite:
    _check_keys(raw, TOP_KEYS, where)
    plugins = get_plugins()
    name = raw.get("name") or Path(where).stem
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise GbenchError(f"{where}: 'name' must be 1-80 letters, digits or '_.=+-' (it names the run folder "
                          f"under ./runs), got {name!r}")
    for key in ("description",):
        if not isinstance(raw.get(key, ""), str):
            raise GbenchError(f"{where}: {key!r} should be a string, got {raw[key]!r}")
    seeds = raw.get("seeds", [0])
    _check_seeds(seeds, f"{where}: 'seeds'")
    budget = _table(Budget, raw.get("budget", {}), f"{where} [budget]")
    optim = _table(Optim, raw.get("optim", {}), f"{where} [optim]")
    model = _model(raw.get("model", {}), f"{where} [model]")
    dataset = _dataset(raw.get("dataset"), plugins, where)
    ev = _eval(raw.get("eval", {}), plugins, f"{where} [eval]")
    if 1.0 not in ev.at:
        ev = dataclasses.replace(ev, at=tuple(ev.at) + (1.0,))
    variants = _variants(raw.get("variants"), plugins, where, raw.get("optim", {}), budget)
    budget = _check_budgets(raw.get("budget", {}), budget, variants, ev, where)
    _check_trial_ids(variants, seeds, where)
    return Suite(
        name, where, raw.get("description", ""), tuple(seeds), variants, dataset, model, optim, budget, ev, raw,
        _reference_results(raw.get("reference_results", {}), variants, where),
    )


def _check_seeds(seeds: Any, what: str) -> None:
    """Seeds: a non-empty list of distinct non-negative integers (``true`` is not a seed)."""
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise GbenchError(f"{what} must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise GbenchError(f"{what} lists seed {next(s for s in seeds if seeds.count(s) > 1)} twice")


def safe_label(label: str) -> str:
    """A variant label as the first part of a file name (the trial id is ``<safe label>-seed<N>``)."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)


def _check_trial_ids(variants: tuple[VariantSpec, ...], seeds: list[int], where: str) -> None:
    """Trial ids are file names: distinct even where the file system ignores case, and short enough."""
    seen: dict[str, str] = {}
    for spec in variants:
        safe = safe_label(spec.label)
        longest = f"{safe}-seed{max(seeds)}"
        if len(longest.encode()) > MAX_ID_BYTES:
            raise GbenchError(f"{where}: variant label {spec.label[:40]!r}... is too long for a file name "
                              f"(at most {MAX_ID_BYTES - 12} characters)")
        other = seen.setdefault(safe.lower(), spec.label)
        if other != spec.label:
            raise GbenchError(f"{where}: variant labels {other!r} and {spec.label!r} give the same trial file "
                              f"name {safe!r}; give one of them another 'label'")


def _reference_results(raw: Any, variants: tuple[VariantSpec, ...], where: str) -> dict[str, dict[str, Any]]:
    """[reference_results."<variant label>"]: published numbers (numbers or text, e.g. success = 0.87,
    failure = 0.02, source = "..."); success and failure are rates in [0, 1]."""
    ctx = f"{where} [reference_results]"
    if not isinstance(raw, dict):
        raise GbenchError(f"{ctx}: expected a table of tables, one per variant label")
    labels = {v.label for v in variants}
    out = {}
    for label, table in raw.items():
        if label not in labels:
            raise GbenchError(f"{ctx}: no variant labelled {label!r} (labels: {', '.join(sorted(labels))})")
        if not isinstance(table, dict):
            raise GbenchError(f"{ctx}: {label!r} should be a table, e.g. {{ success = 0.87, source = \"...\" }}")
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise GbenchError(f"{ctx}: {label!r}.{key} should be a number or a string, got {value!r}")
            if key in ("success", "failure") and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise GbenchError(f"{ctx}: {label!r}.{key} is a rate in [0, 1], got {value!r}")
        out[label] = dict(table)
    return out


def _eval(raw: Any, plugins: Any, where: str) -> EvalSpec:
    if not isinstance(raw, dict):
        raise GbenchError(f"{where}: expected a table, got {raw!r}")
    plain = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    options = {k: v for k, v in raw.items() if isinstance(v, dict)}
    spec = _table(EvalSpec, plain, where)
    for metric in spec.metrics:
        try:
            plugins.metrics.entry(metric)
        except GbenchError as exc:
            raise GbenchError(f"{where}: {exc}") from None
    for metric, table in options.items():
        if metric not in plugins.metrics:
            raise GbenchError(f"{where}: unknown key {metric!r} (a [eval.<metric>] table needs a registered metric)")
        make_config(plugins.metrics.get(metric).Config, table, f"{where[:-1]}.{metric}]")
    return dataclasses.replace(spec, options=options)


def _model(raw: Any, where: str) -> Model:
    if not isinstance(raw, dict):
        raise GbenchError(f"{where}: expected a table, got {raw!r}")
    options = dict(raw)
    arch = options.pop("arch", "mlp")
    if arch not in BACKBONES:
        raise GbenchError(f"{where}: unknown arch {arch!r} (known: {', '.join(sorted(BACKBONES))})")
    if "data_shape" in options:
        raise GbenchError(f"{where}: 'data_shape' comes from the dataset, not the suite")
    config = make_config(BACKBONES[arch], options, where)
    for f in dataclasses.fields(config):  # widths, depths, z_dim: a net of size 0 is no net
        value = getattr(config, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (0 < value < math.inf):
            raise GbenchError(f"{where}: {f.name!r} must be positive, got {value!r}")
    return Model(arch, options)


def _backbone_default(arch: str, key: str) -> Any:
    return next(f.default for f in dataclasses.fields(BACKBONES[arch]) if f.name == key)


def _variants(items: Any, plugins: Any, where: str, raw_optim: Mapping[str, Any], budget: Budget
              ) -> tuple[VariantSpec, ...]:
    """The variant entries, each with its resolved optimiser and budget (:func:`variant_settings`)."""
    if not isinstance(items, list) or not items:
        raise GbenchError(f"{where}: 'variants' must be a non-empty list of names or tables")
    specs: list[VariantSpec] = []
    for item in items:
        options = {"name": item} if isinstance(item, str) else dict(item) if isinstance(item, dict) else None
        if options is None or "name" not in options:
            raise GbenchError(f"{where}: each variant is a name or a table with 'name', got {item!r}")
        name = options.pop("name")
        own_optim, own_schedule = options.pop("optim", {}), options.pop("schedule", {})
        label = options.pop("label", None)
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise GbenchError(f"{where}: variant {name!r}: 'label' should be a non-empty string, got {label!r}")
        if not isinstance(name, str):
            raise GbenchError(f"{where}: a variant's 'name' should be a string, got {name!r}")
        try:
            cls = plugins.variants.get(name)
        except GbenchError as exc:
            raise GbenchError(f"{where}: {exc}") from None
        make_config(cls.Config, options, f"{where} variant {name!r}")  # validate now, not mid-run
        label = label or (name if not options else f"{name}({','.join(f'{k}={v}' for k, v in options.items())})")
        optim, own_budget = variant_settings(own_optim, own_schedule, raw_optim, budget, f"{where} variant {label!r}")
        specs.append(VariantSpec(name, label, options, optim, own_budget))
    labels = [s.label for s in specs]
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise GbenchError(f"{where}: variant label {dupes[0]!r} appears twice; give each entry a distinct 'label'")
    return tuple(specs)


def variant_settings(own_optim: Any, own_schedule: Any, raw_optim: Mapping[str, Any], budget: Budget,
                     where: str) -> tuple[Optim, Budget]:
    """A variant entry's optimiser and budget: its ``optim`` table over the suite's [optim] table, and
    the suite's [budget] with its ``schedule`` (:class:`Schedule`) applied; then, under a
    ``gradient_evals`` budget, as many G steps as fit in it ((k + 1) x batch per G step, rounded
    down), and under ``device_seconds``, the loop's device-time stop (``max_device_seconds``) set to it."""
    for key, value, example in (("optim", own_optim, "{ g_lr = 1e-4, betas = [0.0, 0.9] }"),
                                ("schedule", own_schedule, "{ d_steps_per_g_step = 5, batch_size = 64 }")):
        if not isinstance(value, dict):
            raise GbenchError(f"{where}: {key!r} should be a table, e.g. {key} = {example}, got {value!r}")
    optim = build(Optim, {**raw_optim, **own_optim}, f"{where} optim")
    schedule = build(Schedule, own_schedule, f"{where} schedule")
    own = dataclasses.replace(budget, **{k: v for k, v in dataclasses.asdict(schedule).items() if v is not None})
    if own.gradient_evals:
        own = dataclasses.replace(own, g_steps=own.gradient_evals // own.evals_per_g_step)  # < 1: refused later
    if own.device_seconds:
        own = dataclasses.replace(own, max_device_seconds=own.device_seconds)
    return optim, own


def _check_budgets(raw: Mapping[str, Any], budget: Budget, variants: tuple[VariantSpec, ...], ev: EvalSpec,
                   where: str) -> Budget:
    """Equal budgets for every variant: in G steps only where all train on one schedule, else in
    device-seconds or gradient evaluations. Returns the suite's budget (under ``gradient_evals``, with
    ``g_steps`` the most any variant takes)."""
    ctx = f"{where} [budget]"
    if budget.device_seconds and budget.gradient_evals:
        raise GbenchError(f"{ctx}: give one of 'device_seconds' or 'gradient_evals', not both")
    if budget.gradient_evals and "g_steps" in raw:
        raise GbenchError(f"{ctx}: 'g_steps' follows from 'gradient_evals' and each variant's schedule; give one of them")
    if budget.device_seconds:
        if "g_steps" not in raw:
            raise GbenchError(f"{ctx}: with 'device_seconds', give 'g_steps' too: the most G steps a trial may take "
                              "(set it above what the device-seconds allow)")
        if budget.max_device_seconds:
            raise GbenchError(f"{ctx}: 'device_seconds' is the budget itself; drop 'max_device_seconds' (a cap on a "
                              "G-step budget)")
        if any(a != 1.0 for a in ev.at):
            raise GbenchError(f"{where} [eval]: with [budget] device_seconds a trial is evaluated at its end only "
                              f"(at = [1.0]); fractions of a G-step count do not apply, got at = {list(ev.at)}")
        for spec in variants:
            if spec.optim is not None and spec.optim.lr_schedule != "constant":
                raise GbenchError(f"{where}: variant {spec.label!r}: lr_schedule {spec.optim.lr_schedule!r} decays "
                                  "over the G steps, which a device-seconds budget does not fix; use \"constant\" "
                                  "or [budget] gradient_evals")
    own = [(spec, spec.budget or budget) for spec in variants]
    for spec, b in own:
        if b.g_steps < 1:
            raise GbenchError(f"{ctx}: 'gradient_evals' {budget.gradient_evals} is less than one G step of variant "
                              f"{spec.label!r} ((d_steps_per_g_step + 1) x batch_size = {b.evals_per_g_step})")
    first, a = own[0]
    other = next(((s, b) for s, b in own if (b.d_steps_per_g_step, b.batch_size) != (a.d_steps_per_g_step,
                                                                                    a.batch_size)), None)
    if other is not None and not (budget.device_seconds or budget.gradient_evals):
        spec, b = other
        raise GbenchError(f"{ctx}: variants {first.label!r} (D:G {a.d_steps_per_g_step}:1, batch {a.batch_size}) "
                          f"and {spec.label!r} (D:G {b.d_steps_per_g_step}:1, batch {b.batch_size}) train on "
                          "different schedules, so equal G steps are unequal budgets: give 'device_seconds' or "
                          "'gradient_evals'")
    if budget.gradient_evals:
        budget = dataclasses.replace(budget, g_steps=max(b.g_steps for _, b in own))
    return budget


def _dataset(raw: Any, plugins: Any, where: str) -> DatasetSpec:
    ctx = f"{where} [dataset]"
    if not isinstance(raw, dict):
        raise GbenchError(f"{where}: a [dataset] table is required")
    raw = dict(raw)
    mixture = raw.pop("mixture", [])
    spec = _table(DatasetSpec, raw, ctx)
    if bool(spec.name) == bool(mixture):
        raise GbenchError(f"{ctx}: give exactly one of 'name' or 'mixture'")
    parts: list[tuple[str, float, Mapping[str, Any]]] = []
    if not isinstance(mixture, list):
        raise GbenchError(f"{ctx}: 'mixture' should be a list of tables {{name = ..., weight = ...}}")
    for i, part in enumerate(mixture):
        if not isinstance(part, dict):
            raise GbenchError(f"{ctx}: each mixture entry is a table {{name = ..., weight = ...}}")
        entry = build(MixturePart, part, f"{ctx} mixture[{i}]")
        parts.append((entry.name, float(entry.weight), entry.options))
    for dname, options in [(spec.name, spec.options), (spec.reference, spec.options)] + [
            (n, {**spec.options, **o}) for n, _, o in parts]:
        if dname:
            try:
                factory = plugins.datasets.get(dname)
            except GbenchError as exc:
                raise GbenchError(f"{ctx}: {exc}") from None
            _check_dataset_options(dname, factory, options, ctx)
    if spec.train_size < 0:
        raise GbenchError(f"{ctx}: 'train_size' must be >= 0 (0 = a whole image split)")
    return dataclasses.replace(spec, mixture=tuple(parts))


@dataclass(frozen=True)
class MixturePart:
    """One entry of ``[dataset] mixture``: a registered dataset, its weight a_l and its options."""

    name: str
    weight: Rate = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)


def _check_dataset_options(name: str, factory: Any, options: Mapping[str, Any], where: str) -> None:
    """Every option is a keyword of the dataset's factory (a misspelt ``sigmaa`` is an error, not a default)."""
    params = inspect.signature(factory).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for key in options:
        if key not in params:
            raise GbenchError(f"{where}: dataset {name!r} has no option {key!r} (it takes: {', '.join(params) or 'none'})")


def _table(cls: type, raw: Any, where: str) -> Any:
    """A suite table as ``cls``, through the one settings validator (finite numbers only)."""
    return build(cls, raw, where)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise GbenchError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
