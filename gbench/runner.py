"""Run a suite: the trial matrix, one result file per trial, a manifest, resume."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gbench.errors import GbenchError
from gbench.results import MANIFEST, SCHEMA, load_results, provenance, read_json, trial_path, write_json
from gbench.suite import Suite
from gbench.loop import Precision
from gbench.trial import Runtime, run_trial, trials_of

FINISHED = ("ok", "diverged")  # a failed trial is tried again on --resume


def check_runtime(runtime: Runtime) -> None:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise GbenchError("--device cuda: no CUDA device is available here (use --device cpu)")
    if runtime.precision not in Precision.DTYPES:
        raise GbenchError(f"unknown precision {runtime.precision!r} (use {', '.join(Precision.DTYPES)})")
    if runtime.precision == "fp16" and runtime.device != "cuda":
        raise GbenchError("--precision fp16 needs --device cuda (use bf16 on the CPU)")


def run_suite(suite: Suite, out: Path, runtime: Runtime = Runtime(), resume: bool = False,
              quiet: bool = False) -> list[dict[str, Any]]:
    """Run every trial of ``suite`` into ``out``; returns all results, earlier finished ones included."""
    check_runtime(runtime)
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
    info = provenance(runtime.device)
    write_json(manifest_path, {
        "schema": SCHEMA,
        "suite": suite.name,
        "suite_path": suite.path,
        "suite_hash": suite.hash,
        "suite_content": suite.raw,
        "variants": [v.label for v in suite.variants],
        "trials": trial_ids,
        "runtime": dataclasses.asdict(runtime),
        "provenance": info,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    todo = [t for t in trials if not (resume and _finished(trial_path(out, t.id)))]
    steps = suite.budget.g_steps
    bar = tqdm(total=len(todo) * steps, disable=quiet, unit="G step", file=sys.stderr, dynamic_ncols=True,
               smoothing=0.05)
    for trial in todo:
        bar.set_description(trial.id)
        done = 0

        def progress(step: int) -> None:
            nonlocal done
            bar.update(step - done)
            done = step

        result = run_trial(trial, runtime, progress)
        bar.update(steps - done)
        result["provenance"] = info
        write_json(trial_path(out, trial.id), result)
        if result["status"] != "ok" and not quiet:
            why = result["error"] or f"losses not finite at G step {result['diverged_at']}"
            tqdm.write(f"gbench: trial {trial.id} {result['status']}: {why}", file=sys.stderr)
    bar.close()
    return load_results(out)[1]


def _finished(path: Path) -> bool:
    return path.is_file() and read_json(path).get("status") in FINISHED
