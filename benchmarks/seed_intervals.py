"""Coverage of the report's interval over seeds (``gbench.analysis.report.mean_ci``: a Student-t interval clipped
to the metric's range) on bounded laws with known means, beside a t-interval on the logit scale.

Laws: per-seed values like a small JSD (Beta(0.5, 5), skewed to 0), a large one (Beta(5, 0.5)), a
symmetric one (Beta(2, 2)), mode counts of 8 (Binomial(8, 0.9)) and an all-or-nothing ring (8 modes
with probability 0.7, else 0). Prints one row per law and seed count; the last line is the lowest
coverage of the report's interval over all cases.

    python benchmarks/seed_intervals.py [--repeats 4000]
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import stats
from tabulate import tabulate

from gbench.analysis.report import mean_ci

LAWS = {
    "Beta(0.5, 5) (small JSD)": (lambda rng, n: rng.beta(0.5, 5.0, n), (0.0, 1.0), 0.5 / 5.5),
    "Beta(5, 0.5)": (lambda rng, n: rng.beta(5.0, 0.5, n), (0.0, 1.0), 5.0 / 5.5),
    "Beta(2, 2)": (lambda rng, n: rng.beta(2.0, 2.0, n), (0.0, 1.0), 0.5),
    "modes ~ Binomial(8, 0.9)": (lambda rng, n: rng.binomial(8, 0.9, n).astype(float), (0.0, 8.0), 7.2),
    "modes 8 w.p. 0.7, else 0": (lambda rng, n: np.where(rng.random(n) < 0.7, 8.0, 0.0), (0.0, 8.0), 5.6),
}


def logit_t(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """t-interval on the logit scale (Smithson-Verkuilen squeeze of the boundary values), mapped back."""
    n = len(x)
    u = ((x - low) / (high - low) * (n - 1) + 0.5) / n
    z = np.log(u / (1 - u))
    half = stats.t.ppf(0.975, n - 1) * z.std(ddof=1) / np.sqrt(n)
    back = lambda v: low + (high - low) / (1 + np.exp(-v))  # noqa: E731
    return float(back(z.mean() - half)), float(back(z.mean() + half))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, lowest = [], 1.0
    for name, (draw, (low, high), truth) in LAWS.items():
        for n in (3, 5, 10):
            hit_t = hit_l = width = 0.0
            for _ in range(args.repeats):
                x = draw(rng, n)
                s = mean_ci(x, bounds=(low, high))
                hit_t += s["ci_low"] <= truth <= s["ci_high"]
                width += s["ci_high"] - s["ci_low"]
                a, b = (x[0], x[0]) if x.std() == 0 else logit_t(x, low, high)
                hit_l += a <= truth <= b
            cov = hit_t / args.repeats
            lowest = min(lowest, cov)
            rows.append([name, n, f"{truth:g}", f"{cov:.3f}", f"{width / args.repeats:.3f}",
                         f"{hit_l / args.repeats:.3f}"])
    print(tabulate(rows, ["law", "seeds", "true mean", "coverage (report)", "mean width", "coverage (logit t)"],
                   tablefmt="github", disable_numparse=True))
    print(f"{args.repeats} repeats per case; nominal 0.95")
    print(f"lowest coverage of the report's interval: {lowest:.3f}")


if __name__ == "__main__":
    main()
