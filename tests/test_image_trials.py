"""Image trials end to end: the CNN backbone, uint8 evaluation, FID/IS/KID and the δ-controlled GAN's
divergences, on generated data with a feature extractor the tests create (no Inception weights here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gbench.metrics import fidelity
from gbench.analysis.report import render
from gbench.run.results import load_results
from gbench.run.runner import run_suite
from gbench.suite import parse_suite
from test_fidelity import NET  # registers the test feature extractor with torch-fidelity


@pytest.fixture
def suite(tmp_path: Path):
    fidelity.clear_caches()
    features = {"feature_extractor": NET, "cache_dir": str(tmp_path / "cache"), "reference_split": "test"}
    return parse_suite({
        "seeds": [0, 1],
        "variants": ["sgan", {"name": "delta-gan", "label": "delta(0.3)", "delta": 0.3}],
        "dataset": {"name": "synthetic32", "train_size": 0, "options": {"n_train": 512, "n_test": 256}},
        "model": {"arch": "cnn", "z_dim": 8, "g_channels": 4, "d_channels": 4},
        "budget": {"g_steps": 4, "batch_size": 8},
        "eval": {"num_samples": 200, "metrics": ["fidelity", "classifier-jsd"],
                 "fidelity": {**features, "isc_splits": 2, "kid": True, "kid_subset_size": 50},
                 "classifier-jsd": {**features, "folds": 2}},
    }, "images.toml")


def test_image_trials_score_with_fidelity_and_report_delta_divergences(suite, tmp_path: Path):
    run_suite(suite, tmp_path / "run", quiet=True)
    manifest, results = load_results(tmp_path / "run")
    assert len(results) == 4
    for r in results:
        assert r["status"] == "ok", r["error"]
        assert r["metric_errors"] == {}
        # the test extractor is not the official Inception: every number says so
        assert {"nonstd_fid", "nonstd_isc_mean", "nonstd_kid_mean", "jsd_bits"} <= set(r["metrics"])
        assert "fid" not in r["metrics"]
        assert r["protocol"]["metrics"]["fidelity"]["standard"] is False
    delta = [r for r in results if r["variant"] == "delta-gan"]
    for r in delta:
        t = r["target"]
        assert t["jsd"] == 0.3 and "error" not in t
        for key in ("jsd_p_pdelta", "jsd_pdelta_pg"):
            low, high = t[f"{key}_ci"]
            assert low <= t[key] <= high
    text = render(manifest, results, "github")
    assert "FID* (non-standard weights)" in text and "JSD(p_δ, p_g)" in text
    words = " ".join(text.split())  # the notes are wrapped at 80 columns
    assert "NON-STANDARD" in words and "LOWER bound" in words
