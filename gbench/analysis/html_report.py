"""One self-contained HTML page per run: overview, tables, samples, dynamics, settings, protocol.

``write_html(run_dir)`` reads the run's manifest, trial results and saved samples (it never
recomputes a metric), writes ``run_dir/report.html`` with every plot embedded as a base64 PNG, and
writes the same plots beside it as ``run_dir/plots/<name>.png`` and ``.pdf`` for papers. The page
loads nothing: no external CSS, scripts, fonts or images.

Sections (a navigation bar links them): an overview ranking the variants on the run's primary metric
(:func:`gbench.analysis.layer.primary_metric`) with ``gbench compare``'s intervals and Holm-corrected
significance and a forest plot of the differences from the best variant; the report's tables and the
per-seed table; the plots (final samples annotated with each trial's metrics, sample evolution, loss
curves, metrics against budget, the δ plot); variant settings, dataset, model and optimiser as
key/value tables; the evaluation protocol and provenance, with the run's start and finish times.
"""
from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from gbench.atomic import write_atomic
from gbench.errors import GbenchError
from gbench.analysis import report
from gbench.analysis.layer import group_by_label, primary_metric, setting_differences, settings_of
from gbench.analysis.report import _footnote, _protocol, summarise
from gbench.run.results import load_results

PLOTS = "plots"
REPORT = "report.html"
DPI = 150

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}td.num{text-align:right}tr.differs td{background:#fff6dd}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.4em 0;z-index:9;font-size:.92em}
nav a{margin-right:1em;color:#0645ad;text-decoration:none}nav a:hover{text-decoration:underline}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:.5em 0}dl.kv dt{font-weight:600}
dl.kv dd{margin:0}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.6em;overflow:auto;font-size:.85em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}.note{color:#555;font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value), quote=True)


def tables_html(manifest: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The report's tables (the same columns and numbers as ``gbench report``) as escaped HTML."""
    rows = summarise(results, manifest.get("variants", ()))
    present, headers, table = report.results_table(rows)
    parts = ["<h3>Results</h3>", str(tabulate(table, headers, tablefmt="html", disable_numparse=True))]
    if any(r["target"] for r in rows):
        dheaders, dtable = report.delta_table(rows)
        parts += ['<h3>δ-controlled GAN</h3>', str(tabulate(dtable, dheaders, tablefmt="html", disable_numparse=True))]
    for part in report.published_table(manifest, results, "html"):  # beside a suite's [reference_results]
        part = str(part)
        parts.append(part if part.startswith("<table") else f'<p class="note">{_e(part)}</p>')
    parts += [f'<p class="note">{_e(metric)} not computed in {n} trials: {_e(message)}</p>'
              for (metric, message), n in report.missing_metrics(results)]
    problems = [r for r in results if r.get("status") != "ok"]
    if problems:
        items = "".join(f"<li>{_e(r.get('trial_id'))}: {_e(r.get('status'))} "
                        f"({_e(r.get('error') or 'losses not finite at G step ' + str(r.get('diverged_at')))})</li>"
                        for r in problems)
        parts.append(f'<p class="note">Trials not ok:</p><ul class="note">{items}</ul>')
    kinds = {r.get("data_kind", "toy") for r in results}
    parts.append(f'<p class="note">{_e(_footnote("github", present, kinds, targets=any(r["target"] for r in rows)))}</p>')
    return "\n".join(parts)


def _kv(pairs: Iterable[tuple[str, Any]], strip: int = 0) -> str:
    """Key/value pairs as a definition list (empty values left out; ``strip``: characters cut from each key)."""
    items = "".join(f"<dt>{_e(k[strip:])}</dt><dd>{_e(v)}</dd>" for k, v in pairs if v not in (None, "", {}, []))
    return f'<dl class="kv">{items}</dl>'


def _distinct(results: list[dict[str, Any]], *keys: str) -> list[str]:
    seen: list[str] = []
    for r in results:
        value = r
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)
        if value is not None and text not in seen:
            seen.append(text)
    return seen


def protocol_html(manifest: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Suite, budget, evaluation protocol, metric definitions and provenance, as recorded in the results."""
    p = _protocol(results)
    budget, proto = p["budget"] or {}, p["protocol"] or {}
    content = manifest.get("suite_content") or {}
    suite = [
        ("suite", manifest.get("suite")),
        ("description", content.get("description")),
        ("suite hash", manifest.get("suite_hash")),
        ("suite file", manifest.get("suite_path")),
        ("variants", ", ".join(manifest.get("variants") or ())),
        ("seeds", ", ".join(_distinct(results, "seed"))),
        ("trials", f"{len(results)} results for {len(manifest.get('trials') or ())} trials in the manifest"),
    ]
    budget_rows = [
        ("G steps", budget.get("g_steps")),
        ("D steps per G step", budget.get("d_steps_per_g_step")),
        ("batch size", budget.get("batch_size")),
        ("device-seconds cap", budget.get("max_device_seconds") or "none"),
    ]
    eval_rows = [
        ("samples per evaluation", proto.get("eval_samples")),
        ("evaluation seed", proto.get("eval_seed")),
        ("evaluated at (fractions of the budget)", ", ".join(str(a) for a in proto.get("eval_at") or ())),
        ("reference", proto.get("reference")),
    ]
    prov = manifest.get("provenance") or {}
    keys = ("gbench", "torch", "python", "commit", "dirty", "platform", "machine", "processor", "cpu_count",
            "torch_threads", "device", "gpu", "cuda", "time")
    prov_rows = [(k, prov.get(k)) for k in keys]
    prov_rows += [(k, v) for k, v in prov.items() if k not in dict(prov_rows)]
    runtime = manifest.get("runtime") or {}
    prov_rows += [(f"runtime {k}", v) for k, v in runtime.items()]
    for label, key in (("trial commits", "commit"), ("trial gbench versions", "gbench"),
                       ("trial torch versions", "torch")):
        values = _distinct(results, "provenance", key)
        if len(values) > 1:
            prov_rows.append((label, ", ".join(values) + " (results of this run come from several)"))
    metrics = proto.get("metrics") or {}
    data_prov = _distinct(results, "data_provenance")
    start, finish = run_times(results)
    suite += [("started", start), ("finished (last result written)", finish)]
    parts = [
        "<h3>Suite</h3>", _kv(suite),
        ("<h3>Budget (the first variant's; variants set their own, see Settings)</h3>"
         if setting_differences(group_by_label(results), ("budget",)) else
         "<h3>Budget (identical for every variant)</h3>"), _kv(budget_rows),
        "<h3>Evaluation</h3>", _kv(eval_rows),
    ]
    if metrics:
        parts.append("<h3>Metric protocols</h3>")
        for name, definition in metrics.items():
            parts.append(f"<h4>{_e(name)}</h4>" + _kv(settings_of({"m": definition}, ("m",)).items(), strip=2))
    if data_prov:
        parts.append("<h3>Data provenance</h3>" + "".join(
            _kv(settings_of({"d": json.loads(v) if v.startswith("{") else v}, ("d",)).items(), strip=2)
            for v in data_prov))
    parts += ["<h3>Provenance</h3>", _kv(prov_rows)]
    if content:
        parts.append("<details><summary>Suite content (as hashed)</summary><pre>"
                     f"{_e(json.dumps(content, indent=2, sort_keys=True, default=str))}</pre></details>")
    return "\n".join(parts)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data), binary=True)


def run_times(results: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(start, finish) of a run in UTC: its first trial's start and its last result file's write time."""
    starts = [r["started"] for r in results if isinstance(r.get("started"), (int, float))]
    ends = [r["_written"] for r in results if isinstance(r.get("_written"), (int, float))]

    def utc(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

    return (utc(min(starts)) if starts else None, utc(max(ends)) if ends else None)


def _table(headers: list[str], rows: list[list[Any]], numeric: Iterable[int] = (), marked: Iterable[int] = ()) -> str:
    """An escaped HTML table; columns in ``numeric`` right-aligned, rows in ``marked`` highlighted."""
    numeric, marked = set(numeric), set(marked)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    num, mark = ' class="num"', ' class="differs"'
    body = "".join(
        f"<tr{mark if i in marked else ''}>"
        + "".join(f"<td{num if j in numeric else ''}>{_e(c)}</td>" for j, c in enumerate(row)) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def settings_html(manifest: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Variant settings (a column per variant; rows that differ highlighted), then dataset, model,
    optimiser and budget as key/value tables (per variant where variants set their own)."""
    groups = group_by_label(results, manifest.get("variants", ()))
    parts = []
    for title, field in (("Variant settings", "variant_config"), ("Optimiser", "optim"), ("Model", "model"),
                         ("Dataset", "dataset"), ("Budget", "budget")):
        per = {label: settings_of(g[0], (field,)) for label, g in groups.items()}
        keys = list(dict.fromkeys(k for v in per.values() for k in v))
        if not keys:
            continue
        differs = setting_differences({label: g for label, g in groups.items()}, (field,))
        name = lambda k: k.split(".", 1)[1] if "." in k else k  # noqa: E731
        if field == "variant_config" or differs:
            rows = [[name(k)] + [per[label].get(k, "-") for label in groups] for k in keys]
            marked = [i for i, k in enumerate(keys) if k in differs]
            note = " (highlighted: differs between variants)" if marked else ""
            parts.append(f"<h3>{_e(title)}</h3>" + _table(["setting"] + list(groups), rows, marked=marked)
                         + (f'<p class="note">{_e(note.strip(" ()"))}</p>' if note else ""))
        else:
            parts.append(f"<h3>{_e(title)} (every variant)</h3>" + _kv((name(k), v) for k, v in next(iter(per.values())).items()))
    return "\n".join(parts)


def per_seed_html(manifest: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """Every trial's own numbers: a row per variant and seed."""
    rows = summarise(results, manifest.get("variants", ()))
    present, _, _ = report.results_table(rows)
    headers, table = report.per_seed_table(rows, present)
    return _table(headers, table, numeric=range(3, len(headers)))


def overview(run_dir: Path, manifest: dict[str, Any], results: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """The ranking on the primary metric with compare's statistics, and the forest plot (as a Plot)."""
    from gbench.analysis.compare import compare_runs
    from gbench.analysis.dynamics import forest_figure
    from gbench.analysis.plots import Plot

    keys = {k for r in results if r.get("status") == "ok" for k in (r.get("metrics") or {})}
    key = primary_metric(keys)
    if key is None:
        return '<p class="note">No ok trial has a metric: nothing to rank.</p>', []
    if len(group_by_label(results)) < 2:
        return f'<p class="note">One variant: nothing to rank (primary metric {_e(key)}).</p>', []
    try:
        c = compare_runs([run_dir], [key])
    except GbenchError as exc:
        return f'<p class="note">Not ranked: {_e(exc)}</p>', []
    m = c.metrics[0]
    rates = {s.group: s for s in c.success_rates}
    def place(g: Any) -> tuple:  # by rank, and within a rank by the mean (best first)
        s = m.summaries[g.name]
        return s["rank"] is None, s["rank"] or 0, -(m.direction or 0) * (s["mean"] if s["mean"] is not None else 0.0)

    order = sorted(c.groups, key=place)
    rows = []
    for g in order:
        s = m.summaries[g.name]
        interval = "-" if s["ci_low"] is None else f"[{s['ci_low']:.4g}, {s['ci_high']:.4g}]"
        rate = rates.get(g.name)
        rows.append([("-" if s["rank"] is None else f"{s['rank']}{'=' if s['tied'] else ''}"), g.name,
                     "-" if s["mean"] is None else f"{s['mean']:.4g}", interval, f"{g.ok}/{g.trials}",
                     f"{rate.all_modes}/{rate.trials}" if rate else "-"])
    way = {1: "higher is better", -1: "lower is better"}[m.direction] if m.direction else "no direction"
    html_ = (f'<p>Ranked on <strong>{_e(key)}</strong> ({_e(way)}), the primary metric of this run; a variant shares the '
             f'rank of the best of its class (<code>1=</code>) unless significantly worse after Holm at '
             f'α = {c.alpha:g} (<code>gbench compare {_e(run_dir)}</code>).</p>'
             + _table(["rank", "variant", f"mean {key}", "95% CI", "ok/trials", "all modes covered"], rows,
                      numeric=(2, 3)))
    if c.settings_differences:
        html_ += '<p class="note">Settings that differ between variants: ' + _e(", ".join(c.settings_differences)) + "</p>"
    fig = forest_figure(c, key)
    plots = [Plot("forest", "Differences from the best variant", (
        f"Each variant's mean {key} minus the best variant's, with the 95% interval of compare (paired t on "
        "matched seeds, else Welch); filled markers are significant after the Holm correction."), fig)] if fig else []
    return html_, plots


def _figure_html(run_dir: Path, plot: Any, pdf: bool) -> str:
    png = _png(plot.figure)
    _atomic_write(run_dir / PLOTS / f"{plot.name}.png", png)
    if pdf:
        buf = io.BytesIO()
        plot.figure.savefig(buf, format="pdf")
        _atomic_write(run_dir / PLOTS / f"{plot.name}.pdf", buf.getvalue())
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="{_e(plot.name)}"><h3>{_e(plot.title)}</h3>'
            f'<img src="data:image/png;base64,{data}" alt="{_e(plot.title + ": " + plot.caption)}">'
            f"<figcaption>{_e(plot.caption)} (also {_e(PLOTS + '/' + plot.name + '.png')})</figcaption></figure>")


SECTIONS = (("overview", "Overview"), ("tables", "Tables"), ("per-seed", "Per seed"), ("plots", "Plots"),
            ("settings", "Settings"), ("protocol", "Protocol"))


def write_html(run_dir: str | Path, out_path: str | Path | None = None, pdf: bool = True) -> Path:
    """Write the run's report page (default ``run_dir/report.html``) and its plots under ``run_dir/plots/``
    (PNG, and PDF when ``pdf``); returns the page's path."""
    from gbench.analysis.plots import run_plots
    from gbench.run.results import trial_path

    run_dir = Path(run_dir)
    manifest, results = load_results(run_dir)
    if not results:
        raise GbenchError(f"{run_dir}: no trial results yet")
    for r in results:  # when each result was written, for the finish time
        path = trial_path(run_dir, r["trial_id"])
        r["_written"] = path.stat().st_mtime if path.is_file() else None
    out = Path(out_path) if out_path is not None else run_dir / REPORT
    overview_html, overview_plots = overview(run_dir, manifest, results)
    plots = run_plots(run_dir, manifest, results)
    figures = [_figure_html(run_dir, p, pdf) for p in plots]
    overview_html += "".join(_figure_html(run_dir, p, pdf) for p in overview_plots)
    nav_plots = " ".join(f'<a href="#{_e(p.name)}">{_e(p.title)}</a>' for p in plots)
    nav = "".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in SECTIONS)
    start, finish = run_times(results)
    title = f"gbench report: {manifest.get('suite')} ({manifest.get('suite_hash')})"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gbench">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<nav>{nav}</nav>
<h1>{_e(title)}</h1>
<p class="note">Written from the result files of {_e(run_dir.resolve())}; no number on this page was recomputed.
Started {_e(start)}; finished {_e(finish)} ({len(results)} results).</p>
<h2 id="overview">Overview</h2>
{overview_html}
<h2 id="tables">Tables</h2>
{tables_html(manifest, results)}
<h2 id="per-seed">Per seed</h2>
{per_seed_html(manifest, results)}
<h2 id="plots">Plots</h2>
<p class="note">{nav_plots}</p>
{chr(10).join(figures) if figures else '<p class="note">No plot applies to this run.</p>'}
<h2 id="settings">Settings</h2>
{settings_html(manifest, results)}
<h2 id="protocol">Protocol</h2>
{protocol_html(manifest, results)}
</body>
</html>
"""
    _atomic_write(out, page.encode("utf-8"))
    return out
