"""ModeMetrics / JSDMetric (gbench.metrics.toy): exact counts on hand-built sample sets, and the
known values for samples drawn from the data law itself."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from gbench.metrics import Metric
from gbench.metrics.toy import JSDMetric, ModeMetrics, register_metrics, sample_seed
from gbench.datasets.toy import ToyMixture, grid25, ring8

P_HQ_2D = 1 - math.exp(-4.5)  # P(chi^2_2 <= 9): a 2-D isotropic Gaussian sample within 3 sigma


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _draw(mix: ToyMixture, n: int, seed: int = 0) -> np.ndarray:
    return mix.sample(n, torch.Generator().manual_seed(seed)).numpy()


def _binomial_tol(p: float, n: int, z: float = 4.5) -> float:
    return 100 * z * math.sqrt(p * (1 - p) / n)


# -- exact counts -------------------------------------------------------------------------------


def test_three_ring_means_exactly() -> None:
    p = ring8()
    x = np.repeat(p.means[[0, 3, 5]], 7, axis=0)
    out = ModeMetrics().compute(x, p, _rng())
    assert out["modes"] == 3
    assert out["modes_total"] == 8
    assert out["hq_percent"] == 100.0
    assert out["reverse_kl"] == pytest.approx(math.log(8 / 3), abs=1e-12)


def test_unbalanced_histogram_counts_all_samples() -> None:
    """q_hat uses ALL samples: 3 at mode 0, 1 at mode 1 (both HQ), plus 4 non-HQ samples near mode 2."""
    p = ring8()
    hq = np.concatenate([np.repeat(p.means[[0]], 3, 0), p.means[[1]]])
    off = p.means[2] + np.array([[0.05, 0.0], [0.0, 0.05], [-0.05, 0.0], [0.0, -0.05]])  # 5 sigma away
    out = ModeMetrics().compute(np.concatenate([hq, off]), p, _rng())
    assert out["modes"] == 2  # mode 2 is nearest to non-HQ samples only
    assert out["hq_percent"] == pytest.approx(50.0)
    q = np.array([3, 1, 4]) / 8
    assert out["reverse_kl"] == pytest.approx(float(np.sum(q * np.log(q * 8))), abs=1e-12)


def test_hq_radius_is_three_sigma() -> None:
    p = ring8()  # sigma 0.01
    inside = p.means[[0]] + np.array([[0.0299, 0.0]])
    outside = p.means[[0]] + np.array([[0.0, 0.0301]])
    assert ModeMetrics().compute(inside, p, _rng())["hq_percent"] == 100.0
    out = ModeMetrics().compute(outside, p, _rng())
    assert out["hq_percent"] == 0.0 and out["modes"] == 0


def test_far_away_samples() -> None:
    for p in (ring8(), grid25()):
        x = _draw(p, 2000) + 10.0
        out = ModeMetrics().compute(x, p, _rng())
        assert out["modes"] == 0
        assert out["hq_percent"] == 0.0
        assert out["modes_total"] == p.num_components
        assert out["reverse_kl"] > 0  # everything lands in the corner components


def test_unequal_sigmas_use_standardised_distance() -> None:
    p = ToyMixture("two", [[0.0, 0.0], [1.0, 0.0]], [0.1, 0.4], [1.0, 1.0])
    x = np.array([[0.4, 0.0]])  # Euclidean: 0.4 from mode 0 (4 sigma), 0.6 from mode 1 (1.5 sigma)
    out = ModeMetrics().compute(x, p, _rng())
    assert out["modes"] == 1 and out["hq_percent"] == 100.0
    assert out["reverse_kl"] == pytest.approx(math.log(2), abs=1e-12)  # all in one of two bins
    y = np.array([[0.25, 0.0]])  # 2.5 sigma from mode 0, 1.875 sigma from mode 1 -> mode 1 still
    z = np.array([[0.15, 0.0]])  # 1.5 sigma from mode 0, 2.125 sigma from mode 1 -> mode 0
    out = ModeMetrics().compute(np.concatenate([x, y, z, z]), p, _rng())
    assert out["modes"] == 2 and out["hq_percent"] == 100.0
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)  # two in each bin


def test_nonuniform_weights_replace_uniform() -> None:
    p = ToyMixture("w", [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], 0.1, [0.5, 0.25, 0.25])
    x = np.repeat(p.means, [2, 1, 1], axis=0)  # exactly the weights
    assert ModeMetrics().compute(x, p, _rng())["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    x = np.repeat(p.means, [1, 1, 2], axis=0)
    q = np.array([0.25, 0.25, 0.5])
    want = float(np.sum(q * np.log(q / p.weights)))
    assert ModeMetrics().compute(x, p, _rng())["reverse_kl"] == pytest.approx(want, abs=1e-12)


def test_accepts_torch_and_rejects_bad_input() -> None:
    p = ring8()
    out = ModeMetrics().compute(torch.as_tensor(p.means), p, _rng())
    assert out["modes"] == 8 and out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    bad = p.means.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ModeMetrics().compute(bad, p, _rng())
    with pytest.raises(ValueError, match="shape"):
        ModeMetrics().compute(np.zeros((4, 3)), p, _rng())


# -- samples from the data law ------------------------------------------------------------------


@pytest.mark.parametrize("factory", [ring8, grid25])
def test_samples_from_the_data_law(factory) -> None:
    p = factory()
    n = 25_000
    x = _draw(p, n, seed=1)
    t0 = time.perf_counter()
    out = ModeMetrics().compute(x, p, _rng())
    assert time.perf_counter() - t0 < 0.5  # milliseconds in practice; loose for a loaded machine
    assert out["modes"] == p.num_components
    assert out["hq_percent"] == pytest.approx(100 * P_HQ_2D, abs=_binomial_tol(P_HQ_2D, n))
    # multinomial noise: E[KL(q_hat || u)] ~ (K - 1) / (2n) nats
    assert 0 <= out["reverse_kl"] < 5 * (p.num_components - 1) / (2 * n)


def test_mode_collapse_numbers() -> None:
    """Samples from 4 of the 8 ring modes: modes 4, reverse KL log 2."""
    p = ring8()
    half = ToyMixture("half", p.means[::2], p.sigmas[::2], np.ones(4))
    out = ModeMetrics().compute(_draw(half, 8000), p, _rng())
    assert out["modes"] == 4
    assert out["reverse_kl"] == pytest.approx(math.log(2), abs=2e-3)


# -- JSD metric and registration ----------------------------------------------------------------


def test_jsd_metric_keys_and_values() -> None:
    p = ring8()
    m = JSDMetric()
    out = m.compute(_draw(p, 4000), p, _rng())
    assert set(out) == {"jsd_bits", "jsd_raw_bits", "jsd_ci_low", "jsd_ci_high", "jsd_check_bits", "jsd_agree",
                        "jsd_components"}
    assert 0.0 <= out["jsd_ci_low"] <= out["jsd_bits"] <= out["jsd_ci_high"] <= 1.0
    assert out["jsd_bits"] == min(max(out["jsd_raw_bits"], 0.0), 1.0)
    assert abs(out["jsd_raw_bits"]) < 0.005 and out["jsd_ci_low"] == 0.0  # q = p: the interval reaches 0
    assert out["jsd_components"] == 8 and out["jsd_agree"] in (0.0, 1.0)
    assert out["jsd_check_bits"] < 0.01  # the k-NN lower bound
    far = m.compute(_draw(p, 2000) + 10.0, p, _rng())
    assert far["jsd_bits"] == pytest.approx(1.0, abs=1e-6) and far["jsd_agree"] == 1.0
    proto = m.protocol()
    assert proto["units"] == "bits" and proto["method"].startswith("gmm-plugin-bootstrap") and proto["n_boot"] == 10


def test_jsd_metric_draws_depend_on_the_samples() -> None:
    """One evaluation seed for every trial, yet trials with different samples get different data-side
    draws (sample_seed mixes a digest of the samples); the same samples give the same draws."""
    x, y = _draw(ring8(), 500, 1), _draw(ring8(), 500, 2)
    a, b, c = (sample_seed(s, np.random.default_rng(7)).integers(0, 2**62, 4) for s in (x, x.copy(), y))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, sample_seed(x, np.random.default_rng(8)).integers(0, 2**62, 4))


def test_jsd_metric_config() -> None:
    """The harness builds metrics as ``cls(cls.Config(**[eval.jsd] table))``."""
    p = ring8()
    m = JSDMetric(JSDMetric.Config(n_boot=4, n_mc=2000, knn_k=5))
    out = m.compute(_draw(p, 2000), p, _rng())
    assert abs(out["jsd_bits"]) < 0.01
    assert m.protocol()["n_mc"] == 2000 and "k = 5" in m.protocol()["cross_check"]
    for bad in ({"n_boot": 1}, {"n_mc": 10}, {"reg_scale": 0.0}, {"k_max": 0}, {"knn_k": 0}):
        with pytest.raises(ValueError):
            JSDMetric.Config(**bad)
    assert JSDMetric().config == JSDMetric.Config()


def test_protocols_and_registration() -> None:
    got: list[type] = []
    register_metrics(register=got.append)
    assert got == [ModeMetrics, JSDMetric]
    for cls in got:
        assert issubclass(cls, Metric) and not cls.__abstractmethods__
        assert cls.kinds == ("toy",)
    assert [c.name for c in got] == ["modes", "jsd"]
    proto = ModeMetrics().protocol()
    assert proto["hq_radius_sigma"] == 3
    assert "standardised" in proto["assignment"]
    assert "KL(hist_all || weights)" in proto["reverse_kl"]
