"""Observer hooks: called at the right moments with copies, never able to change a trial; the opt-in
TensorBoard observer (skipped where tensorboard is not installed)."""
from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import gbench
from gbench import hookspecs
from gbench.cli import cli
from gbench.errors import GbenchError
from gbench.observers import OBSERVER_HOOKS
from gbench.suite import parse_suite
from gbench.run.trial import run_trial, trials_of

TINY = {"name": "tiny-observed", "variants": ["sgan"], "dataset": {"name": "ring8", "train_size": 256},
        "model": {"g_hidden": 16, "d_hidden": 16, "depth": 1}, "budget": {"g_steps": 120, "batch_size": 32},
        "eval": {"num_samples": 300, "at": [0.5, 1.0]}}


def tiny_trial():
    return trials_of(parse_suite(TINY, "tiny.toml"))[0]


class Recorder:
    """A fake observer plugin: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @gbench.hookimpl
    def trial_started(self, trial_info):
        self.calls.append(("trial_started", {"trial_info": trial_info}))

    @gbench.hookimpl
    def log_scalars(self, trial_id, g_step, scalars):
        self.calls.append(("log_scalars", {"trial_id": trial_id, "g_step": g_step, "scalars": scalars}))

    @gbench.hookimpl
    def evaluated(self, trial_id, g_step, metrics, samples):
        self.calls.append(("evaluated", {"trial_id": trial_id, "g_step": g_step, "metrics": metrics,
                                         "samples": samples}))

    @gbench.hookimpl
    def trial_finished(self, trial_id, result):
        self.calls.append(("trial_finished", {"trial_id": trial_id, "result": result}))


class Vandal:
    """An observer that tries to change what it is given, then raises."""

    @gbench.hookimpl
    def trial_started(self, trial_info):
        trial_info["seed"] = 99

    @gbench.hookimpl
    def log_scalars(self, trial_id, g_step, scalars):
        scalars["g_loss"] = 0.0
        raise RuntimeError("observer bug")

    @gbench.hookimpl
    def evaluated(self, trial_id, g_step, metrics, samples):
        metrics["jsd_bits"] = -1.0
        samples[:] = 0.0  # read-only: raises ValueError, reported once

    @gbench.hookimpl
    def trial_finished(self, trial_id, result):
        result["status"] = "vandalised"


def registered(*observers):
    pm = gbench.get_plugins().manager

    class Scope:
        def __enter__(self):
            for o in observers:
                pm.register(o)

        def __exit__(self, *exc):
            for o in observers:
                pm.unregister(o)

    return Scope()


def test_observer_hooks_are_specified_and_documented():
    for name in OBSERVER_HOOKS:
        spec = getattr(hookspecs, name)
        assert hasattr(spec, "gbench_spec") and (spec.__doc__ or "").strip(), name
    assert list(inspect.signature(hookspecs.evaluated).parameters) == ["trial_id", "g_step", "metrics", "samples"]
    docs = (Path(__file__).resolve().parent.parent / "docs" / "observers.md").read_text()
    for name in OBSERVER_HOOKS:
        assert f"`{name}(" in docs, name


def test_observers_see_start_losses_evaluations_and_end():
    rec = Recorder()
    with registered(rec):
        result = run_trial(tiny_trial()).result
    assert result.status == "ok", result.error
    names = [name for name, _ in rec.calls]
    assert names[0] == "trial_started" and names[-1] == "trial_finished"
    info = rec.calls[0][1]["trial_info"]
    assert info["trial_id"] == "sgan-seed0" and info["seed"] == 0 and info["budget"]["g_steps"] == 120
    assert "status" not in info

    logs = [c for n, c in rec.calls if n == "log_scalars"]
    assert [c["g_step"] for c in logs] == [p.g_step for p in result.loss_curve] == [60, 120]
    assert all(c["scalars"] == {"d_loss": p.d_loss, "g_loss": p.g_loss}
               for c, p in zip(logs, result.loss_curve))

    evals = [c for n, c in rec.calls if n == "evaluated"]
    assert [c["g_step"] for c in evals] == [e.g_step for e in result.evaluations] == [60, 120]
    assert all(c["metrics"] == e.metrics for c, e in zip(evals, result.evaluations))
    samples = evals[-1]["samples"]
    assert isinstance(samples, np.ndarray) and samples.shape == (300, 2) and not samples.flags.writeable
    assert names.index("evaluated") > names.index("log_scalars")  # each evaluation after its window's losses

    end = rec.calls[-1][1]
    assert end["trial_id"] == "sgan-seed0" and end["result"]["status"] == "ok"
    assert end["result"] == result.to_json()  # the record as its file will hold it, less the runner's stamps


def test_observers_cannot_change_a_trial_and_their_errors_are_reported_once(capsys):
    plain = run_trial(tiny_trial())
    rec = Recorder()
    with registered(rec, Vandal()):  # pluggy's order, last registered first: the vandal, then the recorder
        observed = run_trial(tiny_trial())
    for key in ("status", "seed", "metrics", "loss_curve", "evaluations"):
        assert getattr(observed.result, key) == getattr(plain.result, key), key
    assert plain.samples is not None and np.array_equal(observed.samples, plain.samples)
    later = [c for n, c in rec.calls if n == "log_scalars"]
    assert [c["scalars"] for c in later] == [{"d_loss": p.d_loss, "g_loss": p.g_loss}
                                            for p in plain.result.loss_curve]
    err = capsys.readouterr().err
    assert err.count("failed in log_scalars: RuntimeError: observer bug") == 1  # two windows, one warning
    assert err.count("failed in evaluated: ValueError") == 1


def test_no_observer_no_difference_and_no_leftover_registration():
    pm = gbench.get_plugins().manager
    assert not any(getattr(pm.hook, h).get_hookimpls() for h in OBSERVER_HOOKS)  # none built in
    a, b = run_trial(tiny_trial()).result, run_trial(tiny_trial()).result
    assert a.loss_curve == b.loss_curve and a.metrics == b.metrics


def test_tensorboard_flag_without_tensorboard_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    suite = tmp_path / "tiny.toml"
    suite.write_text('variants = ["sgan"]\n[dataset]\nname = "ring8"\ntrain_size = 64\n[budget]\ng_steps = 2\n'
                     'batch_size = 8\n[eval]\nnum_samples = 50\n')
    r = CliRunner().invoke(cli, ["run", str(suite), "--out", str(tmp_path / "run"), "--quiet", "--tensorboard"])
    assert r.exit_code == 2 and "pip install 'gbench[tensorboard]'" in r.output
    assert not (tmp_path / "run").exists()
    from gbench.observers.tensorboard import TensorBoardObserver

    with pytest.raises(GbenchError, match="tensorboard"):
        TensorBoardObserver(tmp_path)


def test_scatter_figure_shows_modes_axes_and_counts_samples_outside():
    from gbench.datasets.toy import ring8
    from gbench.observers.tensorboard import sample_window, scatter_figure

    law = ring8()
    x = np.array([[0.0, 0.0], [50.0, 50.0]] + [[1.0, 0.0]] * 10)
    box = sample_window(law, x[:1])
    assert box[1] - box[0] < 10  # one far sample does not widen the window beyond the modes' box
    with_modes = scatter_figure(x, law, box, "G step 10")
    without = scatter_figure(x, None, box, "G step 10")
    assert with_modes.shape == (256, 256, 3) and with_modes.dtype == np.uint8
    dark = lambda img: int(((img < 40).all(-1)).sum())  # noqa: E731 - black: modes, tick labels
    assert dark(with_modes) > dark(without) > 0  # the crosses of the modes; the axes' labels in both
    blue = (with_modes[:, :, 2].astype(int) - with_modes[:, :, 0] > 40).sum()
    assert blue > 0  # the samples


def test_hparams_hold_variant_settings_seed_and_final_metrics():
    from gbench.observers.tensorboard import hparams_of

    hp, metrics = hparams_of({"variant": "alpha-gan", "label": "a", "seed": 3, "status": "ok",
                              "variant_config": {"alpha_d": 0.5, "betas": [0.5, 0.9]},
                              "optim": {"g_lr": 2e-4, "lr_schedule": "linear"},
                              "metrics": {"jsd_bits": 0.25, "modes": 8, "bad": float("nan")}})
    assert hp == {"variant": "alpha-gan", "label": "a", "seed": 3, "status": "ok", "variant.alpha_d": 0.5,
                  "variant.betas": "[0.5, 0.9]", "optim.g_lr": 2e-4, "optim.lr_schedule": "linear"}
    assert metrics == {"metrics/jsd_bits": 0.25, "metrics/modes": 8.0}


# -- with tensorboard installed -------------------------------------------------------------------------

TB_SUITE = ('variants = ["sgan"]\nseeds = [0, 1]\n[dataset]\nname = "ring8"\ntrain_size = 256\n'
            '[model]\ng_hidden = 16\nd_hidden = 16\ndepth = 1\n[budget]\ng_steps = 120\nbatch_size = 32\n'
            '[eval]\nnum_samples = 300\nat = [0.5, 1.0]\nlog_every = 30\n')


def _events(path: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    return events


def _check_trial_events(out: Path, trial_id: str) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = _events(out / "tensorboard" / trial_id)
    tags = events.Tags()
    assert {"loss/d_loss", "loss/g_loss", "metrics/jsd_bits", "metrics/modes"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/g_loss")] == [30, 60, 90, 120]  # [eval] log_every = 30
    assert [e.step for e in events.Scalars("metrics/hq_percent")] == [60, 120]
    assert [(e.step, e.width, e.height) for e in events.Images("samples")] == [(60, 256, 256), (120, 256, 256)]
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["variant"].string_value == "sgan" and hp["seed"].number_value == int(trial_id[-1])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert "metrics/jsd_bits" in {m.name.tag for m in experiment.experiment.metric_infos}


def test_tensorboard_run_writes_losses_metrics_samples_and_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    suite = tmp_path / "tiny.toml"
    suite.write_text(TB_SUITE)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--quiet", "--tensorboard"])
    assert r.exit_code == 0, r.output
    from gbench.observers import RUN_DIR_ENV, TENSORBOARD_ENV, run_observers

    assert not run_observers() and RUN_DIR_ENV not in os.environ and TENSORBOARD_ENV not in os.environ
    for trial_id in ("sgan-seed0", "sgan-seed1"):
        _check_trial_events(out, trial_id)


@pytest.mark.slow  # a spawned worker imports torch: ~10-20 s
def test_tensorboard_with_the_process_executor_writes_from_each_worker(tmp_path):
    pytest.importorskip("tensorboard")
    suite = tmp_path / "tiny.toml"
    suite.write_text(TB_SUITE.replace("seeds = [0, 1]", "seeds = [1]"))
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--quiet", "--tensorboard", "--no-batch",
                                 "--executor", "process", "--jobs", "1", "--threads", "1"])
    assert r.exit_code == 0, r.output
    _check_trial_events(out, "sgan-seed1")


def test_tensorboard_observer_writes_an_image_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from gbench.observers.tensorboard import TensorBoardObserver

    obs = TensorBoardObserver(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (70, 3, 8, 8), dtype=np.uint8)
    images.flags.writeable = False
    obs.trial_started({"trial_id": "img-seed0", "seed": 0})
    obs.evaluated("img-seed0", 10, {"fid": 12.5, "isc_mean": float("nan")}, images)
    obs.trial_finished("img-seed0", {"status": "ok", "consumed": {"g_steps": 10}})
    events = _events(tmp_path / "tensorboard" / "img-seed0")
    assert events.Tags()["scalars"] == ["metrics/fid"]  # a NaN is left out
    (image,) = events.Images("samples")
    assert (image.width, image.height) == (8 * 8 + 9 * 2, 8 * 8 + 9 * 2)  # 8 x 8 grid of the first 64, padding 2


def test_resume_removes_the_evolution_samples_a_failed_attempt_left(tmp_path):
    """A failed trial's samples/<trial>/step<N>.npy stay (its --resume may continue from a checkpoint);
    once its rerun finishes, files of steps it did not evaluate are removed; other trials' are untouched."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(TB_SUITE)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    folder = out / "samples" / "sgan-seed1"
    assert sorted(p.name for p in folder.glob("*.npy")) == ["step120.npy", "step60.npy"]
    result = out / "trials" / "sgan-seed1.json"
    data = json.loads(result.read_text())
    result.write_text(json.dumps({**data, "status": "failed", "error": "RuntimeError: injected"}))
    stale = np.zeros((3, 2))
    np.save(folder / "step90.npy", stale)  # as an attempt evaluating at other steps would have left
    np.save(out / "samples" / "sgan-seed0" / "step90.npy", stale)
    r = CliRunner().invoke(cli, ["run", str(suite), "--out", str(out), "--quiet", "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads(result.read_text())["status"] == "ok"
    assert sorted(p.name for p in folder.glob("*.npy")) == ["step120.npy", "step60.npy"]
    assert (out / "samples" / "sgan-seed0" / "step90.npy").is_file()  # not rerun: not touched
