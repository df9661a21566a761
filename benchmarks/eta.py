"""How close the progress ETA is to the truth on a real run: ETA / (true time left) at every progress report.

    OMP_NUM_THREADS=1 python benchmarks/eta.py SUITE [--executor local|process] [--jobs N] [--no-batch]
                                               [--no-probe] [--log FILE]

Runs ``SUITE`` (a TOML file or a built-in name; use a tiny one) into a temporary directory with one torch
thread per trial, records the ETA the status line would show at each progress report and trial finish
(``gbench.run.progress.Progress``), and prints the range of ETA / (true time left) over the reports after
10 % of the run (from the call to ``run_suite`` to the last trial's finish; reports in its last second, where the
ratio is meaningless, by their error in seconds), with the first ETA shown, the run's wall time and the
machine's load. ``--no-probe`` drops the planning probe's step costs from the ETA
(the estimate before they existed); ``--log`` writes every (seconds, ETA, truth) row as CSV.
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from gbench.run import progress as progress_module
from gbench.run.executors import make_executor
from gbench.run.runner import run_suite
from gbench.run.trial import Runtime
from gbench.suite import load_suite

MIN_TRUTH_S = 1.0  # reports closer to the end are judged by the ETA's error in seconds, not its ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--executor", default="local", choices=("local", "process"))
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()

    rows: list[tuple[float, float | None, str]] = []  # (time, ETA, what happened) at each report
    Progress = progress_module.Progress
    step, finished, timed = Progress.step, Progress.finished, Progress.timed

    shown: list[progress_module.Progress] = []

    def record(self: progress_module.Progress, what: str) -> None:
        shown[:] = [self]
        rows.append((time.monotonic(), self.eta(), what))

    def on_step(self: progress_module.Progress, trial_id: str, g_step: int) -> None:
        step(self, trial_id, g_step)
        record(self, f"{trial_id} {g_step}")

    def on_finished(self: progress_module.Progress, trial_id: str, result: dict) -> None:
        finished(self, trial_id, result)
        if self._running or len(self._finished) < len(self.totals):
            record(self, f"{trial_id} done")

    progress_module.Progress.step = on_step  # type: ignore[method-assign]
    progress_module.Progress.finished = on_finished  # type: ignore[method-assign]
    if args.no_probe:
        progress_module.Progress.timed = lambda self, trials, cost: None  # type: ignore[method-assign]
    suite = load_suite(args.suite)
    executor = make_executor(args.executor, args.jobs, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        results = run_suite(suite, Path(tmp) / "run", Runtime(batch=not args.no_batch), quiet=True, executor=executor)
        end = time.monotonic()
    progress_module.Progress.step, progress_module.Progress.finished = step, finished  # type: ignore[method-assign]
    progress_module.Progress.timed = timed  # type: ignore[method-assign]
    late = [(t - start, eta, end - t) for t, eta, _ in rows if eta is not None and t - start >= 0.1 * (end - start)]
    ratios = [(t, eta / truth) for t, eta, truth in late if truth >= MIN_TRUTH_S]
    last = max((abs(eta - truth) for t, eta, truth in late if truth < MIN_TRUTH_S), default=None)
    first = next(((t - start, eta) for t, eta, _ in rows if eta is not None), None)
    load = os.getloadavg()
    print(f"{suite.name}: {len(results)} trials, executor {args.executor} jobs {args.jobs or 1}, "
          f"{'unbatched' if args.no_batch else 'batched'}{', no probe' if args.no_probe else ''}: "
          f"{end - start:.1f} s wall; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if first:
        print(f"  first ETA {first[1]:.1f} s at {first[0]:.1f} s (truth {end - start - first[0]:.1f} s)")
    if ratios:
        low, high = min(ratios, key=lambda r: r[1]), max(ratios, key=lambda r: r[1])
        print(f"  ETA / truth after 10 %: {low[1]:.2f} (at {low[0]:.1f} s) .. {high[1]:.2f} (at {high[0]:.1f} s), "
              f"{len(ratios)} reports, {sum(1 / 1.5 <= r <= 1.5 for _, r in ratios)} within x1.5")
    if last is not None:
        print(f"  in the last {MIN_TRUTH_S:g} s: ETA off by at most {last:.2f} s")
    for r in results:  # under device_seconds: the G steps the probe said the budget buys, against the truth
        if shown and shown[0].seconds.get(r["trial_id"]):
            steps = shown[0]._budget_steps(r["trial_id"])
            print(f"  {r['trial_id']}: {r['consumed']['g_steps']} G steps in its device-seconds budget"
                  + (f", the probe said {steps:.0f}" if steps is not None else ""))
    if args.log:
        with args.log.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["seconds", "eta", "truth", "report"])
            w.writerows([(f"{t - start:.3f}", "" if eta is None else f"{eta:.3f}", f"{end - t:.3f}", what)
                         for t, eta, what in rows])


if __name__ == "__main__":
    main()
