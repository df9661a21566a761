"""Result files: one JSON per trial plus a run manifest, each written atomically."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable

import torch

import gbench
from gbench.errors import GbenchError

SCHEMA = 1
MANIFEST = "manifest.json"
TRIALS = "trials"


def write_atomic(path: Path, write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """Call ``write(file)`` so that ``path`` holds either the old or the new content, never a torn file:
    a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON, atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n"))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    return str(obj)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GbenchError(f"{path}: cannot read result: {exc}") from None


def trial_path(out: Path, trial_id: str) -> Path:
    return out / TRIALS / f"{trial_id}.json"


def load_results(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and every trial result of a run directory."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / MANIFEST
    if not manifest_path.is_file():
        raise GbenchError(f"{run_dir}: not a gbench run directory (no {MANIFEST})")
    manifest = read_json(manifest_path)
    results = [read_json(p) for p in sorted((run_dir / TRIALS).glob("*.json"))]
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
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit, "dirty": dirty}
