"""Observers: plugins that watch trials through the observer hooks and never change them.

The harness calls the hooks ``trial_started``, ``log_scalars``, ``evaluated`` and ``trial_finished``
(``gbench/hookspecs.py``) through :func:`notify`, which calls each implementation on its own and
catches what it raises: a broken observer costs one warning on stderr, never a trial. Each
implementation gets its own copies of the arguments (numpy arrays: read-only views), so an observer
can change neither what is recorded nor what the next observer sees.

An observer is any object or module with ``@gbench.hookimpl`` functions named after those hooks,
registered with the plugin manager: an installed plugin (entry-point group ``gbench``) observes every
run; ``gbench.get_plugins().manager.register(obj)`` observes from then on in this process.

Run observers. While :func:`gbench.run.runner.run_suite` runs, :func:`observed_run` puts the run
directory (and whether ``--tensorboard`` is on) in the environment, which the workers of every executor
inherit; in whichever process a trial runs, :func:`run_observers` then builds, once per process, the
:class:`gbench.datasets.samples.EvolutionKeeper` (the samples of every evaluation, for the report's
sample evolution) and, with ``--tensorboard``, a :class:`gbench.observers.tensorboard.TensorBoardObserver`
writing that trial's own event directory.
"""
from __future__ import annotations

import contextlib
import copy
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gbench.plugins import get_plugins

OBSERVER_HOOKS = ("trial_started", "log_scalars", "evaluated", "trial_finished")

RUN_DIR_ENV = "GBENCH_RUN_DIR"  # set by observed_run: the run directory trials write beside
TENSORBOARD_ENV = "GBENCH_TENSORBOARD"  # "1": the run observers include TensorBoard

_reported: set[tuple[str, str]] = set()  # (plugin, hook) pairs already warned about
_run_observers: dict[tuple[str, bool], list[Any]] = {}  # per (run dir, tensorboard), in this process


@contextlib.contextmanager
def observed_run(run_dir: str | Path, tensorboard: bool | None = None) -> Iterator[None]:
    """Observe the trials of the run in ``run_dir`` wherever they run (see the module doc); ``tensorboard``
    None keeps the setting of an enclosing block (``gbench.observers.tensorboard.enabled``)."""
    before = {k: os.environ.get(k) for k in (RUN_DIR_ENV, TENSORBOARD_ENV)}
    os.environ[RUN_DIR_ENV] = str(Path(run_dir).resolve())
    if tensorboard is not None:
        os.environ[TENSORBOARD_ENV] = "1" if tensorboard else "0"
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for observers in _run_observers.values():
            for obs in observers:
                getattr(obs, "close", lambda: None)()
        _run_observers.clear()


def run_observers() -> list[Any]:
    """The observers of the run this process works for (none outside :func:`observed_run`)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return []
    key = (run_dir, os.environ.get(TENSORBOARD_ENV) == "1")
    if key not in _run_observers:
        from gbench.datasets.samples import EvolutionKeeper

        observers: list[Any] = [EvolutionKeeper(run_dir)]
        if key[1]:
            from gbench.observers.tensorboard import TensorBoardObserver

            observers.append(TensorBoardObserver(run_dir))
        _run_observers[key] = observers
    return _run_observers[key]


def observing(hook: str) -> bool:
    """Whether any plugin implements the observer ``hook`` (the harness skips the work otherwise)."""
    return bool(getattr(get_plugins().manager.hook, hook).get_hookimpls()) or any(
        hasattr(obs, hook) for obs in run_observers())


def notify(hook: str, **kwargs: Any) -> None:
    """Call every implementation of the observer ``hook`` with its own copy of ``kwargs``; an exception
    in one is reported on stderr (once per plugin and hook) and does not stop the others or the trial."""
    pm = get_plugins().manager
    calls = [(pm.get_name(impl.plugin) or repr(impl.plugin), impl.function, impl.argnames)
             for impl in reversed(getattr(pm.hook, hook).get_hookimpls())  # pluggy's order: last registered first
             if not (impl.hookwrapper or impl.wrapper)]
    calls += [(type(obs).__name__, getattr(obs, hook), None) for obs in run_observers() if hasattr(obs, hook)]
    for name, function, argnames in calls:
        try:
            if argnames is None:  # a run observer: every argument, by name
                function(**{arg: frozen(value) for arg, value in kwargs.items()})
            else:
                function(*(frozen(kwargs[arg]) for arg in argnames))
        except Exception as exc:  # an observer must not take a trial down
            if (name, hook) not in _reported:
                _reported.add((name, hook))
                print(f"gbench: warning: observer {name!r} failed in {hook}: {type(exc).__name__}: {exc} "
                      "(reported once; the run goes on)", file=sys.stderr)


def frozen(value: Any) -> Any:
    """A copy of a hook argument for one observer (numpy arrays: read-only views, also inside dicts)."""
    if isinstance(value, np.ndarray):
        return readonly(value)
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return copy.deepcopy(value, {id(a): readonly(a) for a in _arrays(value)})


def _arrays(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays(v)]
    return []


def readonly(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    view = array.view()
    view.flags.writeable = False
    return view
