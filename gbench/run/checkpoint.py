"""Checkpoints: a trial's full training state, saved atomically so that a killed run can resume.

A checkpoint holds everything the next G step depends on: both nets (parameters and buffers, so a
variant's own state such as DeLiGAN's mixture latent or spectral-norm vectors come along), the EMA
copy of G if ``[optim] ema_decay`` is on, both Adam states (with their current learning rates; the
schedule itself is a function of the G step), the fp16 loss scalers, the G step and the budget consumed so far, the loss curve, the
losses of the unfinished logging window, the evaluations done, every RNG state (the trial's data,
latent and variant streams, torch's global RNG, CUDA's, numpy's and Python's global ones) and the
data stream's position in its current permutation. Resuming from it gives, on the CPU, the same
weights bit for bit as running straight through (``tests/test_resume.py``).

A checkpoint lives at ``<run>/checkpoints/<trial_id>.pt``. It is written to a temporary file in the
same folder (``.<trial_id>.pt.<random>.tmp``), flushed to disk and renamed over the old one, so the
path holds either the previous checkpoint or the new one. The runner deletes it once the trial's
result file is written (ok or diverged); a failed trial keeps it, and ``--resume`` retries it from
there.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gbench.run.budget import Meter
from gbench.errors import GbenchError
from gbench.run.loop import BatchStream, LoopState, Outcome
from gbench.run.results import write_atomic
from gbench.variant import Nets

FORMAT = 1
CHECKPOINTS = "checkpoints"
# what must match between the run that wrote a checkpoint and the one that resumes from it
KEY = ("format", "trial_id", "suite_hash", "device", "precision")


def checkpoint_path(out: Path, trial_id: str) -> Path:
    return Path(out) / CHECKPOINTS / f"{trial_id}.pt"


@dataclass
class TrainingState:
    """The live objects of one trial that a checkpoint saves and restores in place."""

    nets: Nets
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    data: BatchStream
    rngs: Mapping[str, torch.Generator]  # the trial's RNG streams by name ("data", "latent", "variant")
    meter: Meter
    evaluations: list[dict[str, Any]]
    key: Mapping[str, Any]  # trial_id, suite_hash, device, precision: checked on load
    resumed_at: list[int] = field(default_factory=list)  # the G steps this trial was resumed from
    ema: torch.nn.Module | None = None  # the EMA copy of G ([optim] ema_decay), saved beside it

    def state_dict(self, loop: LoopState) -> dict[str, Any]:
        cuda = self.data.data.device.type == "cuda"
        return {
            **self.key,
            "format": FORMAT,
            "step": loop.step,
            "generator": self.nets.generator.state_dict(),
            "critic": self.nets.critic.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scalers": loop.scalers,
            "loss_window": torch.stack(loop.window).cpu() if loop.window else None,
            "loss_curve": loop.outcome.loss_curve,
            "consumed": self.meter.consumed.as_dict(),
            "evaluations": _plain(self.evaluations),
            "resumed_at": list(self.resumed_at),
            "data_stream": {"order": self.data._order.cpu(), "pos": self.data._pos},
            "rng": {
                "streams": {name: g.get_state() for name, g in self.rngs.items()},
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if cuda else None,
                "numpy": _numpy_state(),
                "python": _python_state(),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> LoopState:
        """Restore everything in place; returns the loop's state, to pass to ``train(start=...)``."""
        self.nets.generator.load_state_dict(state["generator"])
        self.nets.critic.load_state_dict(state["critic"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        device = self.data.data.device
        self.data._order = state["data_stream"]["order"].to(device)
        self.data._pos = int(state["data_stream"]["pos"])
        consumed = self.meter.consumed
        for f in fields(consumed):
            setattr(consumed, f.name, state["consumed"][f.name])
        self.evaluations[:] = state["evaluations"]
        self.resumed_at[:] = [*state["resumed_at"], int(state["step"])]
        rng = state["rng"]
        for name, g in self.rngs.items():
            g.set_state(rng["streams"][name])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        _set_numpy_state(rng["numpy"])
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        window = state["loss_window"]
        return LoopState(
            step=int(state["step"]),
            outcome=Outcome(loss_curve=list(state["loss_curve"])),
            window=[row.to(device) for row in window] if window is not None else [],
            scalers=dict(state["scalers"]),
        )

    def save(self, path: Path, loop: LoopState) -> None:
        save(path, self.state_dict(loop))

    def resume(self, path: Path) -> LoopState:
        """Restore from the checkpoint at ``path``; a checkpoint of another trial or run is an error."""
        state = load(path)
        for k in KEY:
            expected = FORMAT if k == "format" else self.key[k]
            if state.get(k) != expected:
                raise GbenchError(f"checkpoint {path}: written with {k} {state.get(k)!r}, this run has {expected!r}; "
                                  "resume with the same settings, or delete the file to start the trial over")
        return self.load_state_dict(state)


def save(path: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` so that ``path`` holds either the old or the new checkpoint, never a torn file."""
    path = Path(path)
    write_atomic(path, lambda f: torch.save(dict(state), f), binary=True)
    _fsync_dir(path.parent)


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise GbenchError(f"checkpoint {path}: cannot read it ({type(exc).__name__}: {exc}); "
                          "delete it to start the trial over") from None
    if not isinstance(state, dict):
        raise GbenchError(f"checkpoint {path}: not a gbench checkpoint; delete it to start the trial over")
    return state


def remove_stale_temporaries(out: Path) -> int:
    """Delete the temporary files a killed write left in run directory ``out`` and its folders (manifest,
    trials/, checkpoints/, samples/...); returns how many. Only the names of gbench's atomic writes
    (``.<file>.<random>.tmp``) are touched. Call it only while no other process writes to ``out``."""
    out, removed = Path(out), 0
    if not out.is_dir():
        return 0
    for folder in (out, *(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())):
        for path in folder.glob(".*.*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain(obj: Any) -> Any:
    """Evaluations as plain Python values (numpy scalars to floats) so ``weights_only`` loading accepts them."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _numpy_state() -> dict[str, Any]:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(s: Mapping[str, Any]) -> None:
    np.random.set_state((s["name"], s["key"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
