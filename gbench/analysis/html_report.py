"""One self-contained HTML page per run: the tables, the protocol and the plots.

``write_html(run_dir)`` reads the run's manifest, trial results and saved samples (it never
recomputes a metric), writes ``run_dir/report.html`` with every plot embedded as a base64 PNG, and
writes the same plots beside it as ``run_dir/plots/<name>.png`` and ``.pdf`` for papers. The page
loads nothing: no external CSS, scripts, fonts or images.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from gbench.atomic import write_atomic
from gbench.errors import GbenchError
from gbench.analysis import report
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
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}
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
    parts.append(f'<p class="note">{_e(_footnote("github", present, kinds))}</p>')
    return "\n".join(parts)


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs if v not in (None, "", {}, []))
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
    budget, proto, dataset = p["budget"] or {}, p["protocol"] or {}, p["dataset"] or {}
    first = next((r for r in results if r.get("protocol")), {})
    model = first.get("model") or {}
    optim = first.get("optim") or {}
    content = manifest.get("suite_content") or {}
    suite = [
        ("suite", manifest.get("suite")),
        ("description", content.get("description")),
        ("suite hash", manifest.get("suite_hash")),
        ("suite file", manifest.get("suite_path")),
        ("variants", ", ".join(manifest.get("variants") or ())),
        ("seeds", ", ".join(_distinct(results, "seed"))),
        ("trials", f"{len(results)} results for {len(manifest.get('trials') or ())} trials in the manifest"),
        ("dataset", json.dumps(dataset, sort_keys=True, default=str) if dataset else None),
        ("model", json.dumps(model, sort_keys=True, default=str) if model else None),
        ("optimiser", json.dumps(optim, sort_keys=True, default=str) if optim else None),
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
    parts = [
        "<h3>Suite</h3>", _kv(suite),
        "<h3>Budget (identical for every variant)</h3>", _kv(budget_rows),
        "<h3>Evaluation</h3>", _kv(eval_rows),
    ]
    if metrics:
        parts.append("<h3>Metric protocols</h3>")
        for name, definition in metrics.items():
            text = json.dumps(definition, indent=2, sort_keys=True, default=str)
            parts.append(f"<h4>{_e(name)}</h4><pre>{_e(text)}</pre>")
    if data_prov:
        parts.append("<h3>Data provenance</h3>" + "".join(f"<pre>{_e(v)}</pre>" for v in data_prov))
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


def write_html(run_dir: str | Path, out_path: str | Path | None = None, pdf: bool = True) -> Path:
    """Write the run's report page (default ``run_dir/report.html``) and its plots under ``run_dir/plots/``
    (PNG, and PDF when ``pdf``); returns the page's path."""
    from gbench.analysis.plots import run_plots

    run_dir = Path(run_dir)
    manifest, results = load_results(run_dir)
    if not results:
        raise GbenchError(f"{run_dir}: no trial results yet")
    out = Path(out_path) if out_path is not None else run_dir / REPORT
    figures = []
    for plot in run_plots(run_dir, manifest, results):
        png = _png(plot.figure)
        _atomic_write(run_dir / PLOTS / f"{plot.name}.png", png)
        if pdf:
            buf = io.BytesIO()
            plot.figure.savefig(buf, format="pdf")
            _atomic_write(run_dir / PLOTS / f"{plot.name}.pdf", buf.getvalue())
        data = base64.b64encode(png).decode("ascii")
        figures.append(
            f'<figure id="{_e(plot.name)}"><h3>{_e(plot.title)}</h3>'
            f'<img src="data:image/png;base64,{data}" alt="{_e(plot.title + ": " + plot.caption)}">'
            f"<figcaption>{_e(plot.caption)} (also {_e(PLOTS + '/' + plot.name + '.png')})</figcaption></figure>")
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
<h1>{_e(title)}</h1>
<p class="note">Written from the result files of {_e(run_dir.resolve())}; no number on this page was recomputed.
Updated {_e(manifest.get("updated"))}.</p>
<h2 id="tables">Tables</h2>
{tables_html(manifest, results)}
<h2 id="plots">Plots</h2>
{chr(10).join(figures) if figures else '<p class="note">No plot applies to this run.</p>'}
<h2 id="protocol">Protocol</h2>
{protocol_html(manifest, results)}
</body>
</html>
"""
    _atomic_write(out, page.encode("utf-8"))
    return out
