"""The analysis layer: what ``report``, ``compare``, ``gate``, the plots and the HTML page need from result
files, written once.

* :func:`label_of`, :func:`group_by_label`: trials grouped by variant label, in the suite's order;
* :func:`ok_values`: one metric's finite values of the ``ok`` trials of a group, by seed;
* :func:`mean_ci`: mean over seeds with a Student-t interval clipped to the metric's range;
* :func:`wilson`, :func:`toy_rates`: success / failure counts with Wilson score intervals (scipy's
  ``binomtest(...).proportion_ci(method="wilson")``), as in Welfert et al. (2023);
* :func:`difference`: the difference of two groups' means with a 95% interval and a t-test (paired on
  matched seeds, else Welch), from scipy's ``ttest_rel`` / ``ttest_ind(equal_var=False)`` and their
  ``confidence_interval()``;
* :func:`flatten`, :func:`setting_differences`: dotted keys of nested records, and the ones whose values
  differ between groups (the optimiser, schedule, model, budget and variant settings of ``compare``'s
  header, the variant-settings table of the HTML page).

Nothing here recomputes a metric; it only reads what the trials recorded.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from gbench.metrics import bounds

Result = dict[str, Any]
# The settings a result records that may differ between compared groups without breaking comparability.
SETTING_FIELDS = ("optim", "model", "variant_config", "budget")


def label_of(result: Mapping[str, Any]) -> str:
    """A result's variant label (its trial id for a result without one)."""
    return result.get("label") or result.get("trial_id") or "?"


def group_by_label(results: Iterable[Result], order: Iterable[str] = ()) -> dict[str, list[Result]]:
    """Results by variant label: the labels of ``order`` (the suite's) first, then as the results name
    them; labels without a result are left out; each group sorted by seed."""
    groups: dict[str, list[Result]] = {label: [] for label in order}
    for r in results:
        groups.setdefault(label_of(r), []).append(r)
    return {label: sorted(g, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
            for label, g in groups.items() if g}


def finite(value: Any) -> bool:
    """A real number that is neither NaN nor infinite (booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def ok_values(group: Iterable[Result], key: str) -> dict[int, float]:
    """Seed -> value of metric ``key`` over the ``ok`` trials of ``group`` that have a finite one."""
    return {r.get("seed"): float(v) for r in group
            if r.get("status") == "ok" and finite(v := (r.get("metrics") or {}).get(key))}


def mean_ci(values: Iterable[float | None], level: float = 0.95,
            bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """Mean over seeds with a Student-t confidence interval clipped to the metric's range ``bounds``
    (no interval for fewer than 2 values).

    The true mean lies in the range, so clipping never loses coverage; it only stops an interval from
    claiming impossible values ("5.67 ± 10.04" modes of 8 becomes [0, 8]). Coverage of the true mean,
    measured by ``benchmarks/seed_intervals.py`` on skewed bounded laws, is in the README."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "values": []}
    mean, low, high = float(x.mean()), None, None
    if len(x) >= 2:
        half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
        low, high = max(bounds[0], mean - half), min(bounds[1], mean + half)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": len(x), "values": [float(v) for v in x]}


def metric_bounds(key: str, results: Iterable[Result]) -> tuple[float, float]:
    """The range of metric ``key`` over ``results`` (``modes``: up to the mixtures' ``modes_total``)."""
    totals = [r["metrics"]["modes_total"] for r in results if (r.get("metrics") or {}).get("modes_total") is not None]
    return bounds(key, max(totals) if totals else None)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (scipy's ``binomtest``); (0, 1) when n = 0."""
    if n == 0:
        return (0.0, 1.0)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def toy_rates(group: list[Result], hq_threshold: float) -> dict[str, Any] | None:
    """Success and failure counts of a toy group with 95% Wilson intervals, over finished trials
    (None when no ok trial has a mode count, e.g. images).

    Success: every mode covered (``modes == modes_total``) with ``hq_percent >= hq_threshold``
    (0 gives Welfert et al.'s "all modes covered"); failure: no mode covered, or diverged (it produced
    nothing). Crashed trials are left out."""
    scored = [r for r in group if r["status"] == "diverged"
              or (r["status"] == "ok" and "modes" in (r.get("metrics") or {}))]
    if not any(r["status"] == "ok" or r.get("data_kind") == "toy" for r in scored):
        return None  # an all-diverged toy group still counts: n failures, not a dropped row
    success = sum(r["status"] == "ok" and r["metrics"]["modes"] == r["metrics"].get("modes_total")
                  and r["metrics"].get("hq_percent", 100.0) >= hq_threshold for r in scored)
    failure = sum(r["status"] == "diverged" or r["metrics"]["modes"] == 0 for r in scored)
    n = len(scored)
    return {"n": n, "diverged": sum(r["status"] == "diverged" for r in scored), "hq_threshold": hq_threshold,
            "success": success, "success_ci": wilson(success, n), "success_rate": success / n if n else 0.0,
            "failure": failure, "failure_ci": wilson(failure, n), "failure_rate": failure / n if n else 0.0}


# -- two groups ------------------------------------------------------------------------------------------


@dataclass
class Difference:
    """mean(A) - mean(B) with its interval and test (``paired t``, ``Welch t`` or ``n/a``)."""

    n_a: int
    n_b: int
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    test: str
    p: float | None


def _zero(sd: float, values: Iterable[float]) -> bool:
    scale = max([1.0] + [abs(v) for v in values])
    return sd <= 1e-12 * scale


def difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> Difference:
    """Difference of means of two seed -> value maps: paired t on the same seeds (``ttest_rel``), else
    Welch's t (``ttest_ind(equal_var=False)``), each with scipy's ``confidence_interval(level)``. Fewer
    than 2 values on a side: no interval, no test. Zero spread: the interval is the point and p is 1 if
    the means are equal, else 0 (the t statistic is undefined)."""
    xa, xb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    na, nb = len(xa), len(xb)
    diff = float(xa.mean() - xb.mean()) if na and nb else None
    if na < 2 or nb < 2:
        return Difference(na, nb, diff, None, None, "n/a", None)
    paired = set(a) == set(b)
    if paired:
        d = np.array([a[s] - b[s] for s in sorted(a)], float)
        spread = float(d.std(ddof=1))
    else:
        spread = math.sqrt(float(xa.var(ddof=1)) / na + float(xb.var(ddof=1)) / nb)
    test = "paired t" if paired else "Welch t"
    if _zero(spread, np.concatenate([xa, xb])):
        equal = (d.mean() == 0) if paired else (diff == 0)
        return Difference(na, nb, diff, diff, diff, test, 1.0 if equal else 0.0)
    with warnings.catch_warnings():  # scipy's precision-loss warning on nearly equal values
        warnings.simplefilter("ignore", RuntimeWarning)
        res = (stats.ttest_rel([a[s] for s in sorted(a)], [b[s] for s in sorted(a)]) if paired
               else stats.ttest_ind(xa, xb, equal_var=False))
        ci = res.confidence_interval(confidence_level=level)
    return Difference(na, nb, diff, float(ci.low), float(ci.high), test, float(res.pvalue))


# -- settings and protocol records ----------------------------------------------------------------------


def flatten(prefix: str, value: Any, out: dict[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """``value``'s leaves under dotted keys (``optim.g_lr``); dict keys in ``skip`` are left out."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k not in skip:
                flatten(f"{prefix}.{k}" if prefix else str(k), v, out, skip)
    else:
        out[prefix] = value
    return out


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def settings_of(result: Mapping[str, Any], fields: Sequence[str] = SETTING_FIELDS) -> dict[str, str]:
    """A result's recorded settings as dotted key -> shown value (``optim.lr_schedule`` -> ``linear``)."""
    out: dict[str, Any] = {}
    for f in fields:
        if isinstance(result.get(f), Mapping):
            flatten(f, result[f], out)
    return {k: _shown(v) for k, v in out.items()}


def setting_differences(groups: Mapping[str, Iterable[Result]], fields: Sequence[str] = SETTING_FIELDS
                        ) -> dict[str, dict[str, str]]:
    """Settings whose values differ between groups: dotted key -> {group: value(s)} (several values of
    one group joined by " | "; a group without the key shows "-"). Keys in the order first seen."""
    per_group: dict[str, dict[str, list[str]]] = {}
    keys: dict[str, None] = {}
    for name, results in groups.items():
        seen: dict[str, list[str]] = {}
        for r in results:
            for k, v in settings_of(r, fields).items():
                keys.setdefault(k, None)
                if v not in seen.setdefault(k, []):
                    seen[k].append(v)
        per_group[name] = seen
    out = {}
    for k in keys:
        shown = {name: " | ".join(s.get(k, ["-"])) for name, s in per_group.items()}
        if len(set(shown.values())) > 1:
            out[k] = shown
    return out


# -- the main metric ------------------------------------------------------------------------------------

# The metric a run is ranked on: the first of these that its results have (toys: JSD against the exact
# density; images: FID, else KID, else IS, else the classifier JSD bound).
PRIMARY = ("jsd_bits", "fid", "kid_mean", "isc_mean", "nonstd_fid", "hq_percent", "modes")
# How the main metrics read in one line: (key, format); modes as k/total.
_HEADLINE = (("jsd_bits", "JSD {:.3f} bits"), ("fid", "FID {:.2f}"), ("kid_mean", "KID {:.4f}"),
             ("isc_mean", "IS {:.2f}"), ("nonstd_fid", "FID* {:.2f}"), ("hq_percent", "HQ {:.1f} %"))


def primary_metric(keys: Iterable[str]) -> str | None:
    """The first key of :data:`PRIMARY` among ``keys`` (None if none is)."""
    present = set(keys)
    return next((k for k in PRIMARY if k in present), None)


def headline(metrics: Mapping[str, Any]) -> str:
    """A trial's main numbers in one short line: ``JSD 0.123 bits, HQ 91.5 %, modes 8/8``."""
    parts = [fmt.format(metrics[k]) for k, fmt in _HEADLINE if finite(metrics.get(k))]
    if finite(metrics.get("modes")):
        total = metrics.get("modes_total")
        parts.append(f"modes {metrics['modes']:g}" + (f"/{total:g}" if finite(total) else ""))
    return ", ".join(parts[:4])
