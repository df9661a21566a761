"""What ``gbench run`` prints while it trains: a header, a live status line, a line per finished trial.

* header (before any training): the suite, the number of trials to run (variants x seeds), the budget
  and the run directory, wrapped to the terminal's width (continuation lines indented; a path is never
  broken);
* status: one line for all running trials (each ``id step/total``; ``id step`` under a ``device_seconds``
  budget, whose G-step total is only a cap and whose device time is not reported), the throughput in G steps per
  second summed over them, the trials done and the ETA. On a terminal it is redrawn in place (at most
  ``REDRAW_S`` apart); elsewhere (a log file, CI) it is printed as its own line every ``LOG_EVERY_S``;
* a line per finished trial: status, G steps, wall time, its rate, and its main metric
  (:func:`gbench.analysis.layer.headline`).

ETA: each running trial's time left from its OWN training rate (G steps per second between reports
without an evaluation), its own evaluation pauses (else everyone's) and the trial tail (the seconds
between a trial's last report and its finish: its final evaluation), less the time since its last
report; each waiting trial's whole wall time from the finished trials of its variant (wall time per G
step), else the running ones of its variant (rate, start-up, pauses, tail), else its probe (below),
else all finished trials, else all running ones. The running trials' times left and then the waiting
trials fill ``_parallel`` slots (the most trials seen running at once) in order, a trial starting on the
first slot to free; the ETA is when the last slot frees.

The probe: before training, the run times each variant configuration's G step in the unit it trains
in (``gbench.run.executors.time_step``: a batched group or one trial, device seconds per G step, handed
to :meth:`Progress.timed`). A variant none of whose trials has reported is timed on its own probe times
the load (wall seconds per probed device second) measured on the trials that have, so a slower variant
is foreseen before it starts. Under a ``device_seconds`` budget a trial ends at that much training time
(on a CPU process time: a batched group of S seeds spends S x the budget, and load makes wall time
longer): its G steps are the budget at its probe's device seconds per G step, at its own rate once
measured; finished trials of its variant, when there are, give the wall seconds it took instead.

The tail of a trial whose variant has no finished trial is its evaluation pause times its final
evaluation's weight (``finals``; ``TARGET_FINAL`` for a variant with a target, whose final evaluation
also estimates the JSD to its training law); before any evaluation has been seen (a first variant's
first half; every ``device_seconds`` run until a trial finishes, as it evaluates at its end only) the
evaluations cannot be counted. The tests hold the ETA within x1.5 of the truth after 10 % of a run on a
fake clock (start-up, evaluation pauses and a slower final evaluation, one or several trials at a time,
batched groups, a last variant three times slower with and without a probe, ``device_seconds`` budgets
on a loaded CPU); ``benchmarks/eta.py`` measures it on real runs. With ``resuming`` (``--resume``), a
trial counts from its first reported step (it may have continued from a checkpoint).

Everything goes to ``stream`` (stderr), so the table on stdout stays clean; ``quiet`` prints nothing.
"""
from __future__ import annotations

import shutil
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO

from gbench.suite import describe_budget

if TYPE_CHECKING:
    from gbench.run.executors import StepCost

REDRAW_S = 0.5
LOG_EVERY_S = 30.0
# A variant with a target JSD (delta-gan): its final evaluation in mid-run ones. It also estimates the JSD
# to its training law (a mixture with twice the components, so a slower fit) and that law's own JSD: the
# final evaluation of a batched delta-gan group on ring8 took 2x (an earlier run) and 3.8x its mid-run pause.
TARGET_FINAL = 3.0


def duration(seconds: float) -> str:
    """``1:02:03``, ``2:03`` or ``5.1s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def rate(steps_per_s: float) -> str:
    """G steps per second with 3 significant digits, never SI prefixes: ``1234 steps/s``, ``0.52 steps/s``."""
    if steps_per_s >= 100:
        return f"{steps_per_s:.0f} steps/s"
    return f"{steps_per_s:.3g} steps/s"


@dataclass
class _Running:
    tid: str
    group: str  # its variant: waiting trials are timed on their own variant's trials first
    total: int
    started: float
    origin: int | None = None  # G steps it had before this process trained it (resumed from a checkpoint)
    step: int = 0
    evals: tuple[int, ...] = ()  # the G steps it evaluates at
    first: tuple[float, int] | None = None  # (time, step) of its first report after start-up
    last: float = 0.0  # time of its latest report
    train: list[float] = field(default_factory=lambda: [0.0, 0.0])  # (seconds, G steps) between reports, no evaluation
    with_evals: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, G steps, evaluations) likewise

    def rate(self) -> float | None:
        """G steps per second while training (intervals between reports without an evaluation)."""
        return self.train[1] / self.train[0] if self.train[0] > 0 and self.train[1] > 0 else None

    def training_since(self) -> float | None:
        """When it began training (its first report less its first steps at its rate), if it has reported."""
        if self.first is None:
            return None
        v = self.rate()
        return self.first[0] - ((self.first[1] - (self.origin or 0)) / v if v else 0.0)

    def evals_after(self, step: int) -> int:
        """Evaluations still to come before its last report (one at ``step`` follows the report at ``step``;
        the final one, at ``total``, follows the last report: it is part of the trial's tail)."""
        return sum(step <= e < self.total for e in self.evals)


@dataclass(frozen=True)
class _Ended:
    run: _Running
    at: float  # when it finished


@dataclass
class Progress:
    """The run's terminal output; the runner calls :meth:`header`, :meth:`step`, :meth:`finished`, :meth:`close`."""

    suite: str
    totals: dict[str, int]  # trial id -> its G-step budget, for the trials this run trains
    out: str
    quiet: bool = False
    resuming: bool = False
    evals: dict[str, tuple[int, ...]] = field(default_factory=dict)  # trial id -> the G steps it evaluates at
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.monotonic
    tty: bool | None = None  # None: ask the stream
    width: int | None = None  # None: the terminal's
    groups: dict[str, str] = field(default_factory=dict)  # trial id -> its variant label
    seconds: dict[str, float] = field(default_factory=dict)  # trial id -> its device-seconds budget, if any
    costs: dict[str, StepCost] = field(default_factory=dict)  # trial id -> its configuration's timed G step (:meth:`timed`)
    finals: dict[str, float] = field(default_factory=dict)  # trial id -> its final evaluation in mid-run ones, if not 1
    _ended: list[_Ended] = field(default_factory=list)  # the trials finished in this process
    _running: dict[str, _Running] = field(default_factory=dict)
    _done_steps: int = 0
    _finished: set[str] = field(default_factory=set)
    _parallel: int = 1  # the most trials seen running at once
    _t0: float | None = None
    _last_draw: float = -1e9
    _drawn: bool = False

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    # -- what the runner calls -------------------------------------------------------------------------

    def header(self, variants: int, seeds: int, budget: str, skipped: int = 0) -> None:
        """The line printed before training."""
        more = f", {skipped} already finished" if skipped else ""
        def n(k: int, word: str) -> str:
            return f"{k} {word}{'' if k == 1 else 's'}"

        text = (f"gbench: suite {self.suite}: {n(len(self.totals), 'trial')} to run ({n(variants, 'variant')} x "
                f"{n(seeds, 'seed')}{more}), {budget}; results in {self.out}")
        self._print(self._wrapped(text))

    def _wrapped(self, text: str) -> str:
        """``text`` wrapped to the terminal's width, continuation lines indented; words (paths, trial
        ids) are never broken."""
        width = self.width or shutil.get_terminal_size((80, 24)).columns
        return "\n".join(textwrap.wrap(text, max(40, width - 1), subsequent_indent="  ",
                                       break_on_hyphens=False, break_long_words=False))

    def timed(self, trials: Sequence[Any], cost: StepCost) -> None:
        """The G step of ``trials`` (objects with ``id``: one configuration) as the planning probe timed it
        (``gbench.run.executors.time_step``)."""
        for t in trials:
            self.costs[t.id] = cost

    def step(self, trial_id: str, g_step: int) -> None:
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        run = self._running.get(trial_id)
        if run is None:
            run = self._running[trial_id] = _Running(trial_id, self.groups.get(trial_id, ""),
                                                     self.totals.get(trial_id, 0), now,
                                                     evals=self.evals.get(trial_id, ()))
        if g_step > 0 and run.origin is None:
            run.origin = g_step if self.resuming else 0
        if g_step > run.step:
            if run.first is None:
                run.first = (now, g_step)
            else:  # an interval between two reports: training, and the evaluations that followed the first
                n = sum(run.step <= e < g_step for e in run.evals)
                if n:
                    run.with_evals.append((now - run.last, g_step - run.step, n))
                else:
                    run.train[0] += now - run.last
                    run.train[1] += g_step - run.step
            run.last = now
        run.step = max(run.step, g_step)
        self._parallel = max(self._parallel, len(self._running))
        self._draw(now)

    def finished(self, trial_id: str, result: dict[str, Any]) -> None:
        now = self.clock()
        run = self._running.pop(trial_id, None)
        total = self.totals.get(trial_id, 0)
        self._finished.add(trial_id)
        consumed = (result.get("consumed") or {}).get("g_steps")
        self._done_steps += (total if consumed is None else consumed) - ((run.origin or 0) if run else 0)
        wall = now - run.started if run else None
        if run is not None and wall and total and result.get("status") == "ok":
            self._ended.append(_Ended(run, now))
        self._clear()
        self._print(self._wrapped(finished_line(trial_id, result, consumed, wall,
                                                f"{len(self._finished)}/{len(self.totals)}")))
        self._draw(now, force=True)

    def close(self) -> None:
        self._clear()

    # -- the status line --------------------------------------------------------------------------------

    def made(self) -> int:
        """G steps trained in this process so far (finished trials whole, running ones up to their step)."""
        return self._done_steps + sum(r.step - (r.origin or 0) for r in self._running.values())

    def remaining(self) -> int:
        """G steps still to train: the rest of the running trials and the whole of the waiting ones."""
        running = sum(max(0, r.total - r.step) for r in self._running.values())
        waiting = sum(t for tid, t in self.totals.items() if tid not in self._running and tid not in self._finished)
        return running + waiting

    def throughput(self, now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        if self._t0 is None or now <= self._t0 or self.made() <= 0:
            return None
        return self.made() / (now - self._t0)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left (see the module doc; None until a trial's rate is measured): each running trial's own
        remaining time, each waiting trial's expected duration, placed on ``_parallel`` slots in order."""
        now = self.clock() if now is None else now
        left: list[float] = []
        for tid, r in self._running.items():
            own = self._left_by_own_rate(r, now)
            if own is None:
                whole = self._expected(tid)
                own = None if whole is None else max(0.0, whole - (now - r.started))
            if own is None:
                return None
            left.append(own)
        waiting = [tid for tid in self.totals if tid not in self._running and tid not in self._finished]
        slots = sorted(left + [0.0] * max(0, self._parallel - len(left)))
        for tid in waiting:
            whole = self._expected(tid)
            if whole is None:
                return None
            slots[0] += whole  # the next trial starts on the first slot to free
            slots.sort()
        return max(slots) if slots else 0.0

    def _runs(self, group: str | None = None) -> list[_Running]:
        """Running and finished trials (of ``group``, if given) that have a measured training rate."""
        runs = [r for r in [*self._running.values(), *(e.run for e in self._ended)] if r.rate()]
        return [r for r in runs if group is None or r.group == group]

    def _pause(self, runs: list[_Running]) -> float:
        """Mean seconds one evaluation adds (intervals with evaluations less their training at the rate)."""
        pauses = [max(0.0, (t - steps / r.rate()) / n) for r in runs for t, steps, n in r.with_evals]  # type: ignore[operator]
        return sum(pauses) / len(pauses) if pauses else 0.0

    def _tail(self, tid: str) -> float:
        """A trial's tail, the seconds between its last progress report and its finish (its final
        evaluation and its record): the mean over its variant's finished trials; else, if it evaluates at
        its end, its variant's evaluation pause times its final evaluation's weight (``finals``: with
        delta-gan's target estimates, ``TARGET_FINAL``); else the mean over all finished trials (in
        proportion to the weights); else everyone's evaluation pause likewise (0 without a final evaluation)."""
        group, weight = self.groups.get(tid, ""), self.finals.get(tid, 1.0)
        ends = self.evals.get(tid, ())
        final = bool(ends) and ends[-1] >= self.totals.get(tid, 0)
        for pick in (group, None):  # its variant first
            tails = [(e.at - e.run.last) * weight / self.finals.get(e.run.tid, 1.0) for e in self._ended
                     if e.run.first and pick in (None, e.run.group)]
            if tails:
                return sum(tails) / len(tails)
            pause = self._pause(self._runs(pick)) if final else 0.0
            if pause > 0:  # (0 also where a noisy rate left no pause: then everyone's)
                return pause * weight
        return 0.0

    def _budget_walls(self, group: str | None) -> list[float]:
        """The wall seconds a ``device_seconds`` budget took finished trials (training start to last report)
        of ``group`` (a variant; None: all)."""
        return [e.run.last - e.run.training_since() for e in self._ended  # type: ignore[operator]
                if e.run.first and group in (None, e.run.group) and self.seconds.get(e.run.tid)]

    def _budget_steps(self, tid: str) -> float | None:
        """The G steps a ``device_seconds`` budget buys a trial at its probe's device seconds per G step (at
        most its G-step cap); None unprobed."""
        cost = self.costs.get(tid)
        if cost is None or cost.device <= 0:
            return None
        return min(float(self.totals.get(tid, 0)), self.seconds[tid] * cost.size / cost.device)

    def _budget_left(self, r: _Running) -> float | None:
        """A running ``device_seconds`` trial's training seconds left at its last report: the wall seconds
        finished trials of its variant took to spend the budget, less its training until then; else the
        G steps its probe says the budget buys, at its own rate (device time is process time on a CPU:
        threads and load make it differ from wall time, and a batched group of S seeds spends S x the
        budget); else as finished trials of any variant; else the budget itself. None until it has reported."""
        since = r.training_since()
        if since is None:
            return None
        walls = self._budget_walls(r.group)
        steps, v = self._budget_steps(r.tid), r.rate()
        if not walls and steps is not None and v:
            return max(0.0, (steps - r.step) / v)
        walls = walls or self._budget_walls(None)
        return max(0.0, (sum(walls) / len(walls) if walls else self.seconds[r.tid]) - (r.last - since))

    def _left_by_own_rate(self, r: _Running, now: float) -> float | None:
        """A running trial's time left from its own rate and evaluation pauses (theirs, else everyone's)."""
        v = r.rate()
        if self.seconds.get(r.tid):
            training = self._budget_left(r)
            return None if training is None else max(0.0, training + self._tail(r.tid) - (now - r.last))
        if not v:
            return None
        pause = self._pause([r]) if r.with_evals else self._pause(self._runs())
        left = (r.total - r.step) / v + pause * r.evals_after(r.step) + self._tail(r.tid)
        return max(0.0, left - (now - r.last))  # the time since its last report is spent on what was left then

    def _expected(self, tid: str) -> float | None:
        """A whole trial's expected wall time: finished trials of its group (variant), else running ones
        of its group, else its probe's G step cost (:meth:`_probed`), else all finished trials, else all
        running ones; None with nothing measured."""
        group, total = self.groups.get(tid, ""), self.totals.get(tid, 0)
        for pick in (group, None):
            if pick is None:
                probed = self._probed(tid)
                if probed is not None:
                    return probed
            ended = [e for e in self._ended if (pick is None or e.run.group == pick) and not e.run.origin]
            if ended:
                if self.seconds.get(tid):
                    return sum(e.at - e.run.started for e in ended) / len(ended)
                return sum(e.at - e.run.started for e in ended) / sum(e.run.total for e in ended) * total
            runs = self._runs(pick)
            if self.seconds.get(tid):
                steps = self._budget_steps(tid)
                if runs and steps is not None:  # the G steps the budget buys, at its variant's rate
                    v = sum(r.rate() for r in runs) / len(runs)  # type: ignore[misc]
                    return steps / v + self._startup(runs) + self._tail(tid)
                starts = [r.training_since() - r.started for r in self._running.values()  # type: ignore[operator]
                          if r.first and (pick is None or r.group == pick)]
                if starts:
                    return self.seconds[tid] + sum(starts) / len(starts) + self._tail(tid)
                if pick is None:  # nothing measured: the budget itself
                    return self.seconds[tid] + self._tail(tid)
            elif runs:
                v = sum(r.rate() for r in runs) / len(runs)  # type: ignore[misc]
                middle = sum(e < total for e in self.evals.get(tid, ()))
                return total / v + self._startup(runs) + self._pause(runs) * middle + self._tail(tid)
        return None

    def _startup(self, runs: list[_Running]) -> float:
        """Mean seconds from a trial's start to its first G step (building nets and data; measured runs)."""
        return sum(max(0.0, r.first[0] - r.started - (r.first[1] - (r.origin or 0)) / r.rate())  # type: ignore[index,operator]
                   for r in runs) / len(runs) if runs else 0.0

    def _load(self) -> float | None:
        """Wall seconds the trials take per device second their probes counted per G step (the machine's
        load, jobs at once, threads): the mean over the running probed trials with a measured rate (the
        load now), else over the finished ones; None before one is measured."""
        probed = [r for r in self._runs() if r.tid in self.costs and self.costs[r.tid].device > 0]
        runs = [r for r in probed if r.tid in self._running] or probed
        ratios = [1.0 / (r.rate() * self.costs[r.tid].device) for r in runs]  # type: ignore[operator]
        return sum(ratios) / len(ratios) if ratios else None

    def _probed(self, tid: str) -> float | None:
        """A trial's wall time from its own probe (a variant none of whose trials has reported yet): its G
        steps (under ``device_seconds``, those its budget buys) at its probe's device seconds per G step
        times :meth:`_load`, with the measured trials' start-up and evaluation pauses and its tail."""
        cost, load = self.costs.get(tid), self._load()
        if cost is None or load is None:
            return None
        runs, total = self._runs(), self.totals.get(tid, 0)
        if self.seconds.get(tid):
            steps = self._budget_steps(tid)
            return None if steps is None else steps * cost.device * load + self._startup(runs) + self._tail(tid)
        middle = sum(e < total for e in self.evals.get(tid, ()))
        return total * cost.device * load + self._startup(runs) + self._pause(runs) * middle + self._tail(tid)

    def status_line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        speed, eta = self.throughput(now), self.eta(now)  # speed: G steps per second over all trials
        running = " ".join(f"{tid} {r.step}" + ("" if self.seconds.get(tid) else f"/{r.total}")
                           for tid, r in self._running.items())  # device-seconds budgets: the G-step total is a cap
        done = f"{len(self._finished)}/{len(self.totals)} done"
        tail = f" | {rate(speed)} | {done} | ETA {duration(eta)}" if speed and eta is not None else f" | {done}"
        width = (self.width or shutil.get_terminal_size((80, 24)).columns) - 1
        room = width - len(tail)
        if len(running) > room:
            running = running[: max(0, room - 1)] + "…"
        return running + tail

    # -- helpers ------------------------------------------------------------------------------------------

    def _draw(self, now: float, force: bool = False) -> None:
        if self.quiet or not self._running:
            return
        every = REDRAW_S if self.tty else LOG_EVERY_S
        if not force and now - self._last_draw < every:
            return
        if not self.tty and force:
            return  # logs: finished lines say it; the status line comes on its clock
        self._last_draw = now
        line = self.status_line(now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    def _print(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text + "\n")
            self.stream.flush()


def finished_line(trial_id: str, result: dict[str, Any], g_steps: int | None, wall: float | None,
                  count: str) -> str:
    """``done 3/9 sgan-seed0: ok, 3000 G steps in 1:23 (36.1 steps/s), JSD 0.123 bits, modes 8/8``."""
    from gbench.analysis.layer import headline

    status = result.get("status", "?")
    head = f"{'done' if status == 'ok' else status.upper()} {count} {trial_id}"
    if status == "failed":
        return f"{head}: {str(result.get('error') or '')[:200]}"
    if status == "diverged":
        head += f" at G step {result.get('diverged_at')}"
    if g_steps is not None:
        head += f": {g_steps} G steps"
        if wall:
            head += f" in {duration(wall)} ({rate(g_steps / wall)})"
    shown = headline(result.get("metrics") or {}) if status == "ok" else ""
    return head + (f", {shown}" if shown else "")


def progress_for(suite_name: str, trials: Sequence[Any], out: str, quiet: bool, resuming: bool = False,
                 stream: TextIO | None = None) -> Progress:
    """A :class:`Progress` for the runner's ``trials`` (objects with ``id`` and ``suite.budget``, ``suite.eval``)."""
    from gbench.run.trial import build_variant

    evals = {t.id: tuple(sorted({max(1, round(a * t.suite.budget.g_steps)) for a in t.suite.eval.at})) for t in trials}
    targets = {label for label, spec in {t.variant.label: t.variant for t in trials}.items()
               if build_variant(spec).target_jsd is not None}
    return Progress(suite_name, {t.id: t.suite.budget.g_steps for t in trials}, out, quiet, evals=evals,
                    resuming=resuming, stream=stream or sys.stderr, groups={t.id: t.variant.label for t in trials},
                    seconds={t.id: t.suite.budget.device_seconds for t in trials if t.suite.budget.device_seconds},
                    finals={t.id: TARGET_FINAL for t in trials if t.variant.label in targets})


def budget_text(trials: Sequence[Any]) -> str:
    """``3000 G steps x 1 D step, batch 256`` (each distinct budget once, when variants set their own)."""
    seen: dict[str, None] = {}
    for t in trials:
        b = t.suite.budget
        seen[describe_budget(b)] = None
    return "; ".join(seen) if len(seen) <= 2 else f"{len(seen)} budgets (variants set their own)"
