"""FID, Inception Score and KID through torch-fidelity, in one pass over the samples.

How the numbers are made (the values equal a direct ``torch_fidelity.calculate_metrics`` call on the
same uint8 tensors with the same extractor, layers, splits and subset sizes):

* The feature extractor is torch-fidelity's own (``create_feature_extractor``), run over the samples
  with torch-fidelity's own loop (``get_featuresdict_from_dataset``) on a Dataset of the uint8
  tensors as they are: no float round trip and no second uint8 conversion. Every feature layer the
  enabled metrics need (and the achieved JSD, if asked) comes out of that ONE pass.
* FID, IS and KID are computed from those features with torch-fidelity's own functions
  (``fid_featuresdict_to_statistics`` / ``fid_statistics_to_metric``, ``isc_featuresdict_to_metric``,
  ``kid_featuresdict_to_metric``) and its defaults (``rng_seed`` 2020, ``samples_shuffle`` on).
* Reference statistics go through torch-fidelity's input2 cache under ``<cache_dir>/fidelity`` with a
  cache name that encodes the dataset name, a digest of its provenance, the split, the extractor,
  the weights' sha256 and the torch-fidelity version. A second evaluation against the same
  reference loads the cached features / FID statistics and never calls ``dataset.images()``.
* The generated samples' features are kept for the last sample set (keyed by a digest of the pixels
  and the extractor), so ``classifier-jsd`` after ``fidelity`` on the same samples costs no second
  Inception pass.

Weights and the ``standard`` flag: a weights file given in ``[eval.fidelity] weights`` (or the
``GBENCH_INCEPTION_WEIGHTS`` environment variable, or ``--inception-weights``) is hashed (sha256, the
hash kept per path + mtime + size) and compared with the official torch-fidelity Inception file.
Only the official file, with the ``inception-v3-compat`` extractor and its default layers, is
``standard``; anything else makes EVERY FID/IS/KID key carry the prefix ``nonstd_`` (``nonstd_fid``,
``nonstd_isc_mean``...), so no table can show a non-standard number under the standard name.
Without weights, torch-fidelity's hub-cached file is used when it is already there; otherwise the
metric fails with a :class:`GbenchError` saying how to provide weights (nothing is downloaded).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from gbench.atomic import write_atomic
from gbench.errors import GbenchError
from gbench.hookspecs import hookimpl
from gbench.metrics import Metric, MetricConfig
from gbench.metrics.classifier_bound import classifier_jsd_bits

WEIGHTS_ENV = "GBENCH_INCEPTION_WEIGHTS"
CACHE_ENV = "GBENCH_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/gbench"
STANDARD_EXTRACTOR = "inception-v3-compat"
OFFICIAL_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
OFFICIAL_INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + OFFICIAL_INCEPTION_FILE
)
# The full sha256 is not written anywhere in torch-fidelity's source or docs (it downloads with
# torch.hub and no hash check). This value is the one pinned, for this very release file
# (95,628,359 bytes), by several independent public projects; it agrees with the 8-hex prefix
# "6726825d" in the file name, which torch.hub's naming convention makes a prefix of the sha256.
OFFICIAL_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
OFFICIAL_INCEPTION_SHA256_PREFIX = "6726825d"
NONSTD_PREFIX = "nonstd_"
HOW_TO_GIVE_WEIGHTS = (
    f"set [eval.fidelity] weights = PATH, or {WEIGHTS_ENV}=PATH, or pass --inception-weights PATH "
    f"(the file {OFFICIAL_INCEPTION_FILE} from {OFFICIAL_INCEPTION_URL})"
)


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureConfig(MetricConfig):
    """Which features image metrics use (shared by ``fidelity`` and ``classifier-jsd``).

    * ``feature_extractor``: a torch-fidelity feature extractor name (``inception-v3-compat`` is the
      standard FID/IS/KID network; anything registered with ``torch_fidelity.register_feature_extractor``
      works and makes the numbers non-standard).
    * ``weights``: path to local extractor weights; "" means ``$GBENCH_INCEPTION_WEIGHTS`` (for the
      Inception extractor), else torch-fidelity's hub-cached file if it is already there.
    * ``cache_dir``: where reference features/statistics and weight hashes are cached; "" means
      ``$GBENCH_CACHE``, else ``~/.cache/gbench``.
    * ``batch_size``: images per forward pass (Inception outputs depend slightly on it: recorded).
    * ``cuda``: run the extractor on the GPU (the harness sets it on a GPU run).
    """

    feature_extractor: str = STANDARD_EXTRACTOR
    weights: str = ""
    cache_dir: str = ""
    batch_size: int = 64
    cuda: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class FidelityConfig(FeatureConfig):
    """``[eval.fidelity]``: FID / IS / KID through torch-fidelity (and optionally the achieved JSD).

    * ``fid``, ``isc``, ``kid``: which metrics to compute (KID is off by default: its 100 subsets of
      ``kid_subset_size`` cost more than FID).
    * ``reference_split``: "train" or "test" images of the dataset as the reference.
    * ``isc_splits``: IS splits (torch-fidelity default 10); ``kid_subsets``, ``kid_subset_size``: KID
      subsets and their size (defaults 100 and 1000; the size must not exceed either sample count).
    * ``feature_layer_fid``, ``feature_layer_isc``, ``feature_layer_kid``: extractor layers; ""
      means the extractor's default (torch-fidelity's: "2048", "logits_unbiased", "2048" for Inception).
    * ``jsd``: also report the classifier-based achieved JSD (``jsd_bits``, ``jsd_ci_low``,
      ``jsd_ci_high``; a LOWER bound, see :mod:`gbench.metrics.classifier_bound`) on the FID features,
      with ``jsd_folds`` cross-fitting folds.
    """

    fid: bool = True
    isc: bool = True
    kid: bool = False
    reference_split: str = "train"
    isc_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    feature_layer_fid: str = ""
    feature_layer_isc: str = ""
    feature_layer_kid: str = ""
    jsd: bool = False
    jsd_folds: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_split(self.reference_split)
        if not (self.fid or self.isc or self.kid or self.jsd):
            raise ValueError("enable at least one of fid, isc, kid, jsd")
        if self.isc_splits < 1 or self.kid_subsets < 1 or self.kid_subset_size < 2:
            raise ValueError("isc_splits and kid_subsets must be >= 1, kid_subset_size >= 2")
        if self.jsd_folds < 2:
            raise ValueError(f"jsd_folds must be >= 2, got {self.jsd_folds}")


def check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"reference_split must be 'train' or 'test', got {split!r}")


# -- weights ---------------------------------------------------------------------------------

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file, remembered per (real path, mtime, size) in this process and, when
    ``cache_dir`` is given, in ``<cache_dir>/weights-sha256.json`` across processes."""
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    key = (real, st.st_mtime_ns, st.st_size)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    store = Path(cache_dir) / "weights-sha256.json" if cache_dir else None
    disk_key = f"{real}|{st.st_mtime_ns}|{st.st_size}"
    known: dict[str, str] = {}
    if store is not None and store.is_file():
        try:
            known = json.loads(store.read_text())
        except (OSError, ValueError):
            known = {}
        if isinstance(known, dict) and isinstance(known.get(disk_key), str):
            _SHA_MEMO[key] = known[disk_key]
            return known[disk_key]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    _SHA_MEMO[key] = digest
    if store is not None:
        try:
            known = known if isinstance(known, dict) else {}
            known[disk_key] = digest
            write_atomic(store, lambda f: f.write(json.dumps(known, indent=1, sort_keys=True)))
        except OSError:
            pass  # the hash is still remembered in this process
    return digest


def is_official_inception(sha256: str | None) -> bool:
    return sha256 is not None and sha256.lower() == OFFICIAL_INCEPTION_SHA256


# what a weights or cache file may hold besides tensors: plain numpy arrays (FID statistics)
NUMPY_GLOBALS = [np.ndarray, np.dtype, *(getattr(getattr(np, "dtypes", None), n, np.dtype) for n in (
    "Float64DType", "Float32DType", "Int64DType", "Int32DType", "UInt8DType", "BoolDType"))]
_TORCH_LOAD = torch.load


@contextlib.contextmanager
def safe_torch_load() -> Iterator[None]:
    """While active, every ``torch.load`` (torch-fidelity's weights and feature-cache reads, which pass
    ``weights_only=False``) unpickles with ``weights_only=True``: tensors, containers and plain numpy
    arrays, never code. A file that needs more is refused (a :class:`GbenchError` from the caller)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; else tensors only

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        with allowed([_reconstruct, *NUMPY_GLOBALS]) if allowed else contextlib.nullcontext():
            return _TORCH_LOAD(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = _TORCH_LOAD


def hub_cached_weights() -> str | None:
    """torch-fidelity's Inception weights in the torch hub cache, if a download already put them there."""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", OFFICIAL_INCEPTION_FILE)
    return path if os.path.isfile(path) else None


@dataclass(frozen=True)
class Weights:
    path: str | None  # None: the extractor fetches its own (non-Inception extractors only)
    sha256: str | None
    source: str  # "config", "env", "hub-cache", "extractor default"


def resolve_weights(config: FeatureConfig, cache_dir: Path) -> Weights:
    """The weights file to use and its sha256; :class:`GbenchError` (one line) when the Inception
    extractor has none and none can be had without a download."""
    inception = config.feature_extractor == STANDARD_EXTRACTOR
    path, source = config.weights, "config"
    if not path and inception and os.environ.get(WEIGHTS_ENV):
        path, source = os.environ[WEIGHTS_ENV], "env"
    if path:
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise GbenchError(f"feature extractor weights {path!r} ({source}) not found; {HOW_TO_GIVE_WEIGHTS}")
        return Weights(path, sha256_file(path, cache_dir), source)
    if inception:
        cached = hub_cached_weights()
        if cached is None:
            raise GbenchError(f"no Inception weights available offline; {HOW_TO_GIVE_WEIGHTS}")
        return Weights(cached, sha256_file(cached, cache_dir), "hub-cache")
    return Weights(None, None, "extractor default")


# -- features --------------------------------------------------------------------------------


class UInt8Images(torch.utils.data.Dataset):
    """The uint8 (N, 3, H, W) tensor as a torch Dataset, items handed over untouched."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class LazyReference(torch.utils.data.Dataset):
    """``dataset.images(split)``, called only if torch-fidelity actually reads an item (a cache miss)."""

    def __init__(self, dataset: Any, split: str) -> None:
        self.dataset, self.split = dataset, split
        self._images: torch.Tensor | None = None

    def load(self) -> torch.Tensor:
        if self._images is None:
            x = self.dataset.images(self.split)
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(x)
            self._images = check_images(x, f"reference {getattr(self.dataset, 'name', '?')} {self.split}")
        return self._images

    def __len__(self) -> int:
        return len(self.load())

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.load()[i]


def check_images(samples: Any, what: str = "samples", data_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``samples`` as a uint8 (N, 3, H, W) CPU tensor sharing memory with the input (no conversion)."""
    if isinstance(samples, np.ndarray):
        if samples.dtype != np.uint8:
            raise ValueError(f"{what} must be uint8 (N, 3, H, W) images, got dtype {samples.dtype}")
        samples = torch.from_numpy(np.ascontiguousarray(samples))
    if not isinstance(samples, torch.Tensor):
        raise ValueError(f"{what} must be a uint8 numpy array or tensor (N, 3, H, W), got {type(samples).__name__}")
    if samples.dtype != torch.uint8:
        raise ValueError(f"{what} must be uint8 (N, 3, H, W) images, got dtype {samples.dtype}")
    if samples.ndim != 4 or samples.shape[1] != 3:
        raise ValueError(f"{what} must have shape (N, 3, H, W), got {tuple(samples.shape)}")
    if data_shape is not None and tuple(samples.shape[1:]) != tuple(data_shape):
        raise ValueError(f"{what} have shape {tuple(samples.shape[1:])} per image, the dataset {tuple(data_shape)}")
    if len(samples) < 2:
        raise ValueError(f"{what}: need at least 2 images, got {len(samples)}")
    return samples.cpu()


def resolve_cache_dir(config: FeatureConfig) -> Path:
    chosen = config.cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def default_layer(extractor: str, metric: str) -> str:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if extractor not in FEATURE_EXTRACTORS_REGISTRY:
        known = ", ".join(sorted(FEATURE_EXTRACTORS_REGISTRY))
        raise GbenchError(f"unknown feature extractor {extractor!r} (torch-fidelity has: {known})")
    return FEATURE_EXTRACTORS_REGISTRY[extractor].get_default_feature_layer_for_metric(metric)


class Features:
    """One feature extractor (a torch-fidelity extractor with resolved weights) and what it has seen.

    ``layers`` maps a use ("fid", "isc", "kid", "jsd") to an extractor layer; the extractor computes the
    union in one forward pass. Shared by ``fidelity``, ``classifier-jsd`` and :func:`image_jsd`.
    """

    def __init__(self, config: FeatureConfig, layers: Mapping[str, str]) -> None:
        import torch_fidelity

        self.config = config
        self.cache_dir = resolve_cache_dir(config)
        self.fidelity_cache = self.cache_dir / "fidelity"
        self.layers = {use: (name or default_layer(config.feature_extractor, "fid" if use == "jsd" else use))
                       for use, name in layers.items()}
        if config.cuda and not torch.cuda.is_available():
            raise GbenchError("cuda = true but no CUDA device is available here")
        self.weights = resolve_weights(config, self.cache_dir)
        self.standard = (
            config.feature_extractor == STANDARD_EXTRACTOR
            and is_official_inception(self.weights.sha256)
            and all(layer == default_layer(STANDARD_EXTRACTOR, "fid" if use == "jsd" else use)
                    for use, layer in self.layers.items())
        )
        self.version = torch_fidelity.__version__
        self.extractor = _extractor(config.feature_extractor, tuple(sorted(set(self.layers.values()))),
                                    self.weights, config.cuda)

    # torch-fidelity keyword arguments shared by every call (the same as calculate_metrics would use)
    def kwargs(self, **extra: Any) -> dict[str, Any]:
        kw = dict(
            cuda=self.config.cuda,
            batch_size=self.config.batch_size,
            feature_extractor=self.config.feature_extractor,
            feature_extractor_weights_path=self.weights.path,
            cache_root=str(self.fidelity_cache),
            cache=True,
            save_cpu_ram=True,  # in-memory tensors: no loader worker processes (values identical)
            verbose=False,
        )
        kw.update(extra)
        return kw

    def identity(self) -> dict[str, Any]:
        return {
            "feature_extractor": self.config.feature_extractor,
            "feature_layers": dict(self.layers),
            "weights_path": self.weights.path,
            "weights_source": self.weights.source,
            "weights_sha256": self.weights.sha256,
            "official_weights_sha256": OFFICIAL_INCEPTION_SHA256,
            "standard": self.standard,
            "batch_size": self.config.batch_size,
            "cuda": self.config.cuda,
            "torch_fidelity_version": self.version,
        }

    def of_images(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of every layer in ``self.layers`` for uint8 images, one pass (remembered for the
        last image set, so a second metric on the same samples does not run the extractor again)."""
        from torch_fidelity.utils import get_featuresdict_from_dataset

        wanted = set(self.layers.values())
        key = (_pixels_digest(images), self.config.feature_extractor, self.weights.path, self.weights.sha256,
               self.config.batch_size, self.config.cuda)
        if _LAST_FEATURES.get("key") == key and wanted <= set(_LAST_FEATURES["features"]):
            return {k: v for k, v in _LAST_FEATURES["features"].items() if k in wanted}
        feats = get_featuresdict_from_dataset(UInt8Images(images), self.extractor, self.config.batch_size,
                                              self.config.cuda, True, False)
        _LAST_FEATURES.clear()
        _LAST_FEATURES.update(key=key, features=feats)
        return feats

    def reference_cache_name(self, dataset: Any, split: str) -> str:
        ident = {
            "dataset": getattr(dataset, "name", None),
            "provenance": getattr(dataset, "provenance", None),
            "split": split,
            "feature_extractor": self.config.feature_extractor,
            "weights_sha256": self.weights.sha256,
            "weights_path": None if self.weights.sha256 else self.weights.path,
            "batch_size": self.config.batch_size,
            "cuda": self.config.cuda,
            "torch_fidelity": self.version,
        }
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]
        safe = re.sub(r"[^A-Za-z0-9_.]+", "_", str(ident["dataset"]))[:40]
        return f"gbench-{safe}-{split}-{digest}"

    def reference(self, dataset: Any, split: str, layers: set[str], fid_stats_layer: str | None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
        """Reference features (for ``layers``) and FID statistics (for ``fid_stats_layer``), through
        torch-fidelity's input2 cache. With no features wanted, only the statistics are read (the
        shortcut calculate_metrics takes for FID alone); ``dataset.images`` is called only on a miss."""
        from torch_fidelity.metric_fid import fid_featuresdict_to_statistics_cached, fid_input_id_to_statistics_cached
        from torch_fidelity.utils import extract_featuresdict_from_input_id_cached

        name = self.reference_cache_name(dataset, split)
        lazy = LazyReference(dataset, split)
        kw = self.kwargs(input2=lazy, input2_cache_name=name)
        fe = self.config.feature_extractor
        feat_files = [self.fidelity_cache / f"{name}-{fe}-features-{layer}.pt"
                      for layer in self.extractor.get_requested_features_list()]
        stat_file = self.fidelity_cache / f"{name}-{fe}-stat-fid-{fid_stats_layer}.pt"
        meta_file = self.fidelity_cache / f"{name}.json"
        feats: dict[str, torch.Tensor] = {}
        stats = None
        try:
            with safe_torch_load():  # the cache folder is writable by others: read tensors and arrays only
                if layers:
                    hit = all(p.is_file() for p in feat_files)
                    feats = extract_featuresdict_from_input_id_cached(2, self.extractor, **kw)
                    if fid_stats_layer is not None:
                        stats = fid_featuresdict_to_statistics_cached(feats, name, self.extractor, fid_stats_layer, **kw)
                else:
                    hit = stat_file.is_file()
                    stats = fid_input_id_to_statistics_cached(2, self.extractor, fid_stats_layer, **kw)
        except pickle.UnpicklingError as exc:
            detail = " ".join(str(exc).split())[:200]
            raise GbenchError(f"reference cache under {self.fidelity_cache} holds a file that is not plain tensors "
                              f"({detail}); delete the cache folder to recompute it") from None
        meta = self._reference_meta(meta_file, dataset, split, lazy, feats)
        info = {"dataset": getattr(dataset, "name", None), "split": split, "size": meta.get("size"),
                "cache_name": name, "cache_hit": hit, "cache_root": str(self.fidelity_cache)}
        return {k: v for k, v in feats.items() if k in layers}, stats, info

    def _reference_meta(self, path: Path, dataset: Any, split: str, lazy: LazyReference,
                        feats: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """A small JSON next to the cache entry: what it was made from and how many images."""
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                pass
        size = next((len(v) for v in feats.values()), None)
        if size is None and lazy._images is not None:
            size = len(lazy._images)
        if size is None:
            return {}
        meta = {"dataset": getattr(dataset, "name", None), "split": split, "size": size,
                "provenance": getattr(dataset, "provenance", None), **self.identity()}
        try:
            write_atomic(path, lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True, default=str)))
        except OSError:
            pass
        return meta


_EXTRACTORS: dict[tuple, Any] = {}
_LAST_FEATURES: dict[str, Any] = {}


def _extractor(name: str, layers: tuple[str, ...], weights: Weights, cuda: bool) -> Any:
    """torch-fidelity's extractor object, built once per (name, layers, weights, device) in a process."""
    from torch_fidelity.utils import create_feature_extractor

    key = (name, layers, weights.path, weights.sha256, cuda)
    if key not in _EXTRACTORS:
        try:
            with safe_torch_load():  # an unofficial file may be a hostile pickle: weights only
                fe = create_feature_extractor(name, list(layers), cuda=cuda, verbose=False,
                                              feature_extractor_weights_path=weights.path)
        except Exception as exc:  # unreadable weights, a download attempt offline, a bad layer name...
            detail = " ".join(str(exc).split())[:300]
            hint = f"; {HOW_TO_GIVE_WEIGHTS}" if name == STANDARD_EXTRACTOR else ""
            raise GbenchError(f"cannot build feature extractor {name!r} (layers {list(layers)}, weights "
                              f"{weights.path}): {type(exc).__name__}: {detail}{hint}") from exc
        if len(_EXTRACTORS) >= 2:
            _EXTRACTORS.pop(next(iter(_EXTRACTORS)))
        _EXTRACTORS[key] = fe
    return _EXTRACTORS[key]


def _pixels_digest(images: torch.Tensor) -> str:
    arr = np.ascontiguousarray(images.numpy())
    h = hashlib.blake2b(arr.data, digest_size=16)
    h.update(repr(tuple(arr.shape)).encode())
    return h.hexdigest()


def clear_caches() -> None:
    """Forget in-process extractors, remembered features and weight hashes (not the disk cache)."""
    _EXTRACTORS.clear()
    _LAST_FEATURES.clear()
    _SHA_MEMO.clear()


def jsd_seed(rng: np.random.Generator) -> int:
    """The classifier-JSD seed both image metrics draw first from their rng (same rng: same estimate)."""
    return int(rng.integers(0, 2**31 - 1))


# -- the metric ------------------------------------------------------------------------------


class FidelityMetric(Metric):
    """FID, Inception Score and KID (torch-fidelity), one extractor pass; optional achieved JSD.

    Keys: ``fid``, ``isc_mean``, ``isc_std``, ``kid_mean``, ``kid_std`` with the official Inception
    weights and default layers; ``nonstd_``-prefixed otherwise. With ``jsd = true`` also
    ``jsd_bits``, ``jsd_ci_low``, ``jsd_ci_high`` (classifier lower bound on the FID features).
    """

    name = "fidelity"
    kinds = ("image",)
    Config = FidelityConfig

    def __init__(self, config: FidelityConfig | None = None) -> None:
        super().__init__(config)
        self._last: dict[str, Any] = {}

    def _layers(self) -> dict[str, str]:
        c = self.config
        layers = {}
        if c.fid:
            layers["fid"] = c.feature_layer_fid
        if c.isc:
            layers["isc"] = c.feature_layer_isc
        if c.kid:
            layers["kid"] = c.feature_layer_kid
        if c.jsd:
            layers["jsd"] = c.feature_layer_fid
        return layers

    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        from torch_fidelity.metric_fid import fid_featuresdict_to_statistics, fid_statistics_to_metric
        from torch_fidelity.metric_isc import isc_featuresdict_to_metric
        from torch_fidelity.metric_kid import kid_featuresdict_to_metric

        c = self.config
        seed = jsd_seed(rng)
        self._last = {}  # a failed evaluation must not leave an earlier one's record
        if getattr(dataset, "kind", None) != "image":
            raise GbenchError(f"fidelity needs an image dataset, got kind {getattr(dataset, 'kind', None)!r}")
        images = check_images(samples, "fidelity samples", getattr(dataset, "data_shape", None))
        n = len(images)
        if c.kid and c.kid_subset_size > n:
            raise GbenchError(f"[eval.fidelity] kid_subset_size = {c.kid_subset_size} exceeds the {n} samples; "
                              f"lower it or raise the number of samples")
        if c.isc and c.isc_splits > n:
            raise GbenchError(f"[eval.fidelity] isc_splits = {c.isc_splits} exceeds the {n} samples")
        feats = Features(c, self._layers())
        layers = feats.layers
        kw = feats.kwargs(isc_splits=c.isc_splits, kid_subsets=c.kid_subsets, kid_subset_size=c.kid_subset_size)

        gen = feats.of_images(images)
        ref_layers = {layers[u] for u in ("kid", "jsd") if u in layers}
        ref_feats, ref_stats, ref_info, n_ref = {}, None, None, None
        if ref_layers or c.fid:  # IS alone needs no reference
            ref_feats, ref_stats, ref_info = feats.reference(dataset, c.reference_split, ref_layers,
                                                             layers.get("fid"))
            n_ref = ref_info["size"]
        if c.kid and n_ref is not None and c.kid_subset_size > n_ref:
            raise GbenchError(f"[eval.fidelity] kid_subset_size = {c.kid_subset_size} exceeds the {n_ref} "
                              f"reference images")

        prefix = "" if feats.standard else NONSTD_PREFIX
        out: dict[str, float] = {}
        if c.fid:
            stats = fid_featuresdict_to_statistics(gen, layers["fid"])
            out[prefix + "fid"] = float(fid_statistics_to_metric(stats, ref_stats, False)["frechet_inception_distance"])
        if c.isc:
            isc = isc_featuresdict_to_metric(gen, layers["isc"], **kw)
            out[prefix + "isc_mean"] = float(isc["inception_score_mean"])
            out[prefix + "isc_std"] = float(isc["inception_score_std"])
        if c.kid:
            kid = kid_featuresdict_to_metric(gen, ref_feats, layers["kid"], **kw)
            out[prefix + "kid_mean"] = float(kid["kernel_inception_distance_mean"])
            out[prefix + "kid_std"] = float(kid["kernel_inception_distance_std"])
        jsd_info = None
        if c.jsd:
            est = classifier_jsd_bits(ref_feats[layers["jsd"]].numpy(), gen[layers["jsd"]].numpy(),
                                      folds=c.jsd_folds, seed=seed)
            out.update(jsd_bits=est["jsd_bits"], jsd_ci_low=est["jsd_ci_low"], jsd_ci_high=est["jsd_ci_high"])
            jsd_info = {"seed": seed, "folds": est["folds"], "n_per_class": est["n_per_class"],
                        "layer": layers["jsd"], "lower_bound": True}
        self._last = {
            **feats.identity(),
            "keys_prefix": prefix,
            "reference": ref_info,
            "reference_split": c.reference_split,
            "reference_size": n_ref,
            "num_samples": n,
            "isc_splits": c.isc_splits,
            "kid_subsets": c.kid_subsets,
            "kid_subset_size": c.kid_subset_size,
            "rng_seed": 2020,  # torch-fidelity's default, used for the IS shuffle and the KID subsets
            "samples_shuffle": True,
            "jsd_estimate": jsd_info,  # seed, folds, per-class n, layer (None: jsd off)
        }
        return out

    def protocol(self) -> dict[str, Any]:
        """The config plus, after :meth:`compute`: weights path / sha256 / ``standard``, extractor and
        layers, reference split and size (and cache entry), sample count, torch-fidelity version."""
        return {**asdict(self.config), **self._last}


@hookimpl
def register_metrics(register: Any) -> None:
    register(FidelityMetric)


__all__ = [
    "FeatureConfig",
    "Features",
    "FidelityConfig",
    "FidelityMetric",
    "OFFICIAL_INCEPTION_SHA256",
    "check_images",
    "hub_cached_weights",
    "resolve_weights",
    "sha256_file",
]
