"""Plugin discovery: built-ins, entry points, and plugins that are broken in every way we can think of.

Built-ins and third-party packages go through the same hooks, so most tests hand-make a plugin
(a module object, or a fake installed distribution on ``sys.path``) and check that gbench either
registers it with its name or reports it by name, while every other plugin keeps working.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

import gbench
import gbench.plugins
from gbench.plugins import PluginInfo, Plugins, load_plugins
from gbench.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
LSGAN_EXAMPLE = ROOT / "examples" / "gbench-lsgan"

BUILTIN_VARIANTS = {
    "sgan": "gbench_plugins.sgan",
    "rsgan": "gbench_plugins.rsgan",
    "tgan": "gbench_plugins.tgan",
    "deligan": "gbench_plugins.deligan",
    "alpha-gan": "gbench_plugins.alpha_gan",
    "delta-gan": "gbench_plugins.delta_gan",
}
BUILTIN_DATASETS = {"ring8": "gbench.datasets.toy", "grid25": "gbench.datasets.toy"}


# -- helpers -----------------------------------------------------------------------------------


def info_of(plugins: Plugins, name: str) -> PluginInfo:
    matches = [i for i in plugins.info if i.name == name]
    assert len(matches) == 1, f"expected one plugin named {name!r}, got {plugins.info}"
    return matches[0]


def origins(registry: Any) -> dict[str, str]:
    """name -> plugin of every entry in a registry."""
    return {e.name: e.plugin for e in registry}


def builtin_origins(plugins: Plugins) -> dict[str, str]:
    builtins = {i.name for i in plugins.info if i.source == "builtin"}
    return {name: plugin for name, plugin in origins(plugins.variants).items() if plugin in builtins}


@pytest.fixture(scope="module")
def baseline() -> dict[str, str]:
    """What the built-ins register on their own: a broken extra plugin must not change it."""
    plugins = load_plugins(entry_points=False)
    found = builtin_origins(plugins)
    assert found.get("sgan") == "gbench_plugins.sgan", found
    return found


def plugin_module(name: str, **hooks: Callable[..., None]) -> types.ModuleType:
    """A plugin as a module object: each keyword is a hook implementation."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        function.__name__ = hook_name
        setattr(module, hook_name, gbench.hookimpl(function))
    return module


class GoodVariant(gbench.Variant):
    """A minimal complete variant."""

    name = "good-variant"
    paper = "nobody, never"

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return nets.critic(x_fake).mean() - nets.critic(x_real).mean()

    def g_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return -nets.critic(x_fake).mean()


def good_plugin() -> types.ModuleType:
    return plugin_module("good_plugin", register_variants=lambda register: register(GoodVariant))


@pytest.fixture
def install_dist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None
) -> Iterator[Callable[..., None]]:
    """Install a fake distribution (a ``.dist-info`` folder and its modules) on ``sys.path``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(dist: str, entry_points: dict[str, str], sources: dict[str, str]) -> None:
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[gbench]\n{lines}")
        for module, source in sources.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        importlib.invalidate_caches()

    yield install
    for module in modules:
        sys.modules.pop(module, None)


# -- built-ins -------------------------------------------------------------------------------------


def test_builtin_variants_and_datasets_come_from_their_modules() -> None:
    plugins = load_plugins(entry_points=False)
    assert {n: origins(plugins.variants).get(n) for n in BUILTIN_VARIANTS} == BUILTIN_VARIANTS
    assert {n: origins(plugins.datasets).get(n) for n in BUILTIN_DATASETS} == BUILTIN_DATASETS
    for entry in plugins.variants:
        if entry.name in BUILTIN_VARIANTS:
            assert entry.description == entry.obj.paper


def test_every_builtin_plugin_loads_cleanly() -> None:
    plugins = load_plugins(entry_points=False)
    assert [i.name for i in plugins.info] == list(gbench.plugins.DEFAULT_PLUGINS)
    assert {i.name: i.error for i in plugins.info if i.error} == {}
    assert all(i.source == "builtin" for i in plugins.info)
    assert info_of(plugins, "gbench_plugins.sgan").hooks == ["register_variants"]
    assert info_of(plugins, "gbench.datasets.toy").hooks == ["register_datasets"]


def test_get_plugins_is_cached_until_reset(fresh_plugins: None) -> None:
    first = gbench.get_plugins()
    assert gbench.get_plugins() is first
    gbench.plugins.reset_plugins()
    assert gbench.get_plugins() is not first


# -- the example third-party package -----------------------------------------------------------------

LSGAN_PROBE = r"""
import json, sys
import torch
import gbench
from gbench.plugins import load_plugins

plugins = load_plugins()
out = {
    "variants": [{"name": e.name, "plugin": e.plugin} for e in plugins.variants],
    "plugins": [{"name": i.name, "source": i.source, "error": i.error} for i in plugins.info],
}
if "lsgan" in plugins.variants:
    variant = plugins.variants.get("lsgan")()
    backbone = gbench.MLPBackbone(z_dim=2, g_hidden=8, d_hidden=8, depth=1)
    torch.manual_seed(0)
    nets = gbench.Nets(variant.build_generator(backbone), variant.build_critic(backbone))
    x_real, x_fake = torch.randn(16, 2), nets.generator(torch.randn(16, 2))
    s_real, s_fake = nets.critic(x_real), nets.critic(x_fake)
    out["module_file"] = sys.modules[type(variant).__module__].__file__
    out["d_loss"] = float(variant.d_loss(nets, x_real, x_fake.detach()))
    out["g_loss"] = float(variant.g_loss(nets, x_real, x_fake))
    out["d_expected"] = float(0.5 * ((s_real - 1) ** 2).mean() + 0.5 * (s_fake ** 2).mean())
    out["g_expected"] = float(0.5 * ((s_fake - 1) ** 2).mean())
print(json.dumps(out))
"""


def test_example_package_installs_and_is_found_through_its_entry_point(tmp_path: Path, fresh_plugins: None) -> None:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in examples/.
    source = tmp_path / "src"
    shutil.copytree(LSGAN_EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index"]
    pip += ["--no-deps", "--no-build-isolation", "--target", str(target), str(source)]
    installed = subprocess.run(pip, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])))
    probe = subprocess.run(
        [sys.executable, "-c", LSGAN_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert probe.returncode == 0, probe.stderr
    out = json.loads(probe.stdout.strip().splitlines()[-1])

    lsgan = [p for p in out["plugins"] if p["name"] == "lsgan"]
    assert lsgan == [{"name": "lsgan", "source": "entry point of gbench-lsgan 0.1.0", "error": None}]
    assert {"name": "lsgan", "plugin": "lsgan"} in out["variants"]
    assert Path(out["module_file"]).resolve().parent == target.resolve()
    for name in ("d_loss", "g_loss"):
        assert math.isfinite(out[name])
        assert out[name] == pytest.approx(out[name.replace("loss", "expected")], rel=1e-6)

    # what the example's README tells users to run (`gbench plugins` shows the PluginInfo checked above)
    cli = [sys.executable, "-m", "gbench", "variants", "--json"]
    listed = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["lsgan"]["plugin"] == "lsgan" and "1611.04076" in rows["lsgan"]["paper"]
    assert rows["lsgan"]["config"] == {"a": 0.0, "b": 1.0, "c": 1.0}


def test_example_lsgan_losses_follow_the_paper(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("gbench_lsgan", LSGAN_EXAMPLE / "gbench_lsgan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gbench_lsgan", module)
    spec.loader.exec_module(module)

    ones, zeros = torch.ones(4), torch.zeros(4)
    assert module.d_loss(ones, zeros).item() == 0.0  # D outputs b on real, a on fake: optimal
    assert module.d_loss(zeros, ones).item() == 1.0  # 1/2 (0 - 1)^2 + 1/2 (1 - 0)^2
    assert module.g_loss(zeros).item() == 0.5 and module.g_loss(ones).item() == 0.0
    assert module.LSGAN.Config() == module.LSGANConfig(a=0.0, b=1.0, c=1.0)
    chi2 = module.LSGAN(module.LSGANConfig(a=-1.0, b=1.0, c=0.0))
    assert chi2.describe() == {"variant": "lsgan", "a": -1.0, "b": 1.0, "c": 0.0}
    assert "1611.04076" in module.LSGAN.paper

    plugins = load_plugins(entry_points=False, extra=(module,))
    assert info_of(plugins, "gbench_lsgan").error is None
    assert plugins.variants.entry("lsgan").plugin == "gbench_lsgan"


# -- broken plugins ----------------------------------------------------------------------------------


def test_plugin_that_fails_to_import_is_reported_and_the_rest_keep_working(
    install_dist: Callable[..., None], baseline: dict[str, str]
) -> None:
    install_dist(
        "broken-plugin",
        {"broken": "broken_plugin_mod"},
        {"broken_plugin_mod": 'raise ImportError("broken_plugin_mod needs a library that is not installed")\n'},
    )
    plugins = load_plugins()
    broken = info_of(plugins, "broken")
    assert broken.source == "entry point of broken-plugin 0.1"
    assert broken.error is not None
    assert "failed to import" in broken.error and "ImportError" in broken.error
    assert "needs a library that is not installed" in broken.error
    assert broken in plugins.failures
    assert builtin_origins(plugins) == baseline

    assert "broken" in {i.name for i in gbench.get_plugins().failures}  # the cached set sees it too


def _assert_misspelt_plugin_rejected(plugins: Plugins, name: str, baseline: dict[str, str]) -> None:
    info = info_of(plugins, name)
    assert info.error is not None and "register_variantz" in info.error and "unknown hook" in info.error
    assert "register_variants" in info.error  # the message lists the real hooks
    assert info.hooks == []
    assert plugins.manager.get_plugin(name) is None
    assert "typo-variant" not in plugins.variants  # its correctly spelt hook is left out too
    assert builtin_origins(plugins) == baseline


class TypoVariant(GoodVariant):
    name = "typo-variant"


def test_misspelt_hook_is_rejected_by_name(baseline: dict[str, str]) -> None:
    typo = plugin_module(
        "typo_plugin",
        register_variantz=lambda register: register(TypoVariant),
        register_datasets=lambda register: register("typo-data", dict),
    )
    plugins = load_plugins(entry_points=False, extra=(typo,))
    _assert_misspelt_plugin_rejected(plugins, "typo_plugin", baseline)
    assert not plugins.manager.is_registered(typo)
    assert "typo-data" not in plugins.datasets
    assert not plugins.manager.hook.register_variantz.get_hookimpls()


def test_misspelt_hook_is_rejected_through_an_entry_point(
    install_dist: Callable[..., None], baseline: dict[str, str]
) -> None:
    source = """
        import gbench
        from gbench.variant import Variant

        class TypoVariant(Variant):
            name = "typo-variant"
            paper = "nobody"
            def d_loss(self, nets, x_real, x_fake):
                return nets.critic(x_fake).mean()
            def g_loss(self, nets, x_real, x_fake):
                return -nets.critic(x_fake).mean()

        @gbench.hookimpl
        def register_variantz(register):
            register(TypoVariant)
    """
    install_dist("typo-plugin", {"typo": "typo_plugin_mod"}, {"typo_plugin_mod": source})
    plugins = load_plugins()
    assert info_of(plugins, "typo").source == "entry point of typo-plugin 0.1"
    _assert_misspelt_plugin_rejected(plugins, "typo", baseline)


class AbstractVariant(gbench.Variant):
    name = "abstract-variant"

    def d_loss(self, nets: gbench.Nets, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        return nets.critic(x_real).mean()


class Duplicate(GoodVariant):
    name = "sgan"


class BadName(GoodVariant):
    name = "Bad Name"


class Nameless(gbench.Variant):
    d_loss = g_loss = GoodVariant.d_loss


def _boom(register: Callable[..., None]) -> None:
    raise RuntimeError("boom")


# (hook, its implementation, what the error must say)
BAD_REGISTRATIONS: dict[str, tuple[str, Callable[..., None], list[str]]] = {
    "not-a-class": (
        "register_variants", lambda register: register(GoodVariant()), ["not a gbench.Variant subclass"]
    ),
    "not-a-variant": ("register_variants", lambda register: register(dict), ["not a gbench.Variant subclass"]),
    "abstract": (
        "register_variants", lambda register: register(AbstractVariant), ["AbstractVariant", "does not implement g_loss"]
    ),
    "duplicate": (
        "register_variants",
        lambda register: register(Duplicate),
        ["'sgan' is registered twice", "by 'gbench_plugins.sgan' and by 'bad_plugin'"],
    ),
    "invalid-name": ("register_variants", lambda register: register(BadName), ["invalid name 'Bad Name'"]),
    "no-name": ("register_variants", lambda register: register(Nameless), ["invalid name None"]),
    "dataset-not-callable": (
        "register_datasets", lambda register: register("bad-data", 42), ["'bad-data'", "non-callable"]
    ),
    "dataset-invalid-name": (
        "register_datasets", lambda register: register("Bad Data", dict), ["invalid name 'Bad Data'"]
    ),
    "metric-not-a-metric": (
        "register_metrics", lambda register: register(GoodVariant), ["not a gbench.Metric subclass"]
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRATIONS))
def test_bad_registration_is_reported_by_plugin_name(
    case: str, baseline: dict[str, str]
) -> None:
    hook, implementation, expected = BAD_REGISTRATIONS[case]
    bad = plugin_module("bad_plugin", **{hook: implementation})
    plugins = load_plugins(entry_points=False, extra=(bad, good_plugin()))

    error = info_of(plugins, "bad_plugin").error
    assert error is not None and "'bad_plugin'" in error
    for text in expected:
        assert text in error
    assert [i.name for i in plugins.failures if i.source == "extra"] == ["bad_plugin"]
    assert not any(e.plugin == "bad_plugin" for r in (plugins.variants, plugins.datasets, plugins.metrics) for e in r)
    # everyone else keeps working, whatever the order
    assert plugins.variants.entry("good-variant").plugin == "good_plugin"
    assert builtin_origins(plugins) == baseline


def test_registration_hook_that_raises_is_reported(
    baseline: dict[str, str]
) -> None:
    bad = plugin_module("raising_plugin", register_variants=_boom)
    plugins = load_plugins(entry_points=False, extra=(bad, good_plugin()))
    assert info_of(plugins, "raising_plugin").error == "register_variants raised RuntimeError: boom"
    assert plugins.variants.entry("good-variant").plugin == "good_plugin"
    assert builtin_origins(plugins) == baseline


def test_plugin_loaded_twice_is_reported_once_and_keeps_working(baseline: dict[str, str]) -> None:
    sgan = importlib.import_module("gbench_plugins.sgan")
    plugins = load_plugins(entry_points=False, extra=(sgan,))
    first, again = [i for i in plugins.info if i.name == "gbench_plugins.sgan"]
    assert first.error is None and again.source == "extra"
    assert again.error is not None and "already taken" in again.error
    assert builtin_origins(plugins) == baseline


def test_hookimpl_with_an_argument_the_hook_lacks_is_reported(baseline: dict[str, str]) -> None:
    def register_variants(reg: Callable[..., None]) -> None:  # the hook's argument is called `register`
        reg(TypoVariant)

    bad = plugin_module(
        "argname_plugin",
        register_variants=register_variants,
        register_datasets=lambda register: register("argname-data", dict),
    )
    plugins = load_plugins(entry_points=False, extra=(bad, good_plugin()))
    info = info_of(plugins, "argname_plugin")
    assert info.error is not None and "register_variants" in info.error and "reg" in info.error
    assert plugins.manager.get_plugin("argname_plugin") is None
    assert "argname-data" not in plugins.datasets  # pluggy had added this hookimpl before failing
    assert plugins.variants.entry("good-variant").plugin == "good_plugin"
    assert builtin_origins(plugins) == baseline


def test_name_with_a_trailing_newline_is_invalid() -> None:
    with pytest.raises(gbench.GbenchError, match="invalid name"):
        Registry("variant").add("sgan\n", GoodVariant, "some_plugin")


# -- third-party datasets and metrics ------------------------------------------------------------------


class CountMetric(gbench.Metric):
    """How many samples there are (a stand-in for a real metric)."""

    name = "sample-count"

    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        return {"count": float(len(samples))}


def two_points(sigma: float = 0.1) -> gbench.ToyMixture:
    return gbench.ToyMixture("two-points", np.array([[-1.0, 0.0], [1.0, 0.0]]), sigma, np.ones(2))


def test_third_party_dataset_and_metric_register_with_the_plugin_name() -> None:
    extra = plugin_module(
        "suite_plugin",
        register_datasets=lambda register: register("two-points", two_points, description="two Gaussians"),
        register_metrics=lambda register: register(CountMetric),
    )
    plugins = load_plugins(entry_points=False, extra=(extra,))
    info = info_of(plugins, "suite_plugin")
    assert (info.source, info.error, info.hooks) == ("extra", None, ["register_datasets", "register_metrics"])

    dataset = plugins.datasets.entry("two-points")
    assert (dataset.plugin, dataset.description) == ("suite_plugin", "two Gaussians")
    assert dataset.obj(sigma=0.2).sample(5).shape == (5, 2)
    metric = plugins.metrics.entry("sample-count")
    assert metric.plugin == "suite_plugin"
    assert metric.obj().compute(np.zeros((3, 2)), None, np.random.default_rng(0)) == {"count": 3.0}
    assert origins(plugins.datasets).items() >= BUILTIN_DATASETS.items()
