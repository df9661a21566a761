"""The HTML report: samples saved per trial, plots written beside the page and embedded in it, tables and
protocol on the page, nothing loaded from outside; then the page opened in headless Chromium, which must
load every image. The screenshot is kept in $GBENCH_ARTIFACTS, else tests/artifacts/."""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gbench.cli import cli
from gbench.analysis.html_report import write_html
from gbench.datasets.samples import evolution_files
from gbench.run.results import load_results
from gbench.run.runner import run_suite
from gbench.suite import parse_suite

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARTIFACTS = Path(os.environ.get("GBENCH_ARTIFACTS") or Path(__file__).parent / "artifacts")
ODD_LABEL = 'sgan <b>"& $\\nosuch$'  # must reach the page escaped, and the plots as plain text (no mathtext)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "run"
    suite = parse_suite({
        "name": "html-toy",
        "seeds": [0, 1],
        "variants": [{"name": "sgan", "label": ODD_LABEL}, {"name": "delta-gan", "label": "delta(0.2)", "delta": 0.2}],
        "dataset": {"name": "ring8", "train_size": 1000},
        "model": {"z_dim": 2, "g_hidden": 16, "d_hidden": 16, "depth": 2},
        "budget": {"g_steps": 20, "batch_size": 32},
        "eval": {"num_samples": 400, "at": [0.5, 1.0]},
    }, "html-toy.toml")
    run_suite(suite, out, quiet=True)
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img") / "run"
    suite = parse_suite({
        "name": "html-images",
        "seeds": [0],
        "variants": ["sgan"],
        "dataset": {"name": "synthetic32", "train_size": 0, "options": {"n_train": 128, "n_test": 64}},
        "model": {"arch": "cnn", "z_dim": 8, "g_channels": 4, "d_channels": 4},
        "budget": {"g_steps": 4, "batch_size": 8},
        "eval": {"num_samples": 64, "metrics": ["fidelity"]},  # no Inception weights: recorded as not computed
    }, "html-images.toml")
    run_suite(suite, out, quiet=True)
    return out


@pytest.fixture(scope="module")
def toy_page(toy_run: Path) -> Path:
    return write_html(toy_run, pdf=False)  # the CLI test checks the PDFs


@pytest.fixture(scope="module")
def image_page(image_run: Path, tmp_path_factory) -> Path:
    return write_html(image_run, tmp_path_factory.mktemp("page") / "elsewhere" / "page.html", pdf=False)


class Page(HTMLParser):
    """The tags of a page that load something, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.loads: list[tuple[str, str, str | None]] = []  # (tag, attribute, value) that could fetch
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href", "srcset", "poster", "data"):
            if key in a:
                self.loads.append((tag, key, a[key]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> tuple[str, Page]:
    source = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(source)
    return source, page


def decode_png(src: str | None) -> bytes:
    assert src and src.startswith("data:image/png;base64,"), (src or "")[:60]
    data = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert data.startswith(PNG_MAGIC)
    return data


# -- samples saved by the harness ---------------------------------------------------------------------


def test_each_trial_saves_its_final_samples_beside_the_result(toy_run: Path, image_run: Path):
    for run, shape, dtype in ((toy_run, (400, 2), np.float32), (image_run, (64, 3, 32, 32), np.uint8)):
        _, results = load_results(run)
        assert results
        for r in results:
            assert r["status"] == "ok", r["error"]
            assert "_samples" not in r
            assert r["samples_file"] == f"samples/{r['trial_id']}.npy"
            x = np.load(run / r["samples_file"], allow_pickle=False)
            assert x.shape == shape and x.dtype == dtype
            # every evaluation's samples, for the evolution plot; the last is the final one
            evolution = evolution_files(run, r["trial_id"])
            assert list(evolution) == [e["g_step"] for e in r["evaluations"]]
            assert np.array_equal(np.load(evolution[r["evaluations"][-1]["g_step"]]), x)
        assert not list((run / "samples").rglob(".*"))  # no temporaries left


# -- the page ------------------------------------------------------------------------------------------


def test_toy_report_has_tables_protocol_and_every_plot_embedded_and_on_disk(toy_run: Path, toy_page: Path):
    assert toy_page == toy_run / "report.html"
    source, page = parse(toy_page)
    manifest, results = load_results(toy_run)
    text = " ".join(page.text)

    # plots: each <img> is an embedded PNG with alt text, and the same PNG (and a PDF) is on disk
    names = {"forest", "toy-samples", "sample-evolution", "loss-curves", "metrics-vs-budget", "delta-target"}
    assert len(page.images) == len(names)
    on_disk = {p.stem: p.read_bytes() for p in (toy_run / "plots").glob("*.png")}
    assert set(on_disk) == names
    for img in page.images:
        assert decode_png(img["src"]) in on_disk.values()
        assert img.get("alt") and len(img["alt"]) > 20
    assert "image-samples" not in on_disk  # no image plot for a toy run

    # self-contained: nothing but data: URIs and in-page anchors
    assert all(v is not None and v.startswith(("data:", "#")) for _, _, v in page.loads), page.loads
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert "@import" not in source and "url(" not in source

    # navigation: every section it links exists
    for anchor in ("overview", "tables", "per-seed", "plots", "settings", "protocol"):
        assert f'href="#{anchor}"' in source and f'id="{anchor}"' in source, anchor

    # overview: ranked on the primary metric with compare's numbers
    from gbench.analysis.compare import compare_runs

    c = compare_runs([toy_run], ["jsd_bits"])
    for name, summary in c.metrics[0].summaries.items():
        assert f"{summary['mean']:.4g}" in text, name
    assert "Ranked on" in text and "jsd_bits" in text

    # tables: the report's columns and rows, the δ table with its verdict; per seed: every trial's JSD
    assert page.tags.count("table") >= 5  # overview, results, δ, per seed, settings
    for heading in ("variant", "ok/trials", "modes", "HQ %", "rev. KL", "JSD (bits)", "G steps", "device-s",
                    "target δ", "JSD(p, p_δ)", "JSD(p_δ, p_g)", "JSD(p, p_g)", "base JSD(p, p_g)", "within target"):
        assert f"<th>{heading}" in source.replace("&quot;", '"'), heading
    assert "delta(0.2)" in text and "2/2" in text

    for r in results:
        assert f"{r['metrics']['jsd_bits']:.3f}" in text
    # settings as key/value tables, not JSON strings; start and finish times
    assert "Variant settings" in text and "delta" in text and '{"' not in text.split("Suite content")[0]
    assert "Started 20" in text and "finished 20" in text

    # escaping: the odd label shows as text, never as markup
    assert ODD_LABEL in text
    assert "<b>" not in source

    # protocol and provenance, as recorded
    prov = manifest["provenance"]
    for expected in ("html-toy", manifest["suite_hash"], "samples per evaluation", "400", "evaluation seed",
                     "ring8", "Metric protocols", "cross_check", prov["torch"], prov["gbench"], prov["python"],
                     "D steps per G step"):
        assert expected in text, expected
    if prov.get("commit"):
        assert prov["commit"] in text


def test_image_report_shows_sample_grids_and_no_toy_plots(image_run: Path, image_page: Path):
    assert image_page.name == "page.html" and image_page.parent.name == "elsewhere"  # --output
    source, page = parse(image_page)
    assert {p.stem for p in (image_run / "plots").glob("*.png")} == {"image-samples", "sample-evolution", "loss-curves"}
    assert len(page.images) == 3
    png = decode_png(page.images[0]["src"])
    assert png == (image_run / "plots" / "image-samples.png").read_bytes()
    text = " ".join(page.text)
    assert "fidelity not computed in 1 trials" in text  # the table's note, as `gbench report` gives it
    assert "synthetic" in text  # data provenance


def test_cli_report_html(image_run: Path, tmp_path: Path):
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", str(image_run), "--format", "html", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out) and out.is_file()
    assert (image_run / "plots" / "image-samples.pdf").is_file()  # the command writes PDFs for papers too
    for fmt in ("github", "latex", "json"):  # --output works for every format
        res = CliRunner().invoke(cli, ["report", str(image_run), "--format", fmt, "--output", str(out)])
        assert res.exit_code == 0 and res.output.strip() == str(out), res.output
        assert out.read_text(encoding="utf-8") == CliRunner().invoke(cli, ["report", str(image_run), "--format",
                                                                          fmt]).output


# -- the page in a real browser ------------------------------------------------------------------------

COUNT_IMAGES = """<script>window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  document.body.setAttribute("data-images-loaded", ok.length + "/" + imgs.length);
});</script>"""


def open_in_chromium(page: Path, screenshot: Path, profile: Path) -> str:
    """Load ``page`` (with a probe that counts the images that loaded) in headless Chromium; returns the
    probe's "loaded/total" and writes a screenshot of the page."""
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", COUNT_IMAGES + "</body>"), encoding="utf-8")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1280,2000",
           "--dump-dom", f"--screenshot={screenshot}", probe.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', done.stdout)
    assert found, f"the page's load handler never ran: {done.stdout[:500]!r} {done.stderr[-1000:]!r}"
    return f"{found[1]}/{found[2]}"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does)")
def test_pages_load_every_image_in_headless_chromium(toy_page: Path, image_page: Path, tmp_path: Path):
    for page, name in ((toy_page, "report.png"), (image_page, "report-images.png")):
        n = len(parse(page)[1].images)
        assert n > 0
        shot = ARTIFACTS / name
        assert open_in_chromium(page, shot, tmp_path / f"profile-{name}") == f"{n}/{n}"
        data = shot.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        shutil.copy(page, ARTIFACTS / name.replace(".png", ".html"))  # the page beside its screenshot
