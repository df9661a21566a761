"""Training dynamics and evolution figures of a run, from its result files and saved samples.

* :func:`loss_curves_figure`: D and G losses against G steps, one panel per variant, one thin line per
  seed (the result's ``loss_curve``: the mean losses of each ``[eval] log_every`` window);
* :func:`evolution_figure`: one row per variant (its first seed), one column per evaluation point, a
  real-data panel first; toys as samples over the data's modes, images as grids
  (``torchvision.utils.make_grid``); each panel titled with that evaluation's metrics;
* :func:`forest_figure`: the differences of each variant from the best one on the primary metric,
  with the 95% intervals and Holm-adjusted significance of ``gbench compare`` (Cumming 2014, "The New
  Statistics": estimation with intervals rather than only p-values).

As in :mod:`gbench.analysis.plots`, figures are ``matplotlib.figure.Figure`` objects (no pyplot).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gbench.analysis.layer import group_by_label, headline
from gbench.datasets.samples import evolution_files
from gbench.metrics import direction

SIDE = 2.3  # inches per evolution panel


def _plain(text: str) -> str:
    return str(text).replace("$", r"\$")


def loss_curves_figure(manifest: dict[str, Any], results: list[dict[str, Any]]) -> Figure | None:
    """D (solid) and G (dashed) mean losses per logging window, a panel per variant, a thin line per seed."""
    groups = {label: [r for r in g if r.get("loss_curve")]
              for label, g in group_by_label(results, manifest.get("variants", ())).items()}
    groups = {label: g for label, g in groups.items() if g}
    if not groups:
        return None
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = Figure(figsize=(cols * 4.0, rows * 2.8 + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (label, group) in zip(axes, groups.items()):
        for i, r in enumerate(group):
            steps = [p["g_step"] for p in r["loss_curve"]]
            for key, style, color in (("d_loss", "-", "C0"), ("g_loss", "--", "C3")):
                ax.plot(steps, [p.get(key, np.nan) for p in r["loss_curve"]], style, color=color, lw=0.9, alpha=0.8,
                        label=(f"{key[0].upper()} loss" if i == 0 else None))
        every = _interval(group[0]["loss_curve"])
        ax.set_title(_plain(f"{label} ({len(group)} seed{'s' if len(group) > 1 else ''})"), fontsize=9)
        ax.set_xlabel("G step" + (f" (mean of each {every}-step window)" if every else ""), fontsize=7)
        ax.set_ylabel("loss (the variant's own objective)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(groups):]:
        fig.delaxes(ax)
    fig.suptitle("Losses during training: D solid, G dashed, one line per seed", fontsize=10)
    return fig


def _interval(curve: list[dict[str, Any]]) -> int | None:
    steps = [p["g_step"] for p in curve]
    gaps = np.diff(steps)
    return int(np.median(gaps)) if len(gaps) else None


def _short_metrics(metrics: dict[str, Any]) -> str:
    text = headline(metrics)
    return text.replace(" bits", "").replace(", modes", "\nmodes", 1) if text else "no metrics"


def evolution_figure(run_dir: str | Path, manifest: dict[str, Any], results: list[dict[str, Any]]) -> Figure | None:
    """Samples at every evaluation point: a row per variant (first ok seed), a column per evaluation."""
    from gbench.analysis.plots import toy_law, window

    rows = []
    for label, group in group_by_label(results, manifest.get("variants", ())).items():
        r = next((r for r in group if evolution_files(run_dir, r["trial_id"])), None)
        if r is not None:
            rows.append((label, r, evolution_files(run_dir, r["trial_id"])))
    if not rows:
        return None
    steps = sorted({s for _, _, files in rows for s in files})
    kind = rows[0][1].get("data_kind", "toy")
    law = toy_law(rows[0][1].get("dataset") or {}) if kind == "toy" else None
    loaded = {(label, s): np.load(path, allow_pickle=False) for label, _, files in rows for s, path in files.items()}
    cols = len(steps) + 1
    fig = Figure(figsize=(cols * SIDE, len(rows) * (SIDE + 0.45) + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    if kind == "toy":
        box = window(law, list(loaded.values()))
    for i, (label, r, files) in enumerate(rows):
        evaluations = {e["g_step"]: e for e in r.get("evaluations") or ()}
        _real_panel(axes[i, 0], law, kind, r, run_dir, box if kind == "toy" else None)
        axes[i, 0].set_ylabel(_plain(f"{label}\nseed {r.get('seed')}"), fontsize=8)
        for j, s in enumerate(steps, start=1):
            ax = axes[i, j]
            x = loaded.get((label, s))
            if x is None:
                ax.text(0.5, 0.5, "not kept", ha="center", va="center", transform=ax.transAxes, fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            if kind == "toy":
                _toy_panel(ax, x, law, box)
            else:
                _grid_panel(ax, x)
            metrics = (evaluations.get(s) or {}).get("metrics") or {}
            ax.set_title(f"G step {s}\n{_short_metrics(metrics)}", fontsize=7)
    fig.suptitle("Sample evolution\neach variant at every evaluation (first seed); left: real data",
                 fontsize=10)
    return fig


def _toy_panel(ax: Any, x: np.ndarray, law: Any, box: tuple[float, float, float, float]) -> None:
    from gbench.analysis.plots import draw_modes, mark_outside

    draw_modes(ax, law)
    ax.scatter(x[:, 0], x[:, 1], s=1.5, c="#d62728", alpha=0.45, linewidths=0, rasterized=True)
    mark_outside(ax, x, box)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)


def _grid_panel(ax: Any, x: np.ndarray, n: int = 36) -> None:
    import torch
    from torchvision.utils import make_grid

    x = np.asarray(x[:n])
    grid = make_grid(torch.from_numpy(x), nrow=int(math.ceil(math.sqrt(len(x)))), padding=1, pad_value=255)
    picture = grid.permute(1, 2, 0).numpy()
    ax.imshow(picture[:, :, 0] if picture.shape[2] == 1 else picture, cmap="gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _real_panel(ax: Any, law: Any, kind: str, result: dict[str, Any], run_dir: str | Path,
                box: tuple[float, float, float, float] | None) -> None:
    """Real data beside the samples: toy draws from the law, or the first images of the training set."""
    import torch

    ax.set_title("real data", fontsize=7)
    if kind == "toy" and law is not None and box is not None:
        x = law.sample(2000, torch.Generator().manual_seed(0)).numpy()
        _toy_panel(ax, x, law, box)
        return
    if kind == "image":
        from gbench.run.trial import build_dataset
        from gbench.suite import DatasetSpec

        try:
            spec = result.get("dataset") or {}
            dataset = build_dataset(DatasetSpec(name=spec.get("name", ""), options=dict(spec.get("options") or {}),
                                                mixture=tuple(tuple(m) for m in spec.get("mixture") or ())))
            _grid_panel(ax, dataset.training_set(36, spec.get("seed", 1)).numpy())
            return
        except Exception:  # data not on this machine: say so instead of a picture
            pass
    ax.text(0.5, 0.5, "real data not available here", ha="center", va="center", transform=ax.transAxes, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def forest_figure(comparison: Any, key: str) -> Figure | None:
    """Differences from the best group on metric ``key`` (A = each other group, B = the best), 95%
    intervals; filled markers: significant after Holm."""
    metric = next((m for m in comparison.metrics if m.key == key), None)
    if metric is None or metric.direction is None:
        return None
    # the best: first rank, and within it the best mean (ties in rank are common with few seeds)
    ranked = sorted((s["rank"], -metric.direction * s["mean"], name) for name, s in metric.summaries.items()
                    if s["rank"] is not None and s["mean"] is not None)
    if len(ranked) < 2:
        return None
    best = ranked[0][2]
    rows = []
    for _, _, name in ranked[1:]:
        pair = next(p for p in metric.pairs if {p.a, p.b} == {name, best})
        sign = 1 if pair.a == name else -1  # other - best
        low, high = (None, None) if pair.ci_low is None else sorted((sign * pair.ci_low, sign * pair.ci_high))
        rows.append((name, sign * pair.diff if pair.diff is not None else None, low, high, pair.significant))
    fig = Figure(figsize=(6.4, 0.5 * len(rows) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for y, (name, diff, low, high, significant) in enumerate(rows):
        if diff is None:
            continue
        if low is not None:
            ax.plot([low, high], [y, y], color="C0", lw=2)
        ax.plot([diff], [y], "o", color="C0", markersize=7, markerfacecolor="C0" if significant else "white")
    ax.axvline(0, color="0.4", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [_plain(r[0]) for r in rows], fontsize=8)
    ax.invert_yaxis()
    worse = "higher = worse" if direction(key) == -1 else "lower = worse"
    ax.set_xlabel(f"{key}: group − {best} (95% CI; {worse})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(_plain(f"Difference from the best variant ({best}) on {key}\nfilled: significant after Holm"),
                 fontsize=9)
    return fig
