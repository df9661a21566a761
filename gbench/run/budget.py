"""The budget meter: what a trial consumed, in steps, images and device-seconds."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class Consumed:
    g_steps: int = 0
    d_steps: int = 0
    d_real_images: int = 0  # real images the critic was trained on
    d_fake_images: int = 0  # generated images the critic was trained on
    g_images: int = 0  # generated images the generator was trained through
    device_seconds: float = 0.0  # training only: CPU process time, or CUDA-synchronised time on a GPU
    wall_seconds: float = 0.0  # training only
    eval_seconds: float = 0.0  # evaluation, counted apart from the budget
    stopped_by: str = ""  # "g_steps", "max_device_seconds" or "diverged"

    @property
    def gradient_evals(self) -> int:
        """(D steps + G steps) x batch: what a ``[budget] gradient_evals`` budget counts."""
        return self.d_real_images + self.g_images

    def as_dict(self) -> dict:
        return {**asdict(self), "gradient_evals": self.gradient_evals}


class Meter:
    """Accumulates training time; evaluation runs between ``pause()`` and ``resume()``."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.consumed = Consumed()
        self._device0 = self._wall0 = 0.0

    def _device_clock(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def resume(self) -> None:
        self._device0, self._wall0 = self._device_clock(), time.perf_counter()

    def pause(self) -> None:
        self.consumed.device_seconds += self._device_clock() - self._device0
        self.consumed.wall_seconds += time.perf_counter() - self._wall0

    def device_seconds(self) -> float:
        """Seconds consumed so far, including the running segment."""
        return self.consumed.device_seconds + self._device_clock() - self._device0
