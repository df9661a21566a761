"""Accuracy, interval coverage and cost of the toy JSD estimator (gbench.metrics.jsd.jsd_to_known).

For each case, a law q whose density is exactly known (a ``ToyMixture``) plays the generator: the
truth JSD(p, q) is computed by exact Monte Carlo with both densities (``jsd_mc``, ``--truth-n``
draws per side, with its standard error), then R independent sets of n samples of q are scored.
Printed per case: truth +- se (the closed form, se 0, where there is one; the exact Monte Carlo
beside it as a check), mean estimate, bias (mean - truth, with its se), 95 % interval
coverage over the R repeats, sd/se (the spread of the estimates over repeats divided by the
root-mean-square reported se: about 1 when the interval is calibrated), the raw mean (before the
bias correction), the k-NN cross-check mean and its agreement rate, the median K and the median
cost per evaluation as process CPU seconds and wall seconds (the estimator runs on one thread, so
on an idle machine the wall time is the CPU time; the machine's load average is printed). The
last line is the summary.

    OMP_NUM_THREADS=1 python benchmarks/jsd_accuracy.py --repeats 20 [--cases ring8/p,grid25/delta0.1]
"""
from __future__ import annotations

import argparse
import math
import os
import time
from typing import Callable

import numpy as np
import torch
from scipy import integrate

from gbench.metrics.jsd import j_perp, j_perp_inverse, jsd_mc, jsd_to_known
from gbench.datasets.toy import ToyMixture, grid25, ring8

NOISE_SCALE = 0.5  # delta-gan's default noise_scale on toys (plugins/delta_gan.py)


def p_delta(p: ToyMixture, delta: float, scale: float = NOISE_SCALE) -> ToyMixture:
    """delta-gan's training law on a toy: (1 - eps) p + eps (p * N(0, scale^2 I)), eps = J_perp^-1(delta)."""
    eps = j_perp_inverse(delta)
    return ToyMixture.mix([p, p.convolve(scale)], [1 - eps, eps], f"{p.name}_delta{delta:g}")


def scaled(p: ToyMixture, factor: float) -> ToyMixture:
    return ToyMixture(f"{p.name}*sigma{factor:g}", p.means, p.sigmas * factor, p.weights)


def scaled_closed(p: ToyMixture, factor: float) -> float | None:
    """JSD(p, p with every sigma times ``factor``) in bits when the modes are equally wide and so far
    apart (>= 10 sigma of q on each side of the midpoint) that neither law overlaps another mode:
    then it is JSD(N(0, I_2), N(0, factor^2 I_2)), a 1-D integral over the radius (quadrature)."""
    m = p.means
    d = np.sqrt(((m[:, None] - m[None]) ** 2).sum(-1))
    if np.ptp(p.sigmas) > 0 or d[d > 0].min() / 2 < 10 * factor * float(p.sigmas.max()):
        return None

    def integrand(r: float) -> float:
        lp = -0.5 * r * r - math.log(2 * math.pi)
        lq = -0.5 * r * r / factor**2 - math.log(2 * math.pi * factor**2)
        lm = np.logaddexp(lp, lq)
        return math.pi * r * (math.exp(lp) * (math.log(2) + lp - lm) + math.exp(lq) * (math.log(2) + lq - lm))

    return integrate.quad(integrand, 0, 20 * factor, limit=400, epsabs=1e-12)[0] / math.log(2)


def drop_one(p: ToyMixture) -> ToyMixture:
    """p without its first mode; JSD(p, q) = J_perp(w_0) in closed form (p = (1 - w_0) q + w_0 r, r disjoint)."""
    return ToyMixture(f"{p.name}-1", p.means[1:], p.sigmas[1:], p.weights[1:])


def _edges(p: ToyMixture) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of neighbouring modes (nearest-neighbour distance, up to rounding)."""
    m = p.means
    d = np.sqrt(((m[:, None] - m[None]) ** 2).sum(-1))
    near = d[d > 0].min()
    return [(m[i], m[j]) for i in range(len(m)) for j in range(i + 1, len(m)) if d[i, j] < 1.01 * near]


def hard(p: ToyMixture, sharp: float = 1 / 3, bridge: float = 0.15, diffuse: float = 0.1) -> ToyMixture:
    """A GAN-like law: p's modes sharpened to sigma/3 (weight 1 - bridge - diffuse); thin bridges of
    mass between neighbouring modes (chains of 5 small Gaussians, sigma = spacing/20); and a diffuse
    Gaussian over the whole support (sigma = half the support's radius)."""
    edges = _edges(p)
    spacing = float(np.linalg.norm(edges[0][0] - edges[0][1]))
    t = (np.arange(5) + 0.5) / 5
    links = np.concatenate([a + t[:, None] * (b - a) for a, b in edges])
    radius = float(np.sqrt((p.means**2).sum(1)).max())
    parts = [
        ToyMixture("cores", p.means, p.sigmas * sharp, p.weights),
        ToyMixture("bridges", links, spacing / 20, np.ones(len(links))),
        ToyMixture("diffuse", np.zeros((1, 2)), radius / 2, np.ones(1)),
    ]
    return ToyMixture.mix(parts, [1 - bridge - diffuse, bridge, diffuse], f"{p.name}_hard")


def collapse(p: ToyMixture, keep: int = 3, widen: float = 2.0, spread: float = 0.05) -> ToyMixture:
    """Partial mode collapse: ``keep`` of the modes, widened ``widen`` x, plus a ``spread`` share of
    mass smeared between them (a chain of 12 Gaussians from the first to the last kept mode)."""
    kept = p.means[:keep]
    t = np.linspace(0, 1, 12)
    chain = kept[0] + t[:, None] * (kept[-1] - kept[0])
    parts = [ToyMixture("kept", kept, p.sigmas[:keep] * widen, np.ones(keep)),
             ToyMixture("chain", chain, 4 * float(p.sigmas.max()), np.ones(12))]
    return ToyMixture.mix(parts, [1 - spread, spread], f"{p.name}_collapse{keep}")


def cases() -> dict[str, tuple[ToyMixture, ToyMixture, float | None]]:
    """name -> (p, q, closed-form JSD or None)."""
    out: dict[str, tuple[ToyMixture, ToyMixture, float | None]] = {}
    for p in (ring8(), grid25()):
        k = p.num_components
        out[f"{p.name}/p"] = (p, p, 0.0)
        out[f"{p.name}/sigma2"] = (p, scaled(p, 2.0), scaled_closed(p, 2.0))
        out[f"{p.name}/drop1of{k}"] = (p, drop_one(p), j_perp(1.0 / k))
        out[f"{p.name}/delta0.1"] = (p, p_delta(p, 0.1), None)
        out[f"{p.name}/delta0.3"] = (p, p_delta(p, 0.3), None)
        out[f"{p.name}/hard"] = (p, hard(p), None)
        out[f"{p.name}/collapse3"] = (p, collapse(p), None)
    return out


def truth(p: ToyMixture, q: ToyMixture, n: int, seed: int, chunk: int = 200_000) -> tuple[float, float]:
    """Exact-density Monte-Carlo JSD(p, q) in bits and its standard error (``n`` draws per side,
    averaged over chunks of ``chunk`` to bound memory)."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        parts.append(jsd_mc(p.log_prob, q.log_prob, p.sample(m, g).numpy(), q.sample(m, g).numpy()))
    sizes = np.array([e.n_p for e in parts], dtype=np.float64)
    bits = float(np.average([e.bits for e in parts], weights=sizes))
    se = float(math.sqrt(np.sum((sizes / sizes.sum()) ** 2 * np.array([e.se for e in parts]) ** 2)))
    return bits, se


def run_case(p: ToyMixture, q: ToyMixture, repeats: int, n: int, seed: int,
             estimator: Callable = jsd_to_known) -> dict[str, np.ndarray]:
    """R independent evaluations: fresh samples of q and a fresh estimator seed per repeat (so no two
    repeats share data-side draws). Cost per evaluation: process CPU seconds and wall seconds."""
    keys = ("est", "low", "high", "se", "plug", "check", "agree", "k", "cpu", "wall")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        x = q.sample(n, torch.Generator().manual_seed(seed * 100_003 + r)).numpy()
        w0, c0 = time.perf_counter(), time.process_time()
        e = estimator(p, x, np.random.default_rng([seed, r]))
        out["cpu"].append(time.process_time() - c0)
        out["wall"].append(time.perf_counter() - w0)
        for k, v in zip(keys, (e.bits, e.ci_low, e.ci_high, e.se, e.plug_in_bits, e.check_bits, e.agree, e.components)):
            out[k].append(float(v))
    return {k: np.array(v) for k, v in out.items()}


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--truth-n", type=int, default=1_000_000)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    table = cases()
    chosen = [c for c in args.cases.split(",") if c] or list(table)
    unknown = [c for c in chosen if c not in table]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(table)}")
    print(f"n = {args.n} samples per evaluation, R = {args.repeats} repeats, truth from {args.truth_n} exact draws "
          f"per side; {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average (1/5/15 min) {_load()}")
    head = (f"{'case':<18} {'truth':>15} {'MC':>7} {'mean est':>9} {'bias':>16} {'cover':>11} {'sd/se':>6} "
            f"{'raw':>8} {'k-NN':>8} {'agree':>6} {'K':>4} {'cpu s':>6} {'wall s':>6}")
    print(head)
    worst_bias, worst_cov, worst_cpu, worst_wall = 0.0, 1.0, 0.0, 0.0
    for i, name in enumerate(chosen):
        p, q, closed = table[name]
        t_mc, t_mc_se = truth(p, q, args.truth_n, seed=10_000 + i)
        t, t_se = (closed, 0.0) if closed is not None else (t_mc, t_mc_se)  # closed form where known
        res = run_case(p, q, args.repeats, args.n, seed=i + 1)
        bias = res["est"].mean() - t
        bias_se = math.hypot(res["est"].std(ddof=1) / math.sqrt(args.repeats), t_se)
        tc = min(max(t, 0.0), 1.0)  # the true JSD lies in [0, 1]; the MC truth can round just below 0
        hits = int(np.sum((res["low"] <= tc) & (tc <= res["high"])))
        cover = hits / args.repeats
        # calibration: spread of the estimates over repeats / root-mean-square reported se
        ratio = res["est"].std(ddof=1) / math.sqrt(float(np.mean(res["se"] ** 2)))
        cpu, wall = float(np.median(res["cpu"])), float(np.median(res["wall"]))
        worst_bias, worst_cov = max(worst_bias, abs(bias)), min(worst_cov, cover)
        worst_cpu, worst_wall = max(worst_cpu, cpu), max(worst_wall, wall)
        closed_s = f"{t_mc:.4f}" if closed is not None else "-"
        cover_s = f"{cover:.0%} {hits}/{args.repeats}"
        print(f"{name:<18} {t:>7.4f}±{t_se:.4f} {closed_s:>7} {res['est'].mean():>9.4f} "
              f"{bias:>+8.4f}±{bias_se:.4f} {cover_s:>11} {ratio:>6.2f} {res['plug'].mean():>8.4f} "
              f"{res['check'].mean():>8.4f} {res['agree'].mean():>6.0%} {int(np.median(res['k'])):>4} "
              f"{cpu:>6.2f} {wall:>6.2f}", flush=True)
    print(f"summary: {len(chosen)} cases, max |bias| {worst_bias:.4f} bits, min coverage {worst_cov:.0%} "
          f"(R = {args.repeats}), max median cost {worst_cpu:.2f} CPU s / {worst_wall:.2f} wall s per evaluation "
          f"of {args.n} samples (one thread); load average at the end {_load()}")


if __name__ == "__main__":
    main()
