"""The typed record of one trial (:class:`TrialResult`), its parts, and what travels beside it (:class:`TrialOutput`).

A trial's record is built once, in :mod:`gbench.run.trial`; the executors hand it back with the
samples and the worker's facts beside it, saying where it ran (:meth:`TrialResult.ran_by`); the
runner stamps the run's provenance once (:func:`stamped`) and writes :meth:`TrialResult.to_json` as
the trial's result file. Its parts are typed records too: the runtime it ran under
(:class:`RuntimeRecord`), its scoring protocol (:class:`Protocol`), each evaluation
(:class:`Evaluation`), what it consumed (:class:`gbench.run.budget.Consumed`), its loss curve
(:class:`LossPoint`) and a JSD-controlling variant's target (:class:`Target`). The file keeps the
field names and meaning of schema :data:`gbench.run.results.SCHEMA` (the analysis reads it as JSON),
and :meth:`TrialResult.from_json` reads such files back: an unknown or missing field is a
:class:`GbenchError`.

The suite's ``dataset``, ``budget``, ``model`` and ``optim`` stay the JSON snapshots of the suite's
own typed tables (built once, by :func:`gbench.run.trial.result_of`), and ``provenance``,
``variant_config``, ``data_provenance`` and each metric's protocol are open tables that plugins fill.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, TypeVar

import numpy as np

from gbench.errors import GbenchError
from gbench.run.budget import Consumed
from gbench.run.results import SCHEMA, fields_of

# Fields only a trial that trained has (status "ok" or "diverged"); a failed trial's file has none of them.
TRAINED = ("diverged_at", "metrics", "metric_errors", "evaluations", "generator", "target", "consumed",
           "loss_curve", "resumed_at", "variant_config", "data_kind", "data_provenance")

@dataclass(frozen=True)
class Runtime:
    """How to run, not what: none of it changes a suite's hash."""

    device: str = "cpu"
    precision: str = "fp32"  # "fp32", or autocast to "bf16" / "fp16"
    data_root: str | None = None  # overrides the suite's [dataset] options.root
    inception_weights: str | None = None  # overrides the suite's [eval.fidelity] weights
    checkpoint_every: int = 1000  # save the training state every N G steps for --resume (0: at evaluations only)
    batch: bool = True  # train the seeds of each variant configuration together (gbench.run.loop); --no-batch: off


@dataclass(frozen=True)
class Batched:
    """A batched group a trial trained in: its size, its seeds and how the nets were stacked."""

    size: int  # "batched" in the file
    seeds: tuple[int, ...]  # "batched_seeds"
    mode: str  # "batched_mode": "vmap" or "loop" (gbench.run.batched)


@dataclass(frozen=True)
class Parallel:
    """An executor's settings: trials at once and torch threads per trial (None: the default)."""

    jobs: int | None
    threads: int | None


@dataclass(frozen=True)
class RuntimeRecord:
    """A result's ``runtime``: the :class:`Runtime` settings, the batched group (if any) and where it ran."""

    settings: Runtime
    batched: Batched | None = None
    executor: str | None = None  # "local", "batched", "process", "ray": set by the executor
    parallel: Parallel | None = None  # None where the worker never reported (a crashed or lost one)
    checkpoints: str | None = None  # why checkpoints were off (a Ray node without the run directory)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dataclasses.asdict(self.settings)
        if self.batched is not None:
            data.update(batched=self.batched.size, batched_seeds=list(self.batched.seeds),
                        batched_mode=self.batched.mode)
        if self.executor is not None:
            data["executor"] = self.executor
        if self.parallel is not None:
            data.update(jobs=self.parallel.jobs, threads=self.parallel.threads)
        if self.checkpoints is not None:
            data["checkpoints"] = self.checkpoints
        return data

    @classmethod
    def from_json(cls, data: Any) -> "RuntimeRecord":
        names = tuple(f.name for f in dataclasses.fields(Runtime))
        d = fields_of(data, "runtime", names, ("batched", "batched_seeds", "batched_mode", "executor", "jobs",
                                               "threads", "checkpoints"))
        batched = Batched(d["batched"], tuple(d["batched_seeds"]), d["batched_mode"]) if "batched" in d else None
        parallel = Parallel(d["jobs"], d["threads"]) if "jobs" in d or "threads" in d else None
        return cls(Runtime(**{k: d[k] for k in names}), batched, d.get("executor"), parallel, d.get("checkpoints"))


@dataclass(frozen=True)
class Protocol:
    """How a trial was scored: evaluation samples and noise seed, the budget fractions evaluated at,
    the reference; once trained, each metric's own protocol (``Metric.protocol()``)."""

    eval_samples: int
    eval_seed: int
    eval_at: tuple[float, ...]
    reference: str
    metrics: dict[str, dict[str, Any]] | None = None  # metric name -> its protocol; absent before training

    def to_json(self) -> dict[str, Any]:
        data = {"eval_samples": self.eval_samples, "eval_seed": self.eval_seed, "eval_at": list(self.eval_at),
                "reference": self.reference}
        return data if self.metrics is None else {**data, "metrics": self.metrics}

    @classmethod
    def from_json(cls, data: Any) -> "Protocol":
        d = fields_of(data, "protocol", ("eval_samples", "eval_seed", "eval_at", "reference"), ("metrics",))
        return cls(d["eval_samples"], d["eval_seed"], tuple(d["eval_at"]), d["reference"], d.get("metrics"))


@dataclass(frozen=True)
class Evaluation:
    """One scoring of a trial's generator at a G step: the metrics, and those that could not run."""

    g_step: int
    fraction: float  # of the G-step budget
    metrics: dict[str, float]  # with an EMA of G, the EMA G's, and the raw G's under "raw." keys
    metric_errors: dict[str, str] = field(default_factory=dict)  # metric (or "samples") -> why; in the file if any

    def to_json(self) -> dict[str, Any]:
        data = {"g_step": self.g_step, "fraction": self.fraction, "metrics": self.metrics}
        return {**data, "metric_errors": self.metric_errors} if self.metric_errors else data

    @classmethod
    def from_json(cls, data: Any) -> "Evaluation":
        d = fields_of(data, "evaluations[]", ("g_step", "fraction", "metrics"), ("metric_errors",))
        return cls(d["g_step"], d["fraction"], d["metrics"], d.get("metric_errors", {}))


@dataclass(frozen=True)
class LossPoint:
    """The mean losses of one logging window, at the G step that ends it."""

    g_step: int
    d_loss: float
    g_loss: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "LossPoint":
        return cls(**fields_of(data, "loss_curve[]", ("g_step", "d_loss", "g_loss")))


@dataclass(frozen=True)
class Target:
    """A variant that controls JSD(p, p_g): its target, its own account of how it meets it, and the
    divergences measured around its training law p_delta (``gbench.run.trial``)."""

    jsd: float  # the target, in bits
    details: dict[str, Any] = field(default_factory=dict)  # Variant.target_details(), beside "jsd" in the file
    jsd_p_pdelta: float | None = None  # JSD(p, p_delta), bits
    jsd_p_pdelta_ci: tuple[float, float] | None = None
    jsd_pdelta_pg: float | None = None  # JSD(p_delta, p_g), bits: how well G learned its training law
    jsd_pdelta_pg_ci: tuple[float | None, float | None] | None = None
    note: str | None = None  # why nothing was measured
    error: str | None = None  # why a measurement failed

    MEASURED = ("jsd_p_pdelta", "jsd_p_pdelta_ci", "jsd_pdelta_pg", "jsd_pdelta_pg_ci", "note", "error")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"jsd": self.jsd, **self.details}
        for name in self.MEASURED:
            value = getattr(self, name)
            if value is not None:
                data[name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_json(cls, data: Any) -> "Target":
        """The record of a result's ``target``: its measured keys, and the variant's details (the rest)."""
        details = fields_of(data, "target", ("jsd",), tuple(data) if isinstance(data, Mapping) else ())
        measured = {k: details.pop(k) for k in cls.MEASURED if k in details}
        for key in ("jsd_p_pdelta_ci", "jsd_pdelta_pg_ci"):
            if key in measured:
                measured[key] = tuple(measured[key])
        return cls(details.pop("jsd"), details, **measured)


R = TypeVar("R")


def _each(parse: Callable[[Any], R]) -> Callable[[Any], tuple[R, ...]]:
    """A reader of a JSON list whose every item ``parse`` reads."""

    def parse_all(items: Any) -> tuple[R, ...]:
        if not isinstance(items, list):
            raise GbenchError(f"not a complete trial result (a {type(items).__name__} where a list belongs)")
        return tuple(parse(item) for item in items)

    return parse_all


# how each typed field of a result file is read back
PARSERS: dict[str, Callable[[Any], Any]] = {
    "runtime": RuntimeRecord.from_json,
    "protocol": Protocol.from_json,
    "evaluations": _each(Evaluation.from_json),
    "loss_curve": _each(LossPoint.from_json),
    "consumed": Consumed.from_json,
    "target": lambda data: None if data is None else Target.from_json(data),
}


def _plain(value: Any) -> Any:
    """A field's JSON value: records by their ``to_json``, tuples of them as lists."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class TrialResult:
    """What a trial's number needs beside it to be compared with another (one result file)."""

    trial_id: str
    status: str  # "ok", "diverged" or "failed"
    suite: str
    suite_hash: str
    variant: str
    label: str
    seed: int
    dataset: dict[str, Any]  # the suite's [dataset], [budget], [model] and [optim] for this variant, as JSON
    budget: dict[str, Any]
    model: dict[str, Any]
    optim: dict[str, Any]
    runtime: RuntimeRecord
    protocol: Protocol
    started: float  # time.time() when the trial (or its group) started
    error: str | None = None
    traceback: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # stamped by the runner: see stamped()
    samples_file: str | None = None  # the final evaluation's first samples, relative to the run directory
    schema: int = SCHEMA
    # trained trials only (TRAINED)
    diverged_at: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation's ({} unless status "ok")
    metric_errors: dict[str, str] = field(default_factory=dict)
    evaluations: tuple[Evaluation, ...] = ()
    generator: str = "raw"  # whose metrics "metrics" holds: "ema" or "raw" ("raw." keys: the raw G's)
    target: Target | None = None  # a variant that controls JSD(p, p_g)
    consumed: Consumed | None = None
    loss_curve: tuple[LossPoint, ...] = ()
    resumed_at: list[int] = field(default_factory=list)  # G steps it continued from a checkpoint
    variant_config: dict[str, Any] = field(default_factory=dict)
    data_kind: str = ""
    data_provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.status != "failed"

    def ran_by(self, executor: str, parallel: Parallel | None = None, checkpoints: str | None = None) -> "TrialResult":
        """This record with where it ran: the executor's name and, if given, its settings and checkpoint note."""
        runtime = self.runtime
        return dataclasses.replace(self, runtime=dataclasses.replace(
            runtime, executor=executor, parallel=runtime.parallel if parallel is None else parallel,
            checkpoints=runtime.checkpoints if checkpoints is None else checkpoints))

    def to_json(self) -> dict[str, Any]:
        """The result file's content: a failed trial has no training fields, a trace only when there is one."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        for name in ("traceback", "samples_file"):
            if data[name] is None:
                del data[name]
        if not self.trained:
            for name in TRAINED:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrialResult":
        """The record of a result file (as :func:`gbench.run.results.read_json` returns it)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GbenchError(f"not a trial result of schema {SCHEMA}: unknown field {unknown[0]!r}")
        if data.get("schema") != SCHEMA:
            raise GbenchError(f"a trial result of schema {data.get('schema')!r}; this gbench reads schema {SCHEMA}")
        try:
            return cls(**{k: PARSERS[k](v) if k in PARSERS else v for k, v in data.items()})
        except (TypeError, KeyError) as exc:  # a part of the wrong type, a missing field
            raise GbenchError(f"not a complete trial result ({type(exc).__name__}: {exc})") from None


class TrialOutput(NamedTuple):
    """What a trial hands back: its record, the final evaluation's first samples (not JSON: the runner
    saves them as .npy) and the facts of the process that ran it (pid, host, threads; on another node its
    own provenance)."""

    result: TrialResult
    samples: np.ndarray | None = None
    worker: Mapping[str, Any] = {}


def stamped(output: TrialOutput, run_info: Mapping[str, Any], samples_file: str | None) -> TrialResult:
    """The record as written: the run's provenance with the worker's facts over it, and where its samples are."""
    return dataclasses.replace(output.result, provenance={**run_info, **output.worker}, samples_file=samples_file)
