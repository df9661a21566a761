"""Fault injection (issue 12): kill a worker of ``--executor process`` and then the parent at random
moments; the workers die with the parent, and ``--resume`` completes the run with every file that
was finished before the kills left byte for byte unchanged."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gbench.run.results import load_results

SUITE = """
name = "faults"
seeds = [0, 1, 2]
variants = ["sgan"]
[dataset]
name = "ring8"
train_size = 512
[model]
g_hidden = 8
d_hidden = 8
depth = 1
[budget]
g_steps = 200
batch_size = 32
[eval]
num_samples = 200
metrics = ["modes"]
"""


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_a_worker_then_the_parent_then_resume(tmp_path: Path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"fault-injection seed {seed}")
    suite = tmp_path / "faults.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "gbench", "run", str(suite), "--out", str(out), "--executor", "process",
               "--jobs", "2", "--threads", "1", "--checkpoint-every", "10", "--no-batch", "--quiet"]
    log = tmp_path / "killed.log"
    with log.open("wb") as sink:
        parent = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        # (1) a worker, at a random moment once it trains (it has written a checkpoint)
        wait_for(lambda: parent.poll() is not None or list((out / "checkpoints").glob("*.pt")), "a checkpoint")
        assert parent.poll() is None, log.read_text()
        time.sleep(rng.uniform(0.0, 0.5))
        workers = [p for p in children(parent.pid) if "gbench" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
                   or "multiprocessing" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]
        assert workers, "no worker process found"
        os.kill(rng.choice(workers), signal.SIGKILL)
        # (2) the parent, at a random moment after a trial result exists
        wait_for(lambda: parent.poll() is not None or list((out / "trials").glob("*.json")), "a result")
        time.sleep(rng.uniform(0.0, 0.5))
        running = children(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # (3) no orphan keeps training and writing (one still starting up exits once its imports are done)
        wait_for(lambda: not any(alive(p) for p in running), "the workers to die with the parent", timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()

    finished = {}
    for path in (out / "trials").glob("*.json"):
        if json.loads(path.read_text())["status"] in ("ok", "diverged"):
            finished[path.name] = path.read_bytes()
    # the rest in this process's executor: at equal --threads every executor gives the same numbers
    resume = [a if a != "process" else "local" for a in command if a not in ("--jobs", "2")]
    resumed = subprocess.run(resume + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest, results = load_results(out)
    assert sorted(r["trial_id"] for r in results) == sorted(manifest["trials"]) and len(results) == 3
    assert all(r["status"] == "ok" for r in results), [(r["trial_id"], r["error"]) for r in results]
    for name, content in finished.items():
        assert (out / "trials" / name).read_bytes() == content, f"{name} changed on --resume (seed {seed})"
    assert not list((out / "checkpoints").glob("*.pt")) and not list(out.rglob("*.tmp"))
