"""Tables from result files: mean and 95% confidence interval over seeds, one row per variant.

``report`` only reads results; it never recomputes a number.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from tabulate import tabulate

from gbench.analysis import layer, text
from gbench.analysis.layer import group_by_label, mean_ci, metric_bounds, wilson
from gbench.suite import describe_budget

__all__ = ["FORMATS", "METRIC_COLUMNS", "mean_ci", "metric_bounds", "mode_rates", "render", "summarise",
           "toy_rates", "wilson"]

FORMATS = ("github", "plain", "latex", "json")

# (result key, column title, decimals); metrics absent from every result are left out.
METRIC_COLUMNS = (
    ("modes", "modes", 2),
    ("hq_percent", "HQ %", 1),
    ("reverse_kl", "rev. KL", 3),
    ("jsd_bits", "JSD (bits)", 3),
    ("fid", "FID", 2),
    ("isc_mean", "IS", 2),
    ("kid_mean", "KID", 4),
    ("nonstd_fid", "FID* (non-standard weights)", 2),
    ("nonstd_isc_mean", "IS* (non-standard weights)", 2),
    ("nonstd_kid_mean", "KID* (non-standard weights)", 4),
)
BUDGET_COLUMNS = (("g_steps", "G steps", 0), ("d_steps", "D steps", 0), ("gradient_evals", "grad. evals", 0),
                  ("device_seconds", "device-s", 1))  # what each trial consumed (variants may set their own schedule)
# A toy trial succeeds when it covers every mode with at least this share of high-quality samples, and
# fails when it covers no mode (or diverged): the success / failure columns of the main table.
SUCCESS_HQ_PERCENT = 50.0
PER_SEED_MAX_TRIALS = 60  # text reports list every trial's own numbers up to this many trials


def summarise(results: list[dict[str, Any]], order: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One summary per variant label, in ``order`` (the suite's), then as the results name them."""
    rows = []
    for label, group in group_by_label(results, order).items():
        ok = [r for r in group if r["status"] == "ok"]
        keys = sorted({k for r in ok for k in r.get("metrics", {})})
        rows.append({
            "label": label,
            "variant": group[0].get("variant"),
            "trials": len(group),
            "ok": len(ok),
            "diverged": sum(r["status"] == "diverged" for r in group),
            "failed": sum(r["status"] == "failed" for r in group),
            "seeds": sorted(r.get("seed") for r in group),
            "metrics": {k: mean_ci((r["metrics"].get(k) for r in ok), bounds=metric_bounds(k, ok)) for k in keys},
            "per_seed": [{"seed": r.get("seed"), "status": r["status"], "metrics": dict(r.get("metrics") or {})}
                         for r in sorted(group, key=lambda r: r.get("seed", 0))],
            "rates": toy_rates(group),
            "consumed": {k: mean_ci(r["consumed"].get(k) for r in group if r.get("consumed"))
                         for k, _, _ in BUDGET_COLUMNS},
            "target": _target_summary(group, ok),
        })
    _judge_targets(rows)
    return rows


def toy_rates(group: list[dict[str, Any]], hq_threshold: float = SUCCESS_HQ_PERCENT) -> dict[str, Any] | None:
    """:func:`gbench.analysis.layer.toy_rates` with the report's HQ threshold by default."""
    return layer.toy_rates(group, hq_threshold)


def _target_summary(group: list[dict[str, Any]], ok: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The delta-controlled GAN's numbers over seeds; the verdict is set by :func:`_judge_targets`."""
    targets = [r["target"] for r in group if r.get("target")]
    if not targets:
        return None
    unit = (0.0, 1.0)
    return {"delta": targets[0]["jsd"], "base": (group[0].get("variant_config") or {}).get("base"),
            "eps": targets[0].get("eps"),
            "jsd_p_pdelta": mean_ci((t.get("jsd_p_pdelta") for t in targets), bounds=unit),
            "jsd_pdelta_pg": mean_ci((t.get("jsd_pdelta_pg") for t in targets), bounds=unit),
            "achieved": mean_ci((r["metrics"].get("jsd_bits") for r in ok), bounds=unit),
            "base_achieved": None, "base_label": None, "within_target": "no result"}


def _judge_targets(rows: list[dict[str, Any]]) -> None:
    """Set each delta row's base-variant JSD(p, p_g) (same suite, so same budget) and its verdict.

    yes: the upper 95% limit of the achieved JSD(p, p_g) is <= delta; no: its lower limit is above
    delta; unclear: otherwise; "not different from p": its lower limit is not above the base variant's
    mean JSD(p, p_g), so a generator that ignored the perturbation cannot pass."""
    for row in rows:
        t = row["target"]
        if not t:
            continue
        base = next((r for r in rows if not r["target"] and r["label"] == t["base"]), None) or next(
            (r for r in rows if not r["target"] and r["variant"] == t["base"]), None)
        if base is not None and "jsd_bits" in base["metrics"]:
            t["base_achieved"], t["base_label"] = base["metrics"]["jsd_bits"], base["label"]
        achieved, delta = t["achieved"], t["delta"]
        if achieved["mean"] is None:
            continue
        low = achieved["mean"] if achieved["ci_low"] is None else achieved["ci_low"]
        high = achieved["mean"] if achieved["ci_high"] is None else achieved["ci_high"]
        if t["base_achieved"] is not None and t["base_achieved"]["mean"] is not None \
                and low <= t["base_achieved"]["mean"]:
            t["within_target"] = "not different from p"
        else:
            t["within_target"] = "yes" if high <= delta else "no" if low > delta else "unclear"


def _fmt(s: dict[str, Any] | None, decimals: int) -> str:
    """``mean [low, high]`` (the 95% interval, clipped to the metric's range), or the mean alone."""
    if s is None or s["mean"] is None:
        return "-"
    if s["ci_low"] is None:
        return f"{s['mean']:.{decimals}f}"
    return f"{s['mean']:.{decimals}f} [{s['ci_low']:.{decimals}f}, {s['ci_high']:.{decimals}f}]"


def _rate(rates: dict[str, Any], key: str) -> str:
    low, high = rates[f"{key}_ci"]
    return f"{rates[key]}/{rates['n']} [{low:.2f}, {high:.2f}]"


def results_table(rows: list[dict[str, Any]]) -> tuple[list[tuple[str, str, int]], list[str], list[list[str]]]:
    """(metric columns present, headers, cells) of the main table: one row per variant."""
    present = [c for c in METRIC_COLUMNS if any(c[0] in r["metrics"] for r in rows)]
    toys = any(r["rates"] for r in rows)
    headers = (["variant", "ok/trials"] + [t for _, t, _ in present] + (["success", "failure"] if toys else [])
               + [t for _, t, _ in BUDGET_COLUMNS])
    table = [
        [r["label"], f"{r['ok']}/{r['trials']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
         + (f" ({r['failed']} failed)" if r["failed"] else "")]
        + [_fmt(r["metrics"][k], d) if k in r["metrics"] else "-" for k, _, d in present]
        + ([_rate(r["rates"], "success") if r["rates"] else "-", _rate(r["rates"], "failure") if r["rates"] else "-"]
           if toys else [])
        + [_fmt(r["consumed"][k], d) for k, _, d in BUDGET_COLUMNS]
        for r in rows
    ]
    return present, headers, table


def delta_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(headers, cells) of the δ-controlled GAN's table: per δ the target, the training law's exact
    JSD(p, p_δ), how well the GAN learned it, JSD(p_δ, p_g), the achieved JSD(p, p_g), the base variant's
    JSD(p, p_g) at the same budget, and the verdict."""
    headers = ["variant", "target δ", "JSD(p, p_δ)", "JSD(p_δ, p_g)", "JSD(p, p_g)", "base JSD(p, p_g)",
               "within target"]
    table = [[r["label"], f"{t['delta']:g}", _fmt(t["jsd_p_pdelta"], 3), _fmt(t["jsd_pdelta_pg"], 3),
              _fmt(t["achieved"], 3), (f"{_fmt(t['base_achieved'], 3)} ({t['base_label']})" if t["base_label"]
                                       else "-"), t["within_target"]]
             for r in rows if (t := r["target"])]
    return headers, table


def per_seed_table(rows: list[dict[str, Any]], present: list[tuple[str, str, int]]) -> tuple[list[str], list[list[str]]]:
    """(headers, cells): every trial's own numbers, one row per variant and seed."""
    headers = ["variant", "seed", "status"] + [t for _, t, _ in present]
    table = [[r["label"], str(s["seed"]), s["status"]]
             + [f"{s['metrics'][k]:.{d}f}" if isinstance(s["metrics"].get(k), (int, float)) else "-"
                for k, _, d in present]
             for r in rows for s in r["per_seed"]]
    return headers, table


def missing_metrics(results: list[dict[str, Any]]) -> list[tuple[tuple[str, str], int]]:
    """((metric, why), number of trials) for metrics that could not be computed."""
    missing: dict[tuple[str, str], int] = {}
    for r in results:
        for metric, message in (r.get("metric_errors") or {}).items():
            missing[(metric, message)] = missing.get((metric, message), 0) + 1
    return list(missing.items())


def render(manifest: dict[str, Any], results: list[dict[str, Any]], fmt: str = "github", wide: bool = False) -> str:
    """The report as text: ``github``/``plain`` fit 80 columns unless ``wide`` (:func:`gbench.analysis.text.fit_table`),
    ``latex`` is booktabs tables with notes as ``%`` comments, ``json`` the summaries."""
    rows = summarise(results, manifest.get("variants", ()))
    if fmt == "json":
        return json.dumps({"suite": manifest.get("suite"), "suite_hash": manifest.get("suite_hash"),
                           "protocol": _protocol(results), "variants": rows}, indent=2, sort_keys=True)
    latex = fmt == "latex"
    tablefmt = {"github": "github", "plain": "simple", "latex": "latex"}[fmt]

    def draw(headers: list[str], cells: list[list[str]]) -> str:
        return text.latex_table(headers, cells) if latex else text.fit_table(headers, cells, tablefmt, wide=wide)

    def note(line: str) -> str:
        return text.wrap_note(line, wide=wide, prefix="% " if latex else "")

    present, headers, table = results_table(rows)
    parts = [note(_title(manifest, results, "github")), draw(headers, table)]
    if any(r["target"] for r in rows):
        parts.append(draw(*delta_table(rows)))
    if len(results) <= PER_SEED_MAX_TRIALS:
        parts.append(draw(*per_seed_table(rows, present)))
    else:
        parts.append(note(f"per-seed values of the {len(results)} trials: gbench report --format json"))
    published = published_rows(manifest, results)
    if published:
        parts += [draw(published[0], published[1]), note(published[2])]
    parts += [note(f"{metric} not computed in {n} trials: {message}") for (metric, message), n in missing_metrics(results)]
    kinds = {r.get("data_kind", "toy") for r in results}
    parts.append(note(_footnote("github", present, kinds, targets=any(r["target"] for r in rows))))
    return "\n\n".join(parts)


# -- success / failure rates beside a suite's published numbers ([reference_results]) --------------------


def mode_rates(results: list[dict[str, Any]], order: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Per variant label: Welfert et al.'s success (all modes covered) and failure (no mode, or diverged)
    counts over finished trials, with Wilson intervals (:func:`toy_rates` without an HQ threshold)."""
    return [{"label": label, **rates} for label, group in group_by_label(results, order).items()
            if (rates := toy_rates(group, 0.0))]


def published_rows(manifest: dict[str, Any], results: list[dict[str, Any]]
                   ) -> tuple[list[str], list[list[str]], str] | None:
    """(headers, cells, note): our success / failure rates next to the suite's ``[reference_results]``
    (None if it has none)."""
    published = (manifest.get("suite_content") or {}).get("reference_results") or {}
    if not published:
        return None
    rows = [r for r in mode_rates(results, manifest.get("variants", ())) if r["n"] and r["label"] in published]
    extra = sorted({k for v in published.values() for k, x in v.items()
                    if k not in ("success", "failure", "source") and not isinstance(x, str)})

    def rate(r: dict[str, Any], key: str) -> str:
        low, high = r[f"{key}_ci"]
        return f"{r[f'{key}_rate']:.2f} [{low:.2f}, {high:.2f}] ({r[key]}/{r['n']})"

    def number(value: Any, rate: bool = False) -> str:
        return "-" if value is None else f"{value:.2f}" if rate else f"{value:g}"

    headers = (["variant", "success (ours, 95% Wilson)", "published success", "failure (ours, 95% Wilson)",
                "published failure"] + [f"published {k}" for k in extra] + ["source"])
    table = [[r["label"], rate(r, "success"), number(published[r["label"]].get("success"), True), rate(r, "failure"),
              number(published[r["label"]].get("failure"), True)]
             + [number(published[r["label"]].get(k)) for k in extra] + [published[r["label"]].get("source", "")]
             for r in rows]
    if not table:
        return None
    note = ("success: all modes covered (modes = modes_total); failure: no mode covered, or diverged; "
            "over finished trials; published: the suite's [reference_results].")
    return headers, table, note


def published_table(manifest: dict[str, Any], results: list[dict[str, Any]], tablefmt: str) -> list[str]:
    """:func:`published_rows` drawn by tabulate in ``tablefmt`` (e.g. ``html``), then its note."""
    found = published_rows(manifest, results)
    if not found:
        return []
    headers, table, note = found
    return [tabulate(table, headers, tablefmt=tablefmt, disable_numparse=True), note]


def _protocol(results: list[dict[str, Any]]) -> dict[str, Any]:
    first = next((r for r in results if r.get("protocol")), {})
    return {"protocol": first.get("protocol"), "budget": first.get("budget"), "dataset": first.get("dataset")}


def _title(manifest: dict[str, Any], results: list[dict[str, Any]], fmt: str) -> str:
    p = _protocol(results)
    budget, proto = p["budget"] or {}, p["protocol"] or {}
    text = (f"suite {manifest.get('suite')} (hash {manifest.get('suite_hash')}): reference {proto.get('reference')}, "
            f"{proto.get('eval_samples')} samples per evaluation, budget {describe_budget(budget)}")
    return f"% {text}" if fmt == "latex" else text


NOTES = {
    "modes": "modes: components with a sample within 3σ",
    "hq_percent": "HQ %: samples within 3σ of their component",
    "reverse_kl": "rev. KL: KL(assignment histogram ‖ mixture weights), nats",
    "fid": "FID, IS, KID: torch-fidelity with the official Inception weights (sha256-checked)",
    "nonstd_fid": "* computed with NON-STANDARD feature weights: not comparable with published numbers",
    "nonstd_isc_mean": "* computed with NON-STANDARD feature weights: not comparable with published numbers",
}


def _footnote(fmt: str, present: list[tuple[str, str, int]], kinds: set[str], targets: bool = True) -> str:
    notes = ["mean [95% t-interval over seeds, clipped to the metric's range]"]
    notes += list(dict.fromkeys(NOTES[k] for k, _, _ in present if k in NOTES))
    if "jsd_bits" in {k for k, _, _ in present}:
        if "toy" in kinds:
            notes.append("JSD (toys): against the exact data density, bits")
            notes.append(f"success: all modes covered with HQ >= {SUCCESS_HQ_PERCENT:g} %; failure: no mode covered "
                         "or diverged; k/n [95% Wilson interval]")
        if "image" in kinds:
            notes.append("JSD (images): cross-fitted classifier estimate on fixed features, bits, a LOWER bound")
    if targets:
        notes.append("within target: yes if the 95% interval of JSD(p, p_g) lies below δ, no if above, else "
                     "unclear; not different from p if its lower limit is not above the base variant's JSD(p, p_g)")
    text = "; ".join(notes) + "."
    return f"% {text}" if fmt == "latex" else text
