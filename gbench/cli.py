"""The ``gbench`` command line: a thin layer over the library."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from gbench import __version__
from gbench.errors import GbenchError
from gbench.datasets.samples import load_samples

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit code 2."""

    exit_code = 2


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from gbench.plugins import get_plugins

        try:
            if ctx.invoked_subcommand not in (None, "plugins"):
                for failed in get_plugins().failures:
                    click.echo(f"gbench: warning: plugin {failed.name!r} left out: {failed.error}", err=True)
            return super().invoke(ctx)
        except GbenchError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:  # a full, read-only or missing file system: the environment, one line
            where = f"{exc.filename}: " if exc.filename else ""
            raise UserError(f"{where}{exc.strerror or exc}") from None


def _csv(kind: type) -> Any:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list | None:
        if value is None:
            return None
        try:
            return [kind(v.strip()) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list, got {value!r}") from None

    return parse


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="gbench")
def cli() -> None:
    """Benchmark GAN variants under identical compute budgets."""


def resume_command(ctx: click.Context, out: Path) -> str:
    """The ``gbench run`` command line that continues this run: its suite and every option given that
    changes what runs or how, with ``--out OUT --resume``."""
    parts = ["gbench", "run", str(ctx.params["suite"]), "--out", str(out)]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or param.name in ("out", "resume", "quiet", "as_json", "wide") \
                or value in (None, False) or value == param.default:
            continue
        flag = max(param.opts, key=len)
        if value is True:
            parts.append(flag)
        else:
            parts += [flag, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return " ".join(parts + ["--resume"])


def run_summary(manifest: dict[str, Any], results: list[dict[str, Any]], out: Path, failed: list[str]) -> dict[str, Any]:
    """What ``gbench run --json`` prints: the run directory, each trial's status and main metrics, and the
    report's per-variant summaries."""
    from gbench.analysis.report import summarise

    return {"suite": manifest.get("suite"), "suite_hash": manifest.get("suite_hash"), "results": str(out),
            "failed": failed,
            "trials": [{"trial_id": r["trial_id"], "label": r.get("label"), "seed": r.get("seed"),
                        "status": r["status"], "metrics": r.get("metrics") or {}} for r in results],
            "variants": summarise(results, manifest.get("variants", ()))}


@cli.command()
@click.argument("suite")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run directory [runs/SUITE-TIME].")
@click.option("--variants", callback=_csv(str), help="Only these variants (names or labels), comma-separated.")
@click.option("--seeds", callback=_csv(int), help="Use these seeds instead of the suite's, e.g. 0,1,2.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Autocast the training step (fp16 only on cuda).")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="GBENCH_DATA_ROOT",
              help="Where image datasets live (torchvision layout) [env GBENCH_DATA_ROOT; else the suite's].")
@click.option("--inception-weights", type=click.Path(dir_okay=False),
              help="Local Inception weights for FID/IS/KID (sha256-checked) [env GBENCH_INCEPTION_WEIGHTS].")
@click.option("--resume", is_flag=True, help="Continue a run in --out, skipping finished trials.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=1000, show_default=True, metavar="N",
              help="Save each trial's training state every N G steps for --resume (0: at evaluations only).")
@click.option("--executor", default="local", show_default=True, metavar="local|process|ray",
              help="Where trials run: this process, a pool of local processes, or Ray tasks (pip install gbench[ray]).")
@click.option("--jobs", type=int, metavar="N",
              help="Trials at once [process: usable CPUs // --threads; ray: as many as the cluster schedules].")
@click.option("--address", metavar="ADDR",
              help="Ray cluster to join (auto, HOST:PORT, ray://HOST:PORT) [Ray's default].")
@click.option("--threads", type=int, metavar="N",
              help="torch threads per trial; the same N gives the same numbers on every executor "
                   "[local: torch's default; process, ray: CPUs // jobs].")
@click.option("--batch-seeds", "batch_seeds", is_flag=False, flag_value="-1", default=None, hidden=True,
              help="Retired: batching is the default (kept so older command lines still run).")
@click.option("--no-batch", is_flag=True,
              help="Train every seed separately (default: the seeds of each variant configuration train "
                   "together as one batched group, in this process; docs/batched.md).")
@click.option("--tensorboard", is_flag=True,
              help="Log losses, metrics, samples and HParams to OUT/tensorboard/TRIAL/, written by the process "
                   "that trains each trial (any executor; pip install 'gbench[tensorboard]').")
@click.option("--quiet", is_flag=True, help="No progress and no table; only the results path (stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary at the end instead of the table.")
@click.option("--wide", is_flag=True, help="The table as one wide table (default: fit 80 columns).")
def run(suite: str, out: Path | None, variants: list[str] | None, seeds: list[int] | None, device: str,
        precision: str, data_root: str | None, inception_weights: str | None, resume: bool, quiet: bool,
        checkpoint_every: int, executor: str, jobs: int | None, address: str | None, threads: int | None,
        no_batch: bool = False, tensorboard: bool = False, as_json: bool = False, wide: bool = False,
        batch_seeds: str | None = None) -> None:
    """Run SUITE (a TOML file, or the name of a built-in suite) and print its results table.

    Exit status: 0 when every trial finished (ok or diverged), 1 when a trial failed (crashed, was
    killed or lost; the table and result files are still written), 2 for bad input (nothing runs)."""
    from gbench.analysis.report import render
    from gbench.run.results import load_results
    from gbench.run.executors import make_executor
    from gbench.run.runner import FINISHED, run_suite
    from gbench.suite import load_suite
    from gbench.run.trial import Runtime, trials_of

    if seeds is not None and (not seeds or any(s < 0 for s in seeds)):
        raise GbenchError("--seeds must list non-negative integers")
    loaded = load_suite(suite).select(variants, seeds)
    if resume and out is None:
        raise GbenchError("--resume needs --out DIR (the run to continue)")
    out = out or Path("runs") / f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    runtime = Runtime(device, precision, data_root, inception_weights, checkpoint_every=checkpoint_every,
                      batch=not no_batch)
    pool = make_executor(executor, jobs, address, threads)
    from contextlib import nullcontext
    from gbench.observers import tensorboard as tb

    try:
        with tb.enabled(out) if tensorboard else nullcontext():
            run_suite(loaded, out, runtime, resume=resume, quiet=quiet, executor=pool)
    except KeyboardInterrupt:
        click.echo(f"\ngbench: interrupted; finished trials are kept in {out}; continue with "
                   f"`{resume_command(click.get_current_context(), out)}`", err=True)
        sys.exit(130)
    manifest, results = load_results(out)
    status = {r["trial_id"]: r["status"] for r in results}
    failed = [t.id for t in trials_of(loaded) if status.get(t.id) not in FINISHED]
    if as_json:
        click.echo(json.dumps(run_summary(manifest, results, out, failed), indent=2, sort_keys=True, default=str))
    elif not quiet:
        click.echo(render(manifest, results, "github", wide=wide))
    click.echo(f"{'' if quiet or as_json else chr(10)}results: {out}", err=as_json)
    if failed:
        click.echo(f"gbench: {len(failed)} trial(s) failed ({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); "
                   f"see their result files in {out}/trials; `--resume` runs them again", err=True)
        sys.exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["github", "plain", "latex", "json", "html"]), default="github",
              show_default=True, help="html: one self-contained page with the tables, dynamics, protocol and plots.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of stdout (html: [RUN_DIR/report.html]; "
                   "its plots go to RUN_DIR/plots/).")
@click.option("--wide", is_flag=True, help="github/plain: one wide table (default: fit 80 columns).")
def report(run_dir: Path, fmt: str, as_json: bool, output: Path | None, wide: bool) -> None:
    """Tables of a run: mean and 95% CI over seeds, one row per variant."""
    from gbench.analysis.report import render
    from gbench.atomic import write_atomic
    from gbench.run.results import load_results

    fmt = "json" if as_json else fmt
    manifest, results = load_results(run_dir)
    if not results:
        raise GbenchError(f"{run_dir}: no trial results yet")
    if fmt == "html":
        from gbench.analysis.html_report import write_html

        click.echo(write_html(run_dir, output))
        return
    text = render(manifest, results, fmt, wide=wide)
    if output is None:
        click.echo(text)
        return
    write_atomic(output, lambda f: f.write((text + "\n").encode("utf-8")), binary=True)
    click.echo(output)


WIDE_HELP = "One wide table (default: fit 80 columns, long cells wrapped)."


def _wrapped(rows: list[list[str]], widths: dict[int, int], wide: bool) -> list[list[str]]:
    """Cells of the columns in ``widths`` wrapped to that many characters (as they are when ``wide``)."""
    import textwrap

    if wide:
        return rows
    return [[("\n".join(textwrap.wrap(c, widths[j], break_on_hyphens=False)) or c) if j in widths else c
             for j, c in enumerate(r)] for r in rows]


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def variants(as_json: bool, wide: bool) -> None:
    """The registered GAN variants, their papers and settings."""
    from gbench.plugins import get_plugins
    from gbench.variant import config_dict

    rows = [{"name": e.name, "plugin": e.plugin, "paper": e.obj.paper, "config": config_dict(e.obj.Config())}
            for e in get_plugins().variants]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if wide:
        table = [[r["name"], r["plugin"], ", ".join(f"{k}={v}" for k, v in r["config"].items()), r["paper"]]
                 for r in rows]
        click.echo(tabulate(table, ["variant", "plugin", "settings (defaults)", "paper"]))
        return
    for r in rows:  # 80 columns: a block per variant
        click.echo(f"{r['name']}  ({r['plugin']})")
        for line in _wrapped([[r["paper"]]], {0: 74}, False)[0][0].splitlines():
            click.echo(f"    {line}")
        settings = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "no settings"
        for line in _wrapped([[settings]], {0: 74}, False)[0][0].splitlines():
            click.echo(f"    {line}")
        click.echo("")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def plugins(as_json: bool, wide: bool) -> None:
    """Loaded plugins, where they come from, their hooks, and any that failed."""
    from gbench.plugins import get_plugins

    rows = [{"name": p.name, "source": p.source, "hooks": p.hooks, "error": p.error} for p in get_plugins().info]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [[r["name"], r["source"], ", ".join(r["hooks"]), r["error"] or "ok"] for r in rows]
    click.echo(tabulate(_wrapped(table, {2: 22, 3: 14}, wide), ["plugin", "source", "hooks", "status"]))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def suites(as_json: bool, wide: bool) -> None:
    """The built-in suites."""
    from gbench.suite import builtin_suites, load_suite

    rows = []
    for name, path in sorted(builtin_suites().items()):
        try:
            s = load_suite(str(path))
        except GbenchError as exc:  # one broken file does not hide the others
            rows.append({"suite": name, "path": str(path), "variants": None, "seeds": None, "dataset": None,
                         "g_steps": None, "description": f"not loadable: {exc}", "error": str(exc)})
            continue
        rows.append({"suite": name, "path": str(path), "variants": len(s.variants), "seeds": len(s.seeds),
                     "dataset": s.dataset.label, "g_steps": s.budget.g_steps, "description": s.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [[r["suite"]] + ["-" if r[k] is None else str(r[k]) for k in ("variants", "seeds", "dataset", "g_steps")]
             + [r["description"]] for r in rows]
    click.echo(tabulate(_wrapped(table, {3: 10, 5: 20}, wide), ["suite", "vars", "seeds", "dataset", "G steps",
                                                               "description"], disable_numparse=True))


@cli.command()
@click.argument("dataset")
@click.argument("samples", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--seed", default=2024, show_default=True, help="Seed of the estimators' resampling.")
@click.option("--metrics", "names", callback=_csv(str), help="Only these metrics (default: all for the dataset).")
@click.option("--reference-split", type=click.Choice(["train", "test"]), help="Image reference split [metric default].")
@click.option("--data-root", type=click.Path(file_okay=False), envvar="GBENCH_DATA_ROOT", help="Image data root.")
@click.option("--inception-weights", type=click.Path(dir_okay=False), help="Local Inception weights (sha256-checked).")
def score(dataset: str, samples: Path, as_json: bool, seed: int, names: list[str] | None,
          reference_split: str | None, data_root: str | None, inception_weights: str | None) -> None:
    """Score externally produced SAMPLES against DATASET, with gbench's protocol record.

    Toys: an N x 2 .npy array. Images: an .npz (the array named x, samples or images, else the
    first), an .npy, or a folder of images; uint8 pixels, NHWC or NCHW.
    """
    from gbench.plugins import get_plugins
    from gbench.suite import DatasetSpec
    from gbench.run.trial import build_dataset, metrics_for, score as score_samples

    law = build_dataset(DatasetSpec(name=dataset), data_root)
    x = load_samples(samples, law)
    options: dict[str, dict[str, Any]] = {}
    for entry in get_plugins().metrics:
        fields = {f.name for f in dataclasses.fields(entry.obj.Config)}
        for key, value in (("reference_split", reference_split), ("weights", inception_weights)):
            if value and key in fields:
                options.setdefault(entry.name, {})[key] = value
    metrics = metrics_for(law, tuple(names or ()), options)
    values, errors = score_samples(x, law, metrics, seed)
    protocol = {"dataset": dataset, "samples": len(x), "seed": seed, "file": str(samples),
                "metrics": {m.name: m.protocol() for m in metrics}}
    if as_json:
        click.echo(json.dumps({"metrics": values, "errors": errors, "protocol": protocol}, indent=2, default=str))
    else:
        click.echo(tabulate(sorted(values.items()), ["metric", "value"], floatfmt=".4f"))
        for name, message in errors.items():
            click.echo(f"{name}: not computed: {message}")
        click.echo(f"\n{len(x)} samples from {samples} against {dataset}, seed {seed}")
    if errors and not values:
        raise GbenchError("; ".join(f"{k}: {v}" for k, v in errors.items()))


# -- commands defined in their own modules ----------------------------------------------------------
from gbench.analysis.compare import compare  # noqa: E402

cli.add_command(compare)
from gbench.analysis.gate import baseline, check  # noqa: E402

cli.add_command(baseline)
cli.add_command(check)


def main() -> None:
    cli(prog_name="gbench")
