"""Jensen-Shannon divergence, in bits, for the toy benchmarks (algorithms.md §6.2, §8)."""
from __future__ import annotations

import math

from scipy.optimize import brentq


def j_perp(eps: float) -> float:
    """J_perp(eps) = JSD(p, (1-eps) p + eps r) in bits when r is disjoint from p: the largest
    JSD a mixture weight eps of anything else can cause (data processing on the component label)."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1], got {eps}")
    if eps == 0.0:
        return 0.0
    if eps == 1.0:
        return 1.0
    return 0.5 * (eps + (1 - eps) * math.log2(1 - eps) - (2 - eps) * math.log2(1 - eps / 2))


def j_perp_inverse(delta: float) -> float:
    """The eps with J_perp(eps) = delta: perturbing a fraction eps guarantees JSD(p, p_delta) <= delta."""
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be in [0, 1] bits, got {delta}")
    if delta in (0.0, 1.0):
        return delta
    return brentq(lambda e: j_perp(e) - delta, 0.0, 1.0, xtol=1e-12)
