"""Every hook gbench calls, in one place.

Built-in variants (``gbench_plugins``) and third-party packages (entry-point group ``gbench``)
implement these with ``@gbench.hookimpl``. Registration hooks receive a host-owned ``register``
callback that validates each entry and records which plugin it came from.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("gbench")
hookimpl = pluggy.HookimplMarker("gbench")


@hookspec
def register_variants(register: Callable[..., None]) -> None:
    """Register GAN variants: ``register(VariantClass)``.

    ``VariantClass`` subclasses :class:`gbench.Variant`; its ``name`` is the registry key.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register datasets: ``register(name, factory, description="")``.

    ``factory(**options)`` returns a :class:`gbench.ToyMixture` (or another dataset object).
    """


@hookspec
def register_metrics(register: Callable[..., None]) -> None:
    """Register metrics: ``register(MetricClass)``; ``MetricClass.name`` is the registry key."""


@hookspec
def update_run_info(run_info: dict[str, Any]) -> None:
    """Add fields to the provenance block written into every result (cluster, user, ...)."""


# -- observers: called as a trial runs; they watch and never change it ---------------------------------
# gbench calls each implementation on its own (gbench.observers.notify): an observer that raises is
# reported once on stderr and the trial goes on; wrappers (hookwrapper / wrapper) are not supported.
# Observers run in the process that runs the trial (the local executor; see docs/observers.md).


@hookspec
def trial_started(trial_info: dict[str, Any]) -> None:
    """A trial is about to train: ``trial_info`` is its record so far (``trial_id``, ``suite``,
    ``variant``, ``label``, ``seed``, ``dataset``, ``budget``, ``model``, ``optim``, ``runtime``,
    ``protocol``), a copy."""


@hookspec
def log_scalars(trial_id: str, g_step: int, scalars: dict[str, float]) -> None:
    """At each loss-logging window (every 100 G steps, at each evaluation and at the end):
    ``scalars`` holds the window's mean ``d_loss`` and ``g_loss``. Untimed: not in device-seconds."""


@hookspec
def evaluated(trial_id: str, g_step: int, metrics: dict[str, float], samples: Any) -> None:
    """After each evaluation: ``metrics`` as recorded (empty if the samples were not finite) and
    ``samples``, a read-only numpy array of the first samples the metrics saw (toys: up to 2,000
    float32 points ``(N, 2)``; images: up to 64 uint8 images ``(N, 3, H, W)``), or None."""


@hookspec
def trial_finished(trial_id: str, result: dict[str, Any]) -> None:
    """A trial ended (``ok``, ``diverged`` or ``failed``): ``result`` is a copy of its record, as
    written to ``trials/<trial_id>.json`` less the provenance the runner adds."""
