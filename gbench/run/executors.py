"""Where trials run: in this process, in a pool of local processes, or as Ray tasks.

An executor only decides where :func:`gbench.run.trial.run_trial` is called. It hands every result back to
the caller (the runner, in the parent process) as soon as that trial finishes, through ``on_result``;
the runner writes it to disk right away, so a killed run loses only the trials still running.

Determinism across executors: a trial seeds every random stream itself, but some CPU kernels
(reductions, matrix products) split work by thread, so the last bits of a number can depend on the
intra-op thread count. Every executor therefore applies the same ``threads`` setting around each trial
(``torch.set_num_threads``): give the same ``threads`` and local, process and Ray runs produce the same
metrics and loss curves. Defaults: torch's own setting for ``local``, ``usable CPUs // jobs`` for
``process``, ``cluster CPUs // jobs`` (or 1) for ``ray``. The setting is recorded in each result's
``runtime`` (``executor``, ``jobs``, ``threads``) and the count actually used in its ``provenance``
(``torch_threads``, with ``pid`` and ``host``).

Isolation: whatever a variant raises, ``BaseException`` included (``sys.exit()``, a stray
``KeyboardInterrupt``), is that trial's failure, recorded with its message, and the other trials go on;
only a real interrupt of this process (Ctrl-C, SIGINT) stops the run. With ``process``, each trial,
or each batched group of a variant's seeds, runs in its own worker process (spawned, one at a time per
slot, so the groups share the pool): a worker that dies (``os._exit``, a segfault, the OOM killer)
fails its own trials alone, and every worker dies with the parent (Linux parent-death signal, and a
watchdog that polls the parent's pid elsewhere).

Workers of the ``process`` and ``ray`` executors are fresh interpreters: they load plugins the way any
gbench process does (built-ins and the ``gbench`` entry-point group), so a variant registered only in
the calling process (``load_plugins(extra=...)``) is unknown there.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from gbench.errors import GbenchError
from gbench.backbones import build_backbone
from gbench.run.batched import Players, probe, stack
from gbench.run.budget import Meter
from gbench.run.loop import BatchStream, Group, train
from gbench.run.record import Parallel, TrialOutput, TrialResult
from gbench.run.trial import Runtime, Trial, build_dataset, build_nets, build_variant, ema_copy, result_of, run_group, \
    run_trial

EXECUTORS = ("local", "process", "ray")
RAY_MISSING = "the ray executor needs `pip install gbench[ray]`"

OnResult = Callable[[Trial, TrialOutput], None]
OnProgress = Callable[[Trial, int], None]
RunOptions = Callable[[Trial], Mapping[str, Any]]  # more keyword arguments of run_trial, per trial
OnCost = Callable[[Sequence[Trial], "StepCost"], None]  # a configuration's trials and their timed G step


class Executor(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """What the manifest records under ``runtime`` (executor, jobs, threads...). The runner calls it
        before writing anything, so an executor may connect here (Ray) and fail early."""

    def map_trials(self, trials: Sequence[Trial], runtime: Runtime, on_result: OnResult,
                   on_progress: OnProgress | None = None, options: RunOptions | None = None) -> None:
        """Run ``trials``; call ``on_result(trial, output)`` in this process as each one finishes (in
        completion order) and ``on_progress(trial, g_step)`` now and then (``0`` when a trial starts,
        where the executor knows). ``options(trial)`` adds keyword arguments to ``run_trial`` (they
        must pickle: paths, flags). A trial that cannot run (its worker died) is reported as a
        ``failed`` output; an exception from a callback stops the run and the trials in flight."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def make_executor(name: str = "local", jobs: int | None = None, address: str | None = None,
                  threads: int | None = None) -> Executor:
    """The executor the command line asks for; bad combinations are :class:`GbenchError`."""
    if name not in EXECUTORS:
        raise GbenchError(f"unknown executor {name!r} (use {', '.join(EXECUTORS)})")
    if jobs is not None and jobs < 1:
        raise GbenchError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise GbenchError(f"--threads must be at least 1, got {threads}")
    if address and name != "ray":
        raise GbenchError("--address is for --executor ray")
    if name == "local":
        if jobs not in (None, 1):
            raise GbenchError("--executor local runs one trial at a time; use --executor process or ray for --jobs")
        return LocalExecutor(threads)
    if name == "process":
        return ProcessExecutor(jobs, threads)
    return RayExecutor(address, jobs, threads)


def run_one(trial: Trial, runtime: Runtime, *, threads: int | None = None, executor: str = "local",
            jobs: int | None = 1, progress: Callable[[int], None] | None = None,
            remote: bool = False, options: Mapping[str, Any] | None = None) -> TrialOutput:
    """Run one trial with ``threads`` intra-op threads (None: leave torch's setting) and record how.

    The same function runs in every executor's worker, so a trial's numbers depend on its suite, seed
    and thread count, not on where it ran. ``remote``: this may be another machine (Ray): record its
    own provenance, and checkpoint only where the run directory is visible (a shared file system)."""
    options = dict(options or {})
    note = None
    if remote and options.get("checkpoint_path") and not Path(options["checkpoint_path"]).parent.parent.is_dir():
        options.pop("checkpoint_path")
        options.pop("resume", None)
        note = "off: the run directory is not on this node's file system"
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        used = torch.get_num_threads()
        with _interrupts() as interrupted:
            try:
                output = run_trial(trial, runtime, progress, **options)
            except BaseException as exc:  # a variant's sys.exit(), a stray KeyboardInterrupt...
                if isinstance(exc, KeyboardInterrupt) and interrupted():
                    raise  # the user's Ctrl-C: stop the run
                output = TrialOutput(failed_result(trial, runtime, f"{type(exc).__name__}: {exc}", executor,
                                                   traceback.format_exc()))
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
    return TrialOutput(output.result.ran_by(executor, Parallel(jobs, threads), note), output.samples,
                       worker_facts(runtime.device, used, remote))


def worker_facts(device: str, threads: int, remote: bool = False) -> dict[str, Any]:
    """What the runner's provenance cannot know about the process that ran a trial: its pid, host and
    torch threads; with ``remote`` (maybe another machine) its own versions, processor and GPU too."""
    facts: dict[str, Any] = {}
    if remote:
        from gbench.run.results import provenance

        facts = provenance(device)
    return {**facts, "pid": os.getpid(), "host": socket.gethostname(), "torch_threads": threads}


class _interrupts:
    """Tell a real SIGINT of this process from a ``KeyboardInterrupt`` that plugin code raised: while
    active (main thread only), SIGINT sets a flag before raising."""

    def __enter__(self) -> Callable[[], bool]:
        self.hit = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            current = signal.getsignal(signal.SIGINT)
            if current is signal.default_int_handler:
                def handler(signum: int, frame: Any) -> None:
                    self.hit = True
                    raise KeyboardInterrupt
                self.previous = signal.signal(signal.SIGINT, handler)
            else:  # ignored (a pool worker) or someone else's handler: a KeyboardInterrupt is not ours
                self.hit = current not in (signal.SIG_IGN, signal.SIG_DFL)
        return lambda: self.hit

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _portable(options: RunOptions | None, trial: Trial) -> dict[str, Any] | None:
    """``options(trial)`` for another process: relative paths made absolute (a Ray worker's working
    directory is not the caller's)."""
    if options is None:
        return None
    return {k: v.resolve() if isinstance(v, Path) else v for k, v in options(trial).items()}


def failed_result(trial: Trial, runtime: Runtime, error: str, executor: str, trace: str | None = None) -> TrialResult:
    """The record of a trial whose worker never returned (it crashed, was cancelled, or was lost)."""
    result = result_of(trial, runtime, time.time(), error, trace)
    return result.ran_by(executor)


class LocalExecutor:
    """Every trial in this process, one after the other (per-step progress)."""

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "jobs": 1, "threads": self.threads}

    def map_trials(self, trials: Sequence[Trial], runtime: Runtime, on_result: OnResult,
                   on_progress: OnProgress | None = None, options: RunOptions | None = None) -> None:
        for trial in trials:
            progress = None
            if on_progress:
                on_progress(trial, 0)
                progress = lambda step, t=trial: on_progress(t, step)  # noqa: E731
            on_result(trial, run_one(trial, runtime, threads=self.threads, progress=progress,
                                     options=options(trial) if options else None))


# -- batched groups ----------------------------------------------------------------------------------


def plan(trial: Trial, runtime: Runtime) -> tuple[str | None, str]:
    """How the seeds of ``trial``'s variant configuration train together: ("vmap", "") when one
    vectorised call computes them (``gbench.run.batched.probe``), ("loop", why) when they train
    trial by trial in one group, (None, why) when they cannot share a group. Decided here, once."""
    if runtime.precision == "fp16":
        return None, ("fp16 loss scaling skips the optimiser step of every trial of a group when one "
                      "overflows, so its trials run separately")
    suite = trial.suite
    variant = build_variant(trial.variant, suite.dataset)
    dataset = build_dataset(suite.dataset, runtime.data_root)
    backbone = build_backbone(suite.model.arch, dataset.data_shape, dict(suite.model.options))
    device, S, B = torch.device(runtime.device), 2, 4
    state = torch.get_rng_state()
    try:
        g = torch.Generator(device).manual_seed(0)
        x_real = torch.randn(S, B, *dataset.data_shape, generator=g, device=device).clamp_(-1, 1)
        z = torch.randn(S, B, suite.model.z_dim, generator=g, device=device)
        why = probe(variant, lambda s: build_nets(variant, backbone, s, device), x_real, z,
                    lambda: [torch.Generator(device).manual_seed(s) for s in range(S)])
    finally:
        torch.set_rng_state(state)
    return ("vmap", "") if why is None else ("loop", why)


def groups(trials: Sequence[Trial], runtime: Runtime, local: bool, say: Callable[[str], None],
           threads: int | None = None, timed: OnCost | None = None
           ) -> tuple[list[tuple[list[Trial], str]], list[Trial]]:
    """The batched groups of ``trials`` (all seeds of one variant configuration; with their mode) and
    the trials left to run one by one. Each configuration that is not vmapped is named in one line
    through ``say``. Without ``runtime.batch`` (``--no-batch``) nothing is grouped. With ``timed``,
    each configuration's G step is timed (:func:`time_step`, ``threads`` torch threads) in the unit
    its trials will train in, its batched group or one trial, and handed to ``timed`` with its trials."""
    by_config: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        by_config.setdefault((t.suite.hash, t.variant.label), []).append(t)
    out, alone = [], []
    for group in by_config.values():
        mode, why = plan(group[0], runtime) if runtime.batch and len(group) > 1 else (None, "")
        label = group[0].variant.label
        together = mode == "vmap" or (mode == "loop" and local)
        if together:
            if mode == "loop":
                say(f"gbench: {label}: its {len(group)} seeds train together trial by trial, not vmapped: {why}")
            out.append((group, mode))
        else:
            if runtime.batch and len(group) > 1:
                why = why if mode is None else f"{why}; with --executor {runtime_executor(local)} they run separately"
                say(f"gbench: {label}: not batched: {why}")
            alone += group
        if timed is not None:
            cost = time_step(group, runtime, mode, threads) if together and mode else \
                time_step(group[:1], runtime, "loop", threads)
            if cost is not None:
                timed(group, cost)
    return out, (alone if runtime.batch else list(trials))


@dataclass(frozen=True)
class StepCost:
    """One G step (with its D steps) of a configuration, timed by :func:`time_step` in the unit its
    trials train in: what the progress ETA knows of a variant before any of its trials reports."""

    device: float  # device seconds (the budget's clock) per G step of the unit: its batched group, or one trial
    size: int  # trials in the unit (each is charged device / size of it)


WARM_STEPS = 2  # G steps before the timing (first calls, allocations)
TIMED_STEPS = (5, 30)  # the fewest and most G steps timed
TIMED_S = 0.1  # device seconds aimed at (the warm-up's rate says how many steps that is)


def time_step(trials: Sequence[Trial], runtime: Runtime, mode: str, threads: int | None = None) -> StepCost | None:
    """Time the training step of ``trials`` (one configuration: a batched group in ``mode``, or one
    trial) on throwaway copies of their nets: ``WARM_STEPS`` G steps of :func:`gbench.run.loop.train`
    on random data of the dataset's shape, then a few more, ~``TIMED_S`` of training, on the device
    clock the budget counts (process time on a CPU: less sensitive to other load than wall time),
    with ``threads`` torch threads.
    Every draw is from the probe's own generators and torch's global RNG state is restored, so no
    trial's numbers change. None if the configuration cannot train (its trials will say why)."""
    suite, S = trials[0].suite, len(trials)
    device = torch.device(runtime.device)
    before = torch.get_num_threads()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _interrupts() as interrupted:
        try:
            if threads:
                torch.set_num_threads(threads)
            variant = build_variant(trials[0].variant, suite.dataset)
            shape = build_dataset(suite.dataset, runtime.data_root).data_shape
            backbone = build_backbone(suite.model.arch, shape, dict(suite.model.options))
            nets = [build_nets(variant, backbone, t.seed, device) for t in trials]
            players = Players(stack([n.generator for n in nets]), stack([n.critic for n in nets]), mode)
            opt = suite.optim
            opt_g = torch.optim.Adam(players.g.params.values(), lr=opt.g_lr, betas=opt.betas, foreach=True)
            opt_d = torch.optim.Adam(players.d.params.values(), lr=opt.d_lr, betas=opt.betas, foreach=True)
            batch = suite.budget.batch_size

            def rngs(stream: int) -> list[torch.Generator]:
                return [torch.Generator(device).manual_seed(S * stream + s) for s in range(S)]

            data = torch.rand(2 * batch, *shape, generator=torch.Generator(device).manual_seed(0), device=device)
            data.mul_(2).sub_(1)
            group = Group(players, opt_g, opt_d, [BatchStream(data, batch, r) for r in rngs(0)], rngs(1), rngs(2),
                          rngs(3), suite.model.z_dim, ema_copy(players.g) if opt.ema_decay > 0 else None,
                          [torch.get_rng_state() for _ in trials] if S > 1 and mode == "loop" else None)

            def clock() -> float:
                """Device seconds as the budget's meter counts them (process time on a CPU)."""
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                    return time.perf_counter()
                return time.process_time()

            def seconds(steps: int) -> float:
                """Device seconds per G step over ``steps`` G steps."""
                budget = dataclasses.replace(suite.budget, g_steps=steps, max_device_seconds=0.0)
                start = clock()
                train(variant, group, budget, Meter(device), lambda step, active: None, set(),
                      precision=runtime.precision, optim=opt)
                return (clock() - start) / steps

            warm = seconds(WARM_STEPS)
            cost = seconds(int(min(TIMED_STEPS[1], max(TIMED_STEPS[0], TIMED_S / max(warm, 1e-6)))))
        except BaseException as exc:  # noqa: BLE001 - a configuration that cannot train fails in its trials, with its reason
            if isinstance(exc, KeyboardInterrupt) and interrupted():
                raise  # a real Ctrl-C stops the run; a variant's sys.exit() or stray KeyboardInterrupt does not
            return None
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
    return StepCost(cost, S)


def runtime_executor(local: bool) -> str:
    return "local" if local else "process/ray"


def run_groups(trials: Sequence[Trial], runtime: Runtime, on_result: OnResult, on_progress: OnProgress | None,
               threads: int | None, options: RunOptions | None, local: bool,
               say: Callable[[str], None], timed: OnCost | None = None) -> list[Trial]:
    """Train every batched group of ``trials`` in this process with ``threads`` torch threads (None:
    torch's setting), handing each record to ``on_result``; returns the trials left for the executor.
    ``timed``: as :func:`groups`."""
    batched, alone = groups(trials, runtime, local, say, threads, timed)
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        for group, mode in batched:
            def progress(step: int, group: list[Trial] = group) -> None:
                for t in group:
                    if on_progress is not None:
                        on_progress(t, step)

            progress(0)  # the group starts: the ETA times its start-up from here
            extra = dict(options(group[0])) if options else {}
            for t, output in zip(group, run_group(group, runtime, progress, mode=mode, **extra)):
                result = output.result.ran_by("batched", Parallel(1, threads))
                on_result(t, TrialOutput(result, output.samples, worker_facts(runtime.device, torch.get_num_threads())))
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
    return alone


# -- process pool -----------------------------------------------------------------------------------

PROGRESS_EVERY_S = 0.5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Make this process end when process ``parent`` does: the Linux parent-death signal (SIGKILL),
    and, where there is none, a daemon thread that polls the parent's pid."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0 and os.getppid() == parent:
            return
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # already orphaned
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="gbench-parent-watchdog", daemon=True).start()


def _worker(conn: Any, parent: int, trials: list[Trial], mode: str | None, runtime: Runtime, threads: int,
            jobs: int, options: Mapping[str, Any] | None) -> None:
    """One unit in a spawned worker: a trial (``mode`` None) or a batched group of trials trained
    together (``mode`` "vmap"/"loop", :func:`gbench.run.trial.run_group`). Progress (the parent
    reports step 0 itself, when it starts the worker) and then each trial's output (with its index in
    ``trials``) go back through ``conn``."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    torch.set_num_threads(threads)
    last = 0.0

    def progress(step: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            conn.send(("progress", step))

    try:
        if mode is None:
            outputs = [run_one(trials[0], runtime, threads=threads, executor="process", jobs=jobs,
                               progress=progress, options=options)]
        else:
            facts = worker_facts(runtime.device, torch.get_num_threads())
            outputs = [TrialOutput(o.result.ran_by("process", Parallel(jobs, threads)), o.samples, facts)
                       for o in run_group(trials, runtime, progress, mode=mode, **dict(options or {}))]
    except BaseException as exc:  # noqa: BLE001 - even run_one's own failure is this unit's
        outputs = [TrialOutput(failed_result(t, runtime, f"process executor: {type(exc).__name__}: {exc}", "process"))
                   for t in trials]
    for index, output in enumerate(outputs):
        conn.send(("result", (index, output)))
    conn.close()


class ProcessExecutor:
    """Up to ``jobs`` trials at once, each in its own worker process of this machine (started with
    "spawn": no forked torch state). ``jobs`` defaults to the usable CPUs, ``threads`` to CPUs // jobs.
    A worker that dies fails its own trial (or group) only; workers die with this process."""

    name = "process"

    def __init__(self, jobs: int | None = None, threads: int | None = None) -> None:
        cpus = usable_cpus()
        self.jobs = jobs or max(1, cpus // (threads or 1))
        self.threads = threads or max(1, cpus // self.jobs)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "jobs": self.jobs, "threads": self.threads}

    def map_trials(self, trials: Sequence[Trial], runtime: Runtime, on_result: OnResult,
                   on_progress: OnProgress | None = None, options: RunOptions | None = None,
                   groups: Sequence[tuple[list[Trial], str]] = ()) -> None:
        """As :meth:`Executor.map_trials`; each of ``groups`` (trials, mode) trains in one worker as one
        batched group (``options`` of its first trial: the group's checkpoint), so groups share the pool."""
        import multiprocessing
        from multiprocessing.connection import wait

        ctx = multiprocessing.get_context("spawn")
        todo: list[tuple[list[Trial], str | None]] = [(list(g), mode) for g, mode in groups] + [([t], None) for t in trials]
        running: dict[Any, tuple[Any, list[Trial], set[int]]] = {}  # a worker's pipe -> (process, trials, reported)
        done: list[Any] = []  # workers that sent every result: their interpreter takes seconds to exit
        try:
            while todo or running:
                while todo and len(running) < self.jobs:
                    unit, mode = todo.pop(0)
                    receiver, sender = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=_worker, name=f"gbench-{unit[0].id}", daemon=True, args=(
                        sender, os.getpid(), unit, mode, runtime, self.threads, self.jobs,
                        _portable(options, unit[0])))
                    process.start()
                    sender.close()
                    running[receiver] = (process, unit, set())
                    if on_progress:  # started: the ETA times the worker's spawn and imports too
                        for trial in unit:
                            on_progress(trial, 0)
                for receiver in wait(list(running)):
                    process, unit, reported = running[receiver]
                    try:
                        kind, payload = receiver.recv()
                    except (EOFError, OSError):  # the worker died without (all) its results
                        process.join()
                        code = process.exitcode
                        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        self._lost(receiver, running, runtime, on_result,
                                   f"process executor: the worker died ({why}) before its result")
                        continue
                    except Exception as exc:  # a result that does not unpickle
                        self._lost(receiver, running, runtime, on_result,
                                   f"process executor: unreadable result: {type(exc).__name__}: {exc}")
                        continue
                    if kind == "progress":
                        if on_progress:
                            for trial in unit:
                                on_progress(trial, payload)
                        continue
                    index, output = payload
                    reported.add(index)
                    if len(reported) == len(unit):  # its slot is free now: no waiting for its exit
                        del running[receiver]
                        receiver.close()
                        done.append(process)
                    on_result(unit[index], output)
        finally:
            for receiver, (process, _, _) in running.items():  # interrupted, or a callback failed
                if process.is_alive():
                    process.terminate()
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
                receiver.close()
            for process in done:
                process.join(timeout=5)

    def _lost(self, receiver: Any, running: dict[Any, tuple[Any, list[Trial], set[int]]], runtime: Runtime,
              on_result: OnResult, why: str) -> None:
        """A worker that cannot report any more: each of its trials without a result fails with ``why``."""
        process, unit, reported = running.pop(receiver)
        receiver.close()
        process.join(timeout=5)
        for index, trial in enumerate(unit):
            if index not in reported:
                on_result(trial, TrialOutput(failed_result(trial, runtime, why, self.name)))


# -- Ray --------------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GbenchError(RAY_MISSING) from None
    return ray


def _probe(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast where nothing listens at ``HOST:PORT`` (Ray itself retries such an address for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return  # let Ray judge the address
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise GbenchError(f"--executor ray: nothing answers at {address!r} ({exc}); is the cluster running?") from None


class RayExecutor:
    """Each trial a Ray task asking for ``threads`` CPUs (and one GPU with ``--device cuda``).

    ``address``: an existing cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); without it Ray
    joins the cluster it finds (``RAY_ADDRESS``, the latest ``ray start``) or starts one in this process
    for the run. If Ray is already initialised in this process, that session is used and left running.
    ``jobs`` caps how many trials are in flight (default: as many as the cluster schedules). gbench and
    any plugin packages must be installed on every node. Progress is reported per finished trial.

    ``describe()`` connects (the runner calls it before writing anything, so a bad address is an error
    before a run directory exists); ``map_trials`` disconnects at the end if it was this executor that
    connected."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None, threads: int | None = None) -> None:
        _import_ray()
        self.address, self.jobs, self.threads = address, jobs, threads
        self._started_here = False

    def _connect(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            _probe(self.address)
            try:
                ray.init(address=self.address or None, include_dashboard=False, logging_level="WARNING")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"at {self.address!r}" if self.address else "(none found, and none could be started)"
                raise GbenchError(f"--executor ray: cannot connect to a Ray cluster {where}: {exc}") from None
            self._started_here = True
        return ray

    def _threads(self, ray: Any) -> int:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        node_cpus = max((int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")),
                        default=cpus)
        threads = self.threads or (max(1, min(node_cpus, cpus // self.jobs)) if self.jobs else 1)
        if threads > node_cpus:  # a task no node can take would wait forever
            raise GbenchError(f"--threads {threads}: the largest node of the Ray cluster has {node_cpus} CPUs")
        return threads

    def describe(self) -> dict[str, Any]:
        ray = self._connect()
        return {"executor": self.name, "jobs": self.jobs, "threads": self._threads(ray), "address": self.address,
                "ray": ray.__version__, "cluster": {k: v for k, v in ray.cluster_resources().items()
                                                    if k in ("CPU", "GPU", "memory")}}

    def map_trials(self, trials: Sequence[Trial], runtime: Runtime, on_result: OnResult,
                   on_progress: OnProgress | None = None, options: RunOptions | None = None) -> None:
        refs: dict[Any, Trial] = {}
        try:
            if not trials:
                return
            ray = self._connect()
            threads = self._threads(ray)
            if runtime.device == "cuda" and not ray.cluster_resources().get("GPU"):
                raise GbenchError("--device cuda: the Ray cluster has no GPU")
            from gbench.observers import RUN_DIR_ENV, TENSORBOARD_ENV

            # the run's observers (samples, TensorBoard) in the workers: Ray's are not this process's children
            env = {k: os.environ[k] for k in (RUN_DIR_ENV, TENSORBOARD_ENV) if k in os.environ}
            task = ray.remote(num_cpus=threads, num_gpus=1 if runtime.device == "cuda" else 0,
                              **({"runtime_env": {"env_vars": env}} if env else {}))(run_one)
            in_flight = self.jobs or len(trials)
            todo = list(trials)
            while todo or refs:
                while todo and len(refs) < in_flight:
                    trial = todo.pop(0)
                    ref = task.remote(trial, runtime, threads=threads, executor=self.name, jobs=self.jobs,
                                      remote=True, options=_portable(options, trial))
                    refs[ref] = trial
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    trial = refs.pop(ref)
                    try:
                        output = ray.get(ref)
                    except Exception as exc:  # the task's worker or node died, or it was cancelled
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        output = TrialOutput(failed_result(
                            trial, runtime, f"ray executor: {type(exc).__name__}: {first}", self.name))
                    on_result(trial, output)
        finally:
            self.close(refs)

    def close(self, refs: Any = ()) -> None:
        """Cancel the tasks ``refs`` still running; disconnect if this executor connected."""
        ray = _import_ray()
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while stopping
                pass
        if self._started_here:
            ray.shutdown()
            self._started_here = False
