"""Checkpoints: a trial's full training state, saved atomically so that a killed run can resume.

A checkpoint holds everything the next G step depends on, for a trial or a batched group of trials
(one file, the group's stacked tensors and every trial's streams): both nets (parameters and buffers, so a
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gbench.run.budget import Meter
from gbench.errors import GbenchError
from gbench.run.loop import Group, LoopState, Outcome
from gbench.run.record import Evaluation, LossPoint
from gbench.run.results import write_atomic

FORMAT = 2  # 2: groups of trials (stacked nets, per-trial streams)
CHECKPOINTS = "checkpoints"
# what must match between the run that wrote a checkpoint and the one that resumes from it
KEY = ("format", "trial_ids", "suite_hash", "device", "precision", "mode")


def checkpoint_path(out: Path, trial_id: str) -> Path:
    """A trial's checkpoint; a group's is that of its first trial (its key lists all of them)."""
    return Path(out) / CHECKPOINTS / f"{trial_id}.pt"


@dataclass
class GroupState:
    """The live objects of a group of S trials (S = 1: one trial) that a checkpoint saves and restores
    in place: the stacked nets, so one file holds the whole group."""

    group: Group
    meter: Meter
    evaluations: list[list[Evaluation]]  # per trial
    key: Mapping[str, Any]  # trial_ids, suite_hash, device, precision, mode: checked on load
    resumed_at: list[int] = field(default_factory=list)  # the G steps this group was resumed from

    def state_dict(self, loop: LoopState) -> dict[str, Any]:
        g = self.group
        cuda = g.streams[0].data.device.type == "cuda"
        return {
            **self.key,
            "format": FORMAT,
            "step": loop.step,
            "generator": g.players.g.state_dict(),
            "critic": g.players.d.state_dict(),
            "ema": g.ema.state_dict() if g.ema is not None else None,
            "opt_g": g.opt_g.state_dict(),
            "opt_d": g.opt_d.state_dict(),
            "scalers": loop.scalers,
            "loss_window": torch.stack(loop.window).cpu() if loop.window else None,
            "outcomes": [{"diverged_at": o.diverged_at, "loss_curve": [p.to_json() for p in o.loss_curve],
                          "stopped_at": o.stopped_at} for o in loop.outcomes],
            "consumed": self.meter.state_dict(),
            "evaluations": _plain([[e.to_json() for e in trial] for trial in self.evaluations]),
            "resumed_at": list(self.resumed_at),
            "data_streams": [{"order": s._order.cpu(), "pos": s._pos} for s in g.streams],
            "rng": {
                "streams": {name: [r.get_state() for r in rngs] for name, rngs in self._rngs().items()},
                "trial_globals": list(g.global_rngs) if g.global_rngs is not None else None,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if cuda else None,
                "numpy": _numpy_state(),
                "python": _python_state(),
            },
        }

    def _rngs(self) -> dict[str, list[torch.Generator]]:
        g = self.group
        return {"latent": g.latent_rngs, "variant": g.variant_rngs, "loss": g.loss_rngs,
                "data": [s.rng for s in g.streams]}

    def load_state_dict(self, state: Mapping[str, Any]) -> LoopState:
        """Restore everything in place; returns the loop's state, to pass to ``train(start=...)``."""
        g = self.group
        g.players.g.load_state_dict(state["generator"])
        g.players.d.load_state_dict(state["critic"])
        if g.ema is not None:
            g.ema.load_state_dict(state["ema"])
        g.opt_g.load_state_dict(state["opt_g"])
        g.opt_d.load_state_dict(state["opt_d"])
        device = g.streams[0].data.device
        for stream, saved in zip(g.streams, state["data_streams"]):
            stream._order, stream._pos = saved["order"].to(device), int(saved["pos"])
        self.meter.load_state_dict(state["consumed"])
        self.evaluations[:] = [[Evaluation.from_json(e) for e in trial] for trial in state["evaluations"]]
        self.resumed_at[:] = [*state["resumed_at"], int(state["step"])]
        rng = state["rng"]
        for name, rngs in self._rngs().items():
            for r, saved in zip(rngs, rng["streams"][name]):
                r.set_state(saved)
        if g.global_rngs is not None:
            g.global_rngs[:] = rng["trial_globals"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        _set_numpy_state(rng["numpy"])
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        window = state["loss_window"]
        return LoopState(
            step=int(state["step"]),
            outcomes=[Outcome(o["diverged_at"], [LossPoint.from_json(p) for p in o["loss_curve"]], int(o["stopped_at"]))
                      for o in state["outcomes"]],
            window=[row.to(device) for row in window] if window is not None else [],
            scalers=dict(state["scalers"]),
        )

    def save(self, path: Path, loop: LoopState) -> None:
        save(path, self.state_dict(loop))

    def resume(self, path: Path) -> LoopState:
        """Restore from the checkpoint at ``path``; a checkpoint of another group or run is an error."""
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
