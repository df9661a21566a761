"""Plugin discovery: built-ins and entry-point group ``gbench`` go through the same hooks.

A plugin that fails to import, or that implements a hook gbench does not have (a misspelling),
is reported by name and left out; every other plugin keeps working.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import pluggy

from gbench import hookspecs
from gbench.errors import GbenchError
from gbench.registry import Registry

ENTRY_POINT_GROUP = "gbench"
DEFAULT_PLUGINS = (
    "gbench.datasets.toy",
    "gbench.datasets.images",
    "gbench.metrics.toy",
    "gbench.metrics.fidelity",
    "gbench.metrics.classifier_jsd",
    "gbench_plugins.sgan",
    "gbench_plugins.rsgan",
    "gbench_plugins.tgan",
    "gbench_plugins.deligan",
    "gbench_plugins.alpha_gan",
    "gbench_plugins.delta_gan",
    "gbench_plugins.pacgan",
)


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin" or "entry point <dist> <version>"
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    """The loaded plugins and the registries they filled."""

    manager: pluggy.PluginManager
    info: list[PluginInfo]
    variants: Registry
    datasets: Registry
    metrics: Registry

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.info if p.error]


_loaded: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin set, loaded on first use."""
    global _loaded
    if _loaded is None:
        _loaded = load_plugins()
    return _loaded


def reset_plugins() -> None:
    """Forget the loaded plugins (tests, or after installing a package)."""
    global _loaded
    _loaded = None


def load_plugins(entry_points: bool = True, extra: tuple[ModuleType | object, ...] = ()) -> Plugins:
    pm = pluggy.PluginManager("gbench")
    pm.add_hookspecs(hookspecs)
    info: list[PluginInfo] = []
    for modname in DEFAULT_PLUGINS:
        _add(pm, info, modname, "builtin", lambda m=modname: importlib.import_module(m))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            source = f"entry point of {dist.name} {dist.version}" if dist else "entry point"
            _add(pm, info, ep.name, source, ep.load)
    for obj in extra:
        _add(pm, info, getattr(obj, "__name__", repr(obj)), "extra", lambda o=obj: o)
    plugins = Plugins(pm, info, Registry("variant"), Registry("dataset"), Registry("metric"))
    _fill_registries(plugins)
    return plugins


def _add(pm: pluggy.PluginManager, info: list[PluginInfo], name: str, source: str, load: Callable[[], Any]) -> None:
    entry = PluginInfo(name, source)
    info.append(entry)
    try:
        obj = load()
    except Exception as exc:  # a broken plugin must not take the others down
        entry.error = f"failed to import: {type(exc).__name__}: {exc}"
        return
    if pm.is_registered(obj) or pm.get_plugin(name) is not None:
        entry.error = f"plugin name {name!r} is already taken"
        return
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:  # e.g. a hook implementation with the wrong arguments
        if pm.is_registered(obj):
            pm.unregister(obj)  # pluggy leaves it half-registered
        entry.error = f"rejected: {exc}"
        return
    hookcallers = pm.get_hookcallers(obj) or []
    unknown = [hc.name for hc in hookcallers if hc.spec is None]
    if unknown:
        pm.unregister(obj)
        known = ", ".join(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "gbench_spec"))
        entry.error = f"unknown hook {unknown[0]!r}, rejected (gbench hooks: {known})"
        return
    entry.hooks = sorted(hc.name for hc in hookcallers)


def _fill_registries(plugins: Plugins) -> None:
    from gbench.metrics import Metric
    from gbench.variant import Variant

    pm = plugins.manager
    for hook_name, registry, base in (
        ("register_variants", plugins.variants, Variant),
        ("register_datasets", plugins.datasets, None),
        ("register_metrics", plugins.metrics, Metric),
    ):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            register = _registrar(registry, plugin_name, base)
            try:
                impl.function(register=register)
            except GbenchError as exc:
                _fail(plugins, plugin_name, str(exc))
            except Exception as exc:
                _fail(plugins, plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}")


def _registrar(registry: Registry, plugin: str, base: type | None) -> Callable[..., None]:
    """The ``register`` callback handed to one plugin's registration hook."""
    if base is None:

        def register_factory(name: str, factory: Callable[..., Any], description: str = "") -> None:
            if not callable(factory):
                raise GbenchError(f"plugin {plugin!r} registered {registry.kind} {name!r} with a non-callable")
            registry.add(name, factory, plugin, description)

        return register_factory

    def register_class(cls: Any) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise GbenchError(f"plugin {plugin!r} registered {cls!r}, which is not a gbench.{base.__name__} subclass")
        if getattr(cls, "__abstractmethods__", None):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise GbenchError(f"plugin {plugin!r}: {registry.kind} {cls.__name__} does not implement {missing}")
        doc = (cls.__doc__ or "").strip().splitlines()
        registry.add(getattr(cls, "name", None), cls, plugin, getattr(cls, "paper", "") or (doc[0] if doc else ""))

    return register_class


def _fail(plugins: Plugins, plugin_name: str, message: str) -> None:
    """Leave the plugin out entirely: none of what it registered stays."""
    for registry in (plugins.variants, plugins.datasets, plugins.metrics):
        registry.discard_plugin(plugin_name)
    for entry in plugins.info:
        if entry.name == plugin_name:
            entry.error = f"{entry.error}; {message}" if entry.error else message
