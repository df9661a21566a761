"""What ``gbench run`` prints while it trains: a header, a live status line, a line per finished trial.

* header (before any training): the suite, the number of trials to run (variants x seeds), the budget
  and the run directory;
* status: one line for all running trials (each ``id step/total``), the throughput in G steps per
  second summed over them, the trials done and the ETA. On a terminal it is redrawn in place (at most
  ``REDRAW_S`` apart); elsewhere (a log file, CI) it is printed as its own line every ``LOG_EVERY_S``;
* a line per finished trial: status, G steps, wall time, its rate, and its main metric
  (:func:`gbench.analysis.layer.headline`).

ETA: before any trial has finished, the running trials' training rate (G steps per second between
reports without an evaluation), the start-up before a trial's first report and the time one
evaluation takes, for what is left of each running trial and the whole of each waiting one; once
trials have finished, their mean wall time per G step
(start-up and evaluations included) times what is left of each running and waiting trial, divided by
the number of trials seen running at once. The test holds it within x1.5 of the truth after 10 % of a
run on a fake clock (start-up and evaluation pauses, one or several trials at a time). With ``resuming``
(``--resume``), a trial counts from its first reported step (it may have continued from a checkpoint).

Everything goes to ``stream`` (stderr), so the table on stdout stays clean; ``quiet`` prints nothing.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TextIO

from gbench.suite import describe_budget

REDRAW_S = 0.5
LOG_EVERY_S = 30.0


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

    def evals_after(self, step: int) -> int:
        return sum(e > step for e in self.evals)


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
    _running: dict[str, _Running] = field(default_factory=dict)
    _done_steps: int = 0
    _finished: set[str] = field(default_factory=set)
    _walls: list[tuple[float, int]] = field(default_factory=list)  # (wall seconds, G steps) of finished trials
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

        self._print(f"gbench: suite {self.suite}: {n(len(self.totals), 'trial')} to run ({n(variants, 'variant')} x "
                    f"{n(seeds, 'seed')}{more}), {budget}; results in {self.out}")

    def step(self, trial_id: str, g_step: int) -> None:
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        run = self._running.get(trial_id)
        if run is None:
            run = self._running[trial_id] = _Running(self.totals.get(trial_id, 0), now,
                                                     evals=self.evals.get(trial_id, ()))
        if g_step > 0 and run.origin is None:
            run.origin = g_step if self.resuming else 0
        if g_step > run.step:
            if run.first is None:
                run.first = (now, g_step)
            else:  # an interval between two reports: training, and any evaluations inside it
                n = sum(run.step < e <= g_step for e in run.evals)
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
        self._done_steps += total - ((run.origin or 0) if run else 0)
        consumed = (result.get("consumed") or {}).get("g_steps")
        wall = now - run.started if run else None
        if wall and total and not (run and run.origin):
            self._walls.append((wall, total))
        self._clear()
        self._print(finished_line(trial_id, result, consumed, wall, f"{len(self._finished)}/{len(self.totals)}"))
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
        """Seconds left (see the module doc; None before the first G step)."""
        now = self.clock() if now is None else now
        if self._walls:
            per_step = sum(w for w, _ in self._walls) / sum(n for _, n in self._walls)
            running = sum(max(0.0, per_step * r.total - (now - r.started)) for r in self._running.values())
            waiting = sum(per_step * t for tid, t in self.totals.items()
                          if tid not in self._running and tid not in self._finished)
            return (running + waiting) / self._parallel
        return self._eta_from_rates(now)

    def _eta_from_rates(self, now: float) -> float | None:
        """Before any trial has finished: the running trials' training rate, the start-up before a trial's
        first report and the time an evaluation takes (both measured so far), for what is left of each
        running trial and the whole of each waiting one."""
        measured = [(r, r.rate()) for r in self._running.values() if r.rate()]
        if not measured:
            speed = self.throughput(now)
            return None if not speed else self.remaining() / speed
        rate_ = sum(v for _, v in measured) / len(measured)
        startup = sum(max(0.0, r.first[0] - r.started - (r.first[1] - (r.origin or 0)) / v)
                      for r, v in measured if r.first) / len(measured)
        pauses = [max(0.0, (t - steps / v) / n) for r, v in measured for t, steps, n in r.with_evals]
        evaluation = sum(pauses) / len(pauses) if pauses else 0.0
        running = sum(max(0, r.total - r.step) / rate_ + evaluation * r.evals_after(r.step)
                      for r in self._running.values())
        waiting = sum(t / rate_ + startup + evaluation * len(self.evals.get(tid, ()))
                      for tid, t in self.totals.items() if tid not in self._running and tid not in self._finished)
        return (running + waiting) / self._parallel

    def status_line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        speed, eta = self.throughput(now), self.eta(now)  # speed: G steps per second over all trials
        running = " ".join(f"{tid} {r.step}/{r.total}" for tid, r in self._running.items())
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
    evals = {t.id: tuple(sorted({max(1, round(a * t.suite.budget.g_steps)) for a in t.suite.eval.at})) for t in trials}
    return Progress(suite_name, {t.id: t.suite.budget.g_steps for t in trials}, out, quiet, evals=evals,
                    resuming=resuming, stream=stream or sys.stderr)


def budget_text(trials: Sequence[Any]) -> str:
    """``3000 G steps x 1 D step, batch 256`` (each distinct budget once, when variants set their own)."""
    seen: dict[str, None] = {}
    for t in trials:
        b = t.suite.budget
        seen[describe_budget(b)] = None
    return "; ".join(seen) if len(seen) <= 2 else f"{len(seen)} budgets (variants set their own)"
