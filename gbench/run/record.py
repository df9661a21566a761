"""The typed record of one trial (:class:`TrialResult`) and what travels beside it (:class:`TrialOutput`).

A trial's record is built once, in :mod:`gbench.run.trial`; the executors hand it back with the
samples and the worker's facts beside it; the runner stamps the run's provenance once
(:func:`stamped`) and writes :meth:`TrialResult.to_json` as the trial's result file. The file keeps
the field names and meaning of schema :data:`gbench.run.results.SCHEMA` (the analysis reads it as
JSON), and :meth:`TrialResult.from_json` reads such files back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from gbench.errors import GbenchError
from gbench.run.results import SCHEMA

# Fields only a trial that trained has (status "ok" or "diverged"); a failed trial's file has none of them.
TRAINED = ("diverged_at", "metrics", "metric_errors", "evaluations", "generator", "target", "consumed",
           "loss_curve", "resumed_at", "variant_config", "data_kind", "data_provenance")


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
    dataset: dict[str, Any]  # the suite's [dataset], [budget], [model] and [optim] for this variant
    budget: dict[str, Any]
    model: dict[str, Any]
    optim: dict[str, Any]
    runtime: dict[str, Any]  # gbench.run.trial.Runtime, with the executor's settings and a batched group's
    protocol: dict[str, Any]  # evaluation samples, seed, fractions, reference; "metrics": each metric's protocol
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
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # g_step, fraction, metrics[, metric_errors]
    generator: str = "raw"  # whose metrics "metrics" holds: "ema" or "raw" ("raw." keys: the raw G's)
    target: dict[str, Any] | None = None  # a variant that controls JSD(p, p_g): its target and measured JSDs
    consumed: dict[str, Any] = field(default_factory=dict)  # gbench.run.budget.Consumed.as_dict() (+ group totals)
    loss_curve: list[Any] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)  # G steps it continued from a checkpoint
    variant_config: dict[str, Any] = field(default_factory=dict)
    data_kind: str = ""
    data_provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.status != "failed"

    def to_json(self) -> dict[str, Any]:
        """The result file's content: a failed trial has no training fields, a trace only when there is one."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
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
            return cls(**data)
        except TypeError as exc:
            raise GbenchError(f"not a complete trial result ({exc})") from None


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
