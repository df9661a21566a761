"""TensorBoard observer: losses, metrics and sample images of each trial, through the observer hooks.

``gbench run SUITE --tensorboard`` registers a :class:`TensorBoardObserver` for that run; it writes one
event directory per trial, ``<run_dir>/tensorboard/<trial_id>/``::

    tensorboard --logdir <run_dir>/tensorboard

- ``loss/d_loss``, ``loss/g_loss``: the mean losses of each logging window (the result's loss curve);
- ``metrics/<key>``: every finite metric at each evaluation, at its G step;
- ``samples``: at each evaluation, toys as a scatter plot (256 x 256, rendered with numpy; axes at 0,
  the same square box at every step of a trial, set by its first evaluation), images as an 8-wide
  grid of up to 64 samples;
- ``trial`` (text): the variant, seed and settings at the start, the status and budget used at the end.

It needs the optional extra ``pip install 'gbench[tensorboard]'``. It only reads what the hooks pass;
a trial's numbers are the same with and without it.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gbench.errors import GbenchError
from gbench.hookspecs import hookimpl

MISSING = "--tensorboard needs the tensorboard package: pip install 'gbench[tensorboard]'"
SUBDIR = "tensorboard"
SCATTER_PX = 256
GRID_IMAGES = 64


def summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError naming tensorboard when it is missing
        raise GbenchError(MISSING) from None
    return SummaryWriter


class TensorBoardObserver:
    """Writes each trial's events under ``<run_dir>/tensorboard/<trial_id>/``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir) / SUBDIR
        self._writer_class = summary_writer_class()
        self._writers: dict[str, Any] = {}
        self._bounds: dict[str, float] = {}

    def writer(self, trial_id: str) -> Any:
        if trial_id not in self._writers:
            self._writers[trial_id] = self._writer_class(log_dir=str(self.root / trial_id))
        return self._writers[trial_id]

    @hookimpl
    def trial_started(self, trial_info: dict[str, Any]) -> None:
        info = {k: trial_info.get(k) for k in ("suite", "suite_hash", "variant", "label", "seed", "budget",
                                               "dataset", "model", "optim", "protocol")}
        self.writer(trial_info["trial_id"]).add_text("trial", _code(info), 0)

    @hookimpl
    def log_scalars(self, trial_id: str, g_step: int, scalars: dict[str, float]) -> None:
        w = self.writer(trial_id)
        for key, value in scalars.items():
            w.add_scalar(f"loss/{key}", value, g_step)

    @hookimpl
    def evaluated(self, trial_id: str, g_step: int, metrics: dict[str, float], samples: Any) -> None:
        w = self.writer(trial_id)
        for key, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) and math.isfinite(value):
                w.add_scalar(f"metrics/{key}", value, g_step)
        if samples is None:
            return
        x = np.asarray(samples)
        if x.ndim == 2 and x.shape[1] == 2:
            bound = self._bounds.setdefault(trial_id, scatter_bound(x))
            w.add_image("samples", scatter_image(x, bound), g_step, dataformats="HWC")
        elif x.ndim == 4:
            import torch
            from torchvision.utils import make_grid

            grid = make_grid(torch.from_numpy(np.array(x[:GRID_IMAGES])), nrow=8, padding=2)
            w.add_image("samples", grid, g_step, dataformats="CHW")
        w.flush()

    @hookimpl
    def trial_finished(self, trial_id: str, result: dict[str, Any]) -> None:
        w = self.writer(trial_id)
        end = {k: result.get(k) for k in ("status", "error", "diverged_at", "consumed", "metrics")}
        w.add_text("trial", _code(end), int((result.get("consumed") or {}).get("g_steps") or 0))
        w.close()
        self._writers.pop(trial_id, None)
        self._bounds.pop(trial_id, None)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()


@contextmanager
def enabled(run_dir: str | Path) -> Iterator[TensorBoardObserver]:
    """Register a :class:`TensorBoardObserver` for ``run_dir`` with the plugin manager for the
    duration of the block (what ``gbench run --tensorboard`` does around the run)."""
    from gbench.plugins import get_plugins

    observer = TensorBoardObserver(run_dir)
    pm = get_plugins().manager
    pm.register(observer, name=f"tensorboard:{run_dir}")
    try:
        yield observer
    finally:
        pm.unregister(observer)
        observer.close()


def scatter_bound(x: np.ndarray) -> float:
    """Half-width of the square box a trial's scatter plots use: 1.2 x the 99.5% quantile of |x|,
    at least 1.5 (the 8-Gaussian ring has radius 1)."""
    finite = np.abs(x[np.isfinite(x).all(1)])
    q = float(np.quantile(finite, 0.995)) if finite.size else 1.0
    return max(1.5, 1.2 * q)


def scatter_image(x: np.ndarray, bound: float, size: int = SCATTER_PX) -> np.ndarray:
    """An RGB uint8 ``(size, size, 3)`` scatter plot of points ``x`` (N, 2) in [-bound, bound]^2."""
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    mid = size // 2
    img[mid, :] = img[:, mid] = (200, 200, 200)  # axes at 0
    x = x[np.isfinite(x).all(1)]
    px = np.round((x[:, 0] + bound) / (2 * bound) * (size - 1)).astype(int)
    py = np.round((bound - x[:, 1]) / (2 * bound) * (size - 1)).astype(int)  # y up
    inside = (px >= 0) & (px < size - 1) & (py >= 0) & (py < size - 1)
    px, py = px[inside], py[inside]
    for dx in (0, 1):  # 2 x 2 dots
        for dy in (0, 1):
            img[py + dy, px + dx] = (31, 119, 180)
    return img


def _code(obj: Any) -> str:
    """JSON as a Markdown code block (TensorBoard renders text as Markdown)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return "\n".join("    " + line for line in text.splitlines())
