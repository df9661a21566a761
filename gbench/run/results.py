"""Result files: one JSON per trial plus a run manifest, each written atomically.

The JSON is strict (RFC 8259: no bare ``NaN``/``Infinity``): a non-finite number is written as the
string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, and :func:`read_json` reads those strings back as
floats. A file that does not parse, or lacks the fields every result has, is an error naming the file
and what to do (:func:`check_result`); ``--resume`` runs such a trial again instead of trusting it.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import torch

import gbench
from gbench.atomic import write_atomic
from gbench.errors import GbenchError

SCHEMA = 1
MANIFEST = "manifest.json"
TRIALS = "trials"


NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}  # how JSON files spell them
REQUIRED = ("trial_id", "status", "label", "seed")  # every trial result has these
STATUSES = ("ok", "diverged", "failed")


def encode(obj: Any) -> Any:
    """``obj`` as strict-JSON values: numpy scalars and arrays to Python, tuples to lists, non-finite
    floats to ``"NaN"``/``"Infinity"``/``"-Infinity"``."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [encode(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return encode(obj.tolist())
    return str(obj)


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode` for non-finite numbers."""
    if isinstance(obj, str):
        return NON_FINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def dumps(data: Any) -> str:
    """Strict JSON text of ``data`` (what gbench writes everywhere)."""
    return json.dumps(encode(data), indent=2, sort_keys=True, allow_nan=False)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON, atomically."""
    text = dumps(data) + "\n"
    write_atomic(path, lambda f: f.write(text))


def _reject_constant(name: str) -> None:
    raise ValueError(f"bare {name} is not JSON")


def read_json(path: Path) -> Any:
    """A JSON file written by :func:`write_json`; a missing, unreadable or garbled file is an error
    naming it."""
    try:
        return decode(json.loads(Path(path).read_text(), parse_constant=_reject_constant))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GbenchError(f"{path}: cannot read it ({exc}); delete it (or the run) and run again") from None


def check_result(data: Any, path: Path) -> dict[str, Any]:
    """``data`` if it is a trial result (a table with :data:`REQUIRED` fields and a known status)."""
    how = "delete it and run `gbench run SUITE --out RUN --resume` to run that trial again"
    if not isinstance(data, dict):
        raise GbenchError(f"{path}: not a trial result (a JSON {type(data).__name__}); {how}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise GbenchError(f"{path}: not a complete trial result (no {', '.join(map(repr, missing))}); {how}")
    if data["status"] not in STATUSES or (data["status"] != "failed" and not isinstance(data.get("metrics"), dict)):
        raise GbenchError(f"{path}: not a complete trial result (status {data['status']!r}, "
                          f"metrics {data.get('metrics')!r}); {how}")
    return data


def fields_of(data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data``, a JSON table of a result file at ``where``, checked to hold every ``required`` key and
    no key beyond them and ``optional``."""
    if not isinstance(data, Mapping):
        raise GbenchError(f"not a complete trial result ({where} is a {type(data).__name__}, not a table)")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise GbenchError(f"not a trial result of schema {SCHEMA}: unknown field '{where}.{unknown[0]}'")
    missing = [k for k in required if k not in data]
    if missing:
        raise GbenchError(f"not a complete trial result (no {where}.{missing[0]})")
    return dict(data)


def trial_path(out: Path, trial_id: str) -> Path:
    return out / TRIALS / f"{trial_id}.json"


def load_results(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and every trial result of a run directory."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / MANIFEST
    if not manifest_path.is_file():
        raise GbenchError(f"{run_dir}: not a gbench run directory (no {MANIFEST})")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("trials"), list):
        raise GbenchError(f"{manifest_path}: not a gbench manifest (no list of 'trials'); "
                          "run the suite again into a new --out")
    results = [check_result(read_json(p), p) for p in sorted((run_dir / TRIALS).glob("*.json"))]
    return manifest, results


def provenance(device: str) -> dict[str, Any]:
    """Where and with what a number was produced."""
    info: dict[str, Any] = {
        "gbench": gbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_git_commit(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    gbench.get_plugins().manager.hook.update_run_info(run_info=info)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> dict[str, Any]:
    """The commit of the gbench checkout, when gbench runs from one."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        # --no-optional-locks: `git status` must not refresh (write) the checkout's index
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=5,
                               env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit, "dirty": dirty}
