"""classifier_jsd_bits (gbench.metrics.classifier_bound): the cross-fitted classifier LOWER bound on JSD in
bits, on feature sets with a known answer (identical, disjoint, two Gaussians by numerical integration)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

from gbench.metrics.classifier_bound import classifier_jsd_bits


@pytest.fixture(autouse=True)
def one_thread():
    """Small problems: one torch thread (thread hand-offs on a busy 2-core machine cost more than the work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian_jsd_bits(mu: float) -> float:
    """JSD(N(0, 1), N(mu, 1)) in bits by numerical integration."""

    def integrand(x: float) -> float:
        p, q = norm.pdf(x), norm.pdf(x, mu)
        m = p + q
        out = 0.0
        if p > 0:
            out += 0.5 * p * math.log2(2 * p / m)
        if q > 0:
            out += 0.5 * q * math.log2(2 * q / m)
        return out

    return quad(integrand, -12.0, mu + 12.0, limit=200, epsabs=1e-12)[0]


def test_reference_value_of_the_integral() -> None:
    # sanity of the helper: JSD grows with the separation, 0 at 0, -> 1 far apart
    assert gaussian_jsd_bits(0.0) == pytest.approx(0.0, abs=1e-12)
    assert 0.15 < gaussian_jsd_bits(1.0) < 0.17
    assert gaussian_jsd_bits(12.0) > 0.999


def test_identical_distributions_give_about_zero() -> None:
    rng = np.random.default_rng(1)
    out = classifier_jsd_bits(rng.normal(size=(3000, 8)), rng.normal(size=(3000, 8)), folds=5, seed=0)
    assert abs(out["jsd_bits"]) < 0.01
    assert out["jsd_ci_low"] <= 0.005  # the CI reaches (about) zero
    assert out["jsd_ci_low"] <= out["jsd_bits"] <= out["jsd_ci_high"]


def test_disjoint_distributions_give_about_one_bit() -> None:
    rng = np.random.default_rng(2)
    shift = np.zeros(6)
    shift[2] = 40.0
    out = classifier_jsd_bits(rng.normal(size=(1500, 6)), rng.normal(size=(1500, 6)) + shift, folds=5, seed=0)
    assert out["jsd_bits"] == pytest.approx(1.0, abs=1e-3)
    assert out["jsd_bits"] <= 1.0  # clipping at 1e-6 keeps every term <= 1 bit


@pytest.mark.parametrize("mu, dim", [(1.0, 1), (1.0, 4), (2.0, 1)])
def test_gaussians_with_known_jsd(mu: float, dim: int) -> None:
    """Equal-variance Gaussians: the optimal D is logistic in x, so the bound is nearly tight; extra
    noise dimensions only cost the classifier a little. The truth must not be below the CI (lower bound)."""
    truth = gaussian_jsd_bits(mu)
    rng = np.random.default_rng(3)
    shift = np.zeros(dim)
    shift[0] = mu
    out = classifier_jsd_bits(rng.normal(size=(4000, dim)), rng.normal(size=(4000, dim)) + shift, folds=5, seed=0)
    assert out["jsd_ci_low"] <= truth  # a lower bound: the truth is never clearly below the estimate
    assert out["jsd_bits"] == pytest.approx(truth, abs=0.03)
    assert out["jsd_ci_high"] - out["jsd_ci_low"] < 0.08


def test_deterministic_with_a_seed_and_seed_matters() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(800, 3)), rng.normal(size=(900, 3)) + np.array([0.7, 0.0, 0.0])
    one = classifier_jsd_bits(a, b, folds=4, seed=11)
    two = classifier_jsd_bits(a.copy(), b.copy(), folds=4, seed=11)
    assert one == two
    other = classifier_jsd_bits(a, b, folds=4, seed=12)
    assert other["jsd_bits"] != one["jsd_bits"]


def test_balanced_by_subsampling_and_reports_sizes() -> None:
    rng = np.random.default_rng(5)
    out = classifier_jsd_bits(rng.normal(size=(500, 2)), rng.normal(size=(200, 2)), folds=5, seed=0)
    assert (out["n_real"], out["n_fake"], out["n_per_class"], out["folds"]) == (500, 200, 200, 5)
    assert len(out["fold_estimates"]) == 5
    assert set(out) >= {"jsd_bits", "jsd_ci_low", "jsd_ci_high", "folds", "n_real", "n_fake"}


def test_raw_value_is_not_clipped_at_zero() -> None:
    """A useless classifier on small samples: the raw estimate may be below 0 and is kept as it is."""
    values = []
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        values.append(classifier_jsd_bits(rng.normal(size=(60, 20)), rng.normal(size=(60, 20)), folds=3,
                                          seed=seed)["jsd_bits"])
    assert min(values) < 0.0
    assert max(abs(v) for v in values) < 0.2


def test_bad_inputs() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="same d"):
        classifier_jsd_bits(rng.normal(size=(100, 3)), rng.normal(size=(100, 4)))
    with pytest.raises(ValueError, match="folds"):
        classifier_jsd_bits(rng.normal(size=(100, 3)), rng.normal(size=(100, 3)), folds=1)
    with pytest.raises(ValueError, match="samples per class"):
        classifier_jsd_bits(rng.normal(size=(10, 3)), rng.normal(size=(100, 3)), folds=5)
    bad = rng.normal(size=(100, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        classifier_jsd_bits(bad, rng.normal(size=(100, 3)))


def test_same_result_under_no_grad_and_inference_mode() -> None:
    """The harness may score inside torch.no_grad(): the fit uses analytic gradients, no autograd."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + 0.8
    plain = classifier_jsd_bits(a, b, folds=3, seed=0)
    with torch.no_grad():
        assert classifier_jsd_bits(a, b, folds=3, seed=0) == plain
    with torch.inference_mode():
        assert classifier_jsd_bits(a, b, folds=3, seed=0) == plain
