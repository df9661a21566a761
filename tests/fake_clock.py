"""A clock the ETA tests move by hand (``clock.now = ...``), shared by the progress tests."""
from __future__ import annotations


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
