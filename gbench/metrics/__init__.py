"""Metrics: registered through the ``register_metrics`` hook, computed on generated samples."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np


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
