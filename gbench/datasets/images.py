"""32x32 image datasets: CIFAR-10/100 (torchvision layout, ``.npz`` or a folder), image folders and synthetic32.

Every loader returns an :class:`ImageDataset`: uint8 images in NCHW per split ("train", "test"),
optional integer labels, and a ``provenance`` dict that results copy (where the pixels came from,
in which format, how many, and whether they are lossy). Loaded datasets are cached per process,
keyed by the resolved path and the files' mtimes, so the trials of a suite share one copy.

Where the data is looked for (:func:`load_cifar`): an explicit ``npz`` file, else an explicit
``folder``, else the torchvision layout under the data root (argument ``root``, else the
``GBENCH_DATA_ROOT`` environment variable, else ``~/.cache/gbench/data``), downloaded there with
torchvision only when ``download`` is true. Relative ``npz``/``folder`` paths are tried against
the working directory first and then against the data root.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gbench.errors import GbenchError
from gbench.hookspecs import hookimpl

DATA_ROOT_ENV = "GBENCH_DATA_ROOT"
DEFAULT_DATA_ROOT = "~/.cache/gbench/data"
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")
HASH_LIMIT = 32 * 2**20  # sha256 of an .npz is recorded only below this size

_CIFAR = {
    "cifar10": {
        "dir": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": b"labels",
        "meta": ("batches.meta", b"label_names"),
        "tv": "CIFAR10",
    },
    "cifar100": {
        "dir": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "labels": b"fine_labels",
        "meta": ("meta", b"fine_label_names"),
        "tv": "CIFAR100",
    },
}

_CACHE: dict[tuple, "ImageDataset"] = {}


def clear_cache() -> None:
    """Forget every dataset loaded or generated in this process."""
    _CACHE.clear()
    _SYNTH.clear()


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$GBENCH_DATA_ROOT``, else ``~/.cache/gbench/data``."""
    chosen = root if root not in (None, "") else os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()


# -- datasets --------------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view (the caller's own array keeps its flags)."""
    a = np.ascontiguousarray(a).view()
    a.setflags(write=False)
    return a


class ImageDataset:
    """uint8 images per split, NCHW, with optional int64 labels and a provenance record.

    The arrays are shared by every user of a cached dataset and read-only; the accessors return
    fresh tensors, so callers may modify what they get.
    """

    kind = "image"
    data_shape: tuple[int, ...] = (3, 32, 32)

    def __init__(
        self,
        name: str,
        images: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray | None] | None = None,
        provenance: Mapping[str, Any] | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        if "train" not in images:
            raise GbenchError(f"{name}: an image dataset needs a train split")
        self.name = name
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray | None] = {}
        shape = None
        for split, x in images.items():
            x = np.asarray(x)
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
                raise GbenchError(f"{name}: {split} images must be uint8 (N, C, H, W) with C = 1 or 3, "
                                  f"got {x.dtype} {x.shape}")
            if shape is not None and x.shape[1:] != shape:
                raise GbenchError(f"{name}: {split} images are {x.shape[1:]}, the train images {shape}")
            shape = shape or x.shape[1:]
            self._images[split] = _readonly(x)
            y = (labels or {}).get(split)
            if y is not None:
                y = np.asarray(y)
                if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
                    raise GbenchError(f"{name}: {split} labels must be {len(x)} integers, got {y.dtype} {y.shape}")
                y = _readonly(y.astype(np.int64))
            self._labels[split] = y
        self.data_shape = tuple(int(s) for s in self._images["train"].shape[1:])
        self.label_names = list(label_names) if label_names is not None else None
        prov = dict(provenance or {})
        prov.setdefault("name", name)
        prov["splits"] = {s: len(x) for s, x in self._images.items()}
        prov["data_shape"] = list(self.data_shape)
        self.provenance: dict[str, Any] = prov

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={n}" for s, n in self.provenance["splits"].items())
        return f"ImageDataset({self.name!r}, {sizes}, shape={self.data_shape})"

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._images)

    def num_images(self, split: str = "train") -> int:
        return len(self._array(split))

    def _array(self, split: str) -> np.ndarray:
        if split not in self._images:
            have = ", ".join(self._images)
            raise GbenchError(f"{self.name}: no {split!r} split (it has: {have})")
        return self._images[split]

    def images(self, split: str = "train") -> torch.Tensor:
        """All images of ``split`` ("train" or "test"), uint8 (N, C, H, W), in the stored order."""
        return torch.from_numpy(self._array(split).copy())

    def labels(self, split: str = "train") -> torch.Tensor | None:
        """int64 labels of ``split``, or None when the source has none."""
        self._array(split)
        y = self._labels.get(split)
        return None if y is None else torch.from_numpy(y.copy())

    def subset_indices(self, size: int, seed: int) -> np.ndarray:
        """The train indices :meth:`training_set` takes: a prefix of a seeded permutation."""
        n = self.num_images("train")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        return perm if size <= 0 or size >= n else perm[:size]

    def training_set(self, size: int, seed: int) -> torch.Tensor:
        """``size`` train images chosen with ``seed``, uint8 (N, C, H, W).

        ``size`` 0, or at least the number of train images, gives all of them (in the seeded order).
        Smaller sets are prefixes of larger ones for the same seed.
        """
        return torch.from_numpy(self._images["train"][self.subset_indices(size, seed)])


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``weights`` that sum to ``total`` (round(w * total) when exact)."""
    raw = weights * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def _part_seed(seed: int, part: int) -> int:
    return int(np.random.SeedSequence([seed, 0x1AA6E, part]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class ImageMixture:
    """The weighted mixture sum_l a_l p_l of image datasets (weights are normalised).

    * ``training_set(size, seed)`` takes round(a_l * size) images from part l (counts by largest
      remainder so they sum to ``size``), each part's subset seeded from (seed, l), then shuffles
      them together with ``seed``. A part with fewer train images than its share is repeated
      (its seeded permutation cycled), so the proportions hold.
    * ``images(split)`` (the FID reference) keeps the same proportions without repeating any image:
      the largest total N with a_l * N <= N_l for every part, a_l * N images from part l (a fixed
      seeded subset, seed 0), concatenated part after part.
    """

    kind = "image"

    def __init__(self, parts: Sequence[Any], weights: Sequence[float], name: str | None = None) -> None:
        if not parts or len(parts) != len(weights):
            raise GbenchError("an image mixture needs one positive weight per part")
        a = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise GbenchError(f"image mixture weights must be positive, got {list(weights)}")
        for p in parts:
            if getattr(p, "kind", None) != "image":
                raise GbenchError(f"cannot mix {getattr(p, 'name', p)!r} (kind {getattr(p, 'kind', '?')!r}) "
                                  "into an image mixture")
        shapes = {tuple(p.data_shape) for p in parts}
        if len(shapes) > 1:
            desc = ", ".join(f"{p.name} {tuple(p.data_shape)}" for p in parts)
            raise GbenchError(f"image mixture parts must share one image shape, got {desc}")
        self.parts = list(parts)
        self.weights = a / a.sum()
        self.name = name or "+".join(f"{w:g}*{p.name}" for p, w in zip(self.parts, self.weights))
        self.data_shape = tuple(self.parts[0].data_shape)
        self.provenance: dict[str, Any] = {
            "name": self.name,
            "kind": "mixture",
            "weights": [float(w) for w in self.weights],
            "parts": [dict(getattr(p, "provenance", {"name": p.name})) for p in self.parts],
        }
        lossy = [p.provenance.get("lossy") for p in self.parts if hasattr(p, "provenance")]
        if any(v is True for v in lossy):
            self.provenance["lossy"] = True

    @staticmethod
    def mix(parts: Sequence[Any], weights: Sequence[float], name: str | None = None) -> "ImageMixture":
        """The mixture sum_l a_l p_l (mirrors :meth:`gbench.ToyMixture.mix`)."""
        return ImageMixture(parts, weights, name)

    def __repr__(self) -> str:
        return f"ImageMixture({self.name!r}, shape={self.data_shape})"

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if all(s in p.splits for p in self.parts))

    def counts(self, size: int) -> list[int]:
        """How many training images :meth:`training_set` takes from each part."""
        return [int(c) for c in _largest_remainder(self.weights, size)]

    def training_set(self, size: int, seed: int) -> torch.Tensor:
        if size <= 0:
            size = sum(p.num_images("train") for p in self.parts)
        chunks = []
        for i, (part, n) in enumerate(zip(self.parts, self.counts(size))):
            if n == 0:
                continue
            s = _part_seed(seed, i)
            have = part.num_images("train")
            if n <= have:
                chunks.append(part.training_set(n, s))
            else:
                full = part.training_set(0, s)
                chunks.append(full[torch.arange(n) % have])
        x = torch.cat(chunks)
        return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))]

    def reference_counts(self, split: str) -> list[int]:
        """How many ``split`` images :meth:`images` takes from each part."""
        have = np.array([p.num_images(split) for p in self.parts], dtype=np.float64)
        total = int(np.floor(np.min(have / self.weights) + 1e-9))
        counts = np.minimum(_largest_remainder(self.weights, total), have.astype(np.int64))
        return [int(c) for c in counts]

    def images(self, split: str = "train") -> torch.Tensor:
        for p in self.parts:
            if split not in p.splits:
                raise GbenchError(f"{self.name}: part {p.name} has no {split!r} split")
        chunks = []
        for i, (part, n) in enumerate(zip(self.parts, self.reference_counts(split))):
            x = part.images(split)
            if n < len(x):
                idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(_part_seed(0, i)))[:n]
                x = x[idx.sort().values]
            chunks.append(x)
        return torch.cat(chunks)

    def num_images(self, split: str = "train") -> int:
        if split == "train":
            return sum(p.num_images("train") for p in self.parts)
        return sum(self.reference_counts(split))


# -- provenance helpers ----------------------------------------------------------------------------


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    rec: dict[str, Any] = {"path": str(path), "bytes": st.st_size, "mtime": st.st_mtime}
    if st.st_size <= HASH_LIMIT:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        rec["sha256"] = h.hexdigest()
    return rec


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


def _resolve_user_path(path: str | os.PathLike, root: str | None) -> tuple[Path | None, list[Path]]:
    """``path`` itself if it exists (absolute, or relative to the working directory), else under the data root."""
    p = Path(path).expanduser()
    tried = [p.resolve() if not p.is_absolute() else p]
    if p.exists():
        return p.resolve(), tried
    if not p.is_absolute():
        q = data_root(root) / p
        tried.append(q)
        if q.exists():
            return q.resolve(), tried
    return None, tried


# -- npz -------------------------------------------------------------------------------------------


def _to_nchw(x: np.ndarray, what: str) -> tuple[np.ndarray, str]:
    if x.dtype != np.uint8:
        raise GbenchError(f"{what} must be uint8 pixels, got {x.dtype}")
    if x.ndim == 3:
        return x[:, None], "NHW"
    if x.ndim != 4:
        raise GbenchError(f"{what} must be (N, H, W, C) or (N, C, H, W), got shape {x.shape}")
    last, second = x.shape[-1] in (1, 3), x.shape[1] in (1, 3)
    if last and (not second or x.shape[1] == x.shape[2]):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "NHWC"
    if second:
        return np.ascontiguousarray(x), "NCHW"
    raise GbenchError(f"{what} must have 1 or 3 channels first or last, got shape {x.shape}")


def load_npz(path: str | os.PathLike, name: str | None = None) -> ImageDataset:
    """An ``.npz`` with ``x_train``/``y_train`` and optionally ``x_test``/``y_test`` (uint8 NHWC or NCHW)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise GbenchError(f"{name or 'npz'}: no file at {p}")
    name = name or p.stem
    key = ("npz", str(p), name, _stamp(p))
    if key in _CACHE:
        return _CACHE[key]
    try:
        f = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise GbenchError(f"{name}: cannot read {p} as .npz ({type(exc).__name__}: {exc})") from None
    try:
        return _read_npz(f, p, name, key)
    except (OSError, ValueError, EOFError, MemoryError, KeyError) as exc:  # a member whose header lies
        raise GbenchError(f"{name}: cannot read {p} as .npz ({type(exc).__name__}: {exc})") from None


def _read_npz(f: Any, p: Path, name: str, key: tuple) -> ImageDataset:
    with f:
        files = set(f.files)
        if "x_train" not in files:
            raise GbenchError(f"{name}: {p} has no 'x_train' array (it has: {', '.join(sorted(files)) or 'none'})")
        images, labels, layout = {}, {}, None
        for split in SPLITS:
            if f"x_{split}" not in files:
                continue
            images[split], layout = _to_nchw(f[f"x_{split}"], f"{name}: {p.name} x_{split}")
            y = f[f"y_{split}"] if f"y_{split}" in files else None
            if y is not None and (y.ndim != 1 or len(y) != len(images[split]) or not np.issubdtype(y.dtype, np.integer)):
                raise GbenchError(f"{name}: {p.name} y_{split} must be {len(images[split])} integers, "
                                  f"got {y.dtype} {y.shape}")
            labels[split] = y
        prov: dict[str, Any] = {"source": str(p), "format": "npz", "layout": layout, "file": _file_record(p)}
        label_names = [str(s) for s in f["label_names"].tolist()] if "label_names" in files else None
        if "lossy" in files:
            prov["lossy"] = bool(f["lossy"])
        if "source_note" in files:
            prov["source_note"] = str(f["source_note"])
    ds = ImageDataset(name, images, labels, prov, label_names)
    _CACHE[key] = ds
    return ds


# -- CIFAR pickled batches (torchvision layout) ----------------------------------------------------


# the only globals a CIFAR python batch needs: numpy arrays (and Python 3's bytes via _codecs)
SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, strings, numbers and numpy arrays; any other global (a function to call,
    a class to build) is refused, so a hostile file in a data root cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays are allowed)")


def _unpickle(path: Path, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="bytes").load()
    except Exception as exc:
        raise GbenchError(f"{what}: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise GbenchError(f"{what}: {path} is not a pickled CIFAR batch (got {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batches(paths: list[Path], label_key: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in paths:
        d = _unpickle(path, what)
        if "data" not in d or label_key not in d:
            raise GbenchError(f"{what}: {path} lacks 'data' or '{label_key}' (has: {', '.join(map(str, d))})")
        x = np.asarray(d["data"])
        y = np.asarray(d[label_key], dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
            raise GbenchError(f"{what}: {path} 'data' must be uint8 (N, 3072) with N labels, "
                              f"got {x.dtype} {x.shape} and {len(y)} labels")
        xs.append(x.reshape(-1, 3, 32, 32))  # each row: R plane, G plane, B plane, 32x32 row-major
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_files(name: str, base: Path) -> dict[str, list[Path]]:
    spec = _CIFAR[name]
    return {s: [base / spec["dir"] / f for f in spec[s]] for s in SPLITS}


def _load_cifar_pickles(name: str, base: Path) -> ImageDataset:
    spec = _CIFAR[name]
    folder = (base / spec["dir"]).resolve()
    files = _cifar_files(name, base)
    stamps = tuple(_stamp(p) for s in SPLITS for p in files[s])
    key = ("cifar", name, str(folder), stamps)
    if key in _CACHE:
        return _CACHE[key]
    images, labels = {}, {}
    for s in SPLITS:
        images[s], labels[s] = _read_batches(files[s], spec["labels"].decode(), name)
    meta_file, meta_key = spec["meta"]
    label_names = None
    if (folder / meta_file).is_file():
        meta = _unpickle(folder / meta_file, name)
        names = meta.get(meta_key.decode())
        if names is not None:
            label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    prov = {
        "source": str(folder),
        "format": "cifar-python",
        "files": {p.name: {"bytes": p.stat().st_size, "mtime": p.stat().st_mtime} for s in SPLITS for p in files[s]},
        "lossy": False,
    }
    ds = ImageDataset(name, images, labels, prov, label_names)
    _CACHE[key] = ds
    return ds


def _torchvision_datasets() -> Any:
    import torchvision.datasets

    return torchvision.datasets


def _download(name: str, base: Path) -> None:
    """Fetch the torchvision layout into ``base`` (only when the user asked: options.download = true)."""
    try:
        cls = getattr(_torchvision_datasets(), _CIFAR[name]["tv"])
        base.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(base), train=train, download=True)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise GbenchError(f"{name}: download into {base} failed ({type(exc).__name__}: {msg}); "
                          f"offline? put the torchvision layout there or give options.npz / options.folder") from None


def load_cifar(
    name: str,
    root: str | os.PathLike | None = None,
    npz: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    download: bool = False,
) -> ImageDataset:
    """CIFAR-10 or CIFAR-100, train and test: from ``npz``, else ``folder``, else ``<root>/<torchvision layout>``."""
    if name not in _CIFAR:
        raise GbenchError(f"unknown CIFAR dataset {name!r} (known: {', '.join(_CIFAR)})")
    how = (f"give [dataset] options.root or {DATA_ROOT_ENV} pointing at the torchvision layout, "
           f"options.npz = '{name}.npz', options.folder = 'DIR', or options.download = true when online")
    if npz:
        found, tried = _resolve_user_path(npz, root)
        if found is None or not found.is_file():
            raise GbenchError(f"{name}: no npz file at {' or '.join(map(str, tried))} ({how})")
        return load_npz(found, name)
    if folder:
        found, tried = _resolve_user_path(folder, root)
        if found is None or not found.is_dir():
            raise GbenchError(f"{name}: no image folder at {' or '.join(map(str, tried))} ({how})")
        return load_image_folder(found, name)
    base = data_root(root)
    files = _cifar_files(name, base)
    missing = [p for s in SPLITS for p in files[s] if not p.is_file()]
    if missing and download:
        _download(name, base)
        missing = [p for s in SPLITS for p in files[s] if not p.is_file()]
    if missing:
        where = base / _CIFAR[name]["dir"]
        detail = "" if len(missing) == len(files["train"]) + len(files["test"]) else f" (missing {missing[0].name})"
        raise GbenchError(f"{name}: no data at {where}{detail} ({how})")
    return _load_cifar_pickles(name, base)


# -- folders of images -----------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_folder(folder: str | os.PathLike, name: str | None = None) -> ImageDataset:
    """Images under ``folder``: ``train/`` and ``test/`` if ``train/`` exists, else all of them as train.

    The first-level subfolder of a split is the class (labels sorted by class name); images must
    all have one size; they are converted to RGB.
    """
    from PIL import Image

    root = Path(folder).expanduser().resolve()
    name = name or root.name
    if not root.is_dir():
        raise GbenchError(f"{name}: no image folder at {root}")
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()} if (root / "train").is_dir() else {"train": root}
    files = {s: _image_files(d) for s, d in split_dirs.items()}
    if not files["train"]:
        raise GbenchError(f"{name}: no images ({', '.join(IMAGE_SUFFIXES)}) under {split_dirs['train']}")
    files = {s: f for s, f in files.items() if f}
    stamps = tuple((str(p), *_stamp(p)) for s in files for p in files[s])
    key = ("folder", str(root), name, hashlib.sha256(repr(stamps).encode()).hexdigest())
    if key in _CACHE:
        return _CACHE[key]

    def cls_of(split: str, p: Path) -> str | None:
        rel = p.relative_to(split_dirs[split]).parts
        return rel[0] if len(rel) > 1 else None

    classes = sorted({c for s in files for p in files[s] if (c := cls_of(s, p)) is not None})
    index = {c: i for i, c in enumerate(classes)}
    images, labels, size = {}, {}, None
    for s, paths in files.items():
        arr = None
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    if size is None:
                        size, first = im.size, p
                    if im.size != size:
                        raise GbenchError(f"{name}: {p} is {im.size[0]}x{im.size[1]}, but {first} is "
                                          f"{size[0]}x{size[1]} (all images must have one size)")
                    if arr is None:
                        arr = np.empty((len(paths), size[1], size[0], 3), np.uint8)
                    arr[i] = np.asarray(im)
            except GbenchError:
                raise
            except Exception as exc:
                raise GbenchError(f"{name}: cannot read image {p} ({type(exc).__name__}: {exc})") from None
        images[s] = arr.transpose(0, 3, 1, 2)
        labels[s] = np.array([index.get(cls_of(s, p), -1) for p in paths], np.int64) if classes else None
    suffixes = sorted({p.suffix.lower() for s in files for p in files[s]})
    prov = {
        "source": str(root),
        "format": "image-folder",
        "file_types": suffixes,
        "lossy": any(x in LOSSY_SUFFIXES for x in suffixes),
    }
    ds = ImageDataset(name, images, labels, prov, classes or None)
    _CACHE[key] = ds
    return ds


# -- synthetic -------------------------------------------------------------------------------------

SYNTHETIC_CLASSES = ("disc", "square", "ring", "cross")


def _synthetic_split(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = len(SYNTHETIC_CLASSES)
    y = rng.integers(0, k, n)
    bg = rng.integers(0, 96, (n, 3, 1, 1), dtype=np.uint8)  # dark plain backgrounds
    fg = rng.integers(128, 256, (n, 3, 1, 1), dtype=np.uint8)  # bright shapes
    cy, cx = rng.uniform(0.3, 0.7, (2, n, 1, 1)).astype(np.float32) * size
    r = rng.uniform(0.15, 0.3, (n, 1, 1)).astype(np.float32) * size
    noise = rng.integers(0, 17, (n, 3, size, size), dtype=np.uint8)  # a little texture, +-8
    grid = np.arange(size, dtype=np.float32) + 0.5
    mask = np.empty((n, size, size), bool)
    for c in range(k):
        i = np.flatnonzero(y == c)
        dy, dx, rc = grid[None, :, None] - cy[i], grid[None, None, :] - cx[i], r[i]
        ady, adx = np.abs(dy), np.abs(dx)
        if c == 0:  # disc
            m = dy * dy + dx * dx <= rc * rc
        elif c == 1:  # square
            m = (ady <= 0.85 * rc) & (adx <= 0.85 * rc)
        elif c == 2:  # ring
            d2 = dy * dy + dx * dx
            m = (d2 <= rc * rc) & (d2 >= (0.55 * rc) ** 2)
        else:  # cross
            m = ((ady <= 0.3 * rc) | (adx <= 0.3 * rc)) & (ady <= rc) & (adx <= rc)
        mask[i] = m
    x = np.where(mask[:, None], fg, bg)
    x = np.clip(x.astype(np.int16) + noise - 8, 0, 255).astype(np.uint8)
    return x, y


_SYNTH: dict[tuple, ImageDataset] = {}


def synthetic_images(n_train: int = 2048, n_test: int = 512, size: int = 32, seed: int = 0) -> ImageDataset:
    """"synthetic32": bright discs, squares, rings and crosses on dark plain backgrounds (4 classes).

    Deterministic in ``seed``; train and test come from independent streams, so ``n_test`` does
    not change the train images. Made for CI: no files, a few milliseconds to generate.
    """
    if n_train <= 0 or n_test < 0 or size < 8:
        raise GbenchError(f"synthetic32: need n_train > 0, n_test >= 0 and size >= 8, got {n_train}, {n_test}, {size}")
    key = (n_train, n_test, size, seed)
    if key not in _SYNTH:
        train_ss, test_ss = np.random.SeedSequence([seed, 32]).spawn(2)
        images, labels = {}, {}
        images["train"], labels["train"] = _synthetic_split(n_train, size, np.random.default_rng(train_ss))
        if n_test:
            images["test"], labels["test"] = _synthetic_split(n_test, size, np.random.default_rng(test_ss))
        prov = {"source": "generated", "format": "synthetic", "seed": seed, "size": size, "lossy": False}
        name = "synthetic32" if size == 32 else f"synthetic{size}"
        _SYNTH[key] = ImageDataset(name, images, labels, prov, SYNTHETIC_CLASSES)
    return _SYNTH[key]


# -- registration ----------------------------------------------------------------------------------


def cifar10(root: str | None = None, npz: str | None = None, folder: str | None = None,
            download: bool = False) -> ImageDataset:
    return load_cifar("cifar10", root=root, npz=npz, folder=folder, download=download)


def cifar100(root: str | None = None, npz: str | None = None, folder: str | None = None,
             download: bool = False) -> ImageDataset:
    return load_cifar("cifar100", root=root, npz=npz, folder=folder, download=download)


def image_folder(folder: str, name: str | None = None) -> ImageDataset:
    return load_image_folder(folder, name)


def synthetic32(n_train: int = 2048, n_test: int = 512, seed: int = 0) -> ImageDataset:
    return synthetic_images(n_train=n_train, n_test=n_test, size=32, seed=seed)


@hookimpl
def register_datasets(register) -> None:
    register("cifar10", cifar10, description="CIFAR-10 32x32, 50k train / 10k test (torchvision layout, .npz or folder)")
    register("cifar100", cifar100, description="CIFAR-100 32x32 fine labels, 50k train / 10k test (torchvision layout, .npz or folder)")
    register("image-folder", image_folder, description="a folder of same-size images (train/ and test/ if present)")
    register("synthetic32", synthetic32, description="generated 32x32 shapes on plain backgrounds, 4 classes (CI smoke)")
