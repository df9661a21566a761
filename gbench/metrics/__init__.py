"""Metrics: registered through the ``register_metrics`` hook, computed on generated samples."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


class Metric(ABC):
    """A sample-quality metric. ``compute`` returns named floats; ``protocol`` says how they were made."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ("toy",)  # dataset kinds it applies to

    @abstractmethod
    def compute(self, samples: np.ndarray, dataset: Any, rng: np.random.Generator) -> dict[str, float]:
        """Score ``samples`` (N, *data_shape) against ``dataset``; ``rng`` drives any resampling."""

    def protocol(self) -> dict[str, Any]:
        """Settings that change the numbers (recorded next to them)."""
        return {}
