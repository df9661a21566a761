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
