"""Observers: plugins that watch trials through the observer hooks and never change them.

The harness calls the hooks ``trial_started``, ``log_scalars``, ``evaluated`` and ``trial_finished``
(``gbench/hookspecs.py``) through :func:`notify`, which calls each implementation on its own and
catches what it raises: a broken observer costs one warning on stderr, never a trial. Each
implementation gets its own copies of the arguments (numpy arrays: read-only views), so an observer
can change neither what is recorded nor what the next observer sees.

An observer is any object or module with ``@gbench.hookimpl`` functions named after those hooks,
registered with the plugin manager: an installed plugin (entry-point group ``gbench``) observes every
run; ``gbench.get_plugins().manager.register(obj)`` observes from then on in this process (that is what
``gbench run --tensorboard`` does with :class:`gbench.observers.tensorboard.TensorBoardObserver`).
"""
from __future__ import annotations

import copy
import sys
from typing import Any

import numpy as np

from gbench.plugins import get_plugins

OBSERVER_HOOKS = ("trial_started", "log_scalars", "evaluated", "trial_finished")

_reported: set[tuple[str, str]] = set()  # (plugin, hook) pairs already warned about


def observing(hook: str) -> bool:
    """Whether any plugin implements the observer ``hook`` (the harness skips the work otherwise)."""
    return bool(getattr(get_plugins().manager.hook, hook).get_hookimpls())


def notify(hook: str, **kwargs: Any) -> None:
    """Call every implementation of the observer ``hook`` with its own copy of ``kwargs``; an exception
    in one is reported on stderr (once per plugin and hook) and does not stop the others or the trial."""
    pm = get_plugins().manager
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):  # pluggy's order: last registered first
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            impl.function(*(frozen(kwargs[name]) for name in impl.argnames))
        except Exception as exc:  # an observer must not take a trial down
            name = pm.get_name(impl.plugin) or repr(impl.plugin)
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
