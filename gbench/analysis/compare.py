"""Compare variants (or two runs of one variant) metric by metric across seeds.

``gbench compare RUN_DIR [RUN_DIR ...]`` reads result files only; it never recomputes a metric.

Groups
    Trials are grouped by variant label. A label found in more than one run directory gives one group
    per directory, named ``label@<run dir name>`` (the path as given when two directories share a
    name), so two runs of one variant are compared like two variants.

Protocol check (before anything else)
    Every result's comparable protocol is gathered: the data kind, the dataset (``name``, ``mixture``,
    ``options``, ``reference``), the scoring reference, the evaluation sample count and seed, and each
    metric's protocol record (e.g. fidelity's ``reference_split``, ``weights_sha256``, ``standard``,
    ``feature_extractor``, ``isc_splits``; the toy metrics' definitions), flattened to dotted keys such
    as ``protocol.metrics.fidelity.weights_sha256``. Metric records are taken from ``ok`` trials only
    (only they contribute numbers); a key missing from one record is not a difference. Paths, caches,
    the GPU flag and library versions (``IGNORED_METRIC_FIELDS``) are not protocol. Any difference
    raises :class:`GbenchError` naming the field and where each value comes from; there is no
    override. The budget (``g_steps``, ``d_steps_per_g_step``, ``batch_size``, ``max_device_seconds``;
    where a suite states it as ``device_seconds`` or ``gradient_evals``, that value instead, and the
    schedules may differ) and the training set (``dataset.train_size``, ``dataset.seed``) must match too, unless
    ``allow_different_budgets`` (``--allow-different-budgets``) is given; the difference is then shown
    in the output. Model, optimiser (learning rates, betas, schedule, stabilisers) and variant
    settings are not checked (they may be what a comparison is about): those that differ between
    groups are named in the output's header (``settings_differences``; variant settings only between
    groups of the same variant).

Statistics, per metric (``modes``, ``hq_percent``, ``reverse_kl``, ``jsd_bits``, ``fid``, ``isc_mean``,
``kid_mean``, ``nonstd_*``...; not ``*_ci_low``, ``*_ci_high``, ``*_std`` or ``modes_total``)
    Values come from ``ok`` trials only (diverged and failed trials are counted, not averaged). For
    every pair of groups (A, B): the difference of means A − B with a 95% interval and a t-test:

    * paired t-test on seed-matched values when A and B have values for exactly the same seeds
      (``scipy.stats.ttest_rel``; interval from the paired differences);
    * otherwise Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``; interval with the
      Welch–Satterthwaite degrees of freedom);
    * with fewer than 2 values in either group: no interval and no test ("n/a").

    When the spread is zero (identical values, or identical paired differences) the test is
    degenerate: p = 1 if the means are equal, else 0. The p-values of all pairs with a test are
    corrected by Holm–Bonferroni within each metric (not across metrics); a difference is significant
    when its Holm-adjusted p-value is <= ``alpha``.

Ranking (metrics of known direction only, ``DIRECTIONS``; ``nonstd_X`` follows ``X``)
    Groups with values are sorted by mean, best first. The first group opens rank class 1 and is its
    leader. Each next group joins the current class if its difference from the class leader (the best
    group of the class) is not significant after Holm, or has no test; otherwise it opens a new class
    whose rank is its position in the sorted order (competition ranking: 1, 1, 3) and becomes its
    leader. Tied groups show ``1=``. Groups without values get no rank.

Success rates (toy results with ``modes``/``modes_total``), as in Welfert et al. (2023)
    "all modes covered": ``modes == modes_total``; "no mode covered" (failure): ``modes == 0``. A diverged
    trial counts as a trial that did NOT cover all modes and as a failure; failed (crashed) trials are
    left out of both. 95% Wilson score intervals.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import click

from gbench.errors import GbenchError
from gbench.metrics import DIRECTIONS, LOCAL_PROTOCOL_FIELDS, direction
from gbench.analysis.layer import (difference, flatten, group_by_label, metric_bounds, ok_values, setting_differences,
                                   toy_rates, wilson)
from gbench.analysis.report import FORMATS, METRIC_COLUMNS, mean_ci
from gbench.analysis.text import fit_table, latex_table, wrap_note
from gbench.run.results import load_results
from gbench.suite import describe_budget

Z95 = 1.959963984540054  # standard normal 0.975 quantile

SKIPPED_SUFFIXES = ("_ci_low", "_ci_high", "_std")
SKIPPED_KEYS = ("modes_total", "jsd_raw_bits", "jsd_check_bits", "jsd_agree", "jsd_components")  # diagnostics, not metrics

STRICT_FIELDS = ("data_kind", "dataset.name", "dataset.mixture", "dataset.options", "dataset.reference",
                 "protocol.reference", "protocol.eval_samples", "protocol.eval_seed")
BUDGET_FIELDS = ("budget.g_steps", "budget.d_steps_per_g_step", "budget.batch_size", "budget.max_device_seconds",
                 "dataset.train_size", "dataset.seed")
IGNORED_METRIC_FIELDS = LOCAL_PROTOCOL_FIELDS

_MISSING = object()
_TITLES = {key: (title, decimals) for key, title, decimals in METRIC_COLUMNS}


# -- the result object --------------------------------------------------------------------------


@dataclass
class Group:
    name: str  # the label, or label@<run dir name> when the label is in several run directories
    label: str
    run_dir: str
    variant: str | None
    trials: int
    ok: int
    diverged: int
    failed: int
    seeds: list[int]
    results: list[dict[str, Any]] = field(default_factory=list, repr=False)


@dataclass
class Pair:
    a: str
    b: str
    n_a: int
    n_b: int
    diff: float | None  # mean(A) - mean(B)
    ci_low: float | None
    ci_high: float | None
    test: str  # "paired t" | "Welch t" | "n/a"
    p: float | None
    p_holm: float | None = None
    significant: bool | None = None  # None: no test


@dataclass
class MetricComparison:
    key: str
    direction: int | None  # +1 higher is better, -1 lower is better, None unknown (no ranking)
    summaries: dict[str, dict[str, Any]]  # group -> mean_ci(...) plus "rank" and "tied"
    pairs: list[Pair]


@dataclass
class SuccessRate:
    group: str
    trials: int  # ok trials with a mode count + diverged trials
    diverged: int
    all_modes: int
    all_modes_ci: tuple[float, float] | None
    no_mode: int  # modes == 0, or diverged
    no_mode_ci: tuple[float, float] | None


@dataclass
class Comparison:
    run_dirs: list[str]
    alpha: float
    groups: list[Group]
    protocol: dict[str, Any]  # the common protocol (fields that differ, when allowed: per group)
    budget_differences: list[str]  # budget fields that differ (allowed by allow_different_budgets)
    metrics: list[MetricComparison]
    success_rates: list[SuccessRate]
    # optim / model / variant settings that differ: dotted key -> {group: value}
    settings_differences: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "runs": self.run_dirs,
            "alpha": self.alpha,
            "correction": "Holm-Bonferroni over all pairs, within each metric",
            "groups": [{k: v for k, v in asdict(g).items() if k != "results"} for g in self.groups],
            "protocol": self.protocol,
            "budget_differences": self.budget_differences,
            "settings_differences": self.settings_differences,
            "metrics": [asdict(m) for m in self.metrics],
            "success_rates": [asdict(s) for s in self.success_rates],
        })


def _clean(obj: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# -- statistics ---------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int) -> tuple[float, float] | None:
    """95% Wilson score interval for a binomial proportion (None when n == 0)."""
    return wilson(successes, n) if n > 0 else None


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (step-down; monotone; capped at 1). None stays None and
    does not count towards the number of tests."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def compare_values(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> dict[str, Any]:
    """Difference of means of two seed -> value maps, with interval and test (see the module doc and
    :func:`gbench.analysis.layer.difference`)."""
    return asdict(difference(a, b, level))


def rank_groups(means: Mapping[str, float | None], direction: int,
                significant: Mapping[frozenset[str], bool | None]) -> dict[str, tuple[int | None, bool]]:
    """Rank classes (see the module doc): group -> (rank, tied with another group)."""
    order = sorted((g for g, m in means.items() if m is not None), key=lambda g: -direction * means[g])
    ranks: dict[str, int | None] = {g: None for g in means}
    leader, rank = None, 0
    for position, g in enumerate(order, start=1):
        if leader is None or significant.get(frozenset((g, leader))):
            leader, rank = g, position
        ranks[g] = rank
    counts = {r: list(ranks.values()).count(r) for r in set(ranks.values()) if r is not None}
    return {g: (r, r is not None and counts[r] > 1) for g, r in ranks.items()}


# -- loading and the protocol check ---------------------------------------------------------------


def load_groups(run_dirs: Sequence[str | Path]) -> list[Group]:
    """Groups of trials by label over ``run_dirs`` (label@<run dir name> for a label in several)."""
    if not run_dirs:
        raise GbenchError("compare needs at least one run directory")
    seen: dict[Path, str] = {}
    loaded = []
    for d in run_dirs:
        resolved = Path(d).resolve()
        if resolved in seen:
            raise GbenchError(f"{d}: run directory given twice")
        seen[resolved] = str(d)
        manifest, results = load_results(d)
        if not results:
            raise GbenchError(f"{d}: no trial results yet")
        loaded.append((str(d), resolved, group_by_label(results, manifest.get("variants", ()))))
    where: dict[str, int] = {}
    for _, _, labels in loaded:
        for label in labels:
            where[label] = where.get(label, 0) + 1
    names = [resolved.name or str(d) for d, resolved, _ in loaded]
    if len(set(names)) < len(names):
        names = [d for d, _, _ in loaded]
    groups = []
    for (d, _, labels), dir_name in zip(loaded, names):
        for label, rs in labels.items():
            groups.append(Group(
                name=f"{label}@{dir_name}" if where[label] > 1 else label, label=label, run_dir=d,
                variant=rs[0].get("variant"), trials=len(rs), ok=sum(r.get("status") == "ok" for r in rs),
                diverged=sum(r.get("status") == "diverged" for r in rs),
                failed=sum(r.get("status") == "failed" for r in rs),
                seeds=sorted(r.get("seed") for r in rs if r.get("seed") is not None), results=rs))
    return groups


def _get(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value



def comparable_protocol(result: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(strict fields, budget fields) of one result, flattened to dotted keys; missing keys left out."""
    strict = {k: v for k in STRICT_FIELDS if (v := _get(result, k)) is not _MISSING}
    if result.get("status") == "ok":
        for metric, record in ((result.get("protocol") or {}).get("metrics") or {}).items():
            flatten(f"protocol.metrics.{metric}", record, strict, skip=IGNORED_METRIC_FIELDS)
    budget = {k: v for k in BUDGET_FIELDS if (v := _get(result, k)) is not _MISSING}
    stated = {k: none if (v := _get(result, k)) is _MISSING else v  # older results: a budget in G steps
              for k, none in (("budget.device_seconds", 0.0), ("budget.gradient_evals", 0))}
    if any(stated.values()):  # a budget in device-seconds or gradient evaluations: the schedules may differ
        budget = {k: v for k, v in budget.items() if k.startswith("dataset.")}
    return strict, {**budget, **stated}


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text if text != "" else '""'
    return text if len(text) <= 24 else text[:16] + "…"


def _differences(groups: list[Group], which: int) -> list[tuple[str, dict[str, list[str]]]]:
    """Fields whose values differ across results: (field, {shown value: [where]})."""
    values: dict[str, dict[str, None]] = {}  # field -> its values, in order of appearance
    for g in groups:
        for r in g.results:
            for k, v in comparable_protocol(r)[which].items():
                values.setdefault(k, {})[_key(v)] = None
    return [(k, {_show(json.loads(v)): _where(v, k, groups, which) for v in vs})
            for k, vs in values.items() if len(vs) > 1]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _where(value: str, key: str, groups: list[Group], which: int) -> list[str]:
    """The run dirs holding ``value`` for ``key``; with the labels when a run dir holds several values."""
    holders: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    for g in groups:
        for r in g.results:
            fields = comparable_protocol(r)[which]
            if key in fields:
                seen.setdefault(g.run_dir, set()).add(_key(fields[key]))
                if _key(fields[key]) == value and g.label not in holders.setdefault(g.run_dir, []):
                    holders[g.run_dir].append(g.label)
    return [f"{d} ({', '.join(labels[:3])}{', ...' if len(labels) > 3 else ''})" if len(seen[d]) > 1 else d
            for d, labels in holders.items() if labels]


def _message(diffs: list[tuple[str, dict[str, list[str]]]], advice: str) -> str:
    key, by_value = diffs[0]
    shown = "; ".join(f"{v} in {', '.join(places)}" for v, places in by_value.items())
    more = f" (also differs: {', '.join(k for k, _ in diffs[1:4])}{', ...' if len(diffs) > 4 else ''})" \
        if len(diffs) > 1 else ""
    return f"cannot compare: {key} differs ({shown}){more}; {advice}"


def check_protocol(groups: list[Group], allow_different_budgets: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Raise GbenchError on a protocol difference; return the common protocol and the (allowed) budget
    fields that differ."""
    strict = _differences(groups, 0)
    if strict:
        raise GbenchError(_message(strict, "results from different evaluation protocols are never compared"))
    budget = _differences(groups, 1)
    if budget and not allow_different_budgets:
        raise GbenchError(_message(budget, "pass --allow-different-budgets to compare anyway"))
    common: dict[str, Any] = {}
    for g in groups:
        for r in g.results:
            s, b = comparable_protocol(r)
            for k, v in {**s, **b}.items():
                common.setdefault(k, v)
    differing = [k for k, _ in budget]
    for k in differing:
        common[k] = {g.name: [json.loads(v) for v in sorted({_key(_get(r, k)) for r in g.results
                                                              if _get(r, k) is not _MISSING})] for g in groups}
    return common, differing


# -- the comparison -----------------------------------------------------------------------------


def metric_keys(groups: list[Group]) -> list[str]:
    """Comparable metric keys present in ok results, in the report's order, then alphabetically."""
    present = {k for g in groups for r in g.results if r.get("status") == "ok" for k in (r.get("metrics") or {})
               if k not in SKIPPED_KEYS and not k.endswith(SKIPPED_SUFFIXES)}
    known = [k for k, _, _ in METRIC_COLUMNS if k in present]
    return known + sorted(present - set(known))


def compare_metric(groups: list[Group], key: str, alpha: float = 0.05) -> MetricComparison:
    values = {g.name: ok_values(g.results, key) for g in groups}
    pairs = []
    for i, ga in enumerate(groups):
        for gb in groups[i + 1:]:
            pairs.append(Pair(a=ga.name, b=gb.name, **compare_values(values[ga.name], values[gb.name])))
    for pair, adjusted in zip(pairs, holm([p.p for p in pairs])):
        pair.p_holm = adjusted
        pair.significant = None if adjusted is None else adjusted <= alpha
    span = metric_bounds(key, [r for g in groups for r in g.results if r.get("status") == "ok"])
    width = span[1] - span[0]  # a difference of two values in the range lies within +- its width
    for pair in pairs:
        if pair.ci_low is not None and math.isfinite(width):
            pair.ci_low, pair.ci_high = max(-width, pair.ci_low), min(width, pair.ci_high)
    summaries = {name: {**mean_ci(v.values(), bounds=span), "rank": None, "tied": False} for name, v in values.items()}
    sign = direction(key)
    if sign is not None:
        significant = {frozenset((p.a, p.b)): p.significant for p in pairs}
        ranks = rank_groups({n: s["mean"] for n, s in summaries.items()}, sign, significant)
        for name, (rank, tied) in ranks.items():
            summaries[name].update(rank=rank, tied=tied)
    return MetricComparison(key=key, direction=sign, summaries=summaries, pairs=pairs)


def success_rates(groups: list[Group]) -> list[SuccessRate]:
    """All-modes-covered and no-mode-covered rates of toy groups (diverged = failure; failed = left out)."""
    out = []
    for g in groups:
        r = toy_rates(g.results, 0.0)
        if r is not None:
            out.append(SuccessRate(group=g.name, trials=r["n"], diverged=r["diverged"], all_modes=r["success"],
                                   all_modes_ci=r["success_ci"], no_mode=r["failure"], no_mode_ci=r["failure_ci"]))
    return out


def compare_runs(run_dirs: Sequence[str | Path], metrics: Sequence[str] = (), alpha: float = 0.05,
                 allow_different_budgets: bool = False) -> Comparison:
    """Load ``run_dirs``, check their protocols, and compare every pair of groups on every metric."""
    if not 0 < alpha < 1:
        raise GbenchError(f"alpha must be between 0 and 1, got {alpha}")
    groups = load_groups(run_dirs)
    if len(groups) < 2:
        raise GbenchError(f"nothing to compare: {', '.join(map(str, run_dirs))} hold(s) one variant "
                          f"({groups[0].name}); give more variants or run directories")
    protocol, budget_diffs = check_protocol(groups, allow_different_budgets)
    keys = metric_keys(groups)
    for k in metrics:
        if k not in keys:
            raise GbenchError(f"unknown metric {k!r}: these results have {', '.join(keys) or 'no metrics'}")
    chosen = [k for k in keys if k in metrics] if metrics else keys
    return Comparison(run_dirs=[str(d) for d in run_dirs], alpha=alpha, groups=groups, protocol=protocol,
                      budget_differences=budget_diffs, metrics=[compare_metric(groups, k, alpha) for k in chosen],
                      success_rates=success_rates(groups), settings_differences=settings_differences(groups))


def settings_differences(groups: list[Group]) -> dict[str, dict[str, str]]:
    """The optimiser, schedule (``budget.*``: variants may set their own) and model settings that differ
    between groups, and the variant settings that differ between groups of the same variant: dotted key
    -> {group: value}."""
    out = setting_differences({g.name: g.results for g in groups}, ("optim", "budget", "model"))
    by_variant: dict[str | None, list[Group]] = {}
    for g in groups:
        by_variant.setdefault(g.variant, []).append(g)
    for same in by_variant.values():
        if len(same) > 1:
            out.update(setting_differences({g.name: g.results for g in same}, ("variant_config",)))
    return out


# -- rendering ----------------------------------------------------------------------------------


def _num(x: float | None, decimals: int | None) -> str:
    if x is None:
        return "-"
    text = f"{x:.{decimals}f}" if decimals is not None else f"{x:.4g}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


def _p(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _title(key: str) -> tuple[str, int | None]:
    return _TITLES.get(key, (key, None))


def render(c: Comparison, fmt: str = "github", wide: bool = False) -> str:
    """The comparison as text: tables fit 80 columns unless ``wide``; ``latex``: booktabs; ``json``."""
    if fmt == "json":
        return json.dumps(c.to_dict(), indent=2, sort_keys=True, default=str)
    tablefmt = {"github": "github", "plain": "simple", "latex": "latex"}[fmt]

    def note(line: str) -> str:
        return wrap_note(line, wide=wide, prefix="% " if fmt == "latex" else "")

    def table(rows: list[list[str]], headers: list[str], keep: int = 1) -> str:
        return latex_table(headers, rows) if fmt == "latex" else fit_table(headers, rows, tablefmt, wide=wide,
                                                                            keep=keep)

    p = c.protocol
    head = (f"compare {', '.join(c.run_dirs)}: reference {p.get('protocol.reference')}, "
            f"{p.get('protocol.eval_samples')} samples per evaluation (seed {p.get('protocol.eval_seed')})")
    if c.budget_differences:
        head += f"; budgets DIFFER ({', '.join(c.budget_differences)}), compared as allowed"
    else:
        head += ", budget " + describe_budget({k[len("budget."):]: v for k, v in p.items() if k.startswith("budget.")})
    parts = [note(head)]
    if c.settings_differences:
        lines = [f"  {key}: " + ", ".join(f"{g} {v}" for g, v in by_group.items())
                 for key, by_group in c.settings_differences.items()]
        parts.append(note("settings differ between groups (not a protocol difference; read the differences "
                          "with them in mind):") + "\n" + "\n".join(note(line) for line in lines))

    headers = ["group", "ok/trials"] + [_title(m.key)[0] + (" ↑" if m.direction == 1 else " ↓" if m.direction == -1
                                                            else "") for m in c.metrics]
    rows = []
    for g in c.groups:
        status = f"{g.ok}/{g.trials}" + (f" ({g.diverged} diverged)" if g.diverged else "") + (
            f" ({g.failed} failed)" if g.failed else "")
        cells = []
        for m in c.metrics:
            s, decimals = m.summaries[g.name], _title(m.key)[1]
            text = _num(s["mean"], decimals)
            if s["ci_low"] is not None and s["ci_high"] != s["ci_low"]:
                text += f" ± {_num((s['ci_high'] - s['ci_low']) / 2, decimals)}"
            if s["rank"] is not None:
                text += f" ({s['rank']}{'=' if s['tied'] else ''})"
            cells.append(text)
        rows.append([g.name, status] + cells)
    parts.append(table(rows, headers))

    for m in c.metrics:
        title, decimals = _title(m.key)
        d = {1: "higher is better", -1: "lower is better"}.get(m.direction, "direction unknown: not ranked")
        tested = sum(p.p is not None for p in m.pairs)
        name = title if title == m.key else f"{title} ({m.key}"
        name = f"{name}; {d})" if title != m.key else f"{name} ({d})"
        parts.append(note(f"{name}: differences A − B, Holm over {tested} tested pair(s)"))
        prow = [[p.a, p.b, _num(p.diff, decimals),
                 "-" if p.ci_low is None else f"[{_num(p.ci_low, decimals)}, {_num(p.ci_high, decimals)}]",
                 p.test, _p(p.p), _p(p.p_holm), {True: "yes", False: "no", None: "n/a"}[p.significant]]
                for p in m.pairs]
        parts.append(table(prow, ["A", "B", "A − B", "95% CI", "test", "p", "p (Holm)",
                                  f"significant (α={c.alpha:g})"], keep=2))

    if c.success_rates:
        parts.append(note("success rates over trials (ok + diverged; a diverged trial is a failure)"))
        srows = [[s.group, f"{s.all_modes}/{s.trials}", _interval(s.all_modes_ci), f"{s.no_mode}/{s.trials}",
                  _interval(s.no_mode_ci)] for s in c.success_rates]
        parts.append(table(srows, ["group", "all modes covered", "95% CI (Wilson)", "no mode covered or diverged",
                                   "95% CI (Wilson)"]))
    parts.append(note(
        "mean ± half-width of the 95% t-interval over seeds; (rank): a group shares the rank of the best group "
        "of its class (1=) unless significantly worse than it; ↑/↓ higher/lower is better; "
        "paired t when both groups have the same seeds, else Welch; "
        f"Holm-Bonferroni within each metric, significant at α = {c.alpha:g}; only ok trials give values."))
    return "\n\n".join(parts)


def _interval(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


# -- the command ------------------------------------------------------------------------------------


@click.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--metric", "metrics", multiple=True, metavar="KEY",
              help="Compare only this metric key (repeatable; default: all), e.g. modes, fid.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="github", show_default=True)
@click.option("--allow-different-budgets", is_flag=True,
              help="Compare despite different budgets or training sets (never despite a different metric protocol).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level after the Holm correction.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--wide", is_flag=True, help="One wide table each (default: fit 80 columns).")
def compare(run_dirs: tuple[Path, ...], metrics: tuple[str, ...], fmt: str, allow_different_budgets: bool,
            alpha: float, as_json: bool = False, wide: bool = False) -> None:
    """Compare the variants of one or more runs metric by metric across seeds.

    Differences of means with 95% intervals, paired or Welch t-tests with a Holm correction, ranks
    with ties, and mode-coverage success rates with Wilson intervals. A label found in several run
    directories is compared as label@<run dir>. Refuses results of different protocols.
    """
    click.echo(render(compare_runs(run_dirs, metrics, alpha, allow_different_budgets), "json" if as_json else fmt, wide))


__all__ = ["Comparison", "DIRECTIONS", "check_protocol", "compare", "compare_runs", "compare_values", "holm",
           "load_groups", "rank_groups", "render", "success_rates", "wilson_interval"]
