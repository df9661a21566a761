"""Run a suite: the trial matrix, one result file per trial, a manifest, resume."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gbench.checkpoint import checkpoint_path, remove_stale_temporaries
from gbench.errors import GbenchError
from gbench.results import MANIFEST, SCHEMA, load_results, provenance, read_json, trial_path, write_atomic, write_json
from gbench.suite import Suite
from gbench.loop import Precision
from gbench.trial import Runtime, Trial, trials_of
from gbench.executors import Executor, LocalExecutor

FINISHED = ("ok", "diverged")  # a failed trial is tried again on --resume


def check_runtime(runtime: Runtime) -> None:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise GbenchError("--device cuda: no CUDA device is available here (use --device cpu)")
    if runtime.precision not in Precision.DTYPES:
        raise GbenchError(f"unknown precision {runtime.precision!r} (use {', '.join(Precision.DTYPES)})")
    if runtime.precision == "fp16" and runtime.device != "cuda":
        raise GbenchError("--precision fp16 needs --device cuda (use bf16 on the CPU)")


def run_suite(suite: Suite, out: Path, runtime: Runtime = Runtime(), resume: bool = False,
              quiet: bool = False, executor: Executor | None = None) -> list[dict[str, Any]]:
    """Run every trial of ``suite`` into ``out``; returns all results, earlier finished ones included.

    ``executor`` (default: this process, one trial after another) decides where trials run; each
    result is written here, in this process, as soon as its trial finishes."""
    check_runtime(runtime)
    executor = executor or LocalExecutor()
    manifest_path = out / MANIFEST
    trials = trials_of(suite)
    trial_ids = [t.id for t in trials]
    if manifest_path.exists():
        if not resume:
            raise GbenchError(f"{out} already holds a run; pass --resume to finish it, or choose another --out")
        old = read_json(manifest_path)
        if old.get("suite_hash") != suite.hash:
            raise GbenchError(f"{out} holds a run of a different suite ({old.get('suite')!r}, hash {old.get('suite_hash')}); "
                              "choose another --out")
        trial_ids = old["trials"] + [t for t in trial_ids if t not in old["trials"]]  # e.g. more seeds
        removed = remove_stale_temporaries(out)  # what a killed write left behind
        if removed and not quiet:
            tqdm.write(f"gbench: removed {removed} temporary file(s) left by an interrupted run", file=sys.stderr)
    info = provenance(runtime.device)
    write_json(manifest_path, {
        "schema": SCHEMA,
        "suite": suite.name,
        "suite_path": suite.path,
        "suite_hash": suite.hash,
        "suite_content": suite.raw,
        "variants": [v.label for v in suite.variants],
        "trials": trial_ids,
        "runtime": {**dataclasses.asdict(runtime), **executor.describe()},
        "provenance": info,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    todo = [t for t in trials if not (resume and _finished(trial_path(out, t.id)))]
    for trial_id in {t.id for t in trials} - {t.id for t in todo}:  # killed between result and checkpoint removal
        checkpoint_path(out, trial_id).unlink(missing_ok=True)
    steps = suite.budget.g_steps
    bar = tqdm(total=len(todo) * steps, disable=quiet, unit="G step", file=sys.stderr, dynamic_ncols=True,
               smoothing=0.05)
    done: dict[str, int] = {}  # G steps shown on the bar, per trial (several may run at once)

    def on_progress(trial: Trial, step: int) -> None:
        bar.set_description(trial.id)
        if step > done.get(trial.id, 0):
            bar.update(step - done.get(trial.id, 0))
            done[trial.id] = step

    def on_result(trial: Trial, result: dict[str, Any]) -> None:  # here, in this process, as each trial ends
        bar.update(steps - done.get(trial.id, 0))
        done[trial.id] = steps
        result["provenance"] = {**info, **result.get("provenance", {})}  # the worker's pid, host, threads
        samples = result.pop("_samples", None)  # the final evaluation's first samples, for the report's plots
        if samples is not None:
            result["samples_file"] = write_samples(out, trial.id, samples)
        write_json(trial_path(out, trial.id), result)
        if result["status"] in FINISHED:  # a failed trial keeps its checkpoint: --resume retries from it
            checkpoint_path(out, trial.id).unlink(missing_ok=True)
        if result["status"] != "ok" and not quiet:
            why = result["error"] or f"losses not finite at G step {result['diverged_at']}"
            tqdm.write(f"gbench: trial {trial.id} {result['status']}: {why}", file=sys.stderr)

    try:
        if runtime.batch_seeds:  # toy MLP suites: a variant's seeds as one batched model, in this process
            from gbench import batched

            todo = batched.run_groups(todo, runtime, on_result, on_progress, getattr(executor, "threads", None))
        executor.map_trials(todo, runtime, on_result, on_progress,
                            lambda trial: {"checkpoint_path": checkpoint_path(out, trial.id), "resume": resume})
    finally:
        bar.close()
    return load_results(out)[1]


def _finished(path: Path) -> bool:
    return path.is_file() and read_json(path).get("status") in FINISHED


SAMPLES = "samples"


def write_samples(out: Path, trial_id: str, samples: Any) -> str:
    """Save ``samples`` as ``out/samples/<trial_id>.npy`` atomically; returns the path relative to ``out``."""

    import numpy as np

    path = out / SAMPLES / f"{trial_id}.npy"
    write_atomic(path, lambda f: np.save(f, np.asarray(samples), allow_pickle=False), binary=True)
    return f"{SAMPLES}/{path.name}"
