"""Image paths through the command line: data roots, image scoring, a CIFAR suite on fixtures, bf16."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gbench.cli import cli
from gbench.datasets.images import clear_cache
from test_fidelity import NET  # registers the test feature extractor with torch-fidelity
from test_images import write_cifar10, write_cifar100

SUITE = """
name = "tiny-cifar"
seeds = [0]
variants = ["sgan"]
[dataset]
mixture = [{{ name = "cifar10", weight = 0.5 }}, {{ name = "cifar100", weight = 0.5 }}]
reference = "cifar10"
train_size = 0
[model]
arch = "cnn"
z_dim = 8
g_channels = 4
d_channels = 4
[budget]
g_steps = 3
batch_size = 4
[eval]
num_samples = 16
metrics = ["fidelity"]
[eval.fidelity]
feature_extractor = "{net}"
reference_split = "test"
isc_splits = 2
cache_dir = "{cache}"
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(autouse=True)
def _fresh_image_cache():
    clear_cache()
    yield
    clear_cache()


def test_cifar_mixture_suite_from_data_root_option(tmp_path: Path):
    root = tmp_path / "data"
    write_cifar10(root, per_batch=4)
    write_cifar100(root, n_train=20, n_test=8)
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.format(net=NET, cache=tmp_path / "cache"))
    missing = invoke("run", str(suite), "--out", str(tmp_path / "a"), "--quiet", "--data-root", str(tmp_path / "nowhere"))
    # missing data is bad input, found before any trial: one line, exit 2, nothing written
    assert missing.exit_code == 2 and "nowhere" in missing.output and len(missing.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    result = invoke("run", str(suite), "--out", str(tmp_path / "b"), "--data-root", str(root))
    assert result.exit_code == 0, result.output
    (trial,) = [json.loads(p.read_text()) for p in (tmp_path / "b" / "trials").glob("*.json")]
    assert trial["status"] == "ok", trial["error"]
    assert trial["data_kind"] == "image" and "nonstd_fid" in trial["metrics"]
    assert trial["runtime"]["data_root"] == str(root)


def test_score_image_samples_npz_and_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("gbench.metrics.fidelity.hub_cached_weights", lambda: None)
    monkeypatch.delenv("GBENCH_INCEPTION_WEIGHTS", raising=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", x=images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(images[:20]):
        Image.fromarray(img).save(folder / f"{i}.png")
    for samples in (tmp_path / "s.npz", folder):
        result = invoke("score", "synthetic32", str(samples), "--metrics", "fidelity", "--json")
        assert result.exit_code == 2  # no weights offline: nothing could be computed
        assert "GBENCH_INCEPTION_WEIGHTS" in result.output
    wrong = tmp_path / "w.npy"
    np.save(wrong, images.astype(np.float32))
    result = invoke("score", "synthetic32", str(wrong))
    assert result.exit_code == 2 and "uint8" in result.output


def test_bf16_autocast_on_cpu(tmp_path: Path):
    suite = tmp_path / "s.toml"
    suite.write_text('variants = ["sgan", "tgan"]\n[dataset]\nname = "ring8"\ntrain_size = 256\n'
                     '[budget]\ng_steps = 10\nbatch_size = 16\n[eval]\nnum_samples = 300\n')
    result = invoke("run", str(suite), "--out", str(tmp_path / "r"), "--quiet", "--precision", "bf16")
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "r" / "trials").glob("*.json"):
        trial = json.loads(path.read_text())
        assert trial["status"] == "ok" and trial["runtime"]["precision"] == "bf16"
    assert "fp16 needs --device cuda" in invoke("run", str(suite), "--precision", "fp16").output
