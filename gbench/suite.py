"""Suites: TOML files that say what to train, on what, for how long, and how to score it.

Every table is parsed into a frozen dataclass; an unknown key is an error that names the key and
the file. See ``suites/smoke.toml`` for a commented example.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from gbench.backbones import BACKBONES
from gbench.errors import GbenchError
from gbench.plugins import get_plugins
from gbench.variant import make_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Budget:
    """Identical for every variant of a suite."""

    g_steps: int = 1000  # generator updates
    d_steps_per_g_step: int = 1  # critic updates before each generator update
    batch_size: int = 128  # real and fake images per update
    max_device_seconds: float = 0.0  # optional cap on training time (CPU: process time; GPU: synced); 0 = none


@dataclass(frozen=True)
class Optim:
    """Adam for both players (harness-owned)."""

    g_lr: float = 1e-4
    d_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)


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
    train_size: int = 50_000  # a fixed training set drawn once with `seed` (Welfert et al. 2023); images: 0 = all
    seed: int = 1

    @property
    def label(self) -> str:
        return self.name or "+".join(f"{w:g}*{n}" for n, w, _ in self.mixture)


@dataclass(frozen=True)
class EvalSpec:
    num_samples: int = 10_000  # generated samples per evaluation
    at: tuple[float, ...] = (1.0,)  # fractions of the G-step budget at which to evaluate
    seed: int = 2024  # the evaluation noise, common to all trials
    metrics: tuple[str, ...] = ()  # registered metric names; empty = every metric for the dataset kind
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [eval.<metric>] tables


@dataclass(frozen=True)
class VariantSpec:
    name: str
    label: str
    options: Mapping[str, Any]


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

    def select(self, variants: list[str] | None = None, seeds: list[int] | None = None) -> "Suite":
        """A copy restricted to some variant names or labels, and with other seeds."""
        chosen = self.variants
        if variants:
            known = {v.label for v in self.variants} | {v.name for v in self.variants}
            for wanted in variants:
                if wanted not in known:
                    raise GbenchError(f"variant {wanted!r} is not in suite {self.name!r} (it has: {', '.join(sorted(known))})")
            chosen = tuple(v for v in self.variants if v.label in variants or v.name in variants)
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
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GbenchError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise GbenchError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_suite(raw, str(path))


def parse_suite(raw: Mapping[str, Any], where: str) -> Suite:
    _check_keys(raw, TOP_KEYS, where)
    plugins = get_plugins()
    name = raw.get("name") or Path(where).stem
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise GbenchError(f"{where}: 'seeds' must be a non-empty list of non-negative integers")
    budget = _table(Budget, raw.get("budget", {}), f"{where} [budget]")
    for key in ("g_steps", "d_steps_per_g_step", "batch_size"):
        if getattr(budget, key) <= 0:
            raise GbenchError(f"{where} [budget]: {key!r} must be positive, got {getattr(budget, key)}")
    if budget.max_device_seconds < 0:
        raise GbenchError(f"{where} [budget]: 'max_device_seconds' must be >= 0")
    optim = _table(Optim, raw.get("optim", {}), f"{where} [optim]")
    model = _model(raw.get("model", {}), f"{where} [model]")
    dataset = _dataset(raw.get("dataset"), plugins, where)
    ev = _eval(raw.get("eval", {}), plugins, f"{where} [eval]")
    if ev.num_samples <= 0 or not ev.at or not all(0 < a <= 1 for a in ev.at):
        raise GbenchError(f"{where} [eval]: 'num_samples' must be positive and 'at' fractions in (0, 1]")
    if 1.0 not in ev.at:
        ev = dataclasses.replace(ev, at=tuple(ev.at) + (1.0,))
    variants = _variants(raw.get("variants"), plugins, where)
    return Suite(
        name, where, raw.get("description", ""), tuple(seeds), variants, dataset, model, optim, budget, ev, raw,
        _reference_results(raw.get("reference_results", {}), variants, where),
    )


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
    make_config(BACKBONES[arch], options, where)
    return Model(arch, options)


def _backbone_default(arch: str, key: str) -> Any:
    return next(f.default for f in dataclasses.fields(BACKBONES[arch]) if f.name == key)


def _variants(items: Any, plugins: Any, where: str) -> tuple[VariantSpec, ...]:
    if not isinstance(items, list) or not items:
        raise GbenchError(f"{where}: 'variants' must be a non-empty list of names or tables")
    specs: list[VariantSpec] = []
    for item in items:
        options = {"name": item} if isinstance(item, str) else dict(item) if isinstance(item, dict) else None
        if options is None or "name" not in options:
            raise GbenchError(f"{where}: each variant is a name or a table with 'name', got {item!r}")
        name = options.pop("name")
        label = options.pop("label", None)
        try:
            cls = plugins.variants.get(name)
        except GbenchError as exc:
            raise GbenchError(f"{where}: {exc}") from None
        make_config(cls.Config, options, f"{where} variant {name!r}")  # validate now, not mid-run
        label = label or (name if not options else f"{name}({','.join(f'{k}={v}' for k, v in options.items())})")
        specs.append(VariantSpec(name, label, options))
    labels = [s.label for s in specs]
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise GbenchError(f"{where}: variant label {dupes[0]!r} appears twice; give each entry a distinct 'label'")
    return tuple(specs)


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
    for part in mixture:
        if not isinstance(part, dict):
            raise GbenchError(f"{ctx}: each mixture entry is a table {{name = ..., weight = ...}}")
        _check_keys(part, {"name", "weight", "options"}, f"{ctx} mixture")
        weight = part.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise GbenchError(f"{ctx}: mixture weights must be positive, got {weight!r}")
        if not isinstance(part.get("options", {}), dict):
            raise GbenchError(f"{ctx}: a mixture entry's 'options' must be a table")
        parts.append((part.get("name", ""), float(weight), part.get("options", {})))
    for dname in [spec.name, spec.reference] + [n for n, _, _ in parts]:
        if dname:
            try:
                plugins.datasets.entry(dname)
            except GbenchError as exc:
                raise GbenchError(f"{ctx}: {exc}") from None
    if spec.train_size < 0:
        raise GbenchError(f"{ctx}: 'train_size' must be >= 0 (0 = a whole image split)")
    return dataclasses.replace(spec, mixture=tuple(parts))


def _table(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise GbenchError(f"{where}: expected a table, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(raw, set(fields), where)
    values = {}
    for key, value in raw.items():
        default = fields[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise GbenchError(f"{where}: {key!r} should be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise GbenchError(f"{where}: {key!r} should be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GbenchError(f"{where}: {key!r} should be a number, got {value!r}")
            if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
                raise GbenchError(f"{where}: {key!r} should be a whole number, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise GbenchError(f"{where}: {key!r} should be a string, got {value!r}")
        values[key] = value
    return cls(**values)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise GbenchError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
