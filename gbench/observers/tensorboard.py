"""TensorBoard observer: losses, metrics, sample images and HParams of each trial, through the observer hooks.

``gbench run SUITE --tensorboard`` (any executor, batched groups too) makes every trial write its own
event directory, ``<run_dir>/tensorboard/<trial_id>/``, from the process that trains it (a run
observer, ``gbench.observers.run_observers``)::

    tensorboard --logdir <run_dir>/tensorboard

- ``loss/d_loss``, ``loss/g_loss``: the mean losses of each logging window (the result's loss curve,
  every ``[eval] log_every`` G steps);
- ``metrics/<key>``: every finite metric at each evaluation, at its G step;
- ``samples``: at each evaluation, toys as a scatter plot over the data's modes (black crosses, with
  their 3-sigma circles) with labelled axes, in the same window at every step of a trial (the modes'
  box, widened to the samples of the first evaluation; samples outside it are counted in the title),
  images as an 8-wide grid of up to 64 samples (``torchvision.utils.make_grid``);
- HParams: at the end of a trial its variant, label, seed, variant settings and optimiser settings,
  with its final metrics (``metrics/<key>``), so TensorBoard's HParams view compares variants;
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
        self._windows: dict[str, tuple[float, float, float, float]] = {}
        self._laws: dict[str, Any] = {}

    def writer(self, trial_id: str) -> Any:
        if trial_id not in self._writers:
            self._writers[trial_id] = self._writer_class(log_dir=str(self.root / trial_id))
        return self._writers[trial_id]

    @hookimpl
    def trial_started(self, trial_info: dict[str, Any]) -> None:
        info = {k: trial_info.get(k) for k in ("suite", "suite_hash", "variant", "label", "seed", "budget",
                                               "dataset", "model", "optim", "protocol")}
        from gbench.analysis.plots import toy_law

        self._laws[trial_info["trial_id"]] = toy_law(trial_info.get("dataset") or {})
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
            law = self._laws.get(trial_id)
            window = self._windows.setdefault(trial_id, sample_window(law, x))
            w.add_image("samples", scatter_figure(x, law, window, f"G step {g_step}"), g_step, dataformats="HWC")
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
        write_hparams(w, result)
        w.close()
        self._writers.pop(trial_id, None)
        self._windows.pop(trial_id, None)
        self._laws.pop(trial_id, None)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()


def hparams_of(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(hyper-parameters, final metrics) of a trial for TensorBoard's HParams view: variant, label, seed,
    status, ``variant.<setting>`` and ``optim.<setting>`` (values TensorBoard can show: numbers, text,
    booleans; anything else as JSON text); the finite final metrics under their scalar tags ``metrics/<key>``."""
    from gbench.analysis.layer import flatten

    values: dict[str, Any] = {k: result.get(k) for k in ("variant", "label", "seed", "status")}
    flatten("variant", result.get("variant_config") or {}, values)
    flatten("optim", result.get("optim") or {}, values)
    hparams = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
               for k, v in values.items()}
    metrics = {f"metrics/{k}": float(v) for k, v in sorted((result.get("metrics") or {}).items())
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return hparams, metrics


def write_hparams(writer: Any, result: dict[str, Any]) -> None:
    """The trial's HParams session into its own event file (the metrics are its ``metrics/*`` scalars)."""
    from torch.utils.tensorboard.summary import hparams

    hp, metrics = hparams_of(result)
    file_writer = writer._get_file_writer()  # the trial's own run directory, not a timestamped subfolder
    for summary in hparams(hp, metrics):
        file_writer.add_summary(summary)


@contextmanager
def enabled(run_dir: str | Path) -> Iterator[None]:
    """Turn the TensorBoard run observer on for the block (what ``gbench run --tensorboard`` does around
    the run); raises :class:`GbenchError` at once if the tensorboard package is missing."""
    import os

    from gbench.observers import TENSORBOARD_ENV

    summary_writer_class()
    before = os.environ.get(TENSORBOARD_ENV)
    os.environ[TENSORBOARD_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TENSORBOARD_ENV, None)
        else:
            os.environ[TENSORBOARD_ENV] = before


def sample_window(law: Any, x: np.ndarray) -> tuple[float, float, float, float]:
    """The square window of a trial's scatter plots: the modes' box (:func:`gbench.analysis.plots.window`)
    widened to hold 99.5 % of the first evaluation's samples."""
    from gbench.analysis.plots import window

    return window(law, [x])


def scatter_figure(x: np.ndarray, law: Any, window: tuple[float, float, float, float], title: str,
                   size: int = SCATTER_PX) -> np.ndarray:
    """An RGB uint8 ``(size, size, 3)`` picture: samples ``x`` (blue) over the law's modes (black crosses,
    3-sigma circles), labelled axes, the number of samples outside the window in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x0, x1, y0, y1 = window
    x = x[np.isfinite(x).all(1)]
    outside = int(np.sum((x[:, 0] < x0) | (x[:, 0] > x1) | (x[:, 1] < y0) | (x[:, 1] > y1)))
    ax.scatter(x[:, 0], x[:, 1], s=1.5, c="#1f77b4", alpha=0.5, linewidths=0)
    if law is not None and hasattr(law, "means"):
        means = np.asarray(law.means, dtype=float)
        sig = np.broadcast_to(np.asarray(law.sigmas, dtype=float).reshape(-1), (len(means),))
        ax.scatter(means[:, 0], means[:, 1], marker="x", s=14, c="black", linewidths=0.8)
        from matplotlib.patches import Circle

        for (mx, my), sd in zip(means, sig):
            ax.add_patch(Circle((mx, my), 3 * sd, fill=False, lw=0.5, ec="0.3"))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=5, length=2, pad=1)
    ax.set_xlabel("x₁", fontsize=6, labelpad=1)
    ax.set_ylabel("x₂", fontsize=6, labelpad=1)
    ax.set_title(title + (f" · {outside} outside" if outside else ""), fontsize=6, pad=2)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def _code(obj: Any) -> str:
    """JSON as a Markdown code block (TensorBoard renders text as Markdown)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return "\n".join("    " + line for line in text.splitlines())
