"""The budget meter (:class:`Meter`) and what a trial consumed (:class:`Consumed`): steps, images, device-seconds."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from gbench.run.results import fields_of


@dataclass(frozen=True)
class Consumed:
    """A result's ``consumed``: one trial's own steps and images, and its share of its group's time."""

    g_steps: int = 0
    d_steps: int = 0
    d_real_images: int = 0  # real images the critic was trained on
    d_fake_images: int = 0  # generated images the critic was trained on
    g_images: int = 0  # generated images the generator was trained through
    device_seconds: float = 0.0  # training only: CPU process time, or CUDA-synchronised time on a GPU
    wall_seconds: float = 0.0  # training only
    eval_seconds: float = 0.0  # evaluation, counted apart from the budget
    stopped_by: str = ""  # "g_steps", "max_device_seconds" or "diverged"
    batched_device_seconds: float | None = None  # a batched group's totals (its trials share them equally)
    batched_wall_seconds: float | None = None

    @property
    def gradient_evals(self) -> int:
        """(D steps + G steps) x batch: what a ``[budget] gradient_evals`` budget counts."""
        return self.d_real_images + self.g_images

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {**data, "gradient_evals": self.gradient_evals}

    @classmethod
    def from_json(cls, data: Any) -> "Consumed":
        """The record of a result's ``consumed`` (its ``gradient_evals`` follows from the images)."""
        group = ("batched_device_seconds", "batched_wall_seconds")  # in the file of a batched trial only
        own = tuple(f.name for f in dataclasses.fields(cls) if f.name not in group)
        d = fields_of(data, "consumed", own + ("gradient_evals",), group)
        del d["gradient_evals"]
        return cls(**d)


class Meter:
    """Accumulates a trial's (or a batched group's) training time; evaluation runs between ``pause()``
    and ``resume()``. The loop says what stopped training (``stopped_by``)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device_time = self.wall_time = 0.0  # seconds of the segments paused so far
        self.stopped_by = ""  # "g_steps" or "max_device_seconds" once training stops
        self._device0 = self._wall0 = 0.0

    def _device_clock(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def resume(self) -> None:
        self._device0, self._wall0 = self._device_clock(), time.perf_counter()

    def pause(self) -> None:
        self.device_time += self._device_clock() - self._device0
        self.wall_time += time.perf_counter() - self._wall0

    def device_seconds(self) -> float:
        """Seconds consumed so far, including the running segment."""
        return self.device_time + self._device_clock() - self._device0

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the meter (the group's totals, named as in a result's ``consumed``)."""
        return {"device_seconds": self.device_time, "wall_seconds": self.wall_time, "stopped_by": self.stopped_by}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.device_time, self.wall_time = float(state["device_seconds"]), float(state["wall_seconds"])
        self.stopped_by = str(state["stopped_by"])
