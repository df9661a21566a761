"""Reading samples produced outside gbench, for ``gbench score``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gbench.errors import GbenchError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def load_samples(path: Path, dataset: Any) -> np.ndarray:
    """Samples shaped for ``dataset``: float (N, 2) for toys, uint8 (N, 3, H, W) for images."""
    if dataset.kind == "image":
        return _images(path, tuple(dataset.data_shape))
    x = _array(path)
    shape = tuple(dataset.data_shape)
    if x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise GbenchError(f"{path}: expected an array of shape N x {' x '.join(map(str, shape))}, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise GbenchError(f"{path}: samples must be finite numbers")
    return x.astype(np.float64)


def _array(path: Path) -> np.ndarray:
    """The array in an .npy (memory-mapped first, so a header that claims more data than the file
    holds is an error, not an allocation) or in an .npz; never unpickled."""
    try:
        data = np.load(path, allow_pickle=False, mmap_mode="r")
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                keys = [k for k in ("x", "samples", "images") if k in data.files] or data.files[:1]
                if not keys:
                    raise GbenchError(f"{path}: the .npz holds no arrays")
                return data[keys[0]]
        return np.array(data)
    except FileNotFoundError:
        raise GbenchError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        raise GbenchError(f"{path}: not a readable .npy/.npz array ({type(exc).__name__}: {exc})") from None


def _images(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GbenchError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    else:
        x = _array(path)
    if x.dtype != np.uint8:
        raise GbenchError(f"{path}: image samples must be uint8 pixels, got {x.dtype}")
    c, h, w = shape
    if x.ndim == 4 and x.shape[1:] == (h, w, c):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1:] != (c, h, w) or len(x) == 0:
        raise GbenchError(f"{path}: expected images of shape N x {c} x {h} x {w} (or N x {h} x {w} x {c}), got {x.shape}")
    return np.ascontiguousarray(x)


# -- the samples of every evaluation of a trial, for the report's sample evolution ----------------------

EVOLUTION = "samples"  # under the run directory: samples/<trial_id>/step<G step>.npy


class EvolutionKeeper:
    """A run observer (``gbench.observers.run_observers``) that saves the kept samples of every evaluation
    (``gbench.run.trial.KEPT_SAMPLES``: 2000 toy points or 64 images) as ``<run_dir>/samples/<trial_id>/
    step<G step>.npy``, written atomically by the process that runs the trial."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def evaluated(self, trial_id: str, g_step: int, metrics: dict[str, float], samples: Any) -> None:
        if samples is None:
            return
        from gbench.atomic import write_atomic

        path = self.run_dir / EVOLUTION / trial_id / f"step{int(g_step)}.npy"
        write_atomic(path, lambda f: np.save(f, np.asarray(samples), allow_pickle=False), binary=True)


def evolution_files(run_dir: str | Path, trial_id: str) -> dict[int, Path]:
    """G step -> saved samples file of each evaluation of ``trial_id`` (empty if none was kept)."""
    folder = Path(run_dir) / EVOLUTION / trial_id
    out = {}
    for path in folder.glob("step*.npy") if folder.is_dir() else ():
        try:
            out[int(path.stem[4:])] = path
        except ValueError:
            continue
    return dict(sorted(out.items()))
