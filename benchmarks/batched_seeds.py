"""Batched seeds against separate runs: S seeds of sgan on ring8, the ring suite's backbone.

The ring suite's setting (3x128 MLPs for G and D, batch 128, Adam 1e-3, betas (0.5, 0.999)) for K
G steps, S seeds (default 8), trained twice in one process: as S separate trials
(``gbench.run.trial.run_trial``, one after the other) and as one batched model
(``gbench.run.batched.run_trials``). The time compared is the harness's own training time: device-seconds
(on a CPU, process time, robust to other processes sharing the cores; wall-seconds are printed too)
between evaluations (evaluation is cheap here, 1,000 samples, modes only, and excluded).
Each seed's loss curve and final metrics are compared too (identical on CPU; see gbench/run/batched.py).

    python benchmarks/batched_seeds.py [--seeds 8] [--steps 1000] [--threads 1] [--device cpu]
                                       [--hidden 128] [--depth 3]
    python benchmarks/batched_seeds.py --tolerance [--seeds 4] [--steps 2000]

The last line is the speed-up, e.g. "speed-up batched/separate: 3.2x". About a minute on 2 CPU
cores with the defaults. ``--tolerance`` instead measures how far batched seeds drift from separate
runs when the summation order of one product differs (the critic head computed as x @ W^T, as a
GPU's batched kernels may do): weight and loss differences after 50 steps, metrics after --steps.
"""
from __future__ import annotations

import argparse
import time

import torch

from gbench.run import batched
from gbench.suite import parse_suite
from gbench.run.trial import Runtime, run_trial, trials_of


def suite(seeds: int, steps: int, eval_samples: int, metrics: list[str], hidden: int = 128, depth: int = 3):
    return parse_suite({
        "name": "batched-bench",
        "seeds": list(range(seeds)),
        "variants": ["sgan"],
        "dataset": {"name": "ring8", "train_size": 50000, "seed": 1},
        "model": {"z_dim": 2, "g_hidden": hidden, "d_hidden": hidden, "depth": depth},
        "optim": {"g_lr": 1e-3, "d_lr": 1e-3, "betas": [0.5, 0.999]},
        "budget": {"g_steps": steps, "d_steps_per_g_step": 1, "batch_size": 128},
        "eval": {"num_samples": eval_samples, "at": [1.0], "metrics": metrics},
    }, "benchmarks/batched_seeds.py")


def speed(args: argparse.Namespace) -> None:
    s = suite(args.seeds, args.steps, 1000, ["modes"], args.hidden, args.depth)
    trials, runtime = trials_of(s), Runtime(device=args.device)
    print(f"sgan on ring8, {args.depth}x{args.hidden} MLPs, batch 128, {args.steps} G steps, {args.seeds} seeds, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    together = batched.run_trials(trials, runtime)
    t_batched_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    separate = [run_trial(t, runtime) for t in trials]
    t_separate_total = time.perf_counter() - t0
    for r in together + separate:
        if r["status"] != "ok":
            raise SystemExit(f"{r['trial_id']}: {r['status']} {r['error']}")
    cpu_sep = sum(r["consumed"]["device_seconds"] for r in separate)
    cpu_bat = together[0]["consumed"]["batched_device_seconds"]
    wall_sep = sum(r["consumed"]["wall_seconds"] for r in separate)
    wall_bat = together[0]["consumed"]["batched_wall_seconds"]
    same = all(a["loss_curve"] == b["loss_curve"] and a["metrics"] == b["metrics"] for a, b in zip(separate, together))
    for name, cpu, wall, total in (("separate", cpu_sep, wall_sep, t_separate_total),
                                   ("batched", cpu_bat, wall_bat, t_batched_total)):
        print(f"{name:9s} training: {cpu:6.2f} device-s ({1e3 * cpu / args.seeds / args.steps:.2f} ms per seed-step), "
              f"{wall:6.2f} wall-s; {total:6.2f} wall-s with setup and evaluation")
    print(f"per-seed loss curves and metrics identical to the separate runs: {same}")
    print(f"speed-up batched/separate: {cpu_sep / cpu_bat:.1f}x (training device-seconds; wall-seconds: "
          f"{wall_sep / wall_bat:.1f}x)")


def _reordered_linear(x, w, b):
    """The critic head as x @ W^T: the same math, another summation order than nn.Linear's addmv."""
    out = torch.bmm(x, w.transpose(1, 2))
    return out if b is None else out + b.unsqueeze(1)


def tolerance(args: argparse.Namespace) -> None:
    import gbench.run.trial as trial_module

    exact, evaluate = batched._linear, trial_module.evaluate

    def reordered(x, w, b):
        return _reordered_linear(x, w, b) if w.shape[1] == 1 else exact(x, w, b)

    def recording(store):
        def wrapped(generator, *a, **k):
            store.append({n: p.detach().clone() for n, p in generator.state_dict().items()})
            return evaluate(generator, *a, **k)
        return wrapped

    runtime = Runtime(device=args.device)
    print(f"tolerance: sgan on ring8, 3x128, batch 128, {args.seeds} seeds; critic head reordered (x @ W^T)")
    for s in (suite(args.seeds, 50, 1000, ["modes"]), suite(args.seeds, args.steps, 10000, [])):
        trials, sep_w, bat_w = trials_of(s), [], []
        try:
            trial_module.evaluate = recording(sep_w)
            separate = [run_trial(t, runtime) for t in trials]
            batched.evaluate, batched._linear = recording(bat_w), reordered
            together = batched.run_trials(trials, runtime)
        finally:
            trial_module.evaluate, batched.evaluate, batched._linear = evaluate, evaluate, exact
        for a, b, wa, wb in zip(separate, together, sep_w, bat_w):  # one evaluation per trial (at = [1.0])
            rel = max(float((wa[k] - wb[k]).abs().max() / wa[k].abs().max()) for k in wa)
            dl = max(max(abs(x["d_loss"] - y["d_loss"]), abs(x["g_loss"] - y["g_loss"]))
                     for x, y in zip(a["loss_curve"], b["loss_curve"]))
            ma, mb = a["metrics"], b["metrics"]
            line = (f"{s.budget.g_steps} steps, seed {a['seed']}: G weights max rel. diff {rel:.1e}, loss curve max "
                    f"diff {dl:.1e}; modes {ma['modes']:g} vs {mb['modes']:g}, HQ % {ma['hq_percent']:.1f} vs "
                    f"{mb['hq_percent']:.1f}")
            if "jsd_bits" in ma:
                line += f", JSD {ma['jsd_bits']:.3f} vs {mb['jsd_bits']:.3f} bits"
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128, help="width of G and D (the ring suite's: 128)")
    parser.add_argument("--depth", type=int, default=3, help="hidden layers of G and D (the ring suite's: 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tolerance", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (tolerance if args.tolerance else speed)(args)


if __name__ == "__main__":
    main()
