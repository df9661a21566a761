"""Metrics: registered through the ``register_metrics`` hook, computed on generated samples."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np


# +1: higher is better, -1: lower is better; ``nonstd_X`` follows ``X``. Other keys have no direction.
DIRECTIONS = {"modes": 1, "hq_percent": 1, "isc_mean": 1, "reverse_kl": -1, "jsd_bits": -1, "fid": -1, "kid_mean": -1}
# The range of each metric's values; ``modes`` is [0, modes_total] (the mixture's component count).
BOUNDS = {"modes": (0.0, math.inf), "hq_percent": (0.0, 100.0), "jsd_bits": (0.0, 1.0), "reverse_kl": (0.0, math.inf),
          "fid": (0.0, math.inf), "isc_mean": (1.0, math.inf)}
# Leaves of a metric's protocol record that say where or with what software a number was made, not how:
# results differing only in these are comparable.
LOCAL_PROTOCOL_FIELDS = ("weights", "weights_path", "weights_source", "cache_dir", "cuda", "cache_name", "cache_hit",
                         "cache_root", "torch_fidelity_version", "root")


def base_key(key: str) -> str:
    """``nonstd_fid`` -> ``fid``: the metric a non-standard number stands in for."""
    return key[len("nonstd_"):] if key.startswith("nonstd_") else key


def bounds(key: str, modes_total: float | None = None) -> tuple[float, float]:
    """(lowest, highest) value metric ``key`` can take; unbounded for keys without a known range."""
    if base_key(key) == "modes" and modes_total is not None:
        return (0.0, float(modes_total))
    return BOUNDS.get(base_key(key), (-math.inf, math.inf))


def direction(key: str) -> int | None:
    """+1 if higher is better, -1 if lower is better, None if unknown."""
    return DIRECTIONS.get(base_key(key))


@dataclass(frozen=True)
class MetricConfig:
    """Base for a metric's settings; a suite sets them in its ``[eval.<metric name>]`` table."""


class Metric(ABC):
    """A sample-quality metric. ``compute`` returns named floats; ``protocol`` says how they were made.

    Toy metrics get float samples of shape (N, 2); image metrics get uint8 samples of shape
    (N, 3, H, W), converted from the generator's [-1, 1] output exactly once by the harness.
    """

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ("toy",)  # dataset kinds it applies to
    Config: ClassVar[type[MetricConfig]] = MetricConfig

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        """Score ``samples`` (N, *data_shape) against ``dataset``; ``rng`` drives any resampling."""

    def protocol(self) -> dict[str, Any]:
        """Settings that change the numbers (recorded next to them)."""
        return asdict(self.config)
