"""The progress ETA on a fake clock with the planning probe's step costs: variants none of whose trials
has reported yet, ``device_seconds`` budgets on the CPU, batched groups, a final evaluation that costs
more than the mid-run ones. (The ETA's older cases are in test_cli.py.)"""
from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from gbench.run.executors import StepCost
from gbench.run.progress import TARGET_FINAL, Progress
from fake_clock import FakeClock

OK = {"status": "ok", "metrics": {"jsd_bits": 0.1}}


@dataclass(frozen=True)
class Unit:
    """Trials that train together (a batched group, or one trial) on the fake clock: ``step_s`` wall
    seconds per G step, ``steps`` G steps, a report every ``every``; an evaluation of ``evaluation``
    seconds after the report at half way (none if 0) and a final one of ``final`` seconds after the last."""

    ids: tuple[str, ...]
    variant: str
    step_s: float
    steps: int = 2000
    every: int = 100
    startup: float = 1.0
    evaluation: float = 2.0
    final: float = 2.0


def fake_run(units: list[Unit], jobs: int) -> list[tuple[float, str, int | None]]:
    """The reports of ``jobs`` slots taking the units in order: (time, trial, G step, or None at its
    finish), sorted; a unit's trials report together and finish one after the other at its end."""
    free, events = [0.0] * jobs, []
    for u in units:
        slot = min(range(jobs), key=lambda i: free[i])
        now = free[slot]
        events += [(now, tid, 0) for tid in u.ids]
        now += u.startup
        for step in range(u.every, u.steps + 1, u.every):
            now += u.every * u.step_s
            events += [(now, tid, step) for tid in u.ids]
            if step == u.steps // 2 and u.evaluation:
                now += u.evaluation
        now += u.final
        events += [(now, tid, None) for tid in u.ids]
        free[slot] = now
    order = {None: 1, 0: 2}
    return sorted(events, key=lambda e: (e[0], order.get(e[2], 0)))  # a slot frees, then the next starts


def progress(units: list[Unit], costs: dict[str, StepCost] | None = None, seconds: float = 0.0,
             finals: dict[str, float] | None = None) -> tuple[Progress, FakeClock]:
    clock = FakeClock()
    ids = [tid for u in units for tid in u.ids]
    cap = 1_000_000 if seconds else None
    p = Progress("fake", {tid: cap or u.steps for u in units for tid in u.ids}, "runs/x", stream=io.StringIO(),
                 clock=clock, tty=False, groups={tid: u.variant for u in units for tid in u.ids},
                 evals={tid: ((u.steps // 2,) if u.evaluation else ()) + (cap or u.steps,) for u in units
                        for tid in u.ids},
                 seconds={tid: seconds for tid in ids} if seconds else {}, finals=finals or {})
    for u in units:
        if costs and u.variant in costs:
            p.timed([_Id(tid) for tid in u.ids], costs[u.variant])
    return p, clock


@dataclass(frozen=True)
class _Id:
    id: str


def drive(p: Progress, clock: FakeClock, units: list[Unit], jobs: int) -> list[tuple[float, float, float]]:
    """Run ``p`` through ``fake_run``; (time, ETA, true time left) at every report after a tenth of the
    run while a trial runs, and the ETA must be there at each."""
    events = fake_run(units, jobs)
    steps = {tid: u.steps for u in units for tid in u.ids}
    end, seen = events[-1][0], []
    for when, tid, step in events:
        clock.now = when
        if step is None:
            p.finished(tid, {**OK, "consumed": {"g_steps": steps[tid]}})
        else:
            p.step(tid, step)
        if 0.1 * end <= when and p._running:  # up to the last trial's finish (a batched group's, one by one)
            eta = p.eta()
            assert eta is not None, (when, tid, step)
            seen.append((when, eta, end - when))
    return seen


def within(seen: list[tuple[float, float, float]], factor: float = 1.5) -> list[tuple[float, float, float]]:
    """The reports whose ETA is off by more than ``factor`` (the last instant, truth 0, by more than 0.01 s)."""
    return [(t, eta, truth) for t, eta, truth in seen
            if not (truth / factor <= eta <= truth * factor or (truth == 0 and eta <= 0.01))]


@pytest.mark.parametrize("batched", [False, True])
def test_an_unseen_slower_variant_is_timed_on_its_probe_scaled_by_the_measured_load(batched: bool):
    """--jobs 1, variant a then b, b 3x slower per G step. The probe timed a at 5 ms and b at 15 ms of
    device time per G step; the machine trains 1.6x slower than the probe said (load): before b starts,
    b's trials are timed on b's probe x the load measured on a's trials, not on a's rate (which put the
    ETA at ~0.45 of the truth while a ran)."""
    load = 1.6
    seeds = (0, 1)
    costs = {"a": StepCost(0.005 * (2 if batched else 1), 2 if batched else 1),
             "b": StepCost(0.015 * (2 if batched else 1), 2 if batched else 1)}
    units = ([Unit(tuple(f"{v}-seed{s}" for s in seeds), v, costs[v].device * load) for v in "ab"] if batched else
             [Unit((f"{v}-seed{s}",), v, costs[v].device * load) for v in "ab" for s in seeds])
    p, clock = progress(units, costs)
    seen = drive(p, clock, units, 1)
    assert len(seen) > 20 and not within(seen), within(seen)[:5]
    p, clock = progress(units)  # without the probe: b's trials are timed on a's
    assert min(eta / truth for _, eta, truth in drive(p, clock, units, 1) if truth) < 1 / 1.5


@pytest.mark.parametrize("jobs", [1, 2])
def test_device_seconds_budget_on_the_cpu_is_converted_by_the_probe_before_a_trial_finishes(jobs: int):
    """[budget] device_seconds = 10, 3 variants in batched groups of 2 seeds (each group trains until its
    process time is 2 x 10 s), the machine 1.5x slower in wall time than in process time: the ETA holds
    within x1.5 from 10 % of the run, also before any trial has finished (it took wall = device seconds
    for one trial, ~1/3 of the truth); the G steps each group can take are those its probe's device
    seconds buy."""
    load, seconds = 1.5, 10.0
    costs = {"a": StepCost(0.01, 2), "b": StepCost(0.02, 2), "c": StepCost(0.01, 2)}  # device s per G step of a group
    units = [Unit((f"{v}-seed0", f"{v}-seed1"), v, costs[v].device * load, steps=int(seconds * 2 / costs[v].device),
                  every=50, evaluation=0.0, final=1.0) for v in "abc"]
    p, clock = progress(units, costs, seconds)
    seen = drive(p, clock, units, jobs)
    assert len(seen) > 20 and not within(seen), within(seen)[:5]
    assert p._budget_steps("a-seed0") == 2000 and p._budget_steps("b-seed1") == 1000
    p, clock = progress(units, seconds=seconds)  # without the probe
    assert min(eta / truth for _, eta, truth in drive(p, clock, units, jobs) if truth) < 1 / 1.5


def test_a_target_variants_longer_final_evaluation_and_its_group_finishing_together():
    """The last variant (delta-gan) batched: its final evaluation also estimates its target's JSD, so
    it takes TARGET_FINAL x its mid-run pause, and no earlier trial of it shows that: the ETA at its last
    report holds within x1.5 (x1/3 without the weight). Once the first trial of a batched group has
    finished, the others of its group finish at once: their ETA is 0, not another tail."""
    units = [Unit(("sgan-seed0", "sgan-seed1"), "sgan", 0.01, final=2.0),
             Unit(("delta-seed0", "delta-seed1"), "delta", 0.01, final=2.0 * TARGET_FINAL)]
    finals = {"delta-seed0": TARGET_FINAL, "delta-seed1": TARGET_FINAL}
    costs = {"sgan": StepCost(0.005, 2), "delta": StepCost(0.005, 2)}
    p, clock = progress(units, costs, finals=finals)
    seen = drive(p, clock, units, 1)
    assert len(seen) > 20 and not within(seen), within(seen)[:5]
    last = [(eta, truth) for t, eta, truth in seen if truth == 2.0 * TARGET_FINAL]  # at delta's last report
    assert last and all(eta == pytest.approx(truth) for eta, truth in last), last
    ends = [eta for t, eta, truth in seen if truth == 0.0]  # delta-seed0 finished, delta-seed1 with it
    assert ends == [0.0]
    p, clock = progress(units, costs)
    assert min(eta / truth for t, eta, truth in drive(p, clock, units, 1) if truth) == pytest.approx(1 / 3)  # no weight
