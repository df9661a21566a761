"""The ``fidelity`` and ``classifier-jsd`` image metrics on the real torch-fidelity path, with a tiny
deterministic feature extractor registered by this file (the Inception weights cannot be had offline).

* gbench's FID / IS / KID equal a direct ``torch_fidelity.calculate_metrics`` call on the same uint8
  tensors (same extractor, splits, subset sizes);
* the reference is extracted once: a second evaluation reads torch-fidelity's input2 cache;
* weights that are not the official file make every key ``nonstd_`` and ``standard`` False;
* no weights offline: a one-line GbenchError saying how to provide them (the harness records it);
* samples of the wrong dtype or shape: a clear error.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gbench.errors import GbenchError
from gbench.metrics import fidelity
from gbench.metrics.classifier_jsd import ClassifierJSDConfig, ClassifierJSDMetric, image_jsd
from gbench.metrics.fidelity import FidelityConfig, FidelityMetric, UInt8Images

NET = "gbench-test-net"


class TinyNet(torch_fidelity.FeatureExtractorBase):
    """Deterministic 2-conv net: a 16-d "feat" layer (FID/KID) and 10 "logits_unbiased" (IS)."""

    calls = 0  # images seen by forward, over all instances

    def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10, bias=False)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("feat", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits_unbiased", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert x.dtype == torch.uint8, "the extractor must get the uint8 pixels untouched"
        TinyNet.calls += len(x)
        h = x.to(torch.float32) / 127.5 - 1.0
        h = F.relu(self.conv1(h))
        feat = F.relu(self.conv2(h)).mean(dim=(2, 3))
        out = {"feat": feat, "logits_unbiased": 3.0 * self.fc(feat)}
        return tuple(out[name] for name in self.features_list)


if NET not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(NET, TinyNet)


class FakeImages:
    """Stand-in for gbench.datasets.images.ImageDataset: kind, name, data_shape, images(split), provenance."""

    kind = "image"
    data_shape = (3, 32, 32)

    def __init__(self, name: str = "fake32", seed: int = 0, n_train: int = 400, n_test: int = 300,
                 provenance: dict | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        base = torch.rand(n_train + n_test, 3, 8, 8, generator=g)
        smooth = F.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)
        x = (smooth * 255).round().to(torch.uint8)
        self.name = name
        self._x = {"train": x[:n_train], "test": x[n_train:]}
        self.provenance = provenance if provenance is not None else {"source": "synthetic", "seed": seed}
        self.calls: list[str] = []

    def images(self, split: str) -> torch.Tensor:
        self.calls.append(split)
        return self._x[split].clone()


def generated(n: int = 300, seed: int = 1) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8).numpy()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No weights from the environment, a private cache, and one torch thread: the tiny net's ops are
    far too small to split, and on a busy 2-core machine thread hand-offs cost more than the work."""
    monkeypatch.delenv(fidelity.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv(fidelity.CACHE_ENV, str(tmp_path / "gbench-cache"))
    fidelity.clear_caches()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    fidelity.clear_caches()


def cfg(tmp_path: Path, **kw: Any) -> FidelityConfig:
    base = dict(feature_extractor=NET, cache_dir=str(tmp_path / "cache"), isc_splits=5, kid_subsets=20,
                kid_subset_size=100)
    base.update(kw)
    return FidelityConfig(**base)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- equality with torch-fidelity ------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # torch-fidelity's 4 workers
@pytest.mark.parametrize("split", ["train", "test"])
def test_equals_direct_calculate_metrics(tmp_path: Path, split: str) -> None:
    """The direct call runs with torch-fidelity's defaults (loader worker processes included); gbench
    feeds the in-memory tensors without workers (``save_cpu_ram``), which changes no value."""
    data, samples = FakeImages(), generated()
    metric = FidelityMetric(cfg(tmp_path, kid=True, reference_split=split))
    ours = metric.compute(samples, data, rng())
    direct = torch_fidelity.calculate_metrics(
        input1=UInt8Images(torch.from_numpy(samples)), input2=UInt8Images(data.images(split)), cuda=False,
        isc=True, fid=True, kid=True, feature_extractor=NET, isc_splits=5, kid_subsets=20, kid_subset_size=100,
        cache=False, verbose=False)
    pairs = {"nonstd_fid": "frechet_inception_distance", "nonstd_isc_mean": "inception_score_mean",
             "nonstd_isc_std": "inception_score_std", "nonstd_kid_mean": "kernel_inception_distance_mean",
             "nonstd_kid_std": "kernel_inception_distance_std"}
    assert set(ours) == set(pairs)
    for key, theirs in pairs.items():
        assert ours[key] == pytest.approx(direct[theirs], rel=1e-6, abs=1e-12), key
    assert ours["nonstd_fid"] > 1.0  # noise vs smooth images: far apart, so the comparison is not trivial
    proto = metric.protocol()
    assert proto["reference_split"] == split and proto["reference_size"] == len(data.images(split))
    assert proto["num_samples"] == len(samples)
    assert proto["feature_extractor"] == NET and proto["feature_layers"] == {
        "fid": "feat", "isc": "logits_unbiased", "kid": "feat"}
    assert proto["standard"] is False and proto["torch_fidelity_version"] == torch_fidelity.__version__
    assert (proto["isc_splits"], proto["kid_subset_size"], proto["kid_subsets"]) == (5, 100, 20)


def test_samples_reach_the_extractor_as_the_same_uint8_memory(tmp_path: Path, monkeypatch) -> None:
    seen: list[torch.Tensor] = []
    real_forward = TinyNet.forward

    def spy(self, x):
        seen.append(x)
        return real_forward(self, x)

    monkeypatch.setattr(TinyNet, "forward", spy)
    samples = generated(130)
    FidelityMetric(cfg(tmp_path, fid=False, isc=True, batch_size=64)).compute(samples, FakeImages(), rng())
    got = torch.cat(seen).numpy()
    assert got.dtype == np.uint8 and np.array_equal(got, samples)  # one pass, pixels untouched
    assert [len(b) for b in seen] == [64, 64, 2]


# -- reference cache -------------------------------------------------------------------------


def test_second_evaluation_reuses_the_reference_cache(tmp_path: Path) -> None:
    data, samples = FakeImages(), generated()
    first = FidelityMetric(cfg(tmp_path, kid=True))
    v1 = first.compute(samples, data, rng())
    assert data.calls == ["train"]
    assert first.protocol()["reference"]["cache_hit"] is False
    cache_root = Path(first.protocol()["reference"]["cache_root"])
    name = first.protocol()["reference"]["cache_name"]
    files = sorted(p.name for p in cache_root.iterdir() if p.name.startswith(name))
    assert f"{name}-{NET}-features-feat.pt" in files and f"{name}-{NET}-stat-fid-feat.pt" in files

    fidelity.clear_caches()  # a new process, as far as gbench knows: only the disk cache remains
    TinyNet.calls = 0
    second = FidelityMetric(cfg(tmp_path, kid=True))
    v2 = second.compute(samples, data, rng())
    assert data.calls == ["train"]  # the reference images were not even loaded
    assert TinyNet.calls == len(samples)  # only the samples went through the extractor
    assert second.protocol()["reference"]["cache_hit"] is True
    assert second.protocol()["reference_size"] == 400  # recorded with the cache entry
    assert v2 == v1

    # FID alone reads only the cached statistics (torch-fidelity's shortcut), still no images()
    third = FidelityMetric(cfg(tmp_path, isc=False))
    assert third.compute(samples, data, rng())["nonstd_fid"] == v1["nonstd_fid"]
    assert data.calls == ["train"]


def test_cache_name_encodes_dataset_provenance_split_and_weights(tmp_path: Path) -> None:
    samples = generated()
    a = FakeImages()
    FidelityMetric(cfg(tmp_path)).compute(samples, a, rng())
    FidelityMetric(cfg(tmp_path, reference_split="test")).compute(samples, a, rng())
    assert a.calls == ["train", "test"]
    b = FakeImages(provenance={"source": "synthetic", "seed": 0, "file_sha256": "another copy"})
    FidelityMetric(cfg(tmp_path)).compute(samples, b, rng())
    assert b.calls == ["train"]  # same name, different provenance: a new entry
    w = tmp_path / "w.bin"
    w.write_bytes(b"some weights")
    FidelityMetric(cfg(tmp_path, weights=str(w))).compute(samples, a, rng())
    assert a.calls == ["train", "test", "train"]  # different weights: a new entry
    c = FakeImages()
    FidelityMetric(cfg(tmp_path)).compute(samples, c, rng())
    assert c.calls == []  # an equal dataset (same name, provenance, split, weights) hits


def test_is_alone_needs_no_reference(tmp_path: Path) -> None:
    data = FakeImages()
    out = FidelityMetric(cfg(tmp_path, fid=False, isc=True)).compute(generated(), data, rng())
    assert set(out) == {"nonstd_isc_mean", "nonstd_isc_std"} and data.calls == []


# -- weights and the standard flag ----------------------------------------------------------


def test_wrong_weights_hash_makes_every_key_nonstandard(tmp_path: Path) -> None:
    w = tmp_path / "weights.pth"
    w.write_bytes(os.urandom(4096))
    metric = FidelityMetric(cfg(tmp_path, kid=True, weights=str(w)))
    out = metric.compute(generated(), FakeImages(), rng())
    assert out and all(k.startswith("nonstd_") for k in out)
    proto = metric.protocol()
    assert proto["standard"] is False
    assert proto["weights_path"] == str(w)
    assert proto["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    assert proto["official_weights_sha256"] == fidelity.OFFICIAL_INCEPTION_SHA256


def test_official_hash_with_the_standard_extractor_gives_standard_names(tmp_path: Path, monkeypatch) -> None:
    """Pretend the test net is the standard extractor and its weights file the official one."""
    w = tmp_path / "official.pth"
    w.write_bytes(b"pretend these are the official weights")
    monkeypatch.setattr(fidelity, "STANDARD_EXTRACTOR", NET)
    monkeypatch.setattr(fidelity, "OFFICIAL_INCEPTION_SHA256", hashlib.sha256(w.read_bytes()).hexdigest())
    metric = FidelityMetric(cfg(tmp_path, kid=True, weights=str(w)))
    out = metric.compute(generated(), FakeImages(), rng())
    assert set(out) == {"fid", "isc_mean", "isc_std", "kid_mean", "kid_std"}
    assert metric.protocol()["standard"] is True
    # the same file with a non-default layer is not standard any more
    other = FidelityMetric(cfg(tmp_path, weights=str(w), feature_layer_fid="logits_unbiased"))
    assert all(k.startswith("nonstd_") for k in other.compute(generated(), FakeImages(), rng()))


def test_official_sha256_is_consistent_with_the_file_name() -> None:
    assert fidelity.OFFICIAL_INCEPTION_SHA256.startswith(fidelity.OFFICIAL_INCEPTION_SHA256_PREFIX)
    assert fidelity.OFFICIAL_INCEPTION_SHA256_PREFIX in fidelity.OFFICIAL_INCEPTION_FILE
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert URL_INCEPTION_V3.endswith("/" + fidelity.OFFICIAL_INCEPTION_FILE)
    assert len(fidelity.OFFICIAL_INCEPTION_SHA256) == 64


def test_weights_hash_is_cached_per_path_mtime_size(tmp_path: Path) -> None:
    w = tmp_path / "w.bin"
    w.write_bytes(b"x" * 1000)
    store = tmp_path / "c"
    real = hashlib.sha256(w.read_bytes()).hexdigest()
    assert fidelity.sha256_file(w, store) == real
    # across processes the stored hash is used (proof: a doctored entry is returned as it is)
    text = (store / "weights-sha256.json").read_text().replace(real, "f" * 64)
    (store / "weights-sha256.json").write_text(text)
    fidelity.clear_caches()
    assert fidelity.sha256_file(w, store) == "f" * 64
    # a changed file (size/mtime) is hashed again
    w.write_bytes(b"y" * 1001)
    assert fidelity.sha256_file(w, store) == hashlib.sha256(b"y" * 1001).hexdigest()


def test_env_var_supplies_inception_weights(tmp_path: Path, monkeypatch) -> None:
    w = tmp_path / "env.pth"
    w.write_bytes(b"abc")
    monkeypatch.setenv(fidelity.WEIGHTS_ENV, str(w))
    got = fidelity.resolve_weights(FidelityConfig(), tmp_path)
    assert (got.path, got.source, got.sha256) == (str(w), "env", hashlib.sha256(b"abc").hexdigest())
    # the config wins over the environment; other extractors ignore the Inception variable
    w2 = tmp_path / "cfg.pth"
    w2.write_bytes(b"def")
    assert fidelity.resolve_weights(FidelityConfig(weights=str(w2)), tmp_path).path == str(w2)
    assert fidelity.resolve_weights(FidelityConfig(feature_extractor=NET), tmp_path).path is None


def test_no_weights_offline_is_a_one_line_gbench_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fidelity, "hub_cached_weights", lambda: None)
    metric = FidelityMetric(FidelityConfig(cache_dir=str(tmp_path)))  # inception-v3-compat, no weights
    with pytest.raises(GbenchError) as err:
        metric.compute(generated(), FakeImages(), rng())
    msg = str(err.value)
    assert "\n" not in msg
    assert "[eval.fidelity] weights = PATH" in msg and fidelity.WEIGHTS_ENV in msg and "--inception-weights" in msg

    from gbench.run.trial import score  # the harness records it and goes on

    values, errors = score(generated(), FakeImages(), [metric])
    assert values == {} and "weights" in errors["fidelity"]


def test_hub_cached_weights_are_used_without_any_download(tmp_path: Path, monkeypatch) -> None:
    bogus = tmp_path / fidelity.OFFICIAL_INCEPTION_FILE
    bogus.write_bytes(b"not a state dict")
    monkeypatch.setattr(fidelity, "hub_cached_weights", lambda: str(bogus))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    import torch_fidelity.feature_extractor_inceptionv3 as inc

    monkeypatch.setattr(inc, "load_state_dict_from_url", no_download)
    got = fidelity.resolve_weights(FidelityConfig(), tmp_path)
    assert (got.path, got.source) == (str(bogus), "hub-cache")
    with pytest.raises(GbenchError) as err:  # the file is loaded from its path, and it is broken
        FidelityMetric(FidelityConfig(cache_dir=str(tmp_path))).compute(generated(), FakeImages(), rng())
    assert "download was attempted" not in str(err.value) and "\n" not in str(err.value)


def test_hub_cache_path_is_torch_fidelitys() -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    expected = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(URL_INCEPTION_V3))
    got = fidelity.hub_cached_weights()
    assert got is None or got == expected


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [
    (generated(20).astype(np.float32), "uint8"),
    (generated(20).transpose(0, 2, 3, 1).copy(), r"\(N, 3, H, W\)"),
    (generated(20)[:, :1], r"\(N, 3, H, W\)"),
    (generated(20)[:, :, :16, :16].copy(), "per image"),
    ([[1, 2, 3]], "uint8"),
])
def test_wrong_dtype_or_shape_is_a_clear_error(tmp_path: Path, bad: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FidelityMetric(cfg(tmp_path)).compute(bad, FakeImages(), rng())


def test_kid_subset_larger_than_the_samples_is_a_setting_error(tmp_path: Path) -> None:
    with pytest.raises(GbenchError, match="kid_subset_size"):
        FidelityMetric(cfg(tmp_path, kid=True, kid_subset_size=500)).compute(generated(300), FakeImages(), rng())


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="reference_split"):
        FidelityConfig(reference_split="val")
    with pytest.raises(ValueError, match="at least one"):
        FidelityConfig(fid=False, isc=False)


# -- achieved JSD from the same features -----------------------------------------------------


def test_jsd_from_the_same_pass_and_classifier_jsd_metric(tmp_path: Path) -> None:
    data, samples = FakeImages(n_train=400), generated(300)
    TinyNet.calls = 0
    fid_metric = FidelityMetric(cfg(tmp_path, jsd=True, jsd_folds=3))
    out = fid_metric.compute(samples, data, rng())
    assert fid_metric.protocol()["jsd"] is True and fid_metric.protocol()["jsd_estimate"]["n_per_class"] == 300
    assert {"jsd_bits", "jsd_ci_low", "jsd_ci_high", "nonstd_fid"} <= set(out)
    assert out["jsd_bits"] > 0.9  # uniform noise vs smooth images: nearly disjoint
    assert TinyNet.calls == len(samples) + 400  # one pass over the samples, one over the reference

    TinyNet.calls = 0
    metric = ClassifierJSDMetric(ClassifierJSDConfig(feature_extractor=NET, cache_dir=str(tmp_path / "cache"),
                                                     folds=3))
    same = metric.compute(samples, data, rng())
    assert TinyNet.calls == 0  # samples' features remembered, reference features from the cache
    assert same == {k: out[k] for k in ("jsd_bits", "jsd_ci_low", "jsd_ci_high")}
    proto = metric.protocol()
    assert proto["feature_layers"] == {"jsd": "feat"} and proto["lower_bound"] is True


def test_image_jsd_between_two_image_sets(tmp_path: Path) -> None:
    a, b = FakeImages(seed=0), FakeImages(seed=1)
    config = ClassifierJSDConfig(feature_extractor=NET, cache_dir=str(tmp_path), folds=3)
    same_law = image_jsd(a.images("train"), b.images("train"), config, seed=0)
    assert abs(same_law["jsd_bits"]) < 0.1 and same_law["jsd_ci_low"] < 0.05
    assert same_law["features"]["feature_extractor"] == NET
    apart = image_jsd(a.images("train"), torch.from_numpy(generated(400)), config, seed=0)
    assert apart["jsd_bits"] > 0.9
    with pytest.raises(ValueError, match="uint8"):
        image_jsd(a.images("train").float(), b.images("train"), config)


def test_registered_through_the_plugin_hook() -> None:
    from gbench.plugins import load_plugins

    plugins = load_plugins(entry_points=False)
    assert plugins.metrics.get("fidelity") is FidelityMetric
    assert plugins.metrics.get("classifier-jsd") is ClassifierJSDMetric
    assert FidelityMetric.kinds == ("image",) and ClassifierJSDMetric.kinds == ("image",)
