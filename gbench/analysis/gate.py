"""CI quality gate: record a run as a baseline, then check later runs against it.

``gbench baseline RUN_DIR -o FILE`` writes, per variant label and gated metric, the mean over the ok
trials, their standard deviation (``ddof=1``), their number ``n`` and the metric's direction, plus the
seeds and each trial's status and the run's protocol fingerprint. ``gbench check RUN_DIR --baseline
FILE`` compares a run with it and exits 0 when every check passes, 1 when one fails (regressions
table), 2 on bad input (a missing file, a baseline of another protocol).

Gated metrics (``DIRECTIONS``)
    higher is better: ``modes``, ``hq_percent``, ``isc_mean``; lower is better: ``reverse_kl``,
    ``jsd_bits``, ``fid``, ``kid_mean``; ``nonstd_X`` follows ``X``. Other keys (``*_ci_low``,
    ``*_std``, ``modes_total``...) are not gated. Only the worse direction fails: a run that is
    better by more than the tolerance passes, marked ``better`` (time to record a new baseline).

Tolerance, per variant and metric
    ``tol = max(k * sd * sqrt(1/n_base + 1/n_run), floor)`` with ``k`` the one-sided Student-t
    quantile ``t(1 - alpha; n_base - 1)``, ``alpha = ALPHA = 0.01``: if the run's seeds come from the
    same distribution as the baseline's (same suite, same protocol), its mean falls short of the
    baseline mean by more than ``tol`` with probability at most about ``alpha`` per check (normal
    approximation; with several variants and metrics the chance that *some* check fails grows
    accordingly). ``floor`` (``FLOORS``) is the smallest change that counts, and the whole tolerance
    when there is no spread to go by (a single seed, or identical values). Explicit tolerances replace
    the rule: ``"tolerances": {"*": {"modes": 1.0}, "sgan": {"jsd_bits": 0.2}}`` in the baseline file
    (a label's entry wins over ``"*"``), or ``--tolerance [LABEL:]METRIC=VALUE`` on either command
    (on ``check`` it wins over the file). ``alpha`` and ``floors`` are stored in the file
    (``"gate"``), so editing them there changes the rule for that baseline. Record at least 3 seeds:
    ``k`` is 6.96 for 3, 3.75 for 5, but 31.8 for 2 (``gbench baseline`` warns below 3).
    A tolerance that cannot fail (the metric's worst possible value, e.g. 0 modes or 1 bit of JSD, lies
    within it of the baseline mean: ``headroom``) is refused, exit 2, by ``baseline`` and by ``check``.

Trials
    A trial that is not ``ok`` in the run is a regression unless the baseline's trial of the same seed
    was not ok either (for a seed the baseline lacks: unless some baseline trial of that variant was
    not ok). A variant of the baseline absent from the run is a regression (``missing``): run the whole
    suite; a gate that passed because a variant vanished would hide exactly what it is for. A gated
    metric of the baseline that the run lacks is ``missing`` too. A variant only in the run is shown,
    not gated.

Protocol
    ``check`` refuses (exit 2, one line naming the first differing field) a baseline whose
    fingerprint differs from the run's: gbench version, dataset (name, mixture, options, reference,
    training-set size and seed), scoring reference, evaluation sample count and seed, budget,
    precision, each metric's protocol record (less ``LOCAL_FIELDS``: paths, caches, the GPU flag,
    library versions) and finally the suite hash (model, optimiser, variants' settings...). Seeds may
    differ (the tolerance is for independent seeds); the device, processor and thread count may differ
    (recorded under ``provenance`` for reference).

Library: ``make_baseline(run_dir)``, ``check_run(run_dir, baseline)`` (rows), ``failures(rows)``,
``read_baseline(path)``; the click commands ``baseline`` and ``check`` are registered in ``gbench.cli``.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import click
import numpy as np
from scipy import stats

from gbench.analysis.layer import group_by_label, ok_values, setting_differences
from gbench.analysis.text import fit_table
from gbench.errors import GbenchError
from gbench.metrics import DIRECTIONS, LOCAL_PROTOCOL_FIELDS, base_key, bounds, direction
from gbench.run.results import load_results, read_json, write_json

SCHEMA = 1
ALPHA = 0.01
# The smallest change that counts, in the metric's units (modes: components; HQ: percentage points;
# reverse KL: nats; JSD: bits); ``nonstd_X`` follows ``X``.
FLOORS = {"modes": 1.0, "hq_percent": 5.0, "isc_mean": 0.2, "reverse_kl": 0.1, "jsd_bits": 0.05, "fid": 2.0,
          "kid_mean": 0.002}
LOCAL_FIELDS = LOCAL_PROTOCOL_FIELDS
FAILING = ("regressed", "missing")
FORMATS = ("github", "plain")


# -- the rule -----------------------------------------------------------------------------------------


def tolerance(entry: Mapping[str, Any], n_run: int, alpha: float, floor: float,
              explicit: float | None = None) -> tuple[float, str]:
    """(tolerance, basis) for a baseline ``entry`` (``sd``, ``n``) and a run of ``n_run`` values; basis
    is ``explicit``, ``spread`` (the t rule) or ``floor``."""
    if explicit is not None:
        return float(explicit), "explicit"
    sd, n_base = entry.get("sd"), int(entry.get("n") or 0)
    spread = 0.0
    if sd and n_base >= 2 and n_run >= 1:
        spread = float(stats.t.ppf(1 - alpha, n_base - 1)) * sd * math.sqrt(1 / n_base + 1 / n_run)
    return (spread, "spread") if spread > floor else (floor, "floor")


def parse_tolerances(items: Iterable[str]) -> dict[str, dict[str, float]]:
    """``[LABEL:]METRIC=VALUE`` items as ``{label or "*": {metric: value}}``."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        label, _, metric = key.strip().rpartition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not metric or not math.isfinite(number) or number < 0:
            raise GbenchError(f"--tolerance {item!r}: expected [LABEL:]METRIC=VALUE with VALUE >= 0, e.g. modes=1")
        if direction(metric) is None:
            raise GbenchError(f"--tolerance {item!r}: {metric!r} is not a gated metric "
                              f"(gated: {', '.join(DIRECTIONS)}, nonstd_*)")
        out.setdefault(label or "*", {})[metric] = number
    return out


def _merge(*layers: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for layer in layers:
        for label, table in (layer or {}).items():
            out.setdefault(label, {}).update(table)
    return out


def _check_labels(tolerances: Mapping[str, Any], labels: Iterable[str], where: str) -> None:
    known = set(labels)
    for label in tolerances:
        if label != "*" and label not in known:
            raise GbenchError(f"{where}: tolerance for unknown variant {label!r} "
                              f"(variants: {', '.join(sorted(known))})")


# -- fingerprint --------------------------------------------------------------------------------------


def _strip_local(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_local(v) for k, v in value.items() if k not in LOCAL_FIELDS}
    if isinstance(value, (list, tuple)):
        return [_strip_local(v) for v in value]
    return value


def fingerprint(manifest: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """What must be equal for a run to be checked against a baseline (order: the order of the checks)."""
    first = results[0]
    ok = next((r for r in results if r.get("status") == "ok"), None)
    protocol = first.get("protocol") or {}
    dataset = _strip_local(first.get("dataset") or {})
    return {
        "gbench": (manifest.get("provenance") or first.get("provenance") or {}).get("gbench"),
        "dataset": dataset,
        "reference": protocol.get("reference"),
        "eval_samples": protocol.get("eval_samples"),
        "eval_seed": protocol.get("eval_seed"),
        "budget": first.get("budget"),
        "precision": (first.get("runtime") or {}).get("precision"),
        "metric_protocols": _strip_local(((ok or {}).get("protocol") or {}).get("metrics")),
        "suite_hash": manifest.get("suite_hash"),
    }


def _present(value: Any) -> Any:
    """``value`` without its ``None`` entries (a field recorded as null and one not recorded are alike)."""
    if isinstance(value, Mapping):
        return {k: _present(v) for k, v in value.items() if v is not None}
    return value


def check_protocol(base: Mapping[str, Any], run: Mapping[str, Any], run_dir: Path, where: str) -> None:
    """Raise :class:`GbenchError` naming the first field in which ``run`` differs from ``base``, found by the
    analysis layer's :func:`~gbench.analysis.layer.setting_differences` (dotted keys; lists compared whole)."""
    fields = [f for f in list(run) + [f for f in base if f not in run]  # fingerprint()'s order: suite hash last
              if not (f == "metric_protocols" and (base.get(f) is None or run.get(f) is None))]
    # (no ok trial on one side: nothing was scored, the trial checks say so)
    sides = {side: [{"fp": _present({f: fp.get(f) for f in fields})}] for side, fp in (("run", run), ("baseline", base))}
    differs = setting_differences(sides, ("fp",))
    if differs:
        key, shown = next(iter(differs.items()))
        a, b = (v if len(v) <= 60 else v[:57] + "..." for v in (shown["baseline"], shown["run"]))
        raise GbenchError(f"{run_dir}: protocol differs from baseline {where} in {key[len('fp.'):]}: baseline {a}, "
                          f"run {b} (record a new baseline with `gbench baseline`)")


# -- baseline -----------------------------------------------------------------------------------------


def _load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest, results = load_results(run_dir)
    if not results:
        raise GbenchError(f"{run_dir}: no trial results")
    return manifest, results


def _groups(manifest: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return group_by_label(results, manifest.get("variants", ()))


def _metric_summary(values: list[float], key: str, modes_total: float | None) -> dict[str, Any]:
    x = np.asarray(values, dtype=float)
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else None, "n": len(x),
            "direction": "higher" if direction(key) > 0 else "lower", "values": [float(v) for v in x],
            "bounds": [b if math.isfinite(b) else None for b in bounds(key, modes_total)]}


def headroom(entry: Mapping[str, Any]) -> float | None:
    """How far the worst possible value lies from the baseline mean (None: the metric is unbounded that way).
    A tolerance at least this large cannot fail."""
    low, high = entry.get("bounds") or (None, None)
    worst = low if entry["direction"] == "higher" else high
    return None if worst is None else abs(entry["mean"] - worst)


def refuse_unfailing(label: str, key: str, entry: Mapping[str, Any], tol: float, basis: str, where: str) -> None:
    """Raise :class:`GbenchError` if no run could exceed tolerance ``tol`` for this check."""
    room = headroom(entry)
    if room is not None and tol >= room:
        how = {"spread": f"from the spread of {entry['n']} seeds", "floor": "the floor", "explicit": "given"}[basis]
        raise GbenchError(
            f"{where}: the tolerance {_num(tol)} for {label} {key} ({how}) cannot fail: even the worst possible "
            f"value is within {_num(room)} of the baseline mean {_num(entry['mean'])}; record more seeds or give "
            f"--tolerance {label}:{key}=VALUE below {_num(room)}")


def _values(group: list[dict[str, Any]], key: str) -> list[float]:
    return list(ok_values(group, key).values())


def summarise_variants(manifest: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant label: trial statuses by seed and the summary of every gated metric."""
    out = {}
    for label, group in _groups(manifest, results).items():
        keys = sorted({k for r in group if r.get("status") == "ok" for k in r.get("metrics") or {}
                       if direction(k) is not None})
        totals = [r["metrics"]["modes_total"] for r in group
                  if r.get("status") == "ok" and (r.get("metrics") or {}).get("modes_total") is not None]
        metrics = {k: _metric_summary(v, k, max(totals) if totals else None) for k in keys if (v := _values(group, k))}
        out[label] = {
            "variant": group[0].get("variant"),
            "trials": len(group),
            "ok": sum(r.get("status") == "ok" for r in group),
            "status_by_seed": {str(r.get("seed")): r.get("status") for r in group},
            "metrics": metrics,
        }
    return out


def make_baseline(run_dir: str | Path, tolerances: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """The baseline of the run in ``run_dir`` (a JSON-able dict; see the module docstring)."""
    manifest, results = _load_run(run_dir)
    variants = summarise_variants(manifest, results)
    tolerances = {k: dict(v) for k, v in (tolerances or {}).items()}
    _check_labels(tolerances, variants, "gbench baseline")
    for label, v in variants.items():
        for key, entry in v["metrics"].items():
            tol, basis = tolerance(entry, entry["n"], ALPHA, FLOORS.get(base_key(key), 0.0),
                                   _explicit(tolerances, label, key))
            refuse_unfailing(label, key, entry, tol, basis, "gbench baseline")
    prov = manifest.get("provenance") or {}
    return {
        "gbench_baseline": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "suite": manifest.get("suite"),
        "suite_hash": manifest.get("suite_hash"),
        "protocol": fingerprint(manifest, results),
        "seeds": sorted({r.get("seed") for r in results}),
        "provenance": {k: prov.get(k) for k in ("gbench", "torch", "python", "platform", "processor", "cpu_count",
                                                 "torch_threads", "device", "commit", "dirty")},
        "runtime": manifest.get("runtime"),
        "gate": {"alpha": ALPHA, "floors": dict(FLOORS)},
        "tolerances": tolerances,
        "variants": variants,
    }


def read_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GbenchError(f"{path}: no such baseline file")
    data = read_json(path)
    if not isinstance(data, dict) or data.get("gbench_baseline") != SCHEMA or "protocol" not in data:
        raise GbenchError(f"{path}: not a gbench baseline (write one with `gbench baseline RUN_DIR -o {path}`)")
    return data


# -- check --------------------------------------------------------------------------------------------


def _explicit(tolerances: Mapping[str, Mapping[str, float]], label: str, key: str) -> float | None:
    for scope in (label, "*"):
        table = tolerances.get(scope) or {}
        for k in (key, base_key(key)):
            if k in table:
                return float(table[k])
    return None


def _trial_row(label: str, base: Mapping[str, Any] | None, group: list[dict[str, Any]] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": label, "metric": "trials ok", "direction": "higher", "tolerance": None,
                           "basis": None, "change": None}
    if base is not None:
        row["baseline"] = f"{base['ok']}/{base['trials']}"
    if group is None:
        return {**row, "baseline": row.get("baseline"), "run": "absent", "status": "missing",
                "note": "variant not in the run"}
    ok = sum(r.get("status") == "ok" for r in group)
    row["run"] = f"{ok}/{len(group)}"
    if base is None:
        return {**row, "baseline": None, "status": "new", "note": "variant not in the baseline"}
    by_seed = base.get("status_by_seed") or {}
    any_bad = any(s != "ok" for s in by_seed.values())
    new_bad = [r for r in group if r.get("status") != "ok"
               and (by_seed.get(str(r.get("seed"))) == "ok" if str(r.get("seed")) in by_seed else not any_bad)]
    if new_bad:
        note = ", ".join(f"seed {r.get('seed')} {r.get('status')}" for r in new_bad)
        return {**row, "status": "regressed", "note": note}
    return {**row, "status": "ok", "note": ""}


def check_run(run_dir: str | Path, baseline: Mapping[str, Any],
              tolerances: Mapping[str, Mapping[str, float]] | None = None, where: str = "file") -> list[dict[str, Any]]:
    """Every check of the run in ``run_dir`` against ``baseline``: one row per variant for its trials
    and one per gated metric (``status``: ok, better, regressed, missing; new = not gated)."""
    manifest, results = _load_run(run_dir)
    check_protocol(baseline["protocol"], fingerprint(manifest, results), Path(run_dir), where)
    gate = baseline.get("gate") or {}
    alpha = float(gate.get("alpha", ALPHA))
    floors = {**FLOORS, **(gate.get("floors") or {})}
    base_variants = baseline.get("variants") or {}
    tolerances = _merge(baseline.get("tolerances") or {}, tolerances or {})
    _check_labels(tolerances, base_variants, where)
    groups = _groups(manifest, results)
    rows = []
    for label in list(groups) + [b for b in base_variants if b not in groups]:  # the run's (suite's) order
        base, group = base_variants.get(label), groups.get(label)
        rows.append(_trial_row(label, base, group))
        if base is None or group is None:  # new: not gated; absent: its trials row says so
            continue
        for key, entry in base["metrics"].items():
            values = _values(group, key)
            explicit = _explicit(tolerances, label, key)
            tol, basis = tolerance(entry, len(values) or entry["n"], alpha, floors.get(base_key(key), 0.0), explicit)
            refuse_unfailing(label, key, entry, tol, basis, where)
            row = {"variant": label, "metric": key, "direction": entry["direction"], "baseline": entry["mean"],
                   "baseline_sd": entry.get("sd"), "n_baseline": entry["n"], "tolerance": tol, "basis": basis,
                   "n_run": len(values)}
            if not values:
                rows.append({**row, "run": None, "change": None, "status": "missing", "note": "no ok trial has it"})
                continue
            run_mean = float(np.mean(values))
            worse = (entry["mean"] - run_mean) * (1 if entry["direction"] == "higher" else -1)  # > 0: worse
            status = "regressed" if worse > tol else "better" if -worse > tol else "ok"
            rows.append({**row, "run": run_mean, "change": run_mean - entry["mean"], "status": status, "note": ""})
    return rows


def failures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] in FAILING]


# -- rendering ----------------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"


def render_rows(rows: list[dict[str, Any]], fmt: str = "github", wide: bool = False) -> str:
    """The checks as a table (fits 80 columns unless ``wide``; ``json``: the rows)."""
    if fmt == "json":
        return json.dumps(rows, indent=2, sort_keys=True, default=str)
    headers = ["variant", "metric", "better", "baseline (sd, n)", "run (n)", "change", "tolerance", "status"]
    table = []
    for r in rows:
        if r["metric"] == "trials ok":
            base, run = r.get("baseline") or "-", r.get("run") or "-"
            tol, change = "-", "-"
        else:
            sd = _num(r.get("baseline_sd")) if r.get("baseline_sd") is not None else "-"
            base = f"{_num(r['baseline'])} ({sd}, {r['n_baseline']})"
            run = f"{_num(r['run'])} ({r['n_run']})" if r["run"] is not None else "-"
            change = "-" if r["change"] is None else f"{r['change']:+.4g}"
            tol = f"{_num(r['tolerance'])} ({r['basis']})"
        status = r["status"].upper() if r["status"] in FAILING else r["status"]
        if r.get("note"):
            status += f": {r['note']}"
        table.append([r["variant"], r["metric"], r["direction"], base, run, change, tol, status])
    return fit_table(headers, table, {"github": "github", "plain": "simple"}[fmt], wide=wide, keep=2)


def render_baseline(data: Mapping[str, Any], fmt: str = "github", wide: bool = False) -> str:
    """The recorded means, spreads and the tolerances a run with as many seeds would get."""
    gate = data.get("gate") or {}
    alpha, floors = float(gate.get("alpha", ALPHA)), {**FLOORS, **(gate.get("floors") or {})}
    table = []
    for label, v in data["variants"].items():
        table.append([label, "trials ok", f"{v['ok']}/{v['trials']}", "-", "-", "-"])
        for key, e in v["metrics"].items():
            tol, basis = tolerance(e, e["n"], alpha, floors.get(base_key(key), 0.0),
                                   _explicit(data.get("tolerances") or {}, label, key))
            table.append([label, key, _num(e["mean"]), _num(e.get("sd")), str(e["n"]), f"{_num(tol)} ({basis})"])
    headers = ["variant", "metric", "mean", "sd", "n", "tolerance at equal n"]
    return fit_table(headers, table, {"github": "github", "plain": "simple"}[fmt], wide=wide, keep=2)


# -- commands -----------------------------------------------------------------------------------------

_TOLERANCE_HELP = ("Explicit tolerance, repeatable: METRIC=VALUE for every variant, LABEL:METRIC=VALUE for one "
                   "(replaces the seed-spread rule).")


@click.command("baseline")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Baseline file to write (JSON).")
@click.option("--tolerance", "tolerance_items", multiple=True, metavar="[LABEL:]METRIC=VALUE", help=_TOLERANCE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the baseline written (JSON) instead of its table.")
@click.option("--wide", is_flag=True, help="One wide table (default: fit 80 columns).")
def baseline(run_dir: Path, output: Path, tolerance_items: tuple[str, ...], as_json: bool = False,
             wide: bool = False) -> None:
    """Record RUN_DIR as a baseline for `gbench check`: per variant and metric the mean, the spread
    over seeds and the protocol."""
    data = make_baseline(run_dir, parse_tolerances(tolerance_items))
    for label, v in data["variants"].items():
        n = min((e["n"] for e in v["metrics"].values()), default=0)
        if not v["metrics"]:
            click.echo(f"gbench: warning: variant {label!r} has no ok trial: only its trials are gated", err=True)
        elif n < 3:
            click.echo(f"gbench: warning: variant {label!r} has {n} ok trial(s): its tolerances are "
                       f"{'the floors' if n == 1 else 'very wide (k = 31.8)'}; use 3 or more seeds, or --tolerance",
                       err=True)
    write_json(output, data)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    click.echo(render_baseline(data, wide=wide))
    click.echo(f"\nbaseline of {run_dir} ({data['suite']}, hash {data['suite_hash']}, seeds "
               f"{', '.join(map(str, data['seeds']))}) written to {output}")


@click.command("check")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A file written by `gbench baseline`.")
@click.option("--tolerance", "tolerance_items", multiple=True, metavar="[LABEL:]METRIC=VALUE", help=_TOLERANCE_HELP)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="github", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: every check as a JSON object (same exit codes).")
@click.option("--wide", is_flag=True, help="One wide table (default: fit 80 columns).")
def check(run_dir: Path, baseline_file: Path, tolerance_items: tuple[str, ...], fmt: str, as_json: bool = False,
          wide: bool = False) -> None:
    """Check RUN_DIR against a baseline: exit 0 if every metric is within its tolerance, 1 with the
    regressions otherwise (2: bad input, or a baseline of another protocol)."""
    data = read_baseline(baseline_file)
    rows = check_run(run_dir, data, parse_tolerances(tolerance_items), where=str(baseline_file))
    bad = failures(rows)
    gated = sum(r["status"] != "new" for r in rows)
    if as_json:
        click.echo(json.dumps({"passed": not bad, "checks": gated, "failed": len(bad), "rows": rows}, indent=2,
                              sort_keys=True, default=str))
        if bad:
            raise click.exceptions.Exit(1)
        return
    click.echo(render_rows(rows, fmt, wide))
    if bad:
        click.echo(f"\n{len(bad)} regression(s) against {baseline_file}:\n")
        click.echo(render_rows(bad, fmt, wide))
        click.echo(f"\ngate: FAILED ({len(bad)} of {gated} checks)")
        sys.stdout.flush()
        raise click.exceptions.Exit(1)
    click.echo(f"\ngate: passed ({gated} checks against {baseline_file})")
