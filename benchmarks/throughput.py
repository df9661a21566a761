"""How much of the machine a toy training step uses: matmul rate, step FLOPs, achieved training FLOP/s.

    python benchmarks/throughput.py [--device cpu|cuda] [--steps 200] [--threads N] [--compile]

In one run, on one machine (``gbench.run.loop``, the harness's own code path):

1. the fp32 matrix-multiply rate of the device: a large ``torch.mm`` (n x n by n x n, 2 n^3 FLOPs);
2. the FLOPs of one training step of each variant of the default ring suite (one D step and one G
   step of one trial, forward and backward), counted with ``torch.utils.flop_counter.FlopCounterMode``
   (matrix products only: elementwise work is not counted, so achieved rates are lower bounds);
3. the achieved training FLOP/s of the ring suite's trials (its variants, seeds, batch and nets, for
   ``--steps`` G steps each): each seed separately (S = 1, the plain loop) and each variant's seeds as
   one batched group (vmapped where ``gbench.run.executors.plan`` says so); time = the harness's
   device-seconds (process CPU time on a CPU, so on 2 cores a fully parallel second counts twice:
   the rates below are per CPU-second of the whole process; wall seconds are printed beside);
4. with ``--compile``, the batched groups again with ``torch.compile`` on the vmapped loss calls,
   and whether their numbers equal the uncompiled ones;
5. an estimate, with its arithmetic, of the full ``alpha-gan-ring`` suite (200 seeds x 4 variants,
   156,250 G steps) on one H100-class GPU from its counted step FLOPs.

The last line printed is the batched fraction of the matmul rate.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import gbench.run.trial as trial_module
from gbench.run import batched
from gbench.run.executors import plan
from gbench.run.record import TrialResult
from gbench.run.trial import Runtime, run_group, trials_of
from gbench.suite import Suite, load_suite

H100_FP32_TFLOPS = 67.0  # NVIDIA H100 SXM datasheet: FP32 (non-tensor-core) peak
H100_TF32_TFLOPS = 495.0  # dense TF32 tensor-core peak (989 with sparsity)


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of ``torch.mm`` on n x n matrices (best of ``repeats``)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def shortened(suite: Suite, steps: int) -> Suite:
    """``suite`` trained for ``steps`` G steps, scored once at the end on few samples (untimed anyway)."""
    def short(budget: Any) -> Any:
        return budget and dataclasses.replace(budget, g_steps=steps, max_device_seconds=0.0, device_seconds=0.0,
                                              gradient_evals=0)

    variants = tuple(dataclasses.replace(v, budget=short(v.budget)) for v in suite.variants)
    return dataclasses.replace(suite, budget=short(suite.budget), variants=variants,
                               eval=dataclasses.replace(suite.eval, num_samples=500, at=(1.0,), metrics=("modes",)))


def step_flops(suite: Suite, label: str, runtime: Runtime) -> float:
    """Counted FLOPs of one G step (with its D steps) of one trial of variant ``label``."""
    trial = next(t for t in trials_of(shortened(suite, 4)) if t.variant.label == label)
    evaluate, target = trial_module.evaluate, trial_module._target
    trial_module.evaluate = lambda *a, **k: ({}, {})  # count training only
    trial_module._target = lambda *a, **k: None
    try:
        with FlopCounterMode(display=False) as counter:
            run_group([trial], runtime)
    finally:
        trial_module.evaluate, trial_module._target = evaluate, target
    return counter.get_total_flops() / 4


def timed(trials: list, runtime: Runtime, mode: str) -> tuple[float, float, list[TrialResult]]:
    """(device-seconds, wall-seconds) of training ``trials`` as one group, and the records."""
    records = [output.result for output in run_group(trials, runtime, mode=mode)]
    failed = [r.error for r in records if r.status == "failed"]
    if failed:
        raise SystemExit(f"a trial failed: {failed[0]}")
    c = records[0].consumed
    return c.get("batched_device_seconds", c["device_seconds"]), c.get("batched_wall_seconds", c["wall_seconds"]), records


def compiled_players() -> None:
    """``torch.compile`` the vmapped loss calls of every group from now on."""
    run = batched.Players.run
    cache: dict[Any, Any] = {}

    def run_compiled(self, fn, *args, active=None):
        if self.mode != "vmap":
            return run(self, fn, *args, active=active)
        key = (id(self), getattr(fn, "__qualname__", id(fn)))
        if key not in cache:
            cache[key] = torch.compile(lambda *a: run(self, fn, *a), dynamic=False)
        return cache[key](*args)

    batched.Players.run = run_compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=200, help="G steps per trial")
    parser.add_argument("--suite", default="ring")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the batched step")
    parser.add_argument("--threads", type=int, help="torch threads [torch's default]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU here")
    runtime = Runtime(device=args.device)
    suite = load_suite(args.suite)
    short = shortened(suite, args.steps)
    peak = matmul_rate(device)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul rate (torch.mm 2048^3): {peak / 1e9:.1f} GFLOP/s")

    by_label: dict[str, list] = {}
    for t in trials_of(short):
        by_label.setdefault(t.variant.label, []).append(t)
    rows, totals = [], {"separate": [0.0, 0.0, 0.0], "batched": [0.0, 0.0, 0.0], "compiled": [0.0, 0.0, 0.0]}
    plain: dict[str, list[TrialResult]] = {}
    for label, trials in by_label.items():
        flops = step_flops(suite, label, runtime) * args.steps * len(trials)
        mode, why = plan(trials[0], runtime)
        sep = [timed([t], runtime, "loop") for t in trials]
        dev_s, wall_s = sum(s[0] for s in sep), sum(s[1] for s in sep)
        dev_b, wall_b, plain[label] = timed(trials, runtime, mode or "loop")
        rows.append((label, flops / len(trials) / args.steps, wall_s, wall_b, mode or "separate"))
        for key, d, w in (("separate", dev_s, wall_s), ("batched", dev_b, wall_b)):
            totals[key][0] += flops
            totals[key][1] += d
            totals[key][2] += w
    print(f"\n{'variant':28s} {'MFLOP/step':>10s} {'separate':>9s} {'batched':>8s}  (wall s; mode)")
    for label, f, ws, wb, mode in rows:
        print(f"{label:28s} {f / 1e6:10.1f} {ws:9.2f} {wb:8.2f}  {mode}")
    if args.compile:
        compiled_players()
        for label, trials in by_label.items():
            if plan(trials[0], runtime)[0] != "vmap":
                continue
            flops = step_flops(suite, label, runtime) * args.steps * len(trials)
            timed(trials, runtime, "vmap")  # compiles (not counted)
            dev_c, wall_c, records = timed(trials, runtime, "vmap")
            same = all(a.loss_curve == b.loss_curve for a, b in zip(plain[label], records))
            print(f"compiled {label:28s} {wall_c:8.2f} wall s; same loss curves as uncompiled: {same}")
            totals["compiled"][0] += flops
            totals["compiled"][1] += dev_c
            totals["compiled"][2] += wall_c
    print(f"\n{'':10s} {'GFLOP/s (CPU-s)':>16s} {'GFLOP/s (wall)':>15s} {'fraction of matmul':>19s}")
    for key, (flops, dev, wall) in totals.items():
        if dev:
            print(f"{key:10s} {flops / dev / 1e9:16.2f} {flops / wall / 1e9:15.2f} {flops / wall / peak:19.3f}")

    ring = load_suite("alpha-gan-ring")
    f_ring = step_flops(ring, ring.variants[0].label, Runtime())
    trials, steps = len(ring.variants) * len(ring.seeds), ring.budget.g_steps
    total = f_ring * trials * steps
    print(f"\nalpha-gan-ring estimate: {f_ring / 1e6:.1f} MFLOP per trial-step (counted, one D + one G step) "
          f"x {trials} trials x {steps:,} G steps = {total / 1e15:.1f} PFLOP of matrix products")
    for name, rate in (("FP32", H100_FP32_TFLOPS), ("TF32", H100_TF32_TFLOPS)):
        for eff in (0.3, 0.5):
            print(f"  H100 {name} peak {rate:.0f} TFLOP/s at {eff:.0%} of peak: "
                  f"{total / (rate * 1e12 * eff) / 60:.1f} min")
    batched_fraction = totals["batched"][0] / totals["batched"][2] / peak
    print(f"batched fraction of the matmul rate: {batched_fraction:.3f}")


if __name__ == "__main__":
    main()
