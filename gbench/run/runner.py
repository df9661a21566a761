"""Run a suite: the trial matrix, one result file per trial, a manifest, resume.

Before anything is written, :func:`check_suite` opens every dataset of the suite (so missing data,
a bad dataset option, a toy+image mixture or a CNN on a toy is one line, exit 2), and the run
directory is locked (``OUT/.lock``, ``fcntl``) for as long as the run writes it: a second ``--resume``
into a live run is refused.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from gbench.run.checkpoint import checkpoint_path, remove_stale_temporaries
from gbench.errors import GbenchError
from gbench.run.results import (MANIFEST, SCHEMA, check_result, load_results, provenance, read_json, trial_path,
                             write_atomic, write_json)
from gbench.suite import Suite
from gbench.run.loop import Precision
from gbench.run.record import TrialOutput, TrialResult, stamped
from gbench.run.trial import Runtime, Trial, build_dataset, build_reference, build_variant, metric_options, metrics_for, \
    trials_of
from gbench.run.executors import Executor, LocalExecutor, ProcessExecutor, groups, run_groups
from gbench.run.progress import budget_text, progress_for
from gbench.observers import observed_run

FINISHED = ("ok", "diverged")  # a failed trial is tried again on --resume


def check_runtime(runtime: Runtime) -> None:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise GbenchError("--device cuda: no CUDA device is available here (use --device cpu)")
    if runtime.precision not in Precision.DTYPES:
        raise GbenchError(f"unknown precision {runtime.precision!r} (use {', '.join(Precision.DTYPES)})")
    if runtime.precision == "fp16" and runtime.device != "cuda":
        raise GbenchError("--precision fp16 needs --device cuda (use bf16 on the CPU)")


# the backbone families' data: "mlp" takes flat points (toys), "cnn"/"dcgan" 32x32 images
KIND_OF_ARCH = {"mlp": "toy", "cnn": "image", "dcgan": "image"}
LOCK = ".lock"


def check_suite(suite: Suite, runtime: Runtime) -> None:
    """Everything a trial would find wrong with ``suite`` before it trains, as one :class:`GbenchError`
    naming the suite file: datasets that cannot be opened (missing data, bad options), a reference of
    another kind, a backbone for the other kind of data, a training set smaller than a batch, metric
    settings, variant settings."""
    where = suite.path
    spec = suite.dataset
    try:
        dataset = build_dataset(spec, runtime.data_root)
        reference = build_reference(spec, dataset, runtime.data_root)
        for variant in suite.variants:
            build_variant(variant, spec)  # also: a target that cannot hold against the reference
        metrics_for(reference, suite.eval.metrics, metric_options(suite, runtime))
    except (ValueError, TypeError) as exc:
        raise GbenchError(f"{where} [dataset]: {spec.label}: {exc}") from None
    except GbenchError as exc:
        raise GbenchError(f"{where}: {exc}") from None
    if reference.kind != dataset.kind:
        raise GbenchError(f"{where} [dataset]: reference {spec.reference!r} is {reference.kind} data, "
                          f"the training law {dataset.kind} data")
    wanted = KIND_OF_ARCH.get(suite.model.arch)
    if wanted is not None and wanted != dataset.kind:
        fit = [a for a, k in KIND_OF_ARCH.items() if k == dataset.kind]
        raise GbenchError(f"{where} [model]: arch {suite.model.arch!r} is for {wanted} data; {spec.label} is "
                          f"{dataset.kind} data (use arch = {' or '.join(map(repr, fit))})")
    for law in {id(dataset): dataset, id(reference): reference}.values():
        sigmas = np.asarray(getattr(law, "sigmas", 1.0), dtype=float)
        means = np.asarray(getattr(law, "means", 0.0), dtype=float)
        if not ((sigmas > 0).all() and np.isfinite(sigmas).all() and np.isfinite(means).all()):
            raise GbenchError(f"{where} [dataset]: {getattr(law, 'name', spec.label)}: every component needs a "
                              f"positive finite sigma and finite means (got sigmas {sigmas.tolist()[:4]}...)")
    size = spec.train_size
    if dataset.kind == "toy" and size <= 0:
        raise GbenchError(f"{where} [dataset]: 'train_size' must be positive for toy data, got {size}")
    if dataset.kind == "image":
        available = dataset.num_images("train")
        size = min(size, available) if size else available
    batch = max(suite.for_variant(v).budget.batch_size for v in suite.variants)  # a variant's schedule may set its own
    if batch > size:
        raise GbenchError(f"{where} [budget]: 'batch_size' {batch} is larger than the training "
                          f"set ({size} examples); lower it or raise [dataset] train_size")


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (an exclusive ``fcntl`` lock, released when this process ends, even by SIGKILL)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GbenchError(f"{out} is being written by another gbench run (lock {out / LOCK}); "
                              "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def run_suite(suite: Suite, out: Path, runtime: Runtime = Runtime(), resume: bool = False,
              quiet: bool = False, executor: Executor | None = None) -> list[dict[str, Any]]:
    """Run every trial of ``suite`` into ``out``; returns all results, earlier finished ones included.

    ``executor`` (default: this process, one trial after another) decides where trials run; each
    result is written here, in this process, as soon as its trial finishes."""
    check_runtime(runtime)
    check_suite(suite, runtime)
    executor = executor or LocalExecutor()
    if (out / MANIFEST).exists() and not resume:
        raise GbenchError(f"{out} already holds a run; pass --resume to finish it, or choose another --out")
    with locked(out):
        return _run_locked(suite, out, runtime, resume, quiet, executor)


def _run_locked(suite: Suite, out: Path, runtime: Runtime, resume: bool, quiet: bool,
                executor: Executor) -> list[dict[str, Any]]:
    manifest_path = out / MANIFEST
    trials = trials_of(suite)
    trial_ids = [t.id for t in trials]
    if manifest_path.exists():
        if not resume:
            raise GbenchError(f"{out} already holds a run; pass --resume to finish it, or choose another --out")
        old = read_json(manifest_path)
        if not isinstance(old, dict) or not isinstance(old.get("trials"), list):
            raise GbenchError(f"{manifest_path}: not a gbench manifest; run the suite again into a new --out")
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
    todo = [t for t in trials if not (resume and _finished(trial_path(out, t.id), t))]
    for trial_id in {t.id for t in trials} - {t.id for t in todo}:  # killed between result and checkpoint removal
        checkpoint_path(out, trial_id).unlink(missing_ok=True)
    shown = progress_for(suite.name, todo, str(out), quiet, resuming=resume)
    shown.header(len(suite.variants), len(suite.seeds), budget_text(todo or trials), len(trials) - len(todo))

    def on_progress(trial: Trial, step: int) -> None:
        shown.step(trial.id, step)

    def on_result(trial: Trial, output: TrialOutput) -> None:  # here, in this process, as each trial ends
        # the final evaluation's first samples, for the report's plots
        samples_file = write_samples(out, trial.id, output.samples) if output.samples is not None else None
        data = stamped(output, info, samples_file).to_json()
        write_json(trial_path(out, trial.id), data)
        if output.result.status in FINISHED:  # a failed trial keeps its checkpoint: --resume retries from it
            checkpoint_path(out, trial.id).unlink(missing_ok=True)
            prune_evolution(out, trial.id, {e.g_step for e in output.result.evaluations})
        shown.finished(trial.id, data)

    try:
        with observed_run(out):  # every evaluation's samples (and TensorBoard), in whichever process trains
            options = lambda trial: {"checkpoint_path": checkpoint_path(out, trial.id), "resume": resume}  # noqa: E731
            say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
            batched: list = []
            threads = getattr(executor, "threads", None)  # each configuration's G step is timed for the ETA
            if isinstance(executor, ProcessExecutor) or not runtime.batch:  # groups (if any) in workers, sharing the pool
                batched, todo = groups(todo, runtime, True, say, threads, shown.timed)
            else:  # the seeds of each variant configuration as one batched group, in this process
                todo = run_groups(todo, runtime, on_result, on_progress, threads, options,
                                  isinstance(executor, LocalExecutor), say, shown.timed)
            executor.map_trials(todo, runtime, on_result, on_progress, options,
                                **({"groups": batched} if batched else {}))
    finally:
        shown.close()
    return load_results(out)[1]


def _finished(path: Path, trial: Trial) -> bool:
    """Whether ``path`` holds a finished result of ``trial``; a garbled or partial file is reported and
    its trial run again (its file replaced)."""
    if not path.is_file():
        return False
    try:
        data = check_result(read_json(path), path)
        if data["trial_id"] != trial.id or data.get("suite_hash") != trial.suite.hash:
            raise GbenchError(f"{path}: a result of another trial or suite")
        for key in ("consumed", "evaluations", "diverged_at"):
            if key not in data:
                raise GbenchError(f"{path}: not a complete trial result (no {key!r})")
        try:
            result = TrialResult.from_json(data)
        except GbenchError as exc:
            raise GbenchError(f"{path}: {exc}") from None
    except GbenchError as exc:
        tqdm.write(f"gbench: warning: {exc}; running trial {trial.id} again", file=sys.stderr)
        return False
    return result.status in FINISHED


SAMPLES = "samples"


def prune_evolution(out: Path, trial_id: str, evaluated: set[int]) -> None:
    """Remove ``out/samples/<trial_id>/step<N>.npy`` files of steps the finished trial did not evaluate:
    left by an earlier attempt that failed (a failed trial keeps them: a ``--resume`` continuing from its
    checkpoint does not redo the evaluations before it, and rewrites those after it)."""
    from gbench.datasets.samples import evolution_files

    for step, path in evolution_files(out, trial_id).items():
        if step not in evaluated:
            path.unlink(missing_ok=True)


def write_samples(out: Path, trial_id: str, samples: Any) -> str:
    """Save ``samples`` as ``out/samples/<trial_id>.npy`` atomically; returns the path relative to ``out``."""

    import numpy as np

    path = out / SAMPLES / f"{trial_id}.npy"
    write_atomic(path, lambda f: np.save(f, np.asarray(samples), allow_pickle=False), binary=True)
    return f"{SAMPLES}/{path.name}"
