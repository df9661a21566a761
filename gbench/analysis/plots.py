"""Figures of a run, made with matplotlib from its result files and saved samples; nothing is recomputed.

Each builder returns a :class:`matplotlib.figure.Figure`, or None when the plot does not apply to the
run (no toy plot for an image run, no δ plot without a δ-controlled GAN, ...):

* :func:`toy_samples_figure`: the final evaluation's saved samples over the exact data log-density
  (rebuilt from the result's dataset spec), one panel per variant and seed;
* :func:`image_grid_figure`: an 8 x 8 grid of the final evaluation's saved images per variant and seed;
* :func:`metric_curves_figure`: each table metric against the G steps consumed, one line per variant
  (mean over seeds, band from min to max);
* :func:`delta_figure`: the δ-controlled GAN's achieved JSD(p, p_g) and its training stream's
  JSD(p, p_δ) against the target δ, with the line y = x.

Figures are built with ``matplotlib.figure.Figure`` and never through pyplot, so they render with the
Agg canvas whatever the process's backend is, change no global state, and need no display.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from matplotlib.figure import Figure

from gbench.analysis.layer import group_by_label, headline
from gbench.analysis.report import METRIC_COLUMNS, summarise
from gbench.metrics import direction

PANEL = 2.6  # inches per sample panel
SAMPLE_COLOR = "#d62728"


@dataclass
class Plot:
    """A figure with the words that go with it (file stem, heading, caption / alt text)."""

    name: str
    title: str
    caption: str
    figure: Figure


# -- helpers -------------------------------------------------------------------------------------------


def _labels(manifest: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """Variant labels in the suite's order, then any others the results name."""
    return list(group_by_label(results, manifest.get("variants") or ()))


def _colors(labels: Iterable[str]) -> dict[str, str]:
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def _trials(manifest: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results ordered by variant (suite order) then seed."""
    rank = {label: i for i, label in enumerate(_labels(manifest, results))}
    return sorted(results, key=lambda r: (rank.get(r.get("label"), len(rank)), r.get("seed", 0)))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_trial_samples(run_dir: str | Path, result: dict[str, Any]) -> np.ndarray | None:
    """The samples saved with a trial (``samples_file``, relative to the run directory), or None."""
    rel = result.get("samples_file")
    if not rel:
        return None
    path = Path(run_dir) / rel
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def _plain(text: str) -> str:
    """Text from results shown as written: a ``$`` would otherwise start matplotlib's mathtext."""
    return str(text).replace("$", r"\$")


def _why_no_samples(result: dict[str, Any]) -> str:
    status = result.get("status", "?")
    if status == "failed":
        return "failed:\n" + _wrap(str(result.get("error") or ""), 34, 3)
    if status == "diverged":
        return f"diverged at G step {result.get('diverged_at')}"
    return "no saved samples"


def _wrap(text: str, width: int, lines: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:lines])


def _final_step(result: dict[str, Any]) -> Any:
    evaluations = result.get("evaluations") or []
    return evaluations[-1]["g_step"] if evaluations else (result.get("consumed") or {}).get("g_steps")


def _grid(n: int, n_seeds: int) -> tuple[int, int]:
    """(rows, cols): one column per seed, or, with one seed, variants wrapped four to a row."""
    cols = n_seeds if n_seeds > 1 else min(n, 4)
    return math.ceil(n / cols), cols


# -- toy samples over the data density -----------------------------------------------------------------


def toy_law(dataset: dict[str, Any]) -> Any:
    """The law samples were scored against, rebuilt from a result's ``dataset`` spec (None if it cannot be)."""
    from gbench.suite import DatasetSpec
    from gbench.run.trial import build_dataset, build_reference

    try:
        spec = DatasetSpec(
            name=dataset.get("name", ""),
            mixture=tuple((m[0], float(m[1]), dict(m[2] if len(m) > 2 else {})) for m in dataset.get("mixture") or ()),
            options=dict(dataset.get("options") or {}),
            reference=dataset.get("reference", ""),
            train_size=dataset.get("train_size", 0),
            seed=dataset.get("seed", 1),
        )
        law = build_reference(spec, build_dataset(spec))
    except Exception:  # a plugin dataset that is not installed here: plot the samples without the density
        return None
    return law if getattr(law, "kind", None) == "toy" and hasattr(law, "log_prob") else None


def window(law: Any, samples: list[np.ndarray]) -> tuple[float, float, float, float]:
    """A square window around the mixture's components, widened to hold 99.5 % of the ``samples`` (at most
    to 4 times the components' box, so one runaway trial does not shrink the data to a dot; samples
    outside are marked at the edge, :func:`mark_outside`). Without a law: around the samples."""
    pts = [s[np.isfinite(s).all(1)] for s in samples if len(s)]
    pts_all = np.concatenate(pts) if pts else np.zeros((0, 2))
    if law is not None and hasattr(law, "means"):
        means = np.asarray(law.means, dtype=float)
        sig = float(np.max(law.sigmas))
        lo, hi = means.min(0), means.max(0)
    else:
        lo, hi = (np.percentile(pts_all, 1, axis=0), np.percentile(pts_all, 99, axis=0)) if len(pts_all) \
            else (np.zeros(2), np.zeros(2))
        sig = 0.0
    center, half = (lo + hi) / 2, float(max(hi - lo) / 2)
    half = max(half * 1.3, half + 6 * sig, 0.5)
    if len(pts_all):
        reach = float(np.quantile(np.abs(pts_all - center).max(1), 0.995)) * 1.05
        half = min(max(half, reach), 4 * half)
    return center[0] - half, center[0] + half, center[1] - half, center[1] + half


def draw_modes(ax: Any, law: Any) -> None:
    """The law's components as black crosses with their 3-sigma circles (nothing without a law)."""
    if law is None or not hasattr(law, "means"):
        return
    from matplotlib.patches import Circle

    means = np.asarray(law.means, dtype=float)
    sig = np.broadcast_to(np.asarray(law.sigmas, dtype=float).reshape(-1), (len(means),))
    for (mx, my), sd in zip(means, sig):
        ax.add_patch(Circle((mx, my), 3 * sd, fill=False, lw=0.5, ec="0.25", zorder=3))
    ax.scatter(means[:, 0], means[:, 1], marker="x", s=12, c="black", linewidths=0.7, zorder=4)


def mark_outside(ax: Any, x: np.ndarray, box: tuple[float, float, float, float]) -> int:
    """Samples outside ``box`` drawn as small triangles on its edge where they left; returns their number."""
    x0, x1, y0, y1 = box
    x = x[np.isfinite(x).all(1)]
    out = (x[:, 0] < x0) | (x[:, 0] > x1) | (x[:, 1] < y0) | (x[:, 1] > y1)
    if out.any():
        ex, ey = np.clip(x[out, 0], x0, x1), np.clip(x[out, 1], y0, y1)
        ax.scatter(ex, ey, marker="^", s=10, c="#ff7f0e", linewidths=0, zorder=5, clip_on=False)
    return int(out.sum())


def toy_samples_figure(run_dir: str | Path, manifest: dict[str, Any], results: list[dict[str, Any]],
                       resolution: int = 300) -> Figure | None:
    """Saved toy samples (red) over the data log-density (blue), one panel per variant and seed."""
    trials = [r for r in _trials(manifest, results) if r.get("data_kind", "toy") == "toy"]
    if not trials:
        return None
    samples = {r["trial_id"]: load_trial_samples(run_dir, r) for r in trials}
    samples = {k: v for k, v in samples.items() if v is not None and v.ndim == 2 and v.shape[1] == 2}
    if not samples:
        return None
    law = toy_law(trials[0].get("dataset") or {})
    x0, x1, y0, y1 = window(law, list(samples.values()))
    n_seeds = len({r.get("seed") for r in trials})
    rows, cols = _grid(len(trials), n_seeds)
    fig = Figure(figsize=(cols * PANEL + (1.2 if law is not None else 0.3), rows * PANEL + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    image = None
    if law is not None:
        gx, gy = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
        xx, yy = np.meshgrid(gx, gy)
        logp = law.log_prob(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(resolution, resolution)
        top = float(np.max(logp))
        shown = np.clip(logp, top - 12.0, top)  # components as discs about 5 sigma wide
    for ax, r in zip(axes, trials):
        ax.set_title(_plain(f"{r.get('label')} · seed {r.get('seed')}"), fontsize=9)
        draw_modes(ax, law)
        if law is not None:
            image = ax.imshow(shown, origin="lower", extent=(x0, x1, y0, y1), cmap="Blues", vmin=top - 12.0,
                              vmax=top, interpolation="bilinear", aspect="equal")
        x = samples.get(r["trial_id"])
        if x is None:
            ax.text(0.5, 0.5, _plain(_why_no_samples(r)), transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="0.3")
        else:
            ax.scatter(x[:, 0], x[:, 1], s=2, c=SAMPLE_COLOR, alpha=0.5, linewidths=0, rasterized=True)
            outside = mark_outside(ax, x, (x0, x1, y0, y1))
            note = f"n = {len(x)} · G step {_final_step(r)}" + (f" · {outside} outside (▲)" if outside else "")
            note += "\n" + headline(r.get("metrics") or {})
            ax.text(0.01, 0.01, note, transform=ax.transAxes, ha="left", va="bottom", fontsize=6.5, zorder=5,
                    bbox={"boxstyle": "square,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    for i, ax in enumerate(axes):
        if i >= len(trials):
            ax.set_axis_off()
            continue
        if i % cols == 0:
            ax.set_ylabel("x₂", fontsize=8)
        if i // cols == rows - 1 or i + cols >= len(trials):  # the lowest panel of its column
            ax.set_xlabel("x₁", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
    if image is not None:
        bar = fig.colorbar(image, ax=axes[: len(trials)].tolist(), shrink=min(0.9, 2.0 / rows), pad=0.02)
        bar.set_label("data log-density log p(x) (nats, clipped 12 below max)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    where = (law.name if law is not None else (trials[0].get("dataset") or {}).get("name") or "data")
    fig.suptitle(f"Generated samples (red) over the data density (blue)\n{_plain(where)}, final evaluation",
                 fontsize=10)
    return fig


# -- image sample grids --------------------------------------------------------------------------------


def montage(images: np.ndarray, per_row: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """uint8 NCHW images as one (H', W', C) picture, ``per_row`` to a row, ``pad`` pixels between
    (``torchvision.utils.make_grid``)."""
    import torch
    from torchvision.utils import make_grid

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    grid = make_grid(torch.from_numpy(np.ascontiguousarray(images)), nrow=max(1, min(per_row, len(images))),
                     padding=pad, pad_value=fill)
    return grid.permute(1, 2, 0).numpy()[:, :, : images.shape[1]]


def image_grid_figure(run_dir: str | Path, manifest: dict[str, Any], results: list[dict[str, Any]],
                      per_trial: int = 64) -> Figure | None:
    """An 8 x 8 grid of each trial's saved images (the first ``per_trial``), one panel per variant and seed."""
    trials = [r for r in _trials(manifest, results) if r.get("data_kind") == "image"]
    samples = {r["trial_id"]: load_trial_samples(run_dir, r) for r in trials}
    samples = {k: v for k, v in samples.items() if v is not None and v.ndim == 4 and v.dtype == np.uint8}
    if not samples:
        return None
    n_seeds = len({r.get("seed") for r in trials})
    rows, cols = _grid(len(trials), n_seeds)
    side = 3.0
    fig = Figure(figsize=(max(cols * side + 0.3, 4.2), rows * (side + 0.3) + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, r in zip(axes, trials):
        ax.set_title(_plain(f"{r.get('label')} · seed {r.get('seed')}"), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        x = samples.get(r["trial_id"])
        if x is None:
            ax.text(0.5, 0.5, _plain(_why_no_samples(r)), transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="0.3")
            continue
        picture = montage(x[:per_trial], per_row=math.ceil(math.sqrt(min(per_trial, len(x)))))
        if picture.shape[2] == 1:
            ax.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(picture, interpolation="nearest")
        shown = headline(r.get("metrics") or {})
        ax.set_xlabel(f"{min(per_trial, len(x))} samples, G step {_final_step(r)}" + (f"\n{shown}" if shown else ""),
                      fontsize=7)
    for ax in axes[len(trials):]:
        ax.set_axis_off()
    fig.suptitle("Generated images, final evaluation\n(the first samples of the common evaluation noise)", fontsize=10)
    return fig


# -- metrics against budget consumed --------------------------------------------------------------------


def curve_metrics(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, title) of the table metrics that some evaluation recorded, in the table's order."""
    seen = {k for r in results for e in r.get("evaluations") or () for k, v in (e.get("metrics") or {}).items()
            if _finite(v)}
    return [(k, title) for k, title, _ in METRIC_COLUMNS if k in seen]


UNITS = {"modes": "components", "hq_percent": "% of samples", "reverse_kl": "nats", "jsd_bits": "bits"}


def axis_label(key: str, title: str) -> str:
    """``JSD (bits) ↓ lower is better``: the metric, its unit and its direction."""
    unit = UNITS.get(key)
    name = title if unit is None or unit in title else f"{title} ({unit})"
    way = {1: " ↑ higher is better", -1: " ↓ lower is better"}.get(direction(key) or 0, "")
    return name + way


def metric_curves_figure(manifest: dict[str, Any], results: list[dict[str, Any]]) -> Figure | None:
    """Small multiples: a row per metric, a column per variant; in each panel one thin line per seed and
    the mean over seeds (thick), the y axis shared along a row so variants compare at a glance."""
    metrics = curve_metrics(results)
    if not metrics:
        return None
    groups = group_by_label(results, manifest.get("variants") or ())
    colors = _colors(groups)
    budget = max((r.get("budget", {}).get("g_steps") or 0 for r in results), default=0) or None
    rows, cols = len(metrics), len(groups)
    fig = Figure(figsize=(max(4.0, cols * 2.6) + 0.8, rows * 2.1 + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey="row")
    for i, (key, title) in enumerate(metrics):
        for j, (label, group) in enumerate(groups.items()):
            ax = axes[i, j]
            by_step: dict[int, list[float]] = {}
            for r in group:
                points = [(e["g_step"], float(e["metrics"][key])) for e in r.get("evaluations") or ()
                          if _finite((e.get("metrics") or {}).get(key))]
                if points:
                    ax.plot(*zip(*points), color=colors[label], lw=0.7, alpha=0.55, marker=".", markersize=3)
                for step, v in points:
                    by_step.setdefault(step, []).append(v)
            if by_step:
                steps = sorted(by_step)
                ax.plot(steps, [float(np.mean(by_step[t])) for t in steps], color=colors[label], lw=2.2)
            if i == 0:
                ax.set_title(_plain(f"{label} ({len(group)} seed{'s' if len(group) > 1 else ''})"), fontsize=8)
            if j == 0:
                ax.set_ylabel(axis_label(key, title), fontsize=7)
            if i == rows - 1:
                ax.set_xlabel("G steps consumed", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.grid(True, alpha=0.3)
            if budget:
                ax.set_xlim(0, budget * 1.03)
    fig.suptitle("Metrics against budget consumed: a thin line per seed, thick: mean over seeds"
                 + (f" (budget {budget} G steps)" if budget else ""), fontsize=10)
    return fig


# -- delta-controlled GAN: achieved against target ------------------------------------------------------


def _interval(s: dict[str, Any], fallback: tuple[float, float] | None) -> tuple[float, float] | None:
    """(below, above) error-bar lengths: the t-interval over seeds, else the one trial's own interval."""
    if s["mean"] is None:
        return None
    if s["ci_low"] is not None and s["ci_high"] is not None:
        return s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]
    if fallback and all(_finite(v) for v in fallback):
        return max(0.0, s["mean"] - fallback[0]), max(0.0, fallback[1] - s["mean"])
    return 0.0, 0.0


def delta_figure(manifest: dict[str, Any], results: list[dict[str, Any]]) -> Figure | None:
    """Achieved JSD(p, p_g) and JSD(p, p_δ) against the target δ, with the line y = x."""
    rows = [row for row in summarise(results, manifest.get("variants", ())) if row["target"]]
    rows = [row for row in rows if row["target"]["achieved"]["mean"] is not None
            or row["target"]["jsd_p_pdelta"]["mean"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    deltas = [row["target"]["delta"] for row in rows]
    top = max(max(deltas) * (1.15 if len(set(deltas)) > 1 else 2.0), 0.05)  # one δ: room on both sides
    ax.plot([0, top], [0, top], color="0.4", ls="--", lw=1, label="y = x (on target)")
    labelled: set[str] = set()

    def once(name: str) -> str | None:
        if name in labelled:
            return None
        labelled.add(name)
        return name

    spread = 0.012 * top  # offsets so the markers of one δ do not hide each other
    for row in rows:
        t, delta = row["target"], row["target"]["delta"]
        trials = [r for r in results if r.get("label") == row["label"]]
        ok = [r for r in trials if r["status"] == "ok"]
        single = ok[0]["metrics"] if len(ok) == 1 else {}
        err = _interval(t["achieved"], (single.get("jsd_ci_low"), single.get("jsd_ci_high")) if single else None)
        if err is not None:
            ax.errorbar([delta], [t["achieved"]["mean"]], yerr=[[err[0]], [err[1]]], fmt="o", color="C3",
                        capsize=4, markersize=6, label=once("achieved JSD(p, p_g), 95% CI"))
            seeds = [r["metrics"].get("jsd_bits") for r in ok if _finite(r["metrics"].get("jsd_bits"))]
            if len(seeds) > 1:
                ax.scatter([delta + spread] * len(seeds), seeds, s=14, facecolors="none", edgecolors="C3",
                           linewidths=0.8, label=once("achieved, per seed"))
        targets = [r["target"] for r in trials if r.get("target")]
        one = targets[0] if len(targets) == 1 else {}
        err = _interval(t["jsd_p_pdelta"], tuple(one.get("jsd_p_pdelta_ci") or ()) or None)
        if err is not None:
            ax.errorbar([delta - spread], [t["jsd_p_pdelta"]["mean"]], yerr=[[err[0]], [err[1]]], fmt="s",
                        color="C0", capsize=4, markersize=5, label=once("JSD(p, p_δ) of the training stream"))
        err = _interval(t["jsd_pdelta_pg"], tuple(one.get("jsd_pdelta_pg_ci") or ()) or None)
        if err is not None:
            ax.errorbar([delta + 2 * spread], [t["jsd_pdelta_pg"]["mean"]], yerr=[[err[0]], [err[1]]], fmt="^",
                        color="C2", capsize=4, markersize=5, label=once("JSD(p_δ, p_g)"))
    # the unperturbed base variant(s), for scale
    bases = {(r.get("variant_config") or {}).get("base") for r in results if r.get("target")} - {None}
    for row in summarise(results, manifest.get("variants", ())):
        if row["target"] or row["variant"] not in bases:
            continue
        s = row["metrics"].get("jsd_bits")
        if s and s["mean"] is not None:
            ax.axhline(s["mean"], color="0.55", ls=":", lw=1.2, label=_plain(f"{row['label']} (no δ): achieved JSD"))
    ax.set_xlim(0, top)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.set_xlabel("target δ (bits)")
    ax.set_ylabel("JSD (bits)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    kinds = {r.get("data_kind", "toy") for r in results}
    how = "images: classifier lower bounds" if kinds == {"image"} else "toys: against the exact data density"
    ax.set_title(f"δ-controlled GAN: achieved against target JSD\n({how})", fontsize=10)
    return fig


# -- everything ----------------------------------------------------------------------------------------


def run_plots(run_dir: str | Path, manifest: dict[str, Any], results: list[dict[str, Any]]) -> list[Plot]:
    """Every plot that applies to the run, with a heading and a caption each."""
    from gbench.analysis.dynamics import evolution_figure, loss_curves_figure

    figures: list[tuple[str, str, str, Callable[[], Any]]] = [
        ("toy-samples", "Samples over the data density", (
            "Red: the first samples of each trial's final evaluation (the common evaluation noise); blue: the "
            "exact log-density of the data law the metrics score against. One panel per variant and seed."),
         lambda: toy_samples_figure(run_dir, manifest, results)),
        ("image-samples", "Image samples", (
            "The first 64 images of each trial's final evaluation (the common evaluation noise), "
            "one 8 x 8 grid per variant and seed."), lambda: image_grid_figure(run_dir, manifest, results)),
        ("metrics-vs-budget", "Metrics against budget consumed", (
            "Each metric at every evaluation point against the G steps consumed: a row per metric (its unit and "
            "direction on the axis, shared along the row), a column per variant, a thin line per seed and the "
            "mean over seeds (thick)."), lambda: metric_curves_figure(manifest, results)),
        ("sample-evolution", "Sample evolution", (
            "Each variant's kept samples at every evaluation point (its first seed; the common evaluation "
            "noise), beside real data; each panel is titled with that evaluation's metrics. Toys: red samples, "
            "black crosses the data's modes with 3-sigma circles, orange triangles samples outside the window."),
         lambda: evolution_figure(run_dir, manifest, results)),
        ("loss-curves", "Loss curves", (
            "Mean D and G losses of each logging window ([eval] log_every G steps), one thin line per seed, "
            "a panel per variant. Each variant has its own objective: compare shapes, not levels."),
         lambda: loss_curves_figure(manifest, results)),
        ("delta-target", "δ-controlled GAN: achieved against target", (
            "Per target δ: the achieved JSD(p, p_g) (red, 95% interval over seeds, or the estimator's own "
            "interval for one seed; hollow: each seed), the training stream's JSD(p, p_δ) (blue) and, on "
            "images, JSD(p_δ, p_g) (green). A point below the dashed line y = x is within target."),
         lambda: delta_figure(manifest, results)),
    ]
    return [Plot(name, title, caption, fig) for name, title, caption, make in figures if (fig := make()) is not None]
